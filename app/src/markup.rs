//! HTML strings for the parts of pages that are pure functions of their data and never change in place: the
//! sessions list's filter form and tables, exit codes, client icons. The page sets them as an element's
//! `inner_html`: the server renders the string, hydration adopts it as is, and new data replaces it whole.
//!
//! Why strings and not `view!`s: each typed view compiles its own build, hydrate, rebuild and drop code into the
//! WASM, which for these tables and forms came to ~20 KB gzipped, for markup the browser never edits in place.
//! Every piece of data goes through [`Html::text`] or [`Html::attr`], which escape it: nothing a recorded
//! command, machine or member name says can become markup.

use cmdop_protocol::{ChatThread, ClientInfo, ClientKind, Session, SessionFilter, SessionState, TimeRange};
use cmdop_transcript::html::escape_into;

use crate::api::{ACTIVE_ROWS, FilterChoice, SessionsPageData};
use crate::format;

/// An HTML string being written. `raw` takes trusted markup (literals of this module); `text` and `attr` escape.
#[derive(Default)]
struct Html(String);

impl Html {
    fn raw(&mut self, markup: &str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.0, text);
        self
    }

    /// ` name="value"`, the value escaped.
    fn attr(&mut self, name: &str, value: &str) -> &mut Self {
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push_str("=\"");
        escape_into(&mut self.0, value);
        self.0.push('"');
        self
    }

    fn selected_if(&mut self, yes: bool) -> &mut Self {
        if yes {
            self.0.push_str(" selected");
        }
        self
    }

    fn finish(self) -> String {
        self.0
    }
}

/// An exit code, colored: 0 green, anything else red; `while_running` while the session is active, and "lost"
/// when it ended without one (the recorder vanished before the command exited).
pub fn exit_code(state: SessionState, code: Option<i32>, while_running: &str) -> String {
    let mut h = Html::default();
    push_exit_code(&mut h, state, code, while_running);
    h.finish()
}

