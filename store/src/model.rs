//! Domain records the store reads and writes. Read models for the API are `cmdop_protocol` types.

use chrono::{DateTime, Utc};
use cmdop_protocol::{ClientKind, GapReason, SessionState};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// A new UUID v7: time-ordered, and not guessable from its neighbours.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    pub id: Uuid,
    pub name: String,
    pub retention_days: i32,
    pub retention_min_days: i32,
    pub retention_max_days: i32,
    pub transcript_limit_bytes: i64,
    pub cabinet_command_policy: CabinetCommandPolicy,
    pub created_at: DateTime<Utc>,
}

/// Default ring buffer size of a session's stored transcript.
pub const DEFAULT_TRANSCRIPT_LIMIT_BYTES: i64 = 8 * 1024 * 1024;
/// Bounds of a fleet's ring buffer size.
pub const MIN_TRANSCRIPT_LIMIT_BYTES: i64 = 64 * 1024;
pub const MAX_TRANSCRIPT_LIMIT_BYTES: i64 = 1 << 30;

/// What happens to commands sent from the cabinet's legacy web terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CabinetCommandPolicy {
    /// Let the command through and flag it in the audit log.
    Flag,
    /// Refuse the command (and flag it).
    Block,
}

impl CabinetCommandPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Block => "block",
        }
    }
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "flag" => Ok(Self::Flag),
            "block" => Ok(Self::Block),
            other => Err(StoreError::invalid("cabinet_command_policy", format!("unknown policy {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_bot: bool,
    pub created_at: DateTime<Utc>,
}

impl Member {
    pub fn info(&self) -> cmdop_protocol::MemberInfo {
        cmdop_protocol::MemberInfo {
            id: self.id,
            email: self.email.clone(),
            name: self.display_name.clone(),
            is_bot: self.is_bot,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewMember {
    pub email: String,
    pub display_name: String,
    /// An argon2 hash (see [`crate::secrets::hash_password`]); `None` for a member who cannot log in with a
    /// password (bots use API tokens).
    pub password_hash: Option<String>,
    pub is_bot: bool,
}

/// Emails are compared case-insensitively: stored lower-case, trimmed.
pub fn normalize_email(email: &str) -> Result<String, StoreError> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !e.contains(char::is_whitespace)
        });
    if valid { Ok(e) } else { Err(StoreError::invalid("email", format!("{email:?} is not an email address"))) }
}

/// Names of fleets and machines: what a person types on a command line.
pub fn validate_name(field: &'static str, name: &str) -> Result<String, StoreError> {
    let n = name.trim();
    if n.is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if n.chars().count() > 100 {
        return Err(StoreError::invalid(field, "must be at most 100 characters"));
    }
    if n.chars().any(|c| c.is_control()) {
        return Err(StoreError::invalid(field, "must not contain control characters"));
    }
    Ok(n.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(StoreError::invalid("role", format!("{other:?} is not one of owner, admin, member"))),
        }
    }
    /// Owners and admins see every machine of their fleet; members only the machines they are granted.
    pub fn sees_all_machines(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetMembership {
    pub fleet: Fleet,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub id: Uuid,
    pub fleet_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Who is reading. Every read path of the store takes one, and the query filters by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A cabinet member (human or bot): sees sessions of fleets they belong to, on all machines as owner/admin,
    /// on granted machines as member.
    Member(Uuid),
    /// A guest holding a share link: sees exactly one session.
    Share { session_id: Uuid },
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub fleet_id: Uuid,
    pub machine_id: Uuid,
    pub started_by: Uuid,
    pub command: String,
    pub cols: u16,
    pub rows: u16,
    pub chat_thread_id: Option<Uuid>,
    /// `None`: the store's clock.
    pub started_at: Option<DateTime<Utc>>,
}

/// One piece of output: the bytes at `offset` of the transcript, `t_ms` after the session started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub offset: u64,
    pub t_ms: u64,
    pub bytes: Vec<u8>,
}

/// One write to a session's transcript, in offset order. A batch of them is appended in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriptWrite {
    Output(OutputChunk),
    /// The recorder dropped `bytes_lost` bytes at `at_offset` (its local buffer overflowed while offline).
    Gap {
        at_offset: u64,
        bytes_lost: u64,
    },
    /// The terminal was resized when the transcript was `offset` bytes long.
    Resize {
        offset: u64,
        t_ms: u64,
        cols: u16,
        rows: u16,
    },
}

impl TranscriptWrite {
    /// Payload bytes, for sizing write batches.
    pub fn len(&self) -> usize {
        match self {
            TranscriptWrite::Output(c) => c.bytes.len(),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's transcript after an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset after the last byte stored (or declared lost): what the recorder gets acknowledged.
    pub total_bytes: u64,
    /// Offset of the oldest retained byte.
    pub retained_from: u64,
    /// Bytes the ring buffer has dropped so far.
    pub truncated_bytes: u64,
}

/// What the ingest path needs to know about a session it writes, regardless of viewers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingState {
    pub session_id: Uuid,
    pub fleet_id: Uuid,
    pub machine_id: Uuid,
    pub started_by: Uuid,
    pub started_at: DateTime<Utc>,
    pub state: SessionState,
    pub end_reason: Option<cmdop_protocol::EndReason>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub total_bytes: u64,
}

/// A resize in the stored transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizeAt {
    pub offset: u64,
    pub cols: u16,
    pub rows: u16,
}

/// A stretch of transcript the recorder had to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub at_offset: u64,
    pub bytes_lost: u64,
    pub reason: GapReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEnd {
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub reason: cmdop_protocol::EndReason,
    /// `None`: the store's clock.
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewClient {
    pub kind: ClientKind,
    pub name: String,
    pub member_id: Option<Uuid>,
}

/// Filters of the sessions list. All combine (AND); `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionQuery {
    pub fleet_id: Option<Uuid>,
    pub machine_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// Fleet by name.
    pub fleet: Option<String>,
    /// Machine by name (in any visible fleet unless a fleet is given too).
    pub machine: Option<String>,
    /// The starting member, by email.
    pub user: Option<String>,
    pub state: Option<SessionState>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// Page size; clamped to `1..=MAX_PAGE_SIZE`, default `DEFAULT_PAGE_SIZE`.
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl SessionQuery {
    /// The store query a list URL stands for, with named time ranges ending at `now`.
    pub fn from_filter(filter: &cmdop_protocol::SessionFilter, now: DateTime<Utc>) -> Self {
        let (since, until) = filter.window(now);
        SessionQuery {
            fleet: filter.fleet.clone(),
            machine: filter.machine.clone(),
            user: filter.user.clone(),
            state: filter.state,
            since,
            until,
            limit: filter.limit,
            cursor: filter.cursor.clone(),
            ..Default::default()
        }
    }
}

pub use cmdop_protocol::filter::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// How many sessions one machine × member × state combination has (see [`crate::Store::session_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCount {
    pub machine: String,
    pub user: String,
    pub user_name: String,
    pub state: SessionState,
    pub sessions: u64,
}

/// Keyset position in the (started_at DESC, id DESC) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub started_at_ms: i64,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", self.started_at_ms, self.id.simple()))
    }

    pub fn decode(s: &str) -> Result<Self, StoreError> {
        use base64::Engine;
        let bad = || StoreError::invalid("cursor", "not a cursor this server issued");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (ms, id) = text.split_once('.').ok_or_else(bad)?;
        Ok(Cursor { started_at_ms: ms.parse().map_err(|_| bad())?, id: Uuid::parse_str(id).map_err(|_| bad())? })
    }
}

