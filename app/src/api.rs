//! Server functions: thin. Authorize, call the store, map the error.

use cmdop_protocol::{MemberInfo, SessionList};
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
