//! Server functions: thin. Authorize, call the store, map the error.

use cmdop_protocol::{ChatThread, MemberInfo, Session, SessionList};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

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

/// The sessions the signed-in member may see, newest first.
#[server(prefix = "/rpc", endpoint = "sessions")]
pub async fn list_sessions(cursor: Option<String>) -> Result<SessionList, ServerFnError> {
    let (ctx, member) = server::require_member().await?;
    let query = cmdop_store::SessionQuery { cursor, ..Default::default() };
    ctx.store.list_sessions(&cmdop_store::Viewer::Member(member.id), &query).await.map_err(server::store_error)
}

/// Rows the server renders for the first paint of a transcript; older ones come with the browser's replay (and are
/// all in the text download).
pub const SNAPSHOT_ROWS: usize = 5_000;

/// Everything the session page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPageData {
    pub session: Session,
    pub chat: Option<ChatThread>,
    /// Server-rendered transcript rows (escaped HTML) for the first paint and for readers without JavaScript.
    /// Not serialized: the browser rebuilds the terminal from the live stream, so the HTML travels once.
    #[serde(skip)]
    pub snapshot_html: String,
    /// Rows left out of the snapshot (the oldest), if any.
    pub snapshot_rows_omitted: u64,
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
    let slice = ctx.store.read_transcript(&viewer, id, 0).await.map_err(server::store_error)?;
    let (snapshot_html, snapshot_rows_omitted) = server::snapshot(&session, &slice);
    Ok(Some(SessionPageData { session, chat, snapshot_html, snapshot_rows_omitted }))
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

    pub fn not_found() {
        set_status(http::StatusCode::NOT_FOUND);
    }

    /// The transcript as the page first shows it: the last `SNAPSHOT_ROWS` rows, in the same markup the browser
    /// renders afterwards.
    pub fn snapshot(session: &cmdop_protocol::Session, slice: &cmdop_store::TranscriptSlice) -> (String, u64) {
        let doc = crate::transcript_view::document_from_slice(session, slice);
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
