//! The viewer socket, `GET /api/v1/sessions/{id}/live?from=OFFSET`: replays the stored transcript from OFFSET,
//! then follows the session as it is committed (see `cmdop_protocol::live`).
//!
//! Read-only by construction: this handler has no handle to any recorder, and the only frames it accepts are the
//! protocol's ping and resume. Anything else closes the socket with 1008.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cmdop_protocol::live::{CLOSE_POLICY_VIOLATION, LiveEvent, ViewerFrame, encode_live_output};
use cmdop_protocol::{ClientKind, GapReason, SessionState};
use cmdop_store::{NewClient, StoreError, TranscriptPiece, Viewer};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use uuid::Uuid;

use super::hub::{Feed, TailItem};
use crate::api::parse_session_id;
use crate::auth::CurrentMember;
use crate::error::ApiError;
use crate::state::AppState;

/// Bytes read from the store per step of a catch-up, and the most one binary frame carries.
const PAGE_BYTES: usize = 256 * 1024;
/// A viewer sending the clients list another viewer read checks its own access again after this long.
const VISIBILITY_RECHECK: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub struct LiveParams {
    from: Option<String>,
}

pub async fn live(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Path(id): Path<String>,
    Query(params): Query<LiveParams>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    state.check_socket_origin(&headers)?;
    let id = parse_session_id(&id)?;
    let from = match params.from.as_deref().filter(|f| !f.is_empty()) {
        None => 0,
        Some(f) => {
            f.parse::<u64>().map_err(|_| ApiError::bad_request("from", format!("{f:?} is not a byte offset")))?
        }
    };
    let viewer = Viewer::Member(member.id);
    // Refused before the upgrade: an invisible session is a plain 404.
    state.store.session_head(&viewer, id).await?;
    let who = ViewerIdentity { viewer, name: member.display_name, member_id: Some(member.id) };
    // Viewers send only small control frames; a small read buffer (tungstenite zeroes it before every read).
    Ok(ws.max_message_size(4096).read_buffer_size(4096).on_upgrade(move |socket| follow(state, who, id, from, socket)))
}

/// Who is watching: the read rule, and how they appear among the attached clients.
pub struct ViewerIdentity {
    pub viewer: Viewer,
    pub name: String,
    pub member_id: Option<Uuid>,
}

/// Why a viewer's socket closes.
enum Close {
    /// The viewer went away.
    Gone,
    /// The viewer broke the protocol (sent input, or something undecodable).
    Violation(String),
    /// The session ended and everything was sent.
    Ended,
    Error(String),
}

struct Conn {
    sink: SplitSink<WebSocket, Message>,
}

impl Conn {
    async fn event(&mut self, e: &LiveEvent) -> Result<(), Close> {
        self.text(&serde_json::to_string(e).expect("live events serialize")).await
    }

    /// An event already serialized (shared by the session's viewers).
    async fn text(&mut self, text: &str) -> Result<(), Close> {
        self.sink.send(Message::Text(text.into())).await.map_err(|_| Close::Gone)
    }

