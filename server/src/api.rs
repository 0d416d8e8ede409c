//! HTTP API v1: JSON over cookie or Bearer auth. Every read goes through the store with the caller as viewer.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use cmdop_protocol::{Session, SessionList, SessionState};
use cmdop_store::{MAX_PAGE_SIZE, SessionQuery, Viewer};
use uuid::Uuid;

use crate::auth::CurrentMember;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: 200 once the store answers, 503 otherwise.
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))),
        Err(e) => {
            tracing::warn!("health check: store unavailable: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "store unavailable" })))
        }
    }
}

/// `GET /api/v1/sessions?state=&limit=&cursor=`: newest first, keyset paginated.
pub async fn list_sessions(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<SessionList>, ApiError> {
    let query = parse_session_query(&params)?;
    Ok(Json(state.store.list_sessions(&Viewer::Member(member.id), &query).await?))
}

/// `GET /api/v1/sessions/{id}`: 404 for sessions that do not exist and for those the caller may not see.
pub async fn get_session(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let id = parse_session_id(&id)?;
    Ok(Json(state.store.session(&Viewer::Member(member.id), id).await?))
}

pub fn parse_session_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad_request("id", format!("{id:?} is not a session id (a UUID)")))
}

fn parse_session_query(params: &HashMap<String, String>) -> Result<SessionQuery, ApiError> {
    let mut q = SessionQuery::default();
    if let Some(v) = params.get("state").filter(|v| !v.is_empty()) {
        q.state = Some(match v.as_str() {
            "active" => SessionState::Active,
            "ended" => SessionState::Ended,
            _ => return Err(ApiError::bad_request("state", format!("{v:?} is not one of active, ended"))),
        });
    }
    if let Some(v) = params.get("limit").filter(|v| !v.is_empty()) {
        q.limit = Some(v.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
            ApiError::bad_request("limit", format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"))
        })?);
    }
    q.cursor = params.get("cursor").filter(|v| !v.is_empty()).cloned();
    Ok(q)
}