fn push_exit_code(h: &mut Html, state: SessionState, code: Option<i32>, while_running: &str) {
    match (code, state) {
        (Some(0), _) => h.raw(r#"<span class="exit exit-ok">0</span>"#),
        (Some(code), _) => h.raw(r#"<span class="exit exit-fail">"#).text(&code.to_string()).raw("</span>"),
        (None, SessionState::Active) => h.raw(r#"<span class="muted">"#).text(while_running).raw("</span>"),
        (None, SessionState::Ended) => {
            h.raw(r#"<span class="muted" title="The recorder was lost before the command exited">lost</span>"#)
        }
    };
}

/// A session's state as a colored badge.
pub fn state_badge(state: SessionState) -> &'static str {
    match state {
        SessionState::Active => r#"<span class="badge badge-active">active</span>"#,
        SessionState::Ended => r#"<span class="badge badge-ended">ended</span>"#,
    }
}

/// The session page's facts (the inside of its `<dl>`), with the live ones as they stand.
pub fn facts(
    s: &crate::api::SessionHead,
    state: SessionState,
    code: Option<i32>,
    duration_ms: u64,
    total_bytes: u64,
) -> String {
    let mut h = Html::default();
    h.raw(r#"<div><dt>State</dt><dd data-testid="state">"#).raw(state_badge(state)).raw("</dd></div>");
    h.raw(r#"<div><dt>Exit code</dt><dd data-testid="exit-code">"#);
    push_exit_code(&mut h, state, code, "running");
    h.raw(r#"</dd></div><div><dt>Duration</dt><dd data-testid="duration">"#).text(&format::duration_ms(duration_ms));
    h.raw("</dd></div><div><dt>Machine</dt><dd>").text(&s.machine);
    h.raw("</dd></div><div><dt>User</dt><dd").attr("title", &s.user).raw(">").text(&s.user_name);
    h.raw("</dd></div><div><dt>Fleet</dt><dd>").text(&s.fleet);
    h.raw("</dd></div><div><dt>Started</dt><dd>").text(&s.started);
    h.raw("</dd></div><div><dt>Output</dt><dd>").text(&format::bytes(total_bytes)).raw("</dd></div>");
    h.finish()
}

/// A client kind in words.
pub fn kind_label(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Desktop => "desktop",
        ClientKind::Cli => "CLI",
        ClientKind::Bot => "bot",
        ClientKind::Browser => "browser",
    }
}

/// 16 px line icons drawn with the text color: the path of each kind's.
fn icon_path(kind: ClientKind) -> &'static str {
    match kind {
        // A monitor on a stand.
        ClientKind::Desktop => "M2 3h12v8H2z M6 14h4 M8 11v3",
        // A prompt: chevron and underscore.
        ClientKind::Cli => "M3 4l4 4-4 4 M8 12h5",
        // A robot head with an antenna.
        ClientKind::Bot => "M3 6h10v7H3z M8 6V3 M6 9v1 M10 9v1",
        // A browser window with its tab bar.
        ClientKind::Browser => "M2 3h12v10H2z M2 6h12",
    }
}

/// Attached clients as small icons, one per kind with a count; named in words for screen readers and on hover.
fn push_client_icons(h: &mut Html, clients: &[&ClientInfo]) {
    if clients.is_empty() {
        h.raw(r#"<span class="muted" aria-label="no clients attached">—</span>"#);
        return;
    }
    h.raw(r#"<span class="client-icons">"#);
    for kind in [ClientKind::Desktop, ClientKind::Cli, ClientKind::Bot, ClientKind::Browser] {
        let of_kind: Vec<&str> = clients.iter().filter(|c| c.kind == kind).map(|c| c.name.as_str()).collect();
        let n = of_kind.len();
        if n == 0 {
            continue;
        }
        let label = format!("{n} {} client{}: {}", kind_label(kind), if n == 1 { "" } else { "s" }, of_kind.join(", "));
        h.raw("<span")
            .attr("class", &format!("client-icon kind-{}", kind.as_str()))
            .raw(r#" role="img""#)
            .attr("aria-label", &label)
            .attr("title", &label)
            .attr("data-kind", kind.as_str())
            .raw(r#"><svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false"><path"#)
            .attr("d", icon_path(kind))
            .raw(r#" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round"></path></svg>"#);
        if n > 1 {
            h.raw(r#"<span class="client-count" aria-hidden="true">"#).text(&n.to_string()).raw("</span>");
        }
        h.raw("</span>");
    }
    h.raw("</span>");
}

/// `datetime-local` value (UTC) of a time: the RFC 3339 form cut to the minute.
fn local_input(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| cmdop_protocol::filter::format_time(t)[..16].to_string()).unwrap_or_default()
}

/// The inside of the list's filter form (a GET form: without JavaScript it submits as is).
pub fn filters(d: &SessionsPageData) -> String {
    let f = &d.filter;
    let mut h = Html::default();
    let fleet = f.fleet.as_deref().unwrap_or("");
    if d.fleets.len() > 1 {
        h.raw(r#"<label class="field"><span>Fleet</span><select id="f-fleet" name="fleet">"#);
        for name in &d.fleets {
            h.raw("<option").attr("value", name).selected_if(name == fleet).raw(">").text(name).raw("</option>");
        }
        h.raw("</select></label>");
    } else {
        h.raw(r#"<input type="hidden" id="f-fleet" name="fleet""#).attr("value", fleet).raw(">");
    }
    let mut choices =
        |label: &str, id: &str, name: &str, all: &str, list: &[FilterChoice], current: &Option<String>| {
            let current = current.as_deref().unwrap_or("");
            let any_total: u64 = list.iter().map(|c| c.sessions).sum();
            h.raw(r#"<label class="field"><span>"#).text(label).raw("</span><select").attr("id", id).attr("name", name);
            h.raw(r#"><option value="""#).selected_if(current.is_empty()).raw(">");
            h.text(&format!("{all} ({any_total})")).raw("</option>");
            for c in list {
                h.raw("<option").attr("value", &c.value).selected_if(c.value == current).raw(">");
                h.text(&format!("{} ({})", c.label, c.sessions)).raw("</option>");
            }
            h.raw("</select></label>");
        };
    choices("Machine", "f-machine", "machine", "All machines", &d.machines, &f.machine);
    choices("User", "f-user", "user", "Everyone", &d.users, &f.user);
    let state = f.state.map(SessionState::as_str).unwrap_or("");
    h.raw(r#"<label class="field"><span>State</span><select id="f-state" name="state">"#);
    for (value, label) in [("", "Active and ended"), ("active", "Active"), ("ended", "Ended")] {
        h.raw("<option").attr("value", value).selected_if(value == state).raw(">").text(label).raw("</option>");
    }
    h.raw("</select></label>");
    let range = f.range.map(TimeRange::as_str).unwrap_or("");
    h.raw(r#"<label class="field"><span>Started</span><select id="f-range" name="range">"#);
    h.raw(r#"<option value="""#).selected_if(range.is_empty()).raw(">Any time</option>");
    for r in TimeRange::ALL {
        h.raw("<option").attr("value", r.as_str()).selected_if(r.as_str() == range).raw(">");
        h.text(r.label()).raw("</option>");
    }
    h.raw("</select></label>");
    for (label, id, name, value) in
        [("From (UTC)", "f-since", "since", f.since), ("To (UTC)", "f-until", "until", f.until)]
    {
        h.raw(r#"<label class="field"><span>"#).text(label).raw("</span><input").attr("id", id).attr("name", name);
        h.raw(r#" type="datetime-local""#).attr("value", &local_input(value)).raw(">");
        h.raw("</label>");
    }
    let clear = SessionFilter { fleet: f.fleet.clone(), ..Default::default() };
    h.raw(r#"<div class="filter-actions"><button type="submit">Apply</button><a"#);
    h.attr("href", &crate::pages::sessions_href(&clear.to_query())).raw(">Clear filters</a></div>");
    let total = d.active_count + d.ended_count;
    h.raw(r#"<p class="filter-summary muted" aria-live="polite" data-testid="match-count">"#);
    h.text(&format!("{total} matching {}", if total == 1 { "session" } else { "sessions" })).raw("</p>");
    h.finish()
}

/// The active and ended sections of the list, with counts, empty states and the pager.
pub fn sections(d: &SessionsPageData) -> String {
    let f = &d.filter;
    let show = |state: SessionState| f.state.is_none_or(|s| s == state);
    let filtered = f.machine.is_some() || f.user.is_some() || f.range.is_some();
    let mut h = Html::default();
    if show(SessionState::Active) {
        let more = d.active_count.saturating_sub(d.active.len() as u64);
        let paged = f.cursor.is_some();
        h.raw(r#"<section class="list-section" aria-labelledby="active-title" data-testid="active-sessions">"#);
        h.raw(r#"<h2 id="active-title">Active <span class="count">"#).text(&d.active_count.to_string());
        h.raw("</span></h2>");
        if paged {
            h.raw(r#"<p class="muted small">Active sessions are on the first page.</p>"#);
        } else if d.active.is_empty() {
            let text =
                if filtered { "No active session matches these filters." } else { "Nothing is running right now." };
            h.raw(r#"<p class="empty-row muted">"#).text(text).raw("</p>");
        } else {
            push_table(&mut h, &d.active);
        }
        if more > 0 && !paged {
            h.raw(r#"<p class="muted small">"#);
            h.text(&format!(
                "Showing the newest {ACTIVE_ROWS}; {more} more are running. Narrow the filters to see them."
            ));
            h.raw("</p>");
        }
        h.raw("</section>");
    }
    if show(SessionState::Ended) {
        h.raw(r#"<section class="list-section" aria-labelledby="ended-title" data-testid="ended-sessions">"#);
        h.raw(r#"<h2 id="ended-title">Ended <span class="count">"#).text(&d.ended_count.to_string());
        h.raw("</span></h2>");
        if d.ended.is_empty() {
            let text = if filtered {
                "No ended session matches these filters."
            } else {
                "No session has ended yet. Sessions appear here when someone records one with cmdop record on a machine you have access to."
            };
            h.raw(r#"<p class="empty-row muted">"#).text(text).raw("</p>");
        } else {
            push_table(&mut h, &d.ended);
        }
        h.raw(r#"<nav class="pager" aria-label="Ended sessions pages">"#);
        if f.cursor.is_some() {
            let newest = SessionFilter { cursor: None, ..f.clone() }.to_query();
            h.raw("<a").attr("href", &crate::pages::sessions_href(&newest)).raw(">← Newest</a>");
        }
        if let Some(cursor) = &d.next_cursor {
            let older = SessionFilter { cursor: Some(cursor.clone()), ..f.clone() }.to_query();
            h.raw("<a").attr("href", &crate::pages::sessions_href(&older)).raw(">Older sessions →</a>");
        }
        h.raw("</nav></section>");
    }
    h.finish()
}

fn push_table(h: &mut Html, sessions: &[Session]) {
    h.raw(r#"<div class="table-wrap"><table class="sessions"><thead><tr>"#);
    for (label, numeric) in [
        ("Machine", false),
        ("User", false),
        ("Command", false),
        ("Started", false),
        ("Duration", true),
        ("Exit", true),
        ("Clients", false),
        ("Output", true),
    ] {
        h.raw(if numeric { r#"<th scope="col" class="num">"# } else { r#"<th scope="col">"# }).text(label).raw("</th>");
    }
    h.raw("</tr></thead><tbody>");
    for s in sessions {
        push_row(h, s);
    }
    h.raw("</tbody></table></div>");
}

/// One session. An active row's duration cell carries `data-duration-ms` (as of the answer) so that the browser
/// can tick it (see `list_live`).
fn push_row(h: &mut Html, s: &Session) {
    let id = s.id.to_string();
    h.raw("<tr").attr("data-session-id", &id).attr("data-state", s.state.as_str()).raw(">");
    h.raw(r#"<td class="machine">"#).text(&s.machine).raw("</td>");
    h.raw("<td").attr("title", &s.user).raw(">").text(&s.user_name).raw("</td>");
    h.raw(r#"<td class="command"><a"#).attr("href", &format!("/sessions/{id}")).raw("><code>");
    h.text(&s.command).raw("</code></a></td>");
    h.raw(r#"<td class="started">"#).text(&format::timestamp(s.started_at)).raw("</td>");
    h.raw(r#"<td class="num" data-testid="duration""#);
    if s.state == SessionState::Active {
        h.attr("data-duration-ms", &s.duration_ms.to_string());
    }
    h.raw(">").text(&format::duration_ms(s.duration_ms)).raw("</td>");
    h.raw(r#"<td class="num">"#);
    push_exit_code(h, s.state, s.exit_code, "—");
    h.raw("</td><td>");
    let attached: Vec<&ClientInfo> = s.clients.iter().filter(|c| c.detached_at.is_none()).collect();
    push_client_icons(h, &attached);
    h.raw(r#"</td><td class="num">"#).text(&format::bytes(s.transcript.total_bytes));
    let t = &s.transcript;
    let lost: u64 = t.gaps.iter().map(|g| g.bytes_lost).sum::<u64>() + t.truncated_bytes;
    if lost > 0 {
        let title = format!(
            "{lost} bytes missing from the transcript: {} truncated by the ring buffer, {} lost while the recorder was offline",
            t.truncated_bytes,
            lost - t.truncated_bytes
        );
        h.raw(r#" <span class="gap-badge""#).attr("title", &title).attr("aria-label", &title).raw(">");
        h.text(&format!("gap {}", format::bytes(lost))).raw("</span>");
    }
    h.raw("</td></tr>");
}

/// The attached clients of a session page, this tab's marked.
pub fn client_list(clients: &[ClientInfo], this_tab: Option<uuid::Uuid>) -> String {
    let mut h = Html::default();
    if clients.is_empty() {
        h.raw(r#"<p class="muted small">Nobody is attached.</p>"#);
        return h.finish();
    }
    h.raw(r#"<ul class="client-list">"#);
    for c in clients {
        h.raw("<li").attr("data-kind", c.kind.as_str()).raw("><span");
        h.attr("class", &format!("client-kind kind-{}", c.kind.as_str())).raw(">").text(kind_label(c.kind));
        h.raw(r#"</span><span class="client-name">"#).text(&c.name).raw("</span>");
        if Some(c.id) == this_tab {
            h.raw(r#"<span class="this-tab">this tab</span>"#);
        }
        h.raw("</li>");
    }
    h.raw("</ul>");
    h.finish()
}

/// The session page's box on how to work in the session. Its copy button carries its text in `data-copy`; the
/// page copies on click.
pub fn reattach_box(s: &Session) -> String {
    let mut h = Html::default();
    let snippet = format!("cmdop connect {}", s.machine);
    h.raw(r#"<section class="card reattach" aria-labelledby="reattach-title">"#);
    h.raw(r#"<h2 id="reattach-title">Work in this session</h2>"#);
    h.raw(r#"<a class="button""#).attr("href", &format!("cmdop://session/{}", s.id)).raw(">Open in desktop</a>");
    h.raw(r#"<div class="snippet"><code data-testid="connect-snippet">"#).text(&snippet).raw("</code>");
    h.raw(r#"<button type="button" class="copy-button" aria-label="Copy the cmdop connect command""#);
    h.attr("data-copy", &snippet).raw(">Copy</button></div>");
    h.raw(r#"<p class="muted small"><code>"#).text(&format!("cmdop session attach {}", s.id)).raw("</code>");
    h.text(" reports this session's metadata (state, exit code, clients, transcript size); it does not take over the terminal.");
    h.raw("</p></section>");
    h.finish()
}

/// The chat thread that drove a session, oldest message first.
pub fn chat_box(chat: &ChatThread) -> String {
    let mut h = Html::default();
    h.raw(r#"<section class="card chat" aria-labelledby="chat-title"><h2 id="chat-title">Chat thread: "#);
    h.text(&chat.title).raw("</h2>");
    if chat.messages.is_empty() {
        h.raw(r#"<p class="muted small">No messages yet.</p>"#);
    } else {
        h.raw(r#"<ol class="chat-messages">"#);
        for m in &chat.messages {
            h.raw(r#"<li><div class="chat-meta"><span class="chat-author""#).attr("title", &m.author).raw(">");
            h.text(&m.author_name).raw(r#"</span><time class="muted small">"#);
            h.text(&format::timestamp(m.created_at)).raw(r#"</time></div><p class="chat-body">"#);
            h.text(&m.body).raw("</p></li>");
        }
        h.raw("</ol>");
    }
    h.raw("</section>");
    h.finish()
}

#[cfg(test)]
mod tests {
    use cmdop_protocol::{ClientInfo, ClientKind, GapInfo, GapReason, SessionFilter, SessionState};

    use super::*;
    use crate::testing::{new_id, session};

    fn page(active: Vec<Session>, ended: Vec<Session>) -> SessionsPageData {
        SessionsPageData {
            filter: SessionFilter { fleet: Some("demo".into()), ..Default::default() },
            fleets: vec!["demo".into()],
            machines: vec![FilterChoice { value: "web-1".into(), label: "web-1".into(), sessions: 2 }],
            users: Vec::new(),
            active_count: active.len() as u64,
            ended_count: ended.len() as u64,
            active,
            ended,
            next_cursor: None,
        }
    }

    #[test]
    fn what_recorded_programs_and_members_name_things_stays_text() {
        let mut s = session(10);
        s.command = "<script>alert(1)</script>".into();
        s.machine = r#""><img src=x onerror=alert(1)>"#.into();
        s.user = r#"a"b@example.com"#.into();
        s.user_name = "<b>Eve</b>".into();
        s.clients = vec![ClientInfo {
            id: new_id(),
            kind: ClientKind::Bot,
            name: r#"bot" onmouseover="x"#.into(),
            attached_at: s.started_at,
            detached_at: None,
        }];
        let mut d = page(Vec::new(), vec![s]);
        d.machines[0].label = "<i>web</i>".into();
        d.machines[0].value = r#"w"><script>"#.into();
        let html = format!("{}{}", sections(&d), filters(&d));
        for bad in ["<script", "<img", "<b>", "<i>", r#"" onmouseover"#, r#"a"b"#] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        for escaped in ["&lt;script&gt;alert(1)&lt;/script&gt;", "&quot;&gt;&lt;img src=x", "&lt;b&gt;Eve&lt;/b&gt;"] {
            assert!(html.contains(escaped), "{escaped} missing from {html}");
        }
    }

    #[test]
    fn a_row_says_machine_user_command_duration_exit_clients_and_size() {
        let mut s = session(1536);
        s.state = SessionState::Active;
        s.exit_code = None;
        s.duration_ms = 187_000;
        s.clients = ["one", "two"]
            .into_iter()
            .map(|name| ClientInfo {
                id: new_id(),
                kind: ClientKind::Browser,
                name: name.into(),
                attached_at: s.started_at,
                detached_at: None,
            })
            .collect();
        let id = s.id;
        let html = sections(&page(vec![s], Vec::new()));
        assert!(html.contains(&format!(r#"<tr data-session-id="{id}" data-state="active">"#)), "{html}");
        assert!(html.contains(&format!(r#"<a href="/sessions/{id}"><code>c</code></a>"#)), "{html}");
        // Active: the duration ticks from what the server said.
        assert!(html.contains(r#"data-testid="duration" data-duration-ms="187000">3m 07s</td>"#), "{html}");
        assert!(html.contains(r#"<span class="muted">—</span>"#), "{html}");
        assert!(html.contains(r#"aria-label="2 browser clients: one, two""#), "{html}");
        assert!(html.contains(r#"<span class="client-count" aria-hidden="true">2</span>"#), "{html}");
        assert!(html.contains("1.5 KiB</td>"), "{html}");
        assert!(!html.contains("gap-badge"), "{html}");
    }

    #[test]
    fn an_ended_row_has_a_fixed_duration_and_a_gap_badge_that_tells_truncated_from_lost() {
        let mut s = session(4096);
        s.duration_ms = 850;
        s.transcript.truncated_bytes = 1000;
        s.transcript.gaps = vec![GapInfo { at_offset: 10, bytes_lost: 24, reason: GapReason::RecorderOffline }];
        let html = sections(&page(Vec::new(), vec![s]));
        assert!(html.contains(r#"data-testid="duration">850ms</td>"#), "{html}");
        assert!(html.contains("1024 bytes missing from the transcript: 1000 truncated by the ring buffer, 24 lost"));
        assert!(html.contains(">gap 1.0 KiB</span>"), "{html}");
        assert!(html.contains("Nothing is running right now."), "{html}");
    }

    #[test]
    fn exit_codes_are_colored_and_say_running_or_lost() {
        assert_eq!(exit_code(SessionState::Ended, Some(0), "running"), r#"<span class="exit exit-ok">0</span>"#);
        assert_eq!(exit_code(SessionState::Ended, Some(3), "running"), r#"<span class="exit exit-fail">3</span>"#);
        assert_eq!(exit_code(SessionState::Active, None, "running"), r#"<span class="muted">running</span>"#);
        assert!(exit_code(SessionState::Ended, None, "running").contains(">lost</span>"));
    }

    #[test]
    fn filters_mark_the_current_choices_and_keep_the_fleet() {
        let mut d = page(Vec::new(), Vec::new());
        d.filter.machine = Some("web-1".into());
        d.filter.range = Some(TimeRange::LastDay);
        let html = filters(&d);
        assert!(html.contains(r#"<input type="hidden" id="f-fleet" name="fleet" value="demo">"#), "{html}");
        assert!(html.contains(r#"<option value="web-1" selected>web-1 (2)</option>"#), "{html}");
        assert!(html.contains(r#"<option value="">All machines (2)</option>"#), "{html}");
        assert!(html.contains(r#"<option value="1d" selected>"#), "{html}");
        assert!(html.contains(r#"<a href="/sessions?fleet=demo">Clear filters</a>"#), "{html}");
        assert!(html.contains("0 matching sessions"), "{html}");
        d.fleets.push("other".into());
        assert!(
            filters(&d).contains(r#"<option value="demo" selected>demo</option><option value="other">other</option>"#)
        );
    }

    #[test]
    fn the_session_page_boxes_keep_chat_and_names_as_text_and_mark_this_tab() {
        use cmdop_protocol::{ChatMessage, ChatThread};
        let mut s = session(10);
        s.machine = "web-1".into();
        let reattach = reattach_box(&s);
        assert!(reattach.contains(&format!(r#"href="cmdop://session/{}""#, s.id)), "{reattach}");
        assert!(reattach.contains(r#"data-copy="cmdop connect web-1">Copy</button>"#), "{reattach}");
        assert!(reattach.contains(&format!("<code>cmdop session attach {}</code>", s.id)), "{reattach}");

        let message = |body: &str| ChatMessage {
            id: new_id(),
            author: "a@example.com".into(),
            author_name: "<em>Ann</em>".into(),
            body: body.into(),
            created_at: s.started_at,
        };
        let mut chat = ChatThread {
            id: new_id(),
            fleet: "f".into(),
            fleet_id: new_id(),
            title: "deploy <now>".into(),
            created_by: "a@example.com".into(),
            created_at: s.started_at,
            messages: vec![message("<img src=x onerror=alert(1)> run the migration")],
        };
        let html = chat_box(&chat);
        assert!(!html.contains("<img") && !html.contains("<em>") && !html.contains("<now>"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; run the migration</p>"), "{html}");
        assert!(html.contains("Chat thread: deploy &lt;now&gt;</h2>"), "{html}");
        chat.messages.clear();
        assert!(chat_box(&chat).contains("No messages yet."));

        let client = |name: &str| ClientInfo {
            id: new_id(),
            kind: ClientKind::Browser,
            name: name.into(),
            attached_at: s.started_at,
            detached_at: None,
        };
        let clients = vec![client("Ann"), client("<b>Bob</b>")];
        let html = client_list(&clients, Some(clients[1].id));
        assert_eq!(html.matches("this tab").count(), 1, "{html}");
        assert!(html.contains("&lt;b&gt;Bob&lt;/b&gt;</span><span class=\"this-tab\">this tab</span>"), "{html}");
        assert!(client_list(&[], None).contains("Nobody is attached."));
    }

    #[test]
    fn facts_say_the_live_values_they_are_given() {
        let mut s = session(10);
        s.machine = "<db>".into();
        let head = crate::api::SessionHead::of(&s);
        let html = facts(&head, SessionState::Active, None, 12_460, 1536);
        assert!(html.contains(r#"<dd data-testid="state"><span class="badge badge-active">active</span></dd>"#));
        assert!(html.contains(r#"<dd data-testid="exit-code"><span class="muted">running</span></dd>"#), "{html}");
        assert!(html.contains(r#"<dd data-testid="duration">12.4s</dd>"#), "{html}");
        assert!(html.contains("<dd>&lt;db&gt;</dd>") && html.contains("<dd>1.5 KiB</dd>"), "{html}");
        let ended = facts(&head, SessionState::Ended, Some(3), 1000, 2048);
        assert!(ended.contains(r#"<span class="exit exit-fail">3</span>"#) && ended.contains("badge-ended"), "{ended}");
    }
}
