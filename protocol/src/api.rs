//! JSON bodies of the HTTP API v1 (`/api/v1/...`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every error answer: `{"error": "..."}`, with the HTTP status saying what kind of error it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// The member a login or a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_bot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub member: MemberInfo,
    /// When the login session (and its cookie) expires.
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Active,
    Ended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Ended => "ended",
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The command exited (see `exit_code`).
    Exited,
    /// The recorder vanished without reporting an exit and did not come back within the grace period.
    RecorderLost,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::RecorderLost => "recorder_lost",
        }
    }
}

/// What kind of program is attached to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    Desktop,
    Cli,
    Bot,
    Browser,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Desktop => "desktop",
            ClientKind::Cli => "cli",
            ClientKind::Bot => "bot",
            ClientKind::Browser => "browser",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub id: Uuid,
    pub kind: ClientKind,
    pub name: String,
    #[serde(with = "crate::time::rfc3339")]
    pub attached_at: DateTime<Utc>,
    /// `None` while attached.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub detached_at: Option<DateTime<Utc>>,
}

/// Why transcript bytes are missing at a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The recorder's local buffer overflowed while the server was unreachable.
    RecorderOffline,
    /// The session's ring buffer dropped its oldest output (only in live events and exports: stored sessions
    /// report it as `truncated_bytes`).
    Truncated,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::RecorderOffline => "recorder_offline",
            GapReason::Truncated => "truncated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapInfo {
    /// Transcript byte offset where the missing bytes would have started.
    pub at_offset: u64,
    pub bytes_lost: u64,
    pub reason: GapReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptInfo {
    /// Bytes the session produced in all (the offset after the last byte).
    pub total_bytes: u64,
    /// Bytes the server still holds.
    pub retained_bytes: u64,
    /// Oldest bytes dropped by the session's ring buffer.
    pub truncated_bytes: u64,
    pub gaps: Vec<GapInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatThreadRef {
    pub id: Uuid,
    pub title: String,
}

/// A session as `GET /api/v1/sessions/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: Uuid,
    /// Fleet name.
    pub fleet: String,
    pub fleet_id: Uuid,
    /// Machine name.
    pub machine: String,
    pub machine_id: Uuid,
    /// Email of the member who started the session.
    pub user: String,
    pub user_id: Uuid,
    /// Display name of that member.
    pub user_name: String,
    pub command: String,
    pub state: SessionState,
    pub end_reason: Option<EndReason>,
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub ended_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    /// Ended: end minus start. Active: now minus start, as of the answer.
    pub duration_ms: u64,
    pub cols: u16,
    pub rows: u16,
    pub clients: Vec<ClientInfo>,
    pub chat_thread: Option<ChatThreadRef>,
    pub transcript: TranscriptInfo,
}

/// `POST /api/v1/sessions/{id}/clients`: a desktop app, CLI or bot attaches itself to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachClientRequest {
    /// `desktop`, `cli` or `bot` (`browser` clients are the live viewers themselves).
    pub kind: ClientKind,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachClientResponse {
    /// Pass to `DELETE /api/v1/sessions/{id}/clients/{client_id}` to detach.
    pub client_id: Uuid,
}

/// `POST /api/v1/chat/threads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateChatThreadRequest {
    /// Fleet name; may be left out by members of a single fleet.
    #[serde(default)]
    pub fleet: Option<String>,
    pub title: String,
}

/// `POST /api/v1/chat/threads/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostChatMessageRequest {
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: Uuid,
    pub author: String,
    pub author_name: String,
    pub body: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// A chat thread with its messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatThread {
    pub id: Uuid,
    pub fleet: String,
    pub fleet_id: Uuid,
    pub title: String,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    pub messages: Vec<ChatMessage>,
}

/// One page of `GET /api/v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_use_the_documented_json_names() {
        assert_eq!(serde_json::to_string(&SessionState::Active).unwrap(), "\"active\"");
        assert_eq!(serde_json::to_string(&EndReason::RecorderLost).unwrap(), "\"recorder_lost\"");
        assert_eq!(serde_json::to_string(&ClientKind::Desktop).unwrap(), "\"desktop\"");
        assert_eq!(serde_json::to_string(&GapReason::RecorderOffline).unwrap(), "\"recorder_offline\"");
        for s in [SessionState::Active, SessionState::Ended] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for k in [ClientKind::Desktop, ClientKind::Cli, ClientKind::Bot, ClientKind::Browser] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }
}
