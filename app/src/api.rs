//! Server functions: thin. Authorize, call the store, map the error.

use cmdop_protocol::{MemberInfo, Session, SessionFilter};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The wire codec of the pages' resources: JSON, read with `serde_json::from_slice` as server functions read their
/// responses. Leptos's default codec reads with `from_str`, which compiles every type's decoder into the WASM a
/// second time (~9 KB gzipped).
pub struct Json;

impl<T: Serialize> leptos::server::codee::Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &T) -> Result<String, Self::Error> {
        serde_json::to_string(val)
    }
}

impl<T: serde::de::DeserializeOwned> leptos::server::codee::Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, Self::Error> {
        serde_json::from_slice(val.as_bytes())
    }
}

/// A resource in the [`Json`] codec.
#[track_caller]
pub fn resource<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T, Json>
where
    S: Send + Sync + Clone + PartialEq + 'static,
    T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

/// What the page header needs about the signed-in member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub member: MemberInfo,
    pub fleets: Vec<String>,
}

/// The signed-in member, or `None` when signed out.
#[server(prefix = "/rpc", endpoint = "me")]
pub async fn signed_in() -> Result<Option<Account>, ServerFnError> {
    let Some((ctx, member)) = server::member().await? else { return Ok(None) };
    let fleets = ctx.store.memberships(member.id).await.map_err(server::internal)?;
    Ok(Some(Account { member: member.info(), fleets: fleets.into_iter().map(|m| m.fleet.name).collect() }))
}

/// One choice of a list filter and how many sessions it would show, given the other filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterChoice {
    pub value: String,
    pub label: String,
    pub sessions: u64,
}

/// The most active sessions the list shows at once (they are few; the count says if there are more).
pub const ACTIVE_ROWS: u32 = cmdop_protocol::filter::MAX_PAGE_SIZE;

/// Everything the sessions list shows for one URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsPageData {
    /// The filters in effect: the URL's, with the active fleet filled in when the URL names none.
    pub filter: SessionFilter,
    /// The member's fleets (the switcher).
    pub fleets: Vec<String>,
    pub machines: Vec<FilterChoice>,
    pub users: Vec<FilterChoice>,
    pub active: Vec<Session>,
    pub active_count: u64,
    /// One page of ended sessions, from `filter.cursor` on.
    pub ended: Vec<Session>,
    pub ended_count: u64,
    pub next_cursor: Option<String>,
}

/// The sessions list page as it shows: its filter form's fields and its sections, as markup (see `markup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsPageHtml {
    pub filters: String,
    pub sections: String,
}

/// The sessions list page for a query string, rendered. The browser only ever shows this markup, so it travels
/// as such: decoding the data and rendering it in the WASM would cost the bundle the decoders and the renderer.
#[server(prefix = "/rpc", endpoint = "sessions")]
pub async fn sessions_page(query: String) -> Result<SessionsPageHtml, ServerFnError> {
    let d = sessions_page_data(query).await?;
    Ok(SessionsPageHtml { filters: crate::markup::filters(&d), sections: crate::markup::sections(&d) })
}

/// The sessions list for a query string (`fleet`, `machine`, `user`, `state`, `range`, `since`, `until`, `limit`,
/// `cursor`; see [`SessionFilter`]). Without `fleet`, the member's first fleet is the active one.
#[cfg(feature = "ssr")]
pub async fn sessions_page_data(query: String) -> Result<SessionsPageData, ServerFnError> {
    use cmdop_protocol::SessionState;
    use cmdop_store::{SessionQuery, Viewer};

    let (ctx, member) = server::require_member().await?;
    let mut filter = SessionFilter::from_query(&query).map_err(server::bad_filter)?;
    let fleets: Vec<String> =
        ctx.store.memberships(member.id).await.map_err(server::internal)?.into_iter().map(|m| m.fleet.name).collect();
    if filter.fleet.is_none() {
        filter.fleet = fleets.first().cloned();
    }
    let viewer = Viewer::Member(member.id);
    let base = SessionQuery::from_filter(&filter, ctx.store.clock().now());
    // Counted without the machine and user filters: each choice counts with the other filters applied, below.
    let counted = SessionQuery { machine: None, user: None, ..base.clone() };
    let counts = ctx.store.session_counts(&viewer, &counted).await.map_err(server::store_error)?;

    let wanted = |value: &Option<String>, got: &str| value.as_deref().is_none_or(|v| v == got);
    let mut machines: Vec<FilterChoice> = Vec::new();
    let mut users: Vec<FilterChoice> = Vec::new();
    let (mut active_count, mut ended_count) = (0, 0);
    for c in &counts {
        let state_ok = filter.state.is_none_or(|s| s == c.state);
        // Every machine and member of the fleet's sessions is a choice; each counts the sessions it would show
        // with the other filters applied.
        let machine_n = if state_ok && wanted(&filter.user, &c.user) { c.sessions } else { 0 };
        add_choice(&mut machines, &c.machine, &c.machine, machine_n);
        let user_n = if state_ok && wanted(&filter.machine, &c.machine) { c.sessions } else { 0 };
        add_choice(&mut users, &c.user, &c.user_name, user_n);
        if wanted(&filter.user, &c.user) && wanted(&filter.machine, &c.machine) {
            match c.state {
                SessionState::Active => active_count += c.sessions,
                SessionState::Ended => ended_count += c.sessions,
            }
        }
    }
    // A chosen value stays a choice even when nothing matches it now.
    for (choices, value) in [(&mut machines, &filter.machine), (&mut users, &filter.user)] {
        if let Some(v) = value {
            add_choice(choices, v, v, 0);
        }
    }
    machines.sort_by(|a, b| a.label.cmp(&b.label));
    users.sort_by(|a, b| a.label.cmp(&b.label));

    let show = |state: SessionState| filter.state.is_none_or(|s| s == state);
    let active = if show(SessionState::Active) && filter.cursor.is_none() {
        let q =
            SessionQuery { state: Some(SessionState::Active), limit: Some(ACTIVE_ROWS), cursor: None, ..base.clone() };
        ctx.store.list_sessions(&viewer, &q).await.map_err(server::store_error)?.sessions
    } else {
        Vec::new()
    };
    let (ended, next_cursor) = if show(SessionState::Ended) {
        let q = SessionQuery { state: Some(SessionState::Ended), ..base };
        let page = ctx.store.list_sessions(&viewer, &q).await.map_err(server::store_error)?;
        (page.sessions, page.next_cursor)
    } else {
        (Vec::new(), None)
    };
    Ok(SessionsPageData { filter, fleets, machines, users, active, active_count, ended, ended_count, next_cursor })
}

