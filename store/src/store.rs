use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cmdop_protocol::{Session, SessionList};
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

    // ---- fleets, members, machines ----
    async fn create_fleet(&self, name: &str) -> StoreResult<Fleet>;
    async fn fleet_by_name(&self, name: &str) -> StoreResult<Fleet>;
    async fn list_fleets(&self) -> StoreResult<Vec<Fleet>>;

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
    /// Appends output. Writes are idempotent by offset: a chunk already stored with the same bytes is skipped;
    /// one that disagrees with stored bytes, or leaves a hole not declared as a gap, is a `Conflict`.
    /// Returns the session's total length afterwards.
    async fn append_output(&self, session_id: Uuid, chunks: &[OutputChunk]) -> StoreResult<u64>;
    async fn end_session(&self, session_id: Uuid, end: SessionEnd) -> StoreResult<()>;
    async fn attach_client(&self, session_id: Uuid, client: NewClient) -> StoreResult<Uuid>;
    async fn detach_client(&self, session_id: Uuid, client_id: Uuid) -> StoreResult<()>;

    // ---- sessions: reads, always through the viewer ----
    async fn list_sessions(&self, viewer: &Viewer, query: &SessionQuery) -> StoreResult<SessionList>;
    async fn session(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Session>;
    async fn read_transcript(&self, viewer: &Viewer, id: Uuid, from_offset: u64) -> StoreResult<TranscriptSlice>;
}
