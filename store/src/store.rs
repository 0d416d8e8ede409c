use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cmdop_protocol::{ChatMessage, ChatThread, Session, SessionList};
use uuid::Uuid;

use crate::error::StoreResult;
use crate::model::*;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything the inspector keeps. Implemented by [`crate::SqliteStore`] and [`crate::PostgresStore`]; the
/// conformance suite (`tests/conformance.rs`) runs the same tests against both.
///
/// Methods that read sessions take a [`Viewer`] and return `NotFound` for what the viewer may not see.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    fn clock(&self) -> &dyn crate::Clock;
    /// Cheap round trip, for health checks.
    async fn ping(&self) -> StoreResult<()>;

    // ---- change notices between replicas (PostgreSQL; nothing on SQLite) ----
    /// This store's replica id, the `origin` of the notices it publishes.
    fn replica_id(&self) -> Uuid;
    /// Tells the other replicas about changes.
    async fn publish_live(&self, notices: &[crate::notify::LiveNotice]) -> StoreResult<()>;
    /// Notices from every replica (one's own included), or `None` where there are no other replicas.
    async fn live_notices(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<crate::notify::LiveNotice>>>;

    // ---- fleets, members, machines ----
    async fn create_fleet(&self, name: &str) -> StoreResult<Fleet>;
    async fn fleet_by_name(&self, name: &str) -> StoreResult<Fleet>;
    async fn list_fleets(&self) -> StoreResult<Vec<Fleet>>;
    /// Sets a fleet's ring buffer size (bytes, at least 64 KiB); applies to the next write of each session.
    async fn set_transcript_limit(&self, fleet_id: Uuid, limit_bytes: i64) -> StoreResult<()>;

    async fn create_member(&self, new: NewMember) -> StoreResult<Member>;
    async fn member_by_email(&self, email: &str) -> StoreResult<Member>;
    async fn member_by_id(&self, id: Uuid) -> StoreResult<Member>;
    /// The member and their password hash, for login. `None` if there is no such member.
    async fn password_login_record(&self, email: &str) -> StoreResult<Option<(Member, Option<String>)>>;
    async fn add_fleet_member(&self, fleet_id: Uuid, member_id: Uuid, role: Role) -> StoreResult<()>;
    async fn memberships(&self, member_id: Uuid) -> StoreResult<Vec<FleetMembership>>;

    async fn create_machine(&self, fleet_id: Uuid, name: &str) -> StoreResult<Machine>;
    async fn machine_by_name(&self, fleet_id: Uuid, name: &str) -> StoreResult<Machine>;
    async fn grant_machine(&self, machine_id: Uuid, member_id: Uuid) -> StoreResult<()>;

    // ---- credentials (only digests are stored) ----
    async fn create_api_token(&self, member_id: Uuid, name: &str, token_hash: &[u8]) -> StoreResult<Uuid>;
    /// The member an unrevoked API token speaks for; records its use.
    async fn member_by_api_token(&self, token_hash: &[u8]) -> StoreResult<Option<Member>>;
    async fn create_login_session(
        &self,
        member_id: Uuid,
        token_hash: &[u8],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The member of an unexpired login session.
    async fn member_by_login_session(&self, token_hash: &[u8]) -> StoreResult<Option<Member>>;
    async fn delete_login_session(&self, token_hash: &[u8]) -> StoreResult<()>;

    // ---- sessions: the write side (recorder ingest, desktop/bot clients, demo seeding) ----
    async fn create_session(&self, new: NewSession) -> StoreResult<Uuid>;
    /// Appends to several sessions' transcripts in one transaction (group commit): all or nothing. Writes are
    /// idempotent by offset: output already stored with the same bytes is skipped, a gap or resize already
    /// stored is skipped; output that disagrees with stored bytes, or that leaves a hole not declared as a gap,
    /// is a `Conflict`. Past the fleet's ring buffer size, the oldest chunks are dropped (`truncated_bytes`).
    /// Returns each session's transcript afterwards, in the order given.
    async fn append_batch(&self, batch: &[(Uuid, Vec<TranscriptWrite>)]) -> StoreResult<Vec<AppendOutcome>>;
    async fn end_session(&self, session_id: Uuid, end: SessionEnd) -> StoreResult<()>;
    /// A session that ended because its recorder was lost becomes active again when the recorder comes back.
    async fn reopen_lost_session(&self, session_id: Uuid) -> StoreResult<()>;
    /// Marks the recorders of these sessions (the active ones) as heard from now. Committed output marks them
    /// too; this is for recorders that are connected but quiet.
    async fn touch_sessions(&self, session_ids: &[Uuid]) -> StoreResult<()>;
    /// Ends (reason `recorder_lost`, exit code null, ended when last heard from) every active session whose
    /// recorder has not been heard from since `silent_since`. Returns their ids.
    async fn end_lost_sessions(&self, silent_since: DateTime<Utc>) -> StoreResult<Vec<Uuid>>;
    /// The write side's view of a session (no visibility rule: the caller checks it is the recorder's own).
    async fn recording_state(&self, session_id: Uuid) -> StoreResult<RecordingState>;
    /// The machine a member may record on: by name within the member's fleets (`fleet` narrows it), and the
    /// member must be owner/admin of that fleet or granted the machine.
    async fn recordable_machine(&self, member_id: Uuid, machine: &str, fleet: Option<&str>) -> StoreResult<Machine>;
    async fn attach_client(&self, session_id: Uuid, client: NewClient) -> StoreResult<Uuid>;
    /// Detaches a client; with `by`, only a client that member attached.
    async fn detach_client(&self, session_id: Uuid, client_id: Uuid, by: Option<Uuid>) -> StoreResult<()>;

    // ---- chat threads ----
    /// A thread in a fleet the member belongs to.
    async fn create_chat_thread(&self, member_id: Uuid, fleet_id: Uuid, title: &str) -> StoreResult<ChatThread>;
    async fn post_chat_message(&self, member_id: Uuid, thread_id: Uuid, body: &str) -> StoreResult<ChatMessage>;
    /// A thread with its messages: members of its fleet see it; a share viewer sees the shared session's.
    async fn chat_thread(&self, viewer: &Viewer, thread_id: Uuid) -> StoreResult<ChatThread>;

    // ---- sessions: reads, always through the viewer ----
    async fn list_sessions(&self, viewer: &Viewer, query: &SessionQuery) -> StoreResult<SessionList>;
    /// Sessions matching `query` (its state, cursor and limit ignored), counted per machine, member and state:
    /// the counts beside the list's filters and sections.
    async fn session_counts(&self, viewer: &Viewer, query: &SessionQuery) -> StoreResult<Vec<SessionCount>>;
    async fn session(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Session>;
    /// The session without its clients (`clients` is empty): for visibility checks and reads that do not show
    /// them. A session with a thousand viewers has a thousand clients to read.
    async fn session_head(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Session>;
    /// Retained transcript from `from_offset` on, at most about `max_bytes` (whole chunks; at least one).
    async fn read_transcript_page(
        &self,
        viewer: &Viewer,
        id: Uuid,
        from_offset: u64,
        max_bytes: usize,
    ) -> StoreResult<TranscriptSlice>;

    /// Appends to one session's transcript (see [`Store::append_batch`]).
    async fn append(&self, session_id: Uuid, writes: Vec<TranscriptWrite>) -> StoreResult<AppendOutcome> {
        let mut outcomes = self.append_batch(&[(session_id, writes)]).await?;
        Ok(outcomes.pop().expect("one outcome per session"))
    }

    /// Appends output chunks; returns the session's total length afterwards.
    async fn append_output(&self, session_id: Uuid, chunks: &[OutputChunk]) -> StoreResult<u64> {
        let writes = chunks.iter().cloned().map(TranscriptWrite::Output).collect();
        Ok(self.append(session_id, writes).await?.total_bytes)
    }

    /// All retained transcript from `from_offset` on.
    async fn read_transcript(&self, viewer: &Viewer, id: Uuid, from_offset: u64) -> StoreResult<TranscriptSlice> {
        self.read_transcript_page(viewer, id, from_offset, usize::MAX).await
    }
}
