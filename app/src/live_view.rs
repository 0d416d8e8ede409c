//! The browser half of the session page: follows the live stream, keeps a terminal ([`Document`]) of the
//! transcript, and draws it into the server-rendered transcript element. Also find-in-transcript, `#offset=N`
//! links and the copy button. Browser only (compiled with `hydrate`).
//!
//! The stream is replayed from offset 0, so the browser's terminal is the server's snapshot rebuilt; until the
//! replay reaches the live tail the snapshot stays on screen, then the browser's own rendering takes over (same
//! markup) and is updated at most once per animation frame.

use std::cell::RefCell;
use std::rc::Rc;

use cmdop_protocol::SessionState;
use cmdop_protocol::live::{LiveEvent, decode_live_output};
use cmdop_transcript::{Document, Row, html};
use futures::StreamExt;
use futures::channel::oneshot;
use futures::future::{self, Either};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::pages::LiveState;
use crate::transcript_view::{BLOCK_ROWS, markup};

/// The page's live transcript; one session page at a time.
struct Live {
    doc: Document,
    root: web_sys::HtmlElement,
    /// The replay has reached the live tail: draw.
    caught_up: bool,
    /// History rows drawn so far, counted from the first row ever (dropped ones included).
    drawn_rows: u64,
    drawn_dropped: u64,
    /// Rows in the last history block.
    last_block_rows: usize,
    drawn_revision: Option<u64>,
    frame_pending: bool,
    /// `#offset=N` from the URL, until it has been shown.
    target: Option<u64>,
    find: Option<FindState>,
}

struct FindState {
    query: String,
    /// The document revision the matches were found in.
    revision: u64,
    /// (row index in all rows, char start, char end)
    matches: Vec<(usize, usize, usize)>,
    current: usize,
    /// Rows drawn with marks, to be drawn plainly again.
    marked_rows: Vec<usize>,
}

thread_local! {
    static LIVE: RefCell<Option<Rc<RefCell<Live>>>> = const { RefCell::new(None) };
}

/// Starts following session `id`, drawing into `root`.
pub fn follow(id: uuid::Uuid, root: web_sys::HtmlDivElement, live: LiveState) {
    let target = location_hash().and_then(|h| h.strip_prefix("#offset=").and_then(|n| n.parse::<u64>().ok()));
    let state = Rc::new(RefCell::new(Live {
        doc: Document::new(80, 24, 0),
        root: root.unchecked_into(),
        caught_up: false,
        drawn_rows: 0,
        drawn_dropped: 0,
        last_block_rows: 0,
        drawn_revision: None,
        frame_pending: false,
        target,
        find: None,
    }));
    LIVE.with(|l| *l.borrow_mut() = Some(state.clone()));
    // Leaving the page closes the stream (and so detaches this tab's client) and forgets the transcript.
    let (stop_tx, stop) = futures::channel::oneshot::channel::<()>();
    on_cleanup(move || {
        let _ = stop_tx.send(());
        LIVE.with(|l| l.borrow_mut().take());
    });
    leptos::task::spawn_local(run(id, state, live, stop));
    tick_duration(live);
}

/// While the session runs, its duration goes up by itself.
fn tick_duration(live: LiveState) {
    let started = js_sys::Date::now();
    let base = live.duration_ms.get_untracked();
    let handle = set_interval_with_handle(
        move || {
            if live.state.get_untracked() == SessionState::Active {
                live.duration_ms.set(base + (js_sys::Date::now() - started) as u64);
            }
        },
        std::time::Duration::from_secs(1),
    );
    if let Ok(handle) = handle {
        on_cleanup(move || handle.clear());
    }
}

/// The replay (always from 0) reached the tail: the browser now holds the whole retained transcript.
fn caught_up(state: &Rc<RefCell<Live>>, live: LiveState) {
    state.borrow_mut().caught_up = true;
    live.whole_transcript.set(true);
}