    async fn bytes(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Close> {
        for (i, part) in bytes.chunks(PAGE_BYTES).enumerate() {
            let at = offset + (i * PAGE_BYTES) as u64;
            self.sink.send(Message::Binary(encode_live_output(at, part).into())).await.map_err(|_| Close::Gone)?;
        }
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code, reason: Utf8Bytes::from(reason.to_string()) };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}

async fn follow(state: AppState, who: ViewerIdentity, id: Uuid, from: u64, socket: WebSocket) {
    let (sink, stream) = socket.split();
    let mut conn = Conn { sink };
    let mut client = None;
    let result = run(&state, &who, id, from, &mut conn, stream, &mut client).await;
    if let Some(client_id) = client {
        if let Err(e) = state.store.detach_client(id, client_id, None).await {
            tracing::debug!("viewer detach: {e}");
        }
        state.hub.clients_changed(id);
    }
    match result {
        Close::Gone => {}
        Close::Violation(why) => conn.close(CLOSE_POLICY_VIOLATION, &why).await,
        Close::Ended => conn.close(1000, "session ended").await,
        Close::Error(why) => {
            let _ = conn.event(&LiveEvent::Error { error: why.clone() }).await;
            conn.close(1011, &why).await;
        }
    }
}

fn store_close(e: StoreError) -> Close {
    match e {
        // Visibility changed while watching (grant revoked, share expired): stop.
        StoreError::NotFound(_) => Close::Error("the session is no longer visible to you".into()),
        other => {
            tracing::error!("live viewer: {other}");
            Close::Error("the server could not read its store".into())
        }
    }
}

async fn run(
    state: &AppState,
    who: &ViewerIdentity,
    id: Uuid,
    from: u64,
    conn: &mut Conn,
    mut stream: SplitStream<WebSocket>,
    client: &mut Option<Uuid>,
) -> Close {
    let session = match state.store.session_head(&who.viewer, id).await {
        Ok(s) => s,
        Err(e) => return store_close(e),
    };
    let feed: Arc<Feed> = state.hub.watch(id, session.transcript.total_bytes);
    let mut changes = feed.subscribe();
    if session.state == SessionState::Active {
        let new = NewClient { kind: ClientKind::Browser, name: who.name.clone(), member_id: who.member_id };
        match state.store.attach_client(id, new).await {
            Ok(client_id) => {
                *client = Some(client_id);
                state.hub.clients_changed(id);
            }
            Err(e) => return store_close(e),
        }
    }
    let hello = LiveEvent::Hello {
        from,
        total_bytes: session.transcript.total_bytes,
        cols: session.cols,
        rows: session.rows,
        client_id: *client,
    };
    if let Err(c) = conn.event(&hello).await {
        return c;
    }

    let mut cursor = Cursor::at(from);
    let mut announced_live = false;
    let mut clients_seen = None;
    // When this viewer last read the session through its visibility rule.
    let mut checked = Instant::now();
    let mut ended = session.state == SessionState::Ended;
    loop {
        let seen = *changes.borrow_and_update();
        ended |= seen.ended;
        if let Err(c) = cursor.catch_up(state, who, id, &feed, conn, ended).await {
            return c;
        }
        if !announced_live {
            announced_live = true;
            if let Err(c) = conn.event(&LiveEvent::Live { offset: cursor.offset }).await {
                return c;
            }
        }
        if clients_seen != Some(seen.clients_version) || ended {
            clients_seen = Some(seen.clients_version);
            // Every viewer of the session sends the same list: the first to hear of a change reads it (through its
            // own visibility rule) and the others send what it read. Each still reads for itself at the end and
            // when its last read is older than VISIBILITY_RECHECK, so a revoked grant still closes the socket.
            let shared = (!ended && checked.elapsed() < VISIBILITY_RECHECK)
                .then(|| feed.clients_event(seen.clients_version))
                .flatten();
            if let Some(text) = shared {
                if let Err(c) = conn.text(&text).await {
                    return c;
                }
            } else {
                let session = match send_own_clients(state, who, id, &feed, seen.clients_version, conn).await {
                    Ok(s) => s,
                    Err(c) => return c,
                };
                checked = Instant::now();
                if session.state == SessionState::Ended {
                    if !ended {
                        // Ended elsewhere (e.g. the recorder-lost sweep): one more pass from the store, then the exit.
                        ended = true;
                        continue;
                    }
                    let exit = LiveEvent::Exit {
                        exit_code: session.exit_code,
                        end_reason: session.end_reason,
                        ended_at: session.ended_at,
                        duration_ms: session.duration_ms,
                        total_bytes: session.transcript.total_bytes,
                    };
                    return match conn.event(&exit).await {
                        Ok(()) => Close::Ended,
                        Err(c) => c,
                    };
                }
            }
        }
        // The viewer's own frames first: a `resume` already received must move the cursor before more output is
        // pushed from the old one (a busy server could otherwise pick the output first, and the viewer would see
        // bytes from after its resume point before those it asked for). So every frame already received is
        // taken before the next catch-up: a `ping` followed by a `resume` is answered, then resumed.
        tokio::select! {
            biased;
            msg = stream.next() => {
                let mut msg = Some(msg);
                while let Some(m) = msg {
                    if let Err(c) = take_frame(m, conn, &mut cursor).await {
                        return c;
                    }
                    msg = stream.next().now_or_never();
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Close::Error("the server is shutting down".into());
                }
            }
        }
    }
}

/// Reads the session (clients included) through the viewer's own visibility rule, sends its attached clients, and
/// keeps that event for the session's other viewers (see `Feed::clients_event`).
async fn send_own_clients(
    state: &AppState,
    who: &ViewerIdentity,
    id: Uuid,
    feed: &Feed,
    clients_version: u64,
    conn: &mut Conn,
) -> Result<cmdop_protocol::Session, Close> {
    let session = state.store.session(&who.viewer, id).await.map_err(store_close)?;
    let current = session.clients.iter().filter(|c| c.detached_at.is_none()).cloned().collect();
    let text: Arc<str> =
        serde_json::to_string(&LiveEvent::Clients { clients: current }).expect("live events serialize").into();
    feed.keep_clients_event(clients_version, text.clone());
    conn.text(&text).await?;
    Ok(session)
}

/// Acts on one frame from the viewer: answers a ping, moves the cursor on a resume.
async fn take_frame(
    msg: Option<Result<Message, axum::Error>>,
    conn: &mut Conn,
    cursor: &mut Cursor,
) -> Result<(), Close> {
    match viewer_frame(msg)? {
        None => {}
        Some(ViewerFrame::Ping) => conn.event(&LiveEvent::Pong).await?,
        Some(ViewerFrame::Resume { from }) => *cursor = Cursor::at(from),
    }
    Ok(())
}

/// Checks what a viewer sent: only the protocol's own frames pass.
fn viewer_frame(msg: Option<Result<Message, axum::Error>>) -> Result<Option<ViewerFrame>, Close> {
    match msg {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(Close::Gone),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
        Some(Ok(Message::Text(text))) => serde_json::from_str::<ViewerFrame>(&text)
            .map(Some)
            .map_err(|_| Close::Violation("read-only: viewers may only send ping and resume frames".into())),
        Some(Ok(Message::Binary(_))) => Err(Close::Violation("read-only: viewers may not send input".into())),
    }
}

/// Where a viewer is in the transcript.
struct Cursor {
    offset: u64,
    /// Resizes can come from both the store and the tail; the same one is not sent twice.
    last_resize: Option<(u64, u16, u16)>,
    /// Nothing sent from here yet: the first read goes to the store, which knows the size in effect here.
    fresh: bool,
}

impl Cursor {
    fn at(offset: u64) -> Self {
        Cursor { offset, last_resize: None, fresh: true }
    }

