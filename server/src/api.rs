//! HTTP API v1: JSON over cookie or Bearer auth. Every read goes through the store with the caller as viewer.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cmdop_protocol::{
    AttachClientRequest, AttachClientResponse, ChatMessage, ChatThread, ClientKind, CreateChatThreadRequest,
    PostChatMessageRequest, Session, SessionFilter, SessionList, SessionState,
};
use cmdop_store::{NewClient, SessionQuery, StoreError, Viewer};
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

/// `GET /api/v1/sessions?fleet=&machine=&user=&state=&range=&since=&until=&limit=&cursor=`: newest first, keyset
/// paginated; the filters are the `/sessions` page's (see [`SessionFilter`]).
pub async fn list_sessions(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    RawQuery(query): RawQuery,
) -> Result<Json<SessionList>, ApiError> {
    let filter = SessionFilter::from_query(query.as_deref().unwrap_or_default()).map_err(bad_filter)?;
    let query = SessionQuery::from_filter(&filter, state.store.clock().now());
    Ok(Json(state.store.list_sessions(&Viewer::Member(member.id), &query).await?))
}

fn bad_filter(e: cmdop_protocol::filter::FilterError) -> ApiError {
    ApiError::BadRequest { field: e.field.into(), message: e.message }
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

/// `GET /api/v1/auth/me`: who the cookie or token speaks for (`cmdop login` checks its token with it).
pub async fn me(CurrentMember(member): CurrentMember) -> Json<cmdop_protocol::MemberInfo> {
    Json(member.info())
}

/// `GET /api/v1/sessions/{id}/transcript`: the retained transcript bytes. Headers say where they start
/// (`X-Transcript-Start-Offset`), how long the transcript is in all (`X-Transcript-Total-Bytes`), and how many
/// bytes the ring buffer dropped (`X-Transcript-Truncated-Bytes`); declared gaps are in the session's JSON.
pub async fn transcript(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_session_id(&id)?;
    let slice = state.store.read_transcript(&Viewer::Member(member.id), id, 0).await?;
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
        (HeaderName::from_static("x-transcript-start-offset"), HeaderValue::from(slice.start_offset)),
        (HeaderName::from_static("x-transcript-total-bytes"), HeaderValue::from(slice.total_bytes)),
        (HeaderName::from_static("x-transcript-truncated-bytes"), HeaderValue::from(slice.truncated_bytes)),
    ];
    Ok((headers, slice.bytes).into_response())
}

/// `POST /api/v1/sessions/{id}/clients`: a desktop app, CLI or bot attaches itself to a session it can see.
pub async fn attach_client(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Path(id): Path<String>,
    body: Result<Json<AttachClientRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<AttachClientResponse>), ApiError> {
    let id = parse_session_id(&id)?;
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    if req.kind == ClientKind::Browser {
        return Err(ApiError::bad_request("kind", "browser clients attach by opening the live view"));
    }
    let session = state.store.session(&Viewer::Member(member.id), id).await?;
    if session.state == SessionState::Ended {
        return Err(StoreError::Conflict("the session has ended".into()).into());
    }
    let new = NewClient { kind: req.kind, name: req.name, member_id: Some(member.id) };
    let client_id = state.store.attach_client(id, new).await?;
    state.hub.clients_changed(id);
    Ok((StatusCode::CREATED, Json(AttachClientResponse { client_id })))
}

/// `DELETE /api/v1/sessions/{id}/clients/{client_id}`: detaches a client the caller attached.
pub async fn detach_client(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Path((id, client_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_session_id(&id)?;
    let client_id = Uuid::parse_str(&client_id)
        .map_err(|_| ApiError::bad_request("client_id", format!("{client_id:?} is not a client id (a UUID)")))?;
    state.store.session(&Viewer::Member(member.id), id).await?;
    state.store.detach_client(id, client_id, Some(member.id)).await?;
    state.hub.clients_changed(id);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/chat/threads`: a member (a bot, typically) opens a chat thread in one of their fleets.
pub async fn create_chat_thread(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    body: Result<Json<CreateChatThreadRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ChatThread>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    let memberships = state.store.memberships(member.id).await?;
    let fleet = match req.fleet.as_deref().map(str::trim) {
        Some(name) => memberships
            .iter()
            .find(|m| m.fleet.name == name)
            .ok_or_else(|| StoreError::NotFound(format!("fleet {name:?} among yours")))?,
        None => match memberships.as_slice() {
            [only] => only,
            [] => return Err(StoreError::NotFound("a fleet of yours".into()).into()),
            _ => return Err(ApiError::bad_request("fleet", "you belong to several fleets; say which")),
        },
    };
    let thread = state.store.create_chat_thread(member.id, fleet.fleet.id, &req.title).await?;
    Ok((StatusCode::CREATED, Json(thread)))
}

/// `GET /api/v1/chat/threads/{id}`: the thread and its messages, for members of its fleet.
pub async fn chat_thread(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<ChatThread>, ApiError> {
    let id = parse_thread_id(&id)?;
    Ok(Json(state.store.chat_thread(&Viewer::Member(member.id), id).await?))
}

/// `POST /api/v1/chat/threads/{id}/messages`.
pub async fn post_chat_message(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    Path(id): Path<String>,
    body: Result<Json<PostChatMessageRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ChatMessage>), ApiError> {
    let id = parse_thread_id(&id)?;
    let Json(req) = body.map_err(|e| ApiError::bad_request("body", e.body_text()))?;
    Ok((StatusCode::CREATED, Json(state.store.post_chat_message(member.id, id, &req.body).await?)))
}

fn parse_thread_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad_request("id", format!("{id:?} is not a chat thread id (a UUID)")))
}