async fn run(id: uuid::Uuid, state: Rc<RefCell<Live>>, live: LiveState, mut stop: oneshot::Receiver<()>) {
    let mut attempt = 0u32;
    // Until the first event, the terminal has not been set up from the stream's `hello`.
    let mut first = true;
    loop {
        let from = if first { 0 } else { state.borrow().doc.end_offset() };
        let ws = match WebSocket::open(&live_url(id, from)) {
            Ok(ws) => ws,
            Err(e) => {
                live.link_status.set(format!("Cannot open the live stream: {e}"));
                return;
            }
        };
        let (_write, mut read) = ws.split();
        loop {
            let msg = match future::select(read.next(), &mut stop).await {
                Either::Left((Some(msg), _)) => msg,
                Either::Left((None, _)) => break,
                Either::Right(_) => return,
            };
            match msg {
                Ok(Message::Bytes(frame)) => {
                    if let Some((offset, bytes)) = decode_live_output(&frame) {
                        state.borrow_mut().doc.feed(offset, bytes);
                        schedule_draw(&state, live);
                    }
                }
                Ok(Message::Text(text)) => match decode_event(&text) {
                    Ok(event) => {
                        attempt = 0;
                        let flow = handle_event(&state, live, event, first);
                        first = false;
                        if let Flow::Stop = flow {
                            live.this_tab.set(None);
                            return;
                        }
                    }
                    Err(e) => leptos::logging::warn!("live stream: unreadable event: {e}"),
                },
                Err(_) => break,
            }
        }
        if live.state.get_untracked() == SessionState::Ended {
            live.this_tab.set(None);
            return;
        }
        // The server went away or the network dropped: resume where the terminal ends.
        attempt += 1;
        live.link_status.set("Live stream interrupted; reconnecting…".into());
        sleep_ms((500u32 << attempt.min(5)).min(15_000)).await;
        if !matches!(stop.try_recv(), Ok(None)) {
            return;
        }
    }
}

/// Whether the stream goes on after an event.
enum Flow {
    Go,
    /// The session ended, or the server gave up on this viewer: the stream is over.
    Stop,
}

fn handle_event(state: &Rc<RefCell<Live>>, live: LiveState, event: LiveEvent, first: bool) -> Flow {
    match event {
        LiveEvent::Hello { cols, rows, client_id, .. } => {
            if first {
                let mut s = state.borrow_mut();
                s.doc = Document::new(cols, rows, 0);
            }
            live.this_tab.set(client_id);
            live.link_status.set(String::new());
        }
        LiveEvent::Gap { at_offset, bytes_lost, reason } => {
            state.borrow_mut().doc.gap(at_offset, bytes_lost, reason);
            schedule_draw(state, live);
        }
        LiveEvent::Resize { cols, rows, .. } => {
            state.borrow_mut().doc.resize(cols, rows);
            schedule_draw(state, live);
        }
        LiveEvent::Live { offset } => {
            live.total_bytes.set(offset.max(live.total_bytes.get_untracked()));
            caught_up(state, live);
            schedule_draw(state, live);
        }
        LiveEvent::Clients { clients } => live.clients.set(clients),
        LiveEvent::Exit { exit_code, duration_ms, total_bytes, .. } => {
            live.state.set(SessionState::Ended);
            live.exit_code.set(exit_code);
            live.duration_ms.set(duration_ms);
            live.total_bytes.set(total_bytes);
            live.clients.set(Vec::new());
            caught_up(state, live);
            live.link_status.set(String::new());
            schedule_draw(state, live);
            return Flow::Stop;
        }
        LiveEvent::Error { error } => {
            live.link_status.set(format!("Live stream stopped: {error}"));
            return Flow::Stop;
        }
        LiveEvent::Pong => {}
    }
    Flow::Go
}

/// Draws on the next animation frame (once however many events came), and says the output size it drew.
fn schedule_draw(state: &Rc<RefCell<Live>>, live: LiveState) {
    {
        let mut s = state.borrow_mut();
        if s.frame_pending || !s.caught_up {
            return;
        }
        s.frame_pending = true;
    }
    let state = state.clone();
    request_animation_frame(move || {
        let end = {
            let mut s = state.borrow_mut();
            s.frame_pending = false;
            s.draw();
            s.doc.end_offset()
        };
        if end > live.total_bytes.get_untracked() {
            live.total_bytes.set(end);
        }
    });
}