    /// Sends everything committed after the cursor: from the hub's tail when it still holds it, else from the
    /// store, a page at a time.
    async fn catch_up(
        &mut self,
        state: &AppState,
        who: &ViewerIdentity,
        id: Uuid,
        feed: &Feed,
        conn: &mut Conn,
        ended: bool,
    ) -> Result<(), Close> {
        loop {
            // Once the session has ended, the store alone says where the transcript ends.
            if !ended
                && !self.fresh
                && let Some(items) = feed.tail_from(self.offset)
            {
                return self.send_tail(&items, conn).await;
            }
            let page = state
                .store
                .read_transcript_page(&who.viewer, id, self.offset, PAGE_BYTES)
                .await
                .map_err(store_close)?;
            // A viewer starting after a resize learns the size in effect there first.
            if std::mem::take(&mut self.fresh)
                && let Some(r) = page.size_before
            {
                self.resize(self.offset, r.cols, r.rows, conn).await?;
            }
            for piece in page.pieces(self.offset) {
                match piece {
                    TranscriptPiece::Bytes { offset, bytes } => {
                        conn.bytes(offset, bytes).await?;
                        self.offset = offset + bytes.len() as u64;
                    }
                    TranscriptPiece::Gap { at_offset, bytes_lost, reason } => {
                        conn.event(&LiveEvent::Gap { at_offset, bytes_lost, reason }).await?;
                        self.offset = at_offset + bytes_lost;
                    }
                    TranscriptPiece::Resize(r) => self.resize(r.offset, r.cols, r.rows, conn).await?,
                }
            }
            if !page.more {
                return Ok(());
            }
        }
    }

    async fn send_tail(&mut self, items: &[TailItem], conn: &mut Conn) -> Result<(), Close> {
        // Consecutive bytes go out as one frame.
        let mut run: Vec<u8> = Vec::new();
        let mut run_at = self.offset;
        for item in items {
            match item {
                TailItem::Bytes { offset, bytes } => {
                    let end = offset + bytes.len() as u64;
                    if end <= self.offset {
                        continue;
                    }
                    let skip = self.offset.saturating_sub(*offset) as usize;
                    if run.is_empty() {
                        run_at = offset + skip as u64;
                    }
                    run.extend_from_slice(&bytes[skip..]);
                    self.offset = end;
                }
                TailItem::Gap { at_offset, bytes_lost } => {
                    flush(conn, run_at, &mut run).await?;
                    let event = LiveEvent::Gap {
                        at_offset: *at_offset,
                        bytes_lost: *bytes_lost,
                        reason: GapReason::RecorderOffline,
                    };
                    conn.event(&event).await?;
                    self.offset = self.offset.max(at_offset + bytes_lost);
                }
                TailItem::Resize { offset, cols, rows } => {
                    flush(conn, run_at, &mut run).await?;
                    self.resize(*offset, *cols, *rows, conn).await?;
                }
            }
        }
        flush(conn, run_at, &mut run).await
    }

    async fn resize(&mut self, offset: u64, cols: u16, rows: u16, conn: &mut Conn) -> Result<(), Close> {
        if self.last_resize == Some((offset, cols, rows)) {
            return Ok(());
        }
        self.last_resize = Some((offset, cols, rows));
        conn.event(&LiveEvent::Resize { offset, cols, rows }).await
    }
}

async fn flush(conn: &mut Conn, at: u64, run: &mut Vec<u8>) -> Result<(), Close> {
    if !run.is_empty() {
        conn.bytes(at, run).await?;
        run.clear();
    }
    Ok(())
}