#[cfg(feature = "ssr")]
fn add_choice(choices: &mut Vec<FilterChoice>, value: &str, label: &str, sessions: u64) {
    match choices.iter_mut().find(|c| c.value == value) {
        Some(c) => c.sessions += sessions,
        None => choices.push(FilterChoice { value: value.to_string(), label: label.to_string(), sessions }),
    }
}

/// Rows the server renders for the first paint of a transcript; older ones come with the browser's replay (and are
/// all in the text download).
pub const SNAPSHOT_ROWS: usize = 500;

/// Transcript bytes the server emulates for the first paint: the tail only, so that the first paint costs the
/// same however long the session ran (emulating 8 MiB took ~300 ms per view). The browser replays all of it.
pub const SNAPSHOT_BYTES: u64 = 256 * 1024;

/// What the session page shows of a session: the facts its header says, and the ones that change while it is open
/// (the live view keeps those current). Not the whole [`Session`]: the browser would need its decoders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionHead {
    pub id: uuid::Uuid,
    pub command: String,
    pub machine: String,
    pub user: String,
    pub user_name: String,
    pub fleet: String,
    /// The start, as the page says it.
    pub started: String,
    pub state: cmdop_protocol::SessionState,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub total_bytes: u64,
    /// Attached clients only.
    pub clients: Vec<cmdop_protocol::ClientInfo>,
}

impl SessionHead {
    pub fn of(s: &Session) -> Self {
        SessionHead {
            id: s.id,
            command: s.command.clone(),
            machine: s.machine.clone(),
            user: s.user.clone(),
            user_name: s.user_name.clone(),
            fleet: s.fleet.clone(),
            started: crate::format::timestamp(s.started_at),
            state: s.state,
            exit_code: s.exit_code,
            duration_ms: s.duration_ms,
            total_bytes: s.transcript.total_bytes,
            clients: s.clients.iter().filter(|c| c.detached_at.is_none()).cloned().collect(),
        }
    }
}

/// Everything the session page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPageData {
    pub head: SessionHead,
    /// The side boxes that do not change while the page is open, as markup: how to work in the session, and
    /// the chat thread that drove it (if one did).
    pub reattach_html: String,
    pub chat_html: Option<String>,
    /// What the ring buffer dropped and where output was lost, in words, if anything was.
    pub transcript_note: Option<String>,
    /// Server-rendered transcript rows (escaped HTML) for the first paint and for readers without JavaScript.
    /// Not serialized: the browser rebuilds the terminal from the live stream, so the HTML travels once.
    #[serde(skip)]
    pub snapshot_html: String,
    /// Rows left out of the snapshot (the oldest), if any.
    pub snapshot_rows_omitted: u64,
    /// Retained transcript bytes before the snapshot's start (the server emulates only the tail).
    pub snapshot_bytes_omitted: u64,
}

/// What the ring buffer dropped and where output was lost, in words; `None` when nothing was.
pub fn transcript_note(s: &Session) -> Option<String> {
    let (truncated, gaps) = (s.transcript.truncated_bytes, s.transcript.gaps.len());
    let mut parts = Vec::new();
    if truncated > 0 {
        parts.push(format!("the ring buffer dropped the oldest {}", crate::format::bytes(truncated)));
    }
    if gaps > 0 {
        parts.push(format!(
            "{gaps} {} where output was lost while the recorder was offline",
            if gaps == 1 { "gap" } else { "gaps" }
        ));
    }
    let mut text = parts.join("; ");
    if let Some(first) = text.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    (!text.is_empty()).then(|| text + " (marked in the transcript).")
}