impl Live {
    fn draw(&mut self) {
        if self.drawn_revision == Some(self.doc.revision()) {
            return;
        }
        let full = self.drawn_revision.is_none() || self.doc.dropped_rows() != self.drawn_dropped;
        self.drawn_revision = Some(self.doc.revision());
        let rows = self.doc.rows();
        let (history, screen) = rows.parts();
        let total_rows = self.doc.dropped_rows() + history.len() as u64;
        if full {
            // Everything is drawn anew: marks from an earlier find go with the old rows.
            self.find = None;
            self.root.set_inner_html(&markup(history, screen));
            self.drawn_dropped = self.doc.dropped_rows();
            self.last_block_rows = match history.len() {
                0 => BLOCK_ROWS,
                n => (n - 1) % BLOCK_ROWS + 1,
            };
        } else {
            // New history rows go into the last block until it is full: one insertion per block.
            let first_new = (self.drawn_rows - self.doc.dropped_rows()) as usize;
            if let Ok(Some(hist)) = self.root.query_selector(".hist") {
                let mut pending = history.iter().skip(first_new).peekable();
                while pending.peek().is_some() {
                    if self.last_block_rows >= BLOCK_ROWS {
                        let _ = hist.insert_adjacent_html("beforeend", "<div class=\"blk\"></div>");
                        self.last_block_rows = 0;
                    }
                    let mut out = String::new();
                    for row in pending.by_ref().take(BLOCK_ROWS - self.last_block_rows) {
                        html::push_row(&mut out, row);
                        self.last_block_rows += 1;
                    }
                    if let Some(block) = hist.last_element_child() {
                        let _ = block.insert_adjacent_html("beforeend", &out);
                    }
                }
            }
            // The screen is drawn whole (find marks on it go with it; marks in history stay).
            if let Ok(Some(screen_el)) = self.root.query_selector(".screen") {
                let mut out = String::new();
                for row in screen {
                    html::push_row(&mut out, row);
                }
                screen_el.set_inner_html(&out);
            }
        }
        self.drawn_rows = total_rows;
        if let Some(target) = self.target.take() {
            self.show_offset(target);
        }
    }

    /// Scrolls to the row where byte `offset` was printed and marks it.
    fn show_offset(&self, offset: u64) {
        // Rows are in offset order: the last one that starts at or before `offset`.
        let index = self.doc.rows().iter().take_while(|r| r.offset() <= offset).count().saturating_sub(1);
        if let Some(el) = self.row_elements().and_then(|rows| element(&rows, index)) {
            let _ = el.class_list().add_1("target");
            scroll_to(&el);
        }
    }

    /// The drawn rows (text rows and gap markers), in the order of `Document::rows`.
    fn row_elements(&self) -> Option<web_sys::NodeList> {
        self.root.query_selector_all(".r, .gap").ok()
    }

    /// Draws the rows with matches marked (the current one apart), after drawing the previously marked ones
    /// plainly.
    fn mark_rows(&mut self, current: usize) {
        self.clear_marks();
        let (Some(f), Some(elements)) = (self.find.as_ref(), self.row_elements()) else { return };
        let rows = self.doc.rows();
        let mut marked = Vec::new();
        // Matches are in row order: one group per row.
        let mut first = 0;
        for group in f.matches.chunk_by(|a, b| a.0 == b.0) {
            let row_index = group[0].0;
            let marks: Vec<_> = group.iter().enumerate().map(|(k, m)| (m.1, m.2, first + k == current)).collect();
            first += group.len();
            if let (Some(el), Some(Row::Text(row))) = (element(&elements, row_index), rows.get(row_index)) {
                let mut out = String::new();
                html::push_row_marked(&mut out, row, &marks);
                el.set_outer_html(&out);
                marked.push(row_index);
            }
        }
        if let Some(f) = self.find.as_mut() {
            f.marked_rows = marked;
        }
    }

    fn clear_marks(&mut self) {
        let Some(f) = self.find.as_mut() else { return };
        let marked = std::mem::take(&mut f.marked_rows);
        let Some(elements) = self.row_elements() else { return };
        let rows = self.doc.rows();
        for index in marked {
            if let (Some(el), Some(row)) = (element(&elements, index), rows.get(index)) {
                let mut out = String::new();
                html::push_row(&mut out, row);
                el.set_outer_html(&out);
            }
        }
    }
}

fn element(list: &web_sys::NodeList, index: usize) -> Option<web_sys::Element> {
    list.item(index as u32)?.dyn_into::<web_sys::Element>().ok()
}

/// Every (row, first char, end char) where `query` (lowercase) occurs, ignoring case.
fn search(rows: &cmdop_transcript::Rows<'_>, query: &str) -> Vec<(usize, usize, usize)> {
    let len = query.chars().count();
    let mut matches = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if let Row::Text(t) = row {
            let text = lowercase(&t.text());
            for (byte, _) in text.match_indices(query) {
                let start = text[..byte].chars().count();
                matches.push((i, start, start + len));
            }
        }
    }
    matches
}

/// `text` in lower case, as `str::to_lowercase` has it. Non-ASCII text is lowered by the browser
/// (`String.prototype.toLowerCase`, the same Unicode mapping): Rust's case tables cost the WASM 2.3 KB gzipped.
fn lowercase(text: &str) -> String {
    if text.is_ascii() { text.to_ascii_lowercase() } else { js_sys::JsString::from(text).to_lower_case().into() }
}