/// Retained transcript bytes from some offset on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptSlice {
    /// Offset of `bytes[0]`. Larger than the requested offset when older bytes were truncated.
    pub start_offset: u64,
    pub bytes: Vec<u8>,
    /// The session's total length at the time of the read.
    pub total_bytes: u64,
    /// Bytes the ring buffer has dropped (they were before the oldest retained byte).
    pub truncated_bytes: u64,
    /// All of the session's declared gaps, in offset order.
    pub gaps: Vec<Gap>,
    /// Resizes at or after the requested offset, in offset order; when `more`, only those before the offset where
    /// the next page's bytes start (so that each resize comes in exactly one page).
    pub resizes: Vec<ResizeAt>,
    /// True when the read stopped at its byte limit before the end of the retained transcript.
    pub more: bool,
    /// The last resize before the requested offset: the terminal size in effect where the slice begins (`None`:
    /// the session's starting size).
    pub size_before: Option<ResizeAt>,
}

/// A piece of a transcript in offset order: what a viewer or an export walks through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriptPiece<'a> {
    Bytes { offset: u64, bytes: &'a [u8] },
    Gap { at_offset: u64, bytes_lost: u64, reason: GapReason },
    Resize(ResizeAt),
}

impl TranscriptSlice {
    /// The slice as it happened, from `from` on: first what is missing before the retained bytes (dropped by the
    /// ring buffer, or lost while the recorder was offline, each with its exact count), then the bytes with
    /// declared gaps and resizes where they occurred.
    pub fn pieces(&self, from: u64) -> Vec<TranscriptPiece<'_>> {
        let mut out = Vec::new();
        let mut offset = from;
        let mut gaps = self.gaps.iter().filter(|g| g.at_offset + g.bytes_lost > from).peekable();
        // Before the retained bytes: declared gaps stay what they are; the rest was truncated.
        while offset < self.start_offset {
            match gaps.peek() {
                Some(g) if g.at_offset < self.start_offset => {
                    if g.at_offset > offset {
                        out.push(TranscriptPiece::Gap {
                            at_offset: offset,
                            bytes_lost: g.at_offset - offset,
                            reason: GapReason::Truncated,
                        });
                    }
                    let start = g.at_offset.max(offset);
                    out.push(TranscriptPiece::Gap {
                        at_offset: start,
                        bytes_lost: g.at_offset + g.bytes_lost - start,
                        reason: g.reason,
                    });
                    offset = g.at_offset + g.bytes_lost;
                    gaps.next();
                }
                _ => {
                    out.push(TranscriptPiece::Gap {
                        at_offset: offset,
                        bytes_lost: self.start_offset - offset,
                        reason: GapReason::Truncated,
                    });
                    offset = self.start_offset;
                }
            }
        }
        let first = offset;
        let mut resizes = self.resizes.iter().filter(move |r| r.offset >= first).peekable();
        let mut rest: &[u8] = &self.bytes;
        loop {
            while let Some(r) = resizes.next_if(|r| r.offset <= offset) {
                out.push(TranscriptPiece::Resize(*r));
            }
            if let Some(g) = gaps.next_if(|g| g.at_offset <= offset) {
                out.push(TranscriptPiece::Gap {
                    at_offset: offset,
                    bytes_lost: g.at_offset + g.bytes_lost - offset,
                    reason: g.reason,
                });
                offset = g.at_offset + g.bytes_lost;
                continue;
            }
            if rest.is_empty() {
                break;
            }
            // Bytes run until the next gap or resize.
            let next_event = [gaps.peek().map(|g| g.at_offset), resizes.peek().map(|r| r.offset)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX);
            let n = (next_event - offset).min(rest.len() as u64) as usize;
            out.push(TranscriptPiece::Bytes { offset, bytes: &rest[..n] });
            rest = &rest[n..];
            offset += n as u64;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor { started_at_ms: 1_767_225_600_123, id: new_id() };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!!", "bm90LWEtY3Vyc29y"] {
            let err = Cursor::decode(bad).unwrap_err();
            assert!(matches!(err, StoreError::Invalid { field: "cursor", .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(normalize_email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in ["", "alice", "@example.com", "alice@", "a b@c.d", "a@b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn roles_parse_and_order() {
        assert_eq!(Role::parse("owner").unwrap(), Role::Owner);
        assert!(Role::parse("root").unwrap_err().to_string().contains("owner, admin, member"));
        assert!(Role::Owner.sees_all_machines() && Role::Admin.sees_all_machines());
        assert!(!Role::Member.sees_all_machines());
    }
}