/// One session, if the signed-in member may see it (`None`: not found, which is also what an invisible session
/// looks like).
#[server(prefix = "/rpc", endpoint = "session")]
pub async fn session_page(id: String) -> Result<Option<SessionPageData>, ServerFnError> {
    let (ctx, member) = server::require_member().await?;
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        server::not_found();
        return Ok(None);
    };
    let viewer = cmdop_store::Viewer::Member(member.id);
    let session = match ctx.store.session(&viewer, id).await {
        Ok(s) => s,
        Err(cmdop_store::StoreError::NotFound(_)) => {
            server::not_found();
            return Ok(None);
        }
        Err(e) => return Err(server::store_error(e)),
    };
    let chat = match &session.chat_thread {
        Some(thread) => Some(ctx.store.chat_thread(&viewer, thread.id).await.map_err(server::store_error)?),
        None => None,
    };
    let from = session.transcript.total_bytes.saturating_sub(SNAPSHOT_BYTES);
    let slice = ctx.store.read_transcript(&viewer, id, from).await.map_err(server::store_error)?;
    let (snapshot_html, rows_omitted) = server::snapshot(&session, &slice, from);
    let snapshot_bytes_omitted = from.saturating_sub(slice.truncated_bytes);
    Ok(Some(SessionPageData {
        head: SessionHead::of(&session),
        reattach_html: crate::markup::reattach_box(&session),
        chat_html: chat.as_ref().map(crate::markup::chat_box),
        transcript_note: transcript_note(&session),
        snapshot_html,
        snapshot_rows_omitted: rows_omitted,
        snapshot_bytes_omitted,
    }))
}

#[cfg(feature = "ssr")]
mod server {
    use cmdop_store::{Member, StoreError};
    use leptos::prelude::*;

    use crate::ssr::{InspectorContext, member_from_headers};

    pub fn context() -> Result<InspectorContext, ServerFnError> {
        use_context::<InspectorContext>().ok_or_else(|| ServerFnError::new("the inspector backend is not mounted"))
    }

    pub async fn member() -> Result<Option<(InspectorContext, Member)>, ServerFnError> {
        let ctx = context()?;
        let headers: http::HeaderMap = leptos_axum::extract().await?;
        let member = member_from_headers(&*ctx.store, &headers).await.map_err(internal)?;
        Ok(member.map(|m| (ctx, m)))
    }

    pub async fn require_member() -> Result<(InspectorContext, Member), ServerFnError> {
        match member().await? {
            Some(found) => Ok(found),
            None => {
                set_status(http::StatusCode::UNAUTHORIZED);
                Err(ServerFnError::new("You are signed out. Sign in to see sessions."))
            }
        }
    }

    pub fn bad_filter(e: cmdop_protocol::filter::FilterError) -> ServerFnError {
        set_status(http::StatusCode::BAD_REQUEST);
        ServerFnError::new(format!("The filter {e}."))
    }

    pub fn not_found() {
        set_status(http::StatusCode::NOT_FOUND);
    }

    /// The transcript as the page first shows it: the last `SNAPSHOT_ROWS` rows, in the same markup the browser
    /// renders afterwards.
    pub fn snapshot(
        session: &cmdop_protocol::Session,
        slice: &cmdop_store::TranscriptSlice,
        from: u64,
    ) -> (String, u64) {
        let doc = crate::transcript_view::document_from_slice(session, slice, from);
        let rows = doc.rows();
        let (history, screen) = rows.parts();
        let omitted = rows.len().saturating_sub(super::SNAPSHOT_ROWS);
        let shown_history = history.iter().skip(omitted);
        let shown_screen = &screen[omitted.saturating_sub(history.len())..];
        (crate::transcript_view::markup(shown_history, shown_screen), omitted as u64 + doc.dropped_rows())
    }

    fn set_status(status: http::StatusCode) {
        if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
            res.set_status(status);
        }
    }

    pub fn internal(e: StoreError) -> ServerFnError {
        tracing::error!("store error in a server function: {e}");
        set_status(http::StatusCode::INTERNAL_SERVER_ERROR);
        ServerFnError::new("The inspector could not read its store. Try again in a moment.")
    }

    pub fn store_error(e: StoreError) -> ServerFnError {
        match e {
            StoreError::NotFound(what) => {
                set_status(http::StatusCode::NOT_FOUND);
                ServerFnError::new(format!("{what} not found"))
            }
            StoreError::Invalid { .. } => {
                set_status(http::StatusCode::BAD_REQUEST);
                ServerFnError::new(e.to_string())
            }
            other => internal(other),
        }
    }
}