/// Finds `query` in the transcript (case-insensitive) and moves to the next (or previous) match; returns
/// (current index, number of matches).
pub async fn find(query: &str, forward: bool) -> Option<(usize, usize)> {
    let live = LIVE.with(|l| l.borrow().clone())?;
    // Until the replay reaches the live tail the browser's terminal is incomplete (the server's snapshot is what
    // is on screen): wait for it, up to 20 s.
    for _ in 0..400 {
        if live.borrow().caught_up {
            break;
        }
        sleep_ms(50).await;
    }
    let mut s = live.borrow_mut();
    // Draw first, so that rows on screen and rows searched are the same.
    s.draw();
    let query = lowercase(query.trim());
    if query.is_empty() {
        s.clear_marks();
        s.find = None;
        return None;
    }
    let revision = s.doc.revision();
    let same_query = s.find.as_ref().is_some_and(|f| f.query == query);
    if !same_query || s.find.as_ref().is_some_and(|f| f.revision != revision) {
        // A new query starts before its first match; the same query over changed output keeps its place.
        let at_row = s.find.as_ref().filter(|_| same_query).and_then(|f| f.matches.get(f.current)).map(|m| m.0);
        let matches = search(&s.doc.rows(), &query);
        let n = matches.len();
        let current = match at_row {
            Some(row) => matches.iter().position(|m| m.0 >= row).unwrap_or(n).saturating_sub(usize::from(forward)),
            None if forward => n.saturating_sub(1),
            None => 0,
        };
        let marked_rows = s.find.take().map(|f| f.marked_rows).unwrap_or_default();
        s.find = Some(FindState { query, revision, matches, current, marked_rows });
    }
    let f = s.find.as_mut().expect("set above");
    let n = f.matches.len();
    if n == 0 {
        s.clear_marks();
        return Some((0, 0));
    }
    f.current = if forward { (f.current + 1) % n } else { (f.current + n - 1) % n };
    let current = f.current;
    let row_index = f.matches[current].0;
    s.mark_rows(current);
    let offset = s.doc.rows().get(row_index).map(Row::offset);
    if let (Some(el), Some(offset)) = (s.row_elements().and_then(|rows| element(&rows, row_index)), offset) {
        scroll_to(&el);
        set_hash(&format!("#offset={offset}"));
    }
    Some((current, n))
}

/// Copies `text` to the clipboard; `copied` is true for two seconds after.
/// Copies a copy button's `data-copy` text; the button says "Copied" for two seconds.
pub fn copy_text(button: web_sys::Element) {
    let (Some(window), Some(text)) = (web_sys::window(), button.get_attribute("data-copy")) else { return };
    let promise = window.navigator().clipboard().write_text(&text);
    leptos::task::spawn_local(async move {
        if wasm_bindgen_futures::JsFuture::from(promise).await.is_ok() {
            button.set_text_content(Some("Copied"));
            sleep_ms(2000).await;
            button.set_text_content(Some("Copy"));
        }
    });
}

fn scroll_to(el: &web_sys::Element) {
    let options = web_sys::ScrollIntoViewOptions::new();
    options.set_block(web_sys::ScrollLogicalPosition::Center);
    el.scroll_into_view_with_scroll_into_view_options(&options);
}

fn location_hash() -> Option<String> {
    web_sys::window()?.location().hash().ok().filter(|h| !h.is_empty())
}

fn set_hash(hash: &str) {
    if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(hash));
    }
}

fn live_url(id: uuid::Uuid, from: u64) -> String {
    let location = web_sys::window().expect("window").location();
    let scheme = if location.protocol().ok().as_deref() == Some("https:") { "wss" } else { "ws" };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}/api/v1/sessions/{id}/live?from={from}")
}

async fn sleep_ms(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// A live event's JSON as one flat struct. [`LiveEvent`] is internally tagged (`"type"`), which serde decodes by
/// buffering each object into a generic tree first: that path alone cost the WASM bundle 12 KB gzipped, while the
/// direct decoders of these fields are in the bundle anyway (the page's data has the same types).
#[derive(serde::Deserialize)]
struct EventFields {
    #[serde(rename = "type")]
    kind: String,
    from: Option<u64>,
    total_bytes: Option<u64>,
    cols: Option<u16>,
    rows: Option<u16>,
    client_id: Option<uuid::Uuid>,
    at_offset: Option<u64>,
    bytes_lost: Option<u64>,
    reason: Option<cmdop_protocol::GapReason>,
    offset: Option<u64>,
    clients: Option<Vec<cmdop_protocol::ClientInfo>>,
    exit_code: Option<i32>,
    end_reason: Option<cmdop_protocol::EndReason>,
    #[serde(default, with = "cmdop_protocol::time::rfc3339_opt")]
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    duration_ms: Option<u64>,
    error: Option<String>,
}

/// Reads a text frame as a [`LiveEvent`]. Accepts every event `serde_json::from_str::<LiveEvent>` accepts (fields of
/// the other variants are read too, so they must be well-formed if present; the server never sends them).
fn decode_event(text: &str) -> Result<LiveEvent, String> {
    // `from_slice`, as every other decoder in the WASM reads: each reader type compiles its own decoders.
    let f: EventFields = serde_json::from_slice(text.as_bytes()).map_err(|e| e.to_string())?;
    let missing = |field: &str| format!("`{}` event without `{field}`", f.kind);
    let need = |v: Option<u64>, field: &str| v.ok_or_else(|| missing(field));
    Ok(match f.kind.as_str() {
        "hello" => LiveEvent::Hello {
            from: need(f.from, "from")?,
            total_bytes: need(f.total_bytes, "total_bytes")?,
            cols: f.cols.ok_or_else(|| missing("cols"))?,
            rows: f.rows.ok_or_else(|| missing("rows"))?,
            client_id: f.client_id,
        },
        "gap" => LiveEvent::Gap {
            at_offset: need(f.at_offset, "at_offset")?,
            bytes_lost: need(f.bytes_lost, "bytes_lost")?,
            reason: f.reason.ok_or_else(|| missing("reason"))?,
        },
        "resize" => LiveEvent::Resize {
            offset: need(f.offset, "offset")?,
            cols: f.cols.ok_or_else(|| missing("cols"))?,
            rows: f.rows.ok_or_else(|| missing("rows"))?,
        },
        "live" => LiveEvent::Live { offset: need(f.offset, "offset")? },
        "clients" => LiveEvent::Clients { clients: f.clients.ok_or_else(|| missing("clients"))? },
        "exit" => LiveEvent::Exit {
            exit_code: f.exit_code,
            end_reason: f.end_reason,
            ended_at: f.ended_at,
            duration_ms: need(f.duration_ms, "duration_ms")?,
            total_bytes: need(f.total_bytes, "total_bytes")?,
        },
        "error" => LiveEvent::Error { error: f.error.ok_or_else(|| missing("error"))? },
        "pong" => LiveEvent::Pong,
        other => return Err(format!("unknown event type `{other}`")),
    })
}

#[cfg(test)]
mod tests {
    use cmdop_protocol::{ClientInfo, ClientKind, EndReason, GapReason};

    use super::*;

    #[test]
    fn every_event_reads_as_the_protocol_wrote_it() {
        let at = "2026-11-24T17:39:02.5Z".parse().unwrap();
        let client = ClientInfo {
            id: uuid::Uuid::from_u128(7),
            kind: ClientKind::Browser,
            name: "firefox".into(),
            attached_at: at,
            detached_at: None,
        };
        let events = [
            LiveEvent::Hello { from: 0, total_bytes: 9, cols: 80, rows: 24, client_id: Some(client.id) },
            LiveEvent::Hello { from: 3, total_bytes: 9, cols: 120, rows: 40, client_id: None },
            LiveEvent::Gap { at_offset: 5, bytes_lost: 1 << 40, reason: GapReason::RecorderOffline },
            LiveEvent::Gap { at_offset: 0, bytes_lost: 9, reason: GapReason::Truncated },
            LiveEvent::Resize { offset: 4, cols: 100, rows: 30 },
            LiveEvent::Live { offset: 9 },
            LiveEvent::Clients { clients: vec![client.clone()] },
            LiveEvent::Clients { clients: Vec::new() },
            LiveEvent::Exit {
                exit_code: Some(3),
                end_reason: Some(EndReason::Exited),
                ended_at: Some(at),
                duration_ms: 1500,
                total_bytes: 9,
            },
            LiveEvent::Exit { exit_code: None, end_reason: None, ended_at: None, duration_ms: 0, total_bytes: 0 },
            LiveEvent::Error { error: "gone".into() },
            LiveEvent::Pong,
        ];
        for event in events {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(decode_event(&json), Ok(event), "{json}");
        }
    }

    #[test]
    fn incomplete_and_unknown_events_are_errors() {
        for json in [r#"{"type":"live"}"#, r#"{"type":"input","data":"ls"}"#, r#"{"offset":3}"#, "[]"] {
            assert!(decode_event(json).is_err(), "{json}");
            assert!(serde_json::from_str::<LiveEvent>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn ascii_is_lowered_without_the_browser() {
        assert_eq!(lowercase("Make DEPLOY"), "make deploy");
    }
}
