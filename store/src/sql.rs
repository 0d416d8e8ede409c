//! The SQL implementation of [`Store`](crate::Store), shared by both backends.
//!
//! The two dialects agree on everything the store says (numbered `$n` parameters, `RETURNING`,
//! `ON CONFLICT`, `LIMIT`); the schemas differ in column types (see the two migration sets), which the bound Rust
//! types bridge: `Uuid` is a BLOB in SQLite and a UUID in PostgreSQL, [`Ts`](crate::ts::Ts) is INTEGER ms in
//! SQLite and TIMESTAMPTZ in PostgreSQL. The implementation is written once, as a macro expanded for each
//! concrete backend, because sqlx's generic-over-database bounds would bury the queries under where-clauses.

use cmdop_protocol::{ClientKind, EndReason, GapReason, SessionState};

use crate::error::StoreError;
use crate::model::{CabinetCommandPolicy, Role};

pub(crate) fn parse_state(s: &str) -> Result<SessionState, StoreError> {
    match s {
        "active" => Ok(SessionState::Active),
        "ended" => Ok(SessionState::Ended),
        other => Err(StoreError::Conflict(format!("stored session state {other:?} is unknown"))),
    }
}

pub(crate) fn parse_end_reason(s: &str) -> Result<EndReason, StoreError> {
    match s {
        "exited" => Ok(EndReason::Exited),
        "recorder_lost" => Ok(EndReason::RecorderLost),
        other => Err(StoreError::Conflict(format!("stored end reason {other:?} is unknown"))),
    }
}

pub(crate) fn parse_client_kind(s: &str) -> Result<ClientKind, StoreError> {
    match s {
        "desktop" => Ok(ClientKind::Desktop),
        "cli" => Ok(ClientKind::Cli),
        "bot" => Ok(ClientKind::Bot),
        "browser" => Ok(ClientKind::Browser),
        other => Err(StoreError::Conflict(format!("stored client kind {other:?} is unknown"))),
    }
}

pub(crate) fn parse_gap_reason(s: &str) -> Result<GapReason, StoreError> {
    match s {
        "recorder_offline" => Ok(GapReason::RecorderOffline),
        other => Err(StoreError::Conflict(format!("stored gap reason {other:?} is unknown"))),
    }
}

pub(crate) fn parse_role(s: &str) -> Result<Role, StoreError> {
    Role::parse(s)
}

pub(crate) fn parse_policy(s: &str) -> Result<CabinetCommandPolicy, StoreError> {
    CabinetCommandPolicy::parse(s)
}

/// Columns of a session row joined with its fleet, machine, starter and chat thread.
pub(crate) const SESSION_SELECT: &str = "SELECT s.id, s.fleet_id, f.name AS fleet_name, s.machine_id, \
     m.name AS machine_name, s.started_by, u.email AS user_email, u.display_name AS user_name, s.command, s.state, \
     s.end_reason, s.started_at, s.ended_at, s.exit_code, s.cols, s.rows, s.total_bytes, s.retained_bytes, \
     s.truncated_bytes, s.chat_thread_id, ct.title AS chat_title \
     FROM sessions s \
     JOIN fleets f ON f.id = s.fleet_id \
     JOIN machines m ON m.id = s.machine_id \
     JOIN members u ON u.id = s.started_by \
     LEFT JOIN chat_threads ct ON ct.id = s.chat_thread_id \
     WHERE 1 = 1";

pub(crate) const FLEET_COLUMNS: &str = "id, name, retention_days, retention_min_days, retention_max_days, \
     transcript_limit_bytes, cabinet_command_policy, created_at";

pub(crate) const MEMBER_COLUMNS: &str = "id, email, display_name, is_bot, created_at";

/// Rows per multi-row statement: 7 parameters each stays far below SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// Where one session's transcript stands while a group commit is built.
pub(crate) struct AppendState {
    pub total: u64,
    pub retained: u64,
    pub truncated: u64,
    pub lost: u64,
    pub limit: u64,
    pub retained_from: u64,
    /// `total` as read: on PostgreSQL the update only applies if the row still says it (see
    /// `PostgresStore::write_appends`).
    pub loaded_total: u64,
}

impl AppendState {
    pub fn outcome(&self) -> crate::model::AppendOutcome {
        crate::model::AppendOutcome {
            total_bytes: self.total,
            retained_from: if self.retained == 0 { self.total } else { self.retained_from },
            truncated_bytes: self.truncated,
        }
    }
}

/// What a group commit reads of each session it writes to (`s`: sessions, `f`: its fleet), ahead of the backend's
/// WHERE clause on `s.id`.
pub(crate) const APPEND_STATE_SELECT: &str = "SELECT s.id, s.total_bytes, s.retained_bytes, s.truncated_bytes, \
     s.lost_bytes, s.retained_from, f.transcript_limit_bytes AS limit_bytes FROM sessions s \
     JOIN fleets f ON f.id = s.fleet_id";

/// One transcript chunk a group commit inserts: (session, offset, t_ms, bytes).
pub(crate) type ChunkRow<'a> = (uuid::Uuid, u64, u64, &'a [u8]);

/// Rows a group commit will insert: (session, offset, t_ms, bytes), (session, at, bytes lost) and
/// (session, at, t_ms, cols, rows).
#[derive(Default)]
pub(crate) struct PendingRows<'a> {
    pub chunks: Vec<ChunkRow<'a>>,
    pub gaps: Vec<(uuid::Uuid, u64, u64)>,
    pub resizes: Vec<(uuid::Uuid, u64, u64, u16, u16)>,
}

macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $backend:expr) => {
        use std::collections::HashMap;

        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use cmdop_protocol::{ChatMessage, ChatThread, ChatThreadRef, ClientInfo, GapInfo, Session, SessionList, TranscriptInfo};
        use sqlx::{QueryBuilder, Row};
        use uuid::Uuid;

        use crate::error::{unique_as, StoreError, StoreResult};
        use crate::model::*;
        use crate::sql::*;
        use crate::store::{Backend, Store};
        use crate::ts::Ts;

        type DbRow = <$db as sqlx::Database>::Row;

        fn fleet_from_row(r: &DbRow) -> StoreResult<Fleet> {
            Ok(Fleet {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                retention_days: r.try_get("retention_days")?,
                retention_min_days: r.try_get("retention_min_days")?,
                retention_max_days: r.try_get("retention_max_days")?,
                transcript_limit_bytes: r.try_get("transcript_limit_bytes")?,
                cabinet_command_policy: parse_policy(&r.try_get::<String, _>("cabinet_command_policy")?)?,
                created_at: r.try_get::<Ts, _>("created_at")?.0,
            })
        }

        fn member_from_row(r: &DbRow) -> StoreResult<Member> {
            Ok(Member {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                display_name: r.try_get("display_name")?,
                is_bot: r.try_get("is_bot")?,
                created_at: r.try_get::<Ts, _>("created_at")?.0,
            })
        }

        fn machine_from_row(r: &DbRow) -> StoreResult<Machine> {
            Ok(Machine {
                id: r.try_get("id")?,
                fleet_id: r.try_get("fleet_id")?,
                name: r.try_get("name")?,
                created_at: r.try_get::<Ts, _>("created_at")?.0,
            })
        }

        fn u64_col(r: &DbRow, col: &str) -> StoreResult<u64> {
            let v: i64 = r.try_get(col)?;
            u64::try_from(v).map_err(|_| StoreError::Conflict(format!("negative {col}")))
        }

        /// A session row (see `SESSION_SELECT`) without its clients and gaps.
        fn session_from_row(r: &DbRow, now: DateTime<Utc>) -> StoreResult<Session> {
            let started_at = r.try_get::<Ts, _>("started_at")?.0;
            let ended_at = r.try_get::<Option<Ts>, _>("ended_at")?.map(|t| t.0);
            let duration_ms = (ended_at.unwrap_or(now) - started_at).num_milliseconds().max(0) as u64;
            let end_reason: Option<String> = r.try_get("end_reason")?;
            let chat_thread_id: Option<Uuid> = r.try_get("chat_thread_id")?;
            let chat_title: Option<String> = r.try_get("chat_title")?;
            let total_bytes = u64_col(r, "total_bytes")?;
            Ok(Session {
                id: r.try_get("id")?,
                fleet: r.try_get("fleet_name")?,
                fleet_id: r.try_get("fleet_id")?,
                machine: r.try_get("machine_name")?,
                machine_id: r.try_get("machine_id")?,
                user: r.try_get("user_email")?,
                user_id: r.try_get("started_by")?,
                user_name: r.try_get("user_name")?,
                command: r.try_get("command")?,
                state: parse_state(&r.try_get::<String, _>("state")?)?,
                end_reason: end_reason.as_deref().map(parse_end_reason).transpose()?,
                started_at,
                ended_at,
                exit_code: r.try_get("exit_code")?,
                duration_ms,
                cols: r.try_get::<i32, _>("cols")? as u16,
                rows: r.try_get::<i32, _>("rows")? as u16,
                clients: Vec::new(),
                chat_thread: chat_thread_id.map(|id| ChatThreadRef { id, title: chat_title.unwrap_or_default() }),
                transcript: TranscriptInfo {
                    total_bytes,
                    retained_bytes: u64_col(r, "retained_bytes")?,
                    truncated_bytes: u64_col(r, "truncated_bytes")?,
                    gaps: Vec::new(),
                },
            })
        }

        /// Restricts `sessions s` to what the viewer may see. This is the visibility rule, in one place.
        fn push_visibility(qb: &mut QueryBuilder<$db>, viewer: &Viewer) {
            match viewer {
                Viewer::Member(member_id) => {
                    qb.push(" AND ");
                    push_member_sees_machine(qb, *member_id, "s.fleet_id", "s.machine_id");
                }
                Viewer::Share { session_id } => {
                    qb.push(" AND s.id = ");
                    qb.push_bind(*session_id);
                }
            }
        }

        /// The visibility rule for one machine: the member belongs to its fleet, and is an owner or admin there
        /// or was granted the machine.
        fn push_member_sees_machine(qb: &mut QueryBuilder<$db>, member_id: Uuid, fleet_col: &str, machine_col: &str) {
            qb.push(format!("EXISTS (SELECT 1 FROM fleet_members fm WHERE fm.fleet_id = {fleet_col} AND fm.member_id = "));
            qb.push_bind(member_id);
            qb.push(format!(
                " AND (fm.role IN ('owner', 'admin') OR EXISTS (SELECT 1 FROM machine_grants g \
                 WHERE g.machine_id = {machine_col} AND g.member_id = fm.member_id)))"
            ));
        }

        fn check_window(query: &SessionQuery) -> StoreResult<()> {
            match (query.since, query.until) {
                (Some(since), Some(until)) if since >= until => {
                    Err(StoreError::invalid("until", "must be later than since"))
                }
                _ => Ok(()),
            }
        }

        /// The list filters other than the cursor and the names (see `resolve_names`), as `AND` clauses on
        /// `sessions s`, each on an indexed id column so that the planner walks `(x_id, started_at)` in order.
        /// `with_state: false` leaves the state out (the counts group by it). `machines`: several machines of one
        /// name (in different fleets).
        fn push_filters(qb: &mut QueryBuilder<$db>, query: &SessionQuery, machines: &[Uuid], with_state: bool) {
            if let Some(f) = query.fleet_id {
                qb.push(" AND s.fleet_id = ").push_bind(f);
            }
            if let Some(m) = query.machine_id {
                qb.push(" AND s.machine_id = ").push_bind(m);
            }
            if !machines.is_empty() {
                let mut list = qb.push(" AND s.machine_id IN (").separated(", ");
                for m in machines {
                    list.push_bind(*m);
                }
                qb.push(")");
            }
            if let Some(u) = query.user_id {
                qb.push(" AND s.started_by = ").push_bind(u);
            }
            if let (Some(state), true) = (query.state, with_state) {
                qb.push(" AND s.state = ").push_bind(state.as_str());
            }
            // Stored times are whole milliseconds, so rounding the bounds up keeps `>=` and `<` exact on both
            // backends (SQLite compares integers and would otherwise round them down).
            if let Some(since) = query.since {
                qb.push(" AND s.started_at >= ").push_bind(Ts(crate::clock::ceil_ms(since)));
            }
            if let Some(until) = query.until {
                qb.push(" AND s.started_at < ").push_bind(Ts(crate::clock::ceil_ms(until)));
            }
        }

        /// A group commit's work between its first read and its last writes: checks each session's writes against
        /// where it stands (`states`, updated) and returns each entry's outcome and the rows still to insert. A
        /// fixed number of statements per batch (one read of the sessions before, one multi-row INSERT per table
        /// and one UPDATE of the sessions after, which the backend sends) instead of a few per write; only resends
        /// and ring-buffer trims cost statements here. See [`Store::append_batch`].
        ///
        /// Without a connection it only plans: `None` if the batch needs one of those statements (`states` is
        /// then half-applied and must be read again), so that plain appends can be written without a transaction.
        async fn apply_batch<'b>(
            mut conn: Option<&mut <$db as sqlx::Database>::Connection>,
            batch: &'b [(Uuid, Vec<TranscriptWrite>)],
            states: &mut HashMap<Uuid, AppendState>,
        ) -> StoreResult<Option<(Vec<AppendOutcome>, PendingRows<'b>)>> {
            let mut pending = PendingRows::default();
            // Each entry's outcome is where its session stood after it (a session may come more than once).
            let mut outcomes = Vec::with_capacity(batch.len());
            for (session_id, writes) in batch {
                let state = states.get_mut(session_id).ok_or_else(|| StoreError::NotFound("session".into()))?;
                for write in writes {
                    if !apply_write(conn.as_deref_mut(), *session_id, state, write, &mut pending).await? {
                        return Ok(None);
                    }
                }
                outcomes.push(state.outcome());
            }
            // Trimming happens once per session, after all its writes: its last entry reports the result. It
            // reads the table, so what this batch queued goes in first.
            if states.values().any(|s| s.retained > s.limit) {
                let Some(conn) = conn.as_deref_mut() else { return Ok(None) };
                flush_rows(conn, &mut pending).await?;
            }
            for (index, (session_id, _)) in batch.iter().enumerate().rev() {
                let state = states.get_mut(session_id).expect("loaded above");
                if state.retained > state.limit {
                    let conn = conn.as_deref_mut().expect("checked above");
                    trim_ring_buffer(conn, *session_id, state).await?;
                    outcomes[index] = state.outcome();
                }
            }
            Ok(Some((outcomes, pending)))
        }

        /// The ids a batch writes to, once each, in order (replicas take their row locks in the same order).
        fn batch_ids(batch: &[(Uuid, Vec<TranscriptWrite>)]) -> Vec<Uuid> {
            let mut ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        }

        /// Checks one write against where the session stands and queues its rows. `false` (nothing changed) if
        /// it must read the transcript tables and there is no connection.
        async fn apply_write<'w>(
            conn: Option<&mut <$db as sqlx::Database>::Connection>,
            session_id: Uuid,
            state: &mut AppendState,
            write: &'w TranscriptWrite,
            pending: &mut PendingRows<'w>,
        ) -> StoreResult<bool> {
            match write {
                TranscriptWrite::Output(chunk) => {
                    if chunk.bytes.is_empty() {
                        return Ok(true);
                    }
                    if chunk.offset > state.total {
                        return Err(StoreError::Conflict(format!(
                            "output at offset {} leaves a hole after offset {} that was not declared as a gap",
                            chunk.offset, state.total
                        )));
                    }
                    // What overlaps stored bytes is a resend: it must agree with them, whatever its chunking.
                    // Bytes the ring buffer already dropped cannot be compared and are skipped.
                    let overlap = (state.total - chunk.offset).min(chunk.bytes.len() as u64) as usize;
                    if overlap > 0 {
                        let Some(conn) = conn else { return Ok(false) };
                        // The comparison reads the table: what this batch queued must be in it.
                        flush_rows(conn, pending).await?;
                        let stored = sqlx::query(
                            "SELECT byte_offset, bytes FROM transcript_chunks WHERE session_id = $1 \
                             AND byte_offset < $2 AND byte_offset + LENGTH(bytes) > $3 ORDER BY byte_offset",
                        )
                        .bind(session_id)
                        .bind((chunk.offset + overlap as u64) as i64)
                        .bind(chunk.offset as i64)
                        .fetch_all(&mut *conn)
                        .await?;
                        for r in stored {
                            let at = u64_col(&r, "byte_offset")?;
                            let bytes: Vec<u8> = r.try_get("bytes")?;
                            let lo = at.max(chunk.offset);
                            let hi = (at + bytes.len() as u64).min(chunk.offset + overlap as u64);
                            let mine = &chunk.bytes[(lo - chunk.offset) as usize..(hi - chunk.offset) as usize];
                            if mine != &bytes[(lo - at) as usize..(hi - at) as usize] {
                                return Err(StoreError::Conflict(format!(
                                    "bytes at offset {lo} differ from the stored ones"
                                )));
                            }
                        }
                    }
                    let fresh = &chunk.bytes[overlap..];
                    if !fresh.is_empty() {
                        pending.chunks.push((session_id, state.total, chunk.t_ms, fresh));
                        if state.retained == 0 {
                            state.retained_from = state.total;
                        }
                        state.total += fresh.len() as u64;
                        state.retained += fresh.len() as u64;
                    }
                }
                TranscriptWrite::Gap { at_offset, bytes_lost } => {
                    if *bytes_lost == 0 {
                        return Err(StoreError::invalid("bytes_lost", "a gap must lose at least one byte"));
                    }
                    if *at_offset == state.total {
                        pending.gaps.push((session_id, *at_offset, *bytes_lost));
                        state.total += bytes_lost;
                        state.lost += bytes_lost;
                        return Ok(true);
                    }
                    // Anything else must be the resend of a gap already stored.
                    let Some(conn) = conn else { return Ok(false) };
                    flush_rows(conn, pending).await?;
                    let stored: Option<i64> = sqlx::query_scalar(
                        "SELECT bytes_lost FROM transcript_gaps WHERE session_id = $1 AND at_offset = $2",
                    )
                    .bind(session_id)
                    .bind(*at_offset as i64)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if stored != Some(*bytes_lost as i64) {
                        return Err(StoreError::Conflict(format!(
                            "a gap at offset {at_offset} does not continue the transcript (stored up to {})",
                            state.total
                        )));
                    }
                }
                TranscriptWrite::Resize { offset, t_ms, cols, rows } => {
                    if *cols == 0 || *rows == 0 {
                        return Err(StoreError::invalid("size", "cols and rows must be at least 1"));
                    }
                    if *offset > state.total {
                        return Err(StoreError::Conflict(format!(
                            "a resize at offset {offset} is past the end of the transcript ({})",
                            state.total
                        )));
                    }
                    pending.resizes.push((session_id, *offset, *t_ms, *cols, *rows));
                }
            }
            Ok(true)
        }

        /// Writes the queued rows, one multi-row INSERT per table (per `ROWS_PER_STATEMENT` rows).
        async fn flush_rows(conn: &mut <$db as sqlx::Database>::Connection, pending: &mut PendingRows<'_>) -> StoreResult<()> {
            for part in pending.chunks.chunks(ROWS_PER_STATEMENT) {
                <$store>::insert_chunk_rows(conn, part).await?;
            }
            for part in pending.gaps.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::<$db>::new("");
                push_gap_rows(&mut qb, part);
                qb.build().execute(&mut *conn).await?;
            }
            for part in pending.resizes.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::<$db>::new("");
                push_resize_rows(&mut qb, part);
                qb.build().execute(&mut *conn).await?;
            }
            pending.chunks.clear();
            pending.gaps.clear();
            pending.resizes.clear();
            Ok(())
        }

        /// One INSERT of gap rows.
        fn push_gap_rows(qb: &mut QueryBuilder<$db>, rows: &[(Uuid, u64, u64)]) {
            qb.push("INSERT INTO transcript_gaps (session_id, at_offset, bytes_lost, reason) ");
            qb.push_values(rows, |mut row, (id, at, lost)| {
                row.push_bind(*id).push_bind(*at as i64).push_bind(*lost as i64).push("'recorder_offline'");
            });
        }

        /// One INSERT of resize rows.
        fn push_resize_rows(qb: &mut QueryBuilder<$db>, rows: &[(Uuid, u64, u64, u16, u16)]) {
            qb.push("INSERT INTO transcript_resizes (session_id, at_offset, t_ms, cols, rows) ");
            qb.push_values(rows, |mut row, (id, at, t_ms, cols, rows)| {
                row.push_bind(*id)
                    .push_bind(*at as i64)
                    .push_bind(*t_ms as i64)
                    .push_bind(i32::from(*cols))
                    .push_bind(i32::from(*rows));
            });
            // A resent resize is the same row again.
            qb.push(" ON CONFLICT DO NOTHING");
        }

        /// The ring buffer: past the fleet's limit the oldest chunks go, whole; the newest chunk always stays.
        async fn trim_ring_buffer(
            conn: &mut <$db as sqlx::Database>::Connection,
            session_id: Uuid,
            state: &mut AppendState,
        ) -> StoreResult<()> {
            let mut excess = state.retained - state.limit;
            let mut cut_below: Option<u64> = None;
            while excess > 0 {
                let rows = sqlx::query(
                    // LENGTH is an INT4 in PostgreSQL: cast it, to read it as i64 on both backends.
                    "SELECT byte_offset, CAST(LENGTH(bytes) AS BIGINT) AS len FROM transcript_chunks \
                     WHERE session_id = $1 AND byte_offset >= $2 ORDER BY byte_offset LIMIT 512",
                )
                .bind(session_id)
                .bind(cut_below.unwrap_or(state.retained_from) as i64)
                .fetch_all(&mut *conn)
                .await?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    let at = u64_col(r, "byte_offset")?;
                    let len = u64_col(r, "len")?;
                    if at + len >= state.total {
                        excess = 0;
                        break;
                    }
                    cut_below = Some(at + len);
                    state.retained -= len;
                    state.truncated += len;
                    excess = excess.saturating_sub(len);
                    if excess == 0 {
                        break;
                    }
                }
            }
            if let Some(cut) = cut_below {
                sqlx::query(
                    "DELETE FROM transcript_chunks WHERE session_id = $1 AND byte_offset >= $2 AND byte_offset < $3",
                )
                .bind(session_id)
                .bind(state.retained_from as i64)
                .bind(cut as i64)
                .execute(&mut *conn)
                .await?;
                state.retained_from = cut;
            }
            Ok(())
        }

        /// Every batched session's new lengths, in id order (replicas updating the same sessions take their row
        /// locks in the same order), for the backend's UPDATE of the sessions.
        fn sorted_states(states: &HashMap<Uuid, AppendState>) -> Vec<(&Uuid, &AppendState)> {
            let mut all: Vec<(&Uuid, &AppendState)> = states.iter().collect();
            all.sort_unstable_by_key(|(id, _)| **id);
            all
        }

        impl $store {
            /// Adds clients and gaps to sessions read by `session_from_row`.
            /// The query with its names (fleet, machine, user) looked up as ids, so that the list walks an id
            /// index in order instead of sorting every match. Fleets and machines are looked up among those the
            /// viewer may see: `None` when a name matches nothing (visible), and the list is empty without
            /// scanning a fleet whose rows would all be refused one by one. The ids: the query's own, plus the
            /// machines of one name in several fleets.
            async fn resolve_names(
                &self,
                viewer: &Viewer,
                query: &SessionQuery,
            ) -> StoreResult<Option<(SessionQuery, Vec<Uuid>)>> {
                let mut q = query.clone();
                let member = match viewer {
                    Viewer::Member(m) => Some(*m),
                    Viewer::Share { .. } => None,
                };
                let same = |given: Option<Uuid>, found: Uuid| given.is_none_or(|g| g == found);
                if let Some(name) = q.fleet.take() {
                    let mut qb = QueryBuilder::<$db>::new("SELECT f.id FROM fleets f WHERE f.name = ");
                    qb.push_bind(name);
                    if let Some(m) = member {
                        qb.push(" AND EXISTS (SELECT 1 FROM fleet_members fm WHERE fm.fleet_id = f.id AND fm.member_id = ");
                        qb.push_bind(m).push(")");
                    }
                    match qb.build_query_scalar::<Uuid>().fetch_optional(&self.pool).await? {
                        Some(id) if same(q.fleet_id, id) => q.fleet_id = Some(id),
                        _ => return Ok(None),
                    }
                }
                let mut machines = Vec::new();
                if let Some(name) = q.machine.take() {
                    let mut qb = QueryBuilder::<$db>::new("SELECT m.id FROM machines m WHERE m.name = ");
                    qb.push_bind(name);
                    if let Some(f) = q.fleet_id {
                        qb.push(" AND m.fleet_id = ").push_bind(f);
                    }
                    if let Some(m) = member {
                        qb.push(" AND ");
                        push_member_sees_machine(&mut qb, m, "m.fleet_id", "m.id");
                    }
                    let found: Vec<Uuid> = qb.build_query_scalar().fetch_all(&self.pool).await?;
                    match (q.machine_id, found.as_slice()) {
                        (_, []) => return Ok(None),
                        (Some(given), found) if !found.contains(&given) => return Ok(None),
                        (Some(_), _) => {}
                        (None, [one]) => q.machine_id = Some(*one),
                        (None, several) => machines = several.to_vec(),
                    }
                }
                if let Some(email) = q.user.take() {
                    // Emails are stored lowercased.
                    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM members WHERE email = $1")
                        .bind(email.trim().to_lowercase())
                        .fetch_optional(&self.pool)
                        .await?;
                    match found {
                        Some(id) if same(q.user_id, id) => q.user_id = Some(id),
                        _ => return Ok(None),
                    }
                }
                Ok(Some((q, machines)))
            }

            /// One session through the viewer's visibility rule, with its gaps and, `with_clients`, its clients.
            async fn session_with(&self, viewer: &Viewer, id: Uuid, with_clients: bool) -> StoreResult<Session> {
                let mut qb = QueryBuilder::<$db>::new(SESSION_SELECT);
                qb.push(" AND s.id = ").push_bind(id);
                push_visibility(&mut qb, viewer);
                let row = qb.build().fetch_optional(&self.pool).await?;
                let row = row.ok_or_else(|| StoreError::NotFound("session".into()))?;
                let mut sessions = vec![session_from_row(&row, self.clock.now())?];
                self.fill_details(&mut sessions, with_clients).await?;
                Ok(sessions.pop().expect("one session"))
            }

            /// Fills in the gaps and, `with_clients`, every client the sessions ever had.
            async fn fill_details(&self, sessions: &mut [Session], with_clients: bool) -> StoreResult<()> {
                if sessions.is_empty() {
                    return Ok(());
                }
                let ids: Vec<Uuid> = sessions.iter().map(|s| s.id).collect();

                let mut clients: HashMap<Uuid, Vec<ClientInfo>> = HashMap::new();
                if with_clients {
                    let mut qb = QueryBuilder::<$db>::new(
                        "SELECT id, session_id, kind, name, attached_at, detached_at FROM session_clients \
                         WHERE session_id IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for id in &ids {
                        sep.push_bind(*id);
                    }
                    qb.push(") ORDER BY attached_at, id");
                    for r in qb.build().fetch_all(&self.pool).await? {
                        let sid: Uuid = r.try_get("session_id")?;
                        clients.entry(sid).or_default().push(ClientInfo {
                            id: r.try_get("id")?,
                            kind: parse_client_kind(&r.try_get::<String, _>("kind")?)?,
                            name: r.try_get("name")?,
                            attached_at: r.try_get::<Ts, _>("attached_at")?.0,
                            detached_at: r.try_get::<Option<Ts>, _>("detached_at")?.map(|t| t.0),
                        });
                    }
                }

                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT session_id, at_offset, bytes_lost, reason FROM transcript_gaps WHERE session_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in &ids {
                    sep.push_bind(*id);
                }
                qb.push(") ORDER BY at_offset");
                let mut gaps: HashMap<Uuid, Vec<GapInfo>> = HashMap::new();
                for r in qb.build().fetch_all(&self.pool).await? {
                    let sid: Uuid = r.try_get("session_id")?;
                    gaps.entry(sid).or_default().push(GapInfo {
                        at_offset: u64_col(&r, "at_offset")?,
                        bytes_lost: u64_col(&r, "bytes_lost")?,
                        reason: parse_gap_reason(&r.try_get::<String, _>("reason")?)?,
                    });
                }

                for s in sessions.iter_mut() {
                    s.clients = clients.remove(&s.id).unwrap_or_default();
                    s.transcript.gaps = gaps.remove(&s.id).unwrap_or_default();
                }
                Ok(())
            }

            async fn fleet_where(&self, column: &str, value: &str) -> StoreResult<Option<Fleet>> {
                let sql = format!("SELECT {FLEET_COLUMNS} FROM fleets WHERE {column} = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(&self.pool).await?;
                row.as_ref().map(fleet_from_row).transpose()
            }

            async fn member_where_email(&self, email: &str) -> StoreResult<Option<(Member, Option<String>)>> {
                let sql = format!("SELECT {MEMBER_COLUMNS}, password_hash FROM members WHERE email = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(email).fetch_optional(&self.pool).await?;
                match row {
                    Some(r) => Ok(Some((member_from_row(&r)?, r.try_get("password_hash")?))),
                    None => Ok(None),
                }
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            fn clock(&self) -> &dyn crate::Clock {
                &*self.clock
            }

            fn replica_id(&self) -> Uuid {
                self.replica_id
            }

            async fn publish_live(&self, notices: &[crate::notify::LiveNotice]) -> StoreResult<()> {
                self.publish_live_notices(notices).await
            }

            async fn live_notices(
                &self,
            ) -> StoreResult<Option<tokio::sync::mpsc::Receiver<crate::notify::LiveNotice>>> {
                self.listen_live_notices().await
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_fleet(&self, name: &str) -> StoreResult<Fleet> {
                let name = validate_name("fleet", name)?;
                let sql = format!(
                    "INSERT INTO fleets (id, name, created_at) VALUES ($1, $2, $3) RETURNING {FLEET_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(new_id())
                    .bind(&name)
                    .bind(Ts(self.clock.now()))
                    .fetch_one(&mut *self.write_conn().await?)
                    .await
                    .map_err(unique_as(|| format!("fleet {name:?}")))?;
                fleet_from_row(&row)
            }

            async fn fleet_by_name(&self, name: &str) -> StoreResult<Fleet> {
                self.fleet_where("name", name.trim())
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("fleet {name:?}")))
            }

            async fn list_fleets(&self) -> StoreResult<Vec<Fleet>> {
                let sql = format!("SELECT {FLEET_COLUMNS} FROM fleets ORDER BY name");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
                rows.iter().map(fleet_from_row).collect()
            }

            async fn set_transcript_limit(&self, fleet_id: Uuid, limit_bytes: i64) -> StoreResult<()> {
                if !(MIN_TRANSCRIPT_LIMIT_BYTES..=MAX_TRANSCRIPT_LIMIT_BYTES).contains(&limit_bytes) {
                    return Err(StoreError::invalid(
                        "transcript_limit",
                        format!("must be from {MIN_TRANSCRIPT_LIMIT_BYTES} bytes (64 KiB) to {MAX_TRANSCRIPT_LIMIT_BYTES} bytes (1 GiB)"),
                    ));
                }
                let done = sqlx::query("UPDATE fleets SET transcript_limit_bytes = $1 WHERE id = $2")
                    .bind(limit_bytes)
                    .bind(fleet_id)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("fleet".into()));
                }
                Ok(())
            }

            async fn create_member(&self, new: NewMember) -> StoreResult<Member> {
                let email = normalize_email(&new.email)?;
                let display_name = match new.display_name.trim() {
                    "" => email.split('@').next().unwrap_or(&email).to_string(),
                    n => n.to_string(),
                };
                let sql = format!(
                    "INSERT INTO members (id, email, display_name, password_hash, is_bot, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {MEMBER_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(new_id())
                    .bind(&email)
                    .bind(&display_name)
                    .bind(new.password_hash)
                    .bind(new.is_bot)
                    .bind(Ts(self.clock.now()))
                    .fetch_one(&mut *self.write_conn().await?)
                    .await
                    .map_err(unique_as(|| format!("member {email:?}")))?;
                member_from_row(&row)
            }

            async fn member_by_email(&self, email: &str) -> StoreResult<Member> {
                let email = normalize_email(email)?;
                self.member_where_email(&email)
                    .await?
                    .map(|(m, _)| m)
                    .ok_or_else(|| StoreError::NotFound(format!("member {email:?}")))
            }

            async fn member_by_id(&self, id: Uuid) -> StoreResult<Member> {
                let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(member_from_row).transpose()?.ok_or_else(|| StoreError::NotFound("member".into()))
            }

            async fn password_login_record(&self, email: &str) -> StoreResult<Option<(Member, Option<String>)>> {
                match normalize_email(email) {
                    Ok(email) => self.member_where_email(&email).await,
                    Err(_) => Ok(None),
                }
            }

            async fn add_fleet_member(&self, fleet_id: Uuid, member_id: Uuid, role: Role) -> StoreResult<()> {
                let existing: Option<String> =
                    sqlx::query_scalar("SELECT role FROM fleet_members WHERE fleet_id = $1 AND member_id = $2")
                        .bind(fleet_id)
                        .bind(member_id)
                        .fetch_optional(&mut *self.write_conn().await?)
                        .await?;
                if let Some(role) = existing {
                    return Err(StoreError::AlreadyExists(format!("membership (the member is already {role})")));
                }
                sqlx::query(
                    "INSERT INTO fleet_members (fleet_id, member_id, role, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(fleet_id)
                .bind(member_id)
                .bind(role.as_str())
                .bind(Ts(self.clock.now()))
                .execute(&mut *self.write_conn().await?)
                .await
                .map_err(unique_as(|| "membership".to_string()))?;
                Ok(())
            }

            async fn memberships(&self, member_id: Uuid) -> StoreResult<Vec<FleetMembership>> {
                let sql = format!(
                    "SELECT {cols}, fm.role FROM fleets f JOIN fleet_members fm ON fm.fleet_id = f.id \
                     WHERE fm.member_id = $1 ORDER BY f.name",
                    cols = FLEET_COLUMNS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ")
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(member_id).fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(FleetMembership {
                            fleet: fleet_from_row(r)?,
                            role: parse_role(&r.try_get::<String, _>("role")?)?,
                        })
                    })
                    .collect()
            }

            async fn create_machine(&self, fleet_id: Uuid, name: &str) -> StoreResult<Machine> {
                let name = validate_name("machine", name)?;
                let row = sqlx::query(
                    "INSERT INTO machines (id, fleet_id, name, created_at) VALUES ($1, $2, $3, $4) \
                     RETURNING id, fleet_id, name, created_at",
                )
                .bind(new_id())
                .bind(fleet_id)
                .bind(&name)
                .bind(Ts(self.clock.now()))
                .fetch_one(&mut *self.write_conn().await?)
                .await
                .map_err(unique_as(|| format!("machine {name:?} in this fleet")))?;
                machine_from_row(&row)
            }

            async fn machine_by_name(&self, fleet_id: Uuid, name: &str) -> StoreResult<Machine> {
                let row = sqlx::query(
                    "SELECT id, fleet_id, name, created_at FROM machines WHERE fleet_id = $1 AND name = $2",
                )
                .bind(fleet_id)
                .bind(name.trim())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref()
                    .map(machine_from_row)
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound(format!("machine {name:?} in this fleet")))
            }

            async fn grant_machine(&self, machine_id: Uuid, member_id: Uuid) -> StoreResult<()> {
                sqlx::query("INSERT INTO machine_grants (machine_id, member_id, created_at) VALUES ($1, $2, $3)")
                    .bind(machine_id)
                    .bind(member_id)
                    .bind(Ts(self.clock.now()))
                    .execute(&mut *self.write_conn().await?)
                    .await
                    .map_err(unique_as(|| "grant".to_string()))?;
                Ok(())
            }

            async fn create_api_token(&self, member_id: Uuid, name: &str, token_hash: &[u8]) -> StoreResult<Uuid> {
                let id = new_id();
                sqlx::query(
                    "INSERT INTO api_tokens (id, member_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(member_id)
                .bind(name)
                .bind(token_hash)
                .bind(Ts(self.clock.now()))
                .execute(&mut *self.write_conn().await?)
                .await
                .map_err(unique_as(|| "token".to_string()))?;
                Ok(id)
            }

            async fn member_by_api_token(&self, token_hash: &[u8]) -> StoreResult<Option<Member>> {
                let cols = MEMBER_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ");
                let sql = format!(
                    "SELECT {cols}, t.id AS token_id, t.token_hash FROM api_tokens t JOIN members m ON m.id = t.member_id \
                     WHERE t.token_hash = $1 AND t.revoked_at IS NULL"
                );
                let Some(row) =
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(token_hash).fetch_optional(&self.pool).await?
                else {
                    return Ok(None);
                };
                // The index found it by digest; compare again in constant time so the check does not rest on it.
                let stored: Vec<u8> = row.try_get("token_hash")?;
                if !crate::secrets::digests_equal(&stored, token_hash) {
                    return Ok(None);
                }
                let token_id: Uuid = row.try_get("token_id")?;
                sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                    .bind(Ts(self.clock.now()))
                    .bind(token_id)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(Some(member_from_row(&row)?))
            }

            async fn create_login_session(
                &self,
                member_id: Uuid,
                token_hash: &[u8],
                expires_at: DateTime<Utc>,
            ) -> StoreResult<()> {
                let now = self.clock.now();
                // Housekeeping on the way: expired login sessions are of no use to anyone.
                sqlx::query("DELETE FROM login_sessions WHERE expires_at <= $1").bind(Ts(now)).execute(&mut *self.write_conn().await?).await?;
                sqlx::query(
                    "INSERT INTO login_sessions (id, member_id, token_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(new_id())
                .bind(member_id)
                .bind(token_hash)
                .bind(Ts(now))
                .bind(Ts(expires_at))
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(())
            }

            async fn member_by_login_session(&self, token_hash: &[u8]) -> StoreResult<Option<Member>> {
                let cols = MEMBER_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ");
                let sql = format!(
                    "SELECT {cols}, ls.token_hash FROM login_sessions ls JOIN members m ON m.id = ls.member_id \
                     WHERE ls.token_hash = $1 AND ls.expires_at > $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(token_hash)
                    .bind(Ts(self.clock.now()))
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(r) if crate::secrets::digests_equal(&r.try_get::<Vec<u8>, _>("token_hash")?, token_hash) => {
                        Ok(Some(member_from_row(&r)?))
                    }
                    _ => Ok(None),
                }
            }

            async fn delete_login_session(&self, token_hash: &[u8]) -> StoreResult<()> {
                sqlx::query("DELETE FROM login_sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn create_session(&self, new: NewSession) -> StoreResult<Uuid> {
                if new.cols == 0 || new.rows == 0 {
                    return Err(StoreError::invalid("size", "cols and rows must be at least 1"));
                }
                let fleet_of_machine: Option<Uuid> =
                    sqlx::query_scalar("SELECT fleet_id FROM machines WHERE id = $1")
                        .bind(new.machine_id)
                        .fetch_optional(&mut *self.write_conn().await?)
                        .await?;
                match fleet_of_machine {
                    None => return Err(StoreError::NotFound("machine".into())),
                    Some(f) if f != new.fleet_id => {
                        return Err(StoreError::invalid("machine", "the machine belongs to another fleet"));
                    }
                    Some(_) => {}
                }
                let id = new_id();
                let started_at = new.started_at.map(crate::clock::truncate_ms).unwrap_or_else(|| self.clock.now());
                sqlx::query(
                    "INSERT INTO sessions (id, fleet_id, machine_id, started_by, command, state, started_at, cols, rows, \
                     chat_thread_id, last_seen_at) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10)",
                )
                .bind(id)
                .bind(new.fleet_id)
                .bind(new.machine_id)
                .bind(new.started_by)
                .bind(&new.command)
                .bind(Ts(started_at))
                .bind(i32::from(new.cols))
                .bind(i32::from(new.rows))
                .bind(new.chat_thread_id)
                .bind(Ts(self.clock.now()))
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(id)
            }

            async fn append_batch(
                &self,
                batch: &[(Uuid, Vec<TranscriptWrite>)],
            ) -> StoreResult<Vec<AppendOutcome>> {
                self.group_commit(batch).await
            }

            async fn end_session(&self, session_id: Uuid, end: SessionEnd) -> StoreResult<()> {
                let ended_at = end.ended_at.map(crate::clock::truncate_ms).unwrap_or_else(|| self.clock.now());
                let done = sqlx::query(
                    "UPDATE sessions SET state = 'ended', ended_at = $1, exit_code = $2, exit_signal = $3, \
                     end_reason = $4 WHERE id = $5 AND state = 'active'",
                )
                .bind(Ts(ended_at))
                .bind(end.exit_code)
                .bind(end.exit_signal)
                .bind(end.reason.as_str())
                .bind(session_id)
                .execute(&mut *self.write_conn().await?)
                .await?;
                if done.rows_affected() == 0 {
                    let exists: Option<String> = sqlx::query_scalar("SELECT state FROM sessions WHERE id = $1")
                        .bind(session_id)
                        .fetch_optional(&mut *self.write_conn().await?)
                        .await?;
                    return match exists {
                        None => Err(StoreError::NotFound("session".into())),
                        Some(_) => Err(StoreError::Conflict("the session has already ended".into())),
                    };
                }
                // Whoever was attached is not any more.
                sqlx::query("UPDATE session_clients SET detached_at = $1 WHERE session_id = $2 AND detached_at IS NULL")
                    .bind(Ts(ended_at))
                    .bind(session_id)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn attach_client(&self, session_id: Uuid, client: NewClient) -> StoreResult<Uuid> {
                let name = validate_name("name", &client.name)?;
                let id = new_id();
                let done = sqlx::query(
                    "INSERT INTO session_clients (id, session_id, kind, name, member_id, attached_at) \
                     SELECT $1, id, $2, $3, $4, $5 FROM sessions WHERE id = $6",
                )
                .bind(id)
                .bind(client.kind.as_str())
                .bind(&name)
                .bind(client.member_id)
                .bind(Ts(self.clock.now()))
                .bind(session_id)
                .execute(&mut *self.write_conn().await?)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("session".into()));
                }
                Ok(id)
            }

            async fn detach_client(&self, session_id: Uuid, client_id: Uuid, by: Option<Uuid>) -> StoreResult<()> {
                let mut qb = QueryBuilder::<$db>::new("UPDATE session_clients SET detached_at = ");
                qb.push_bind(Ts(self.clock.now()));
                qb.push(" WHERE id = ").push_bind(client_id);
                qb.push(" AND session_id = ").push_bind(session_id);
                qb.push(" AND detached_at IS NULL");
                if let Some(member) = by {
                    qb.push(" AND member_id = ").push_bind(member);
                }
                if qb.build().execute(&mut *self.write_conn().await?).await?.rows_affected() == 0 {
                    return Err(StoreError::NotFound("attached client".into()));
                }
                Ok(())
            }

            async fn reopen_lost_session(&self, session_id: Uuid) -> StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE sessions SET state = 'active', ended_at = NULL, end_reason = NULL, last_seen_at = $1 \
                     WHERE id = $2 AND state = 'ended' AND end_reason = 'recorder_lost'",
                )
                .bind(Ts(self.clock.now()))
                .bind(session_id)
                .execute(&mut *self.write_conn().await?)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict("only a session whose recorder was lost can be reopened".into()));
                }
                Ok(())
            }

            async fn touch_sessions(&self, session_ids: &[Uuid]) -> StoreResult<()> {
                let now = Ts(self.clock.now());
                for part in session_ids.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = QueryBuilder::<$db>::new("UPDATE sessions SET last_seen_at = ");
                    qb.push_bind(now).push(" WHERE state = 'active' AND id IN (");
                    let mut ids = qb.separated(", ");
                    for id in part {
                        ids.push_bind(*id);
                    }
                    qb.push(")");
                    qb.build().execute(&mut *self.write_conn().await?).await?;
                }
                Ok(())
            }

            async fn end_lost_sessions(&self, silent_since: DateTime<Utc>) -> StoreResult<Vec<Uuid>> {
                let mut conn = self.write_conn().await?;
                let mut tx = <$store>::begin_write(&mut conn).await?;
                let lost: Vec<Uuid> = sqlx::query_scalar(
                    "UPDATE sessions SET state = 'ended', ended_at = last_seen_at, end_reason = 'recorder_lost', \
                     exit_code = NULL WHERE state = 'active' AND last_seen_at < $1 RETURNING id",
                )
                .bind(Ts(crate::clock::truncate_ms(silent_since)))
                .fetch_all(&mut *tx)
                .await?;
                for id in &lost {
                    sqlx::query(
                        "UPDATE session_clients SET detached_at = CASE WHEN attached_at > s.ended_at \
                         THEN attached_at ELSE s.ended_at END FROM (SELECT ended_at FROM sessions WHERE id = $1) s \
                         WHERE session_id = $1 AND detached_at IS NULL",
                    )
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(lost)
            }

            async fn recording_state(&self, session_id: Uuid) -> StoreResult<RecordingState> {
                let r = sqlx::query(
                    "SELECT id, fleet_id, machine_id, started_by, started_at, state, end_reason, exit_code, exit_signal, \
                     total_bytes FROM sessions WHERE id = $1",
                )
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound("session".into()))?;
                let end_reason: Option<String> = r.try_get("end_reason")?;
                Ok(RecordingState {
                    session_id: r.try_get("id")?,
                    fleet_id: r.try_get("fleet_id")?,
                    machine_id: r.try_get("machine_id")?,
                    started_by: r.try_get("started_by")?,
                    started_at: r.try_get::<Ts, _>("started_at")?.0,
                    state: parse_state(&r.try_get::<String, _>("state")?)?,
                    end_reason: end_reason.as_deref().map(parse_end_reason).transpose()?,
                    exit_code: r.try_get("exit_code")?,
                    exit_signal: r.try_get("exit_signal")?,
                    total_bytes: u64_col(&r, "total_bytes")?,
                })
            }

            async fn recordable_machine(
                &self,
                member_id: Uuid,
                machine: &str,
                fleet: Option<&str>,
            ) -> StoreResult<Machine> {
                let name = validate_name("machine", machine)?;
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT m.id, m.fleet_id, m.name, m.created_at, f.name AS fleet_name, \
                     (fm.role IN ('owner', 'admin') OR EXISTS (SELECT 1 FROM machine_grants g \
                      WHERE g.machine_id = m.id AND g.member_id = fm.member_id)) AS may_record \
                     FROM machines m JOIN fleets f ON f.id = m.fleet_id \
                     JOIN fleet_members fm ON fm.fleet_id = m.fleet_id AND fm.member_id = ",
                );
                qb.push_bind(member_id);
                qb.push(" WHERE m.name = ").push_bind(&name);
                if let Some(fleet) = fleet {
                    qb.push(" AND f.name = ").push_bind(fleet.trim().to_string());
                }
                qb.push(" ORDER BY f.name");
                let rows = qb.build().fetch_all(&self.pool).await?;
                let in_fleet = fleet.map(|f| format!(" in fleet {f:?}")).unwrap_or_default();
                match rows.as_slice() {
                    [] => Err(StoreError::NotFound(format!("machine {name:?}{in_fleet} among your fleets"))),
                    [r] => {
                        if !r.try_get::<bool, _>("may_record")? {
                            return Err(StoreError::Forbidden(format!(
                                "you may not record on machine {name:?}: ask a fleet owner or admin to grant it to you"
                            )));
                        }
                        machine_from_row(r)
                    }
                    several => {
                        let fleets: Vec<String> =
                            several.iter().map(|r| r.try_get::<String, _>("fleet_name")).collect::<Result<_, _>>()?;
                        Err(StoreError::invalid(
                            "fleet",
                            format!("machine {name:?} exists in fleets {}; say which fleet", fleets.join(", ")),
                        ))
                    }
                }
            }

            async fn create_chat_thread(&self, member_id: Uuid, fleet_id: Uuid, title: &str) -> StoreResult<ChatThread> {
                let title = title.trim();
                if title.is_empty() || title.chars().count() > 200 {
                    return Err(StoreError::invalid("title", "must be 1 to 200 characters"));
                }
                let is_member: Option<String> =
                    sqlx::query_scalar("SELECT role FROM fleet_members WHERE fleet_id = $1 AND member_id = $2")
                        .bind(fleet_id)
                        .bind(member_id)
                        .fetch_optional(&mut *self.write_conn().await?)
                        .await?;
                if is_member.is_none() {
                    return Err(StoreError::NotFound("fleet".into()));
                }
                let id = new_id();
                sqlx::query("INSERT INTO chat_threads (id, fleet_id, title, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(id)
                    .bind(fleet_id)
                    .bind(title)
                    .bind(member_id)
                    .bind(Ts(self.clock.now()))
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                self.chat_thread(&Viewer::Member(member_id), id).await
            }

            async fn post_chat_message(&self, member_id: Uuid, thread_id: Uuid, body: &str) -> StoreResult<ChatMessage> {
                if body.trim().is_empty() {
                    return Err(StoreError::invalid("body", "must not be empty"));
                }
                if body.len() > 64 * 1024 {
                    return Err(StoreError::invalid("body", "must be at most 64 KiB"));
                }
                // Only members of the thread's fleet may post; others see no thread at all.
                self.chat_thread(&Viewer::Member(member_id), thread_id).await?;
                let id = new_id();
                let now = self.clock.now();
                sqlx::query("INSERT INTO chat_messages (id, thread_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(id)
                    .bind(thread_id)
                    .bind(member_id)
                    .bind(body)
                    .bind(Ts(now))
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                let author = self.member_by_id(member_id).await?;
                Ok(ChatMessage { id, author: author.email, author_name: author.display_name, body: body.to_string(), created_at: now })
            }

            async fn chat_thread(&self, viewer: &Viewer, thread_id: Uuid) -> StoreResult<ChatThread> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT t.id, t.fleet_id, f.name AS fleet_name, t.title, u.email AS creator, t.created_at \
                     FROM chat_threads t JOIN fleets f ON f.id = t.fleet_id JOIN members u ON u.id = t.created_by \
                     WHERE t.id = ",
                );
                qb.push_bind(thread_id);
                match viewer {
                    Viewer::Member(member_id) => {
                        qb.push(" AND EXISTS (SELECT 1 FROM fleet_members fm WHERE fm.fleet_id = t.fleet_id AND fm.member_id = ");
                        qb.push_bind(*member_id);
                        qb.push(")");
                    }
                    Viewer::Share { session_id } => {
                        qb.push(" AND EXISTS (SELECT 1 FROM sessions s WHERE s.chat_thread_id = t.id AND s.id = ");
                        qb.push_bind(*session_id);
                        qb.push(")");
                    }
                }
                let r = qb.build().fetch_optional(&self.pool).await?.ok_or_else(|| StoreError::NotFound("chat thread".into()))?;
                let messages = sqlx::query(
                    "SELECT c.id, u.email, u.display_name, c.body, c.created_at FROM chat_messages c \
                     JOIN members u ON u.id = c.author_id WHERE c.thread_id = $1 ORDER BY c.created_at, c.id",
                )
                .bind(thread_id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|m| {
                    Ok(ChatMessage {
                        id: m.try_get("id")?,
                        author: m.try_get("email")?,
                        author_name: m.try_get("display_name")?,
                        body: m.try_get("body")?,
                        created_at: m.try_get::<Ts, _>("created_at")?.0,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
                Ok(ChatThread {
                    id: r.try_get("id")?,
                    fleet: r.try_get("fleet_name")?,
                    fleet_id: r.try_get("fleet_id")?,
                    title: r.try_get("title")?,
                    created_by: r.try_get("creator")?,
                    created_at: r.try_get::<Ts, _>("created_at")?.0,
                    messages,
                })
            }

            async fn list_sessions(&self, viewer: &Viewer, query: &SessionQuery) -> StoreResult<SessionList> {
                let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE) as i64;
                let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
                check_window(query)?;
                let Some((query, machines)) = self.resolve_names(viewer, query).await? else {
                    return Ok(SessionList { sessions: Vec::new(), next_cursor: None });
                };

                let mut qb = QueryBuilder::<$db>::new(SESSION_SELECT);
                push_visibility(&mut qb, viewer);
                push_filters(&mut qb, &query, &machines, true);
                if let Some(c) = cursor {
                    let at = Ts(DateTime::from_timestamp_millis(c.started_at_ms)
                        .ok_or_else(|| StoreError::invalid("cursor", "not a cursor this server issued"))?);
                    qb.push(" AND (s.started_at < ").push_bind(at);
                    qb.push(" OR (s.started_at = ").push_bind(at);
                    qb.push(" AND s.id < ").push_bind(c.id);
                    qb.push("))");
                }
                // One row more than asked tells whether there is a next page.
                qb.push(" ORDER BY s.started_at DESC, s.id DESC LIMIT ").push_bind(limit + 1);

                let now = self.clock.now();
                let rows = qb.build().fetch_all(&self.pool).await?;
                let mut sessions = rows.iter().map(|r| session_from_row(r, now)).collect::<StoreResult<Vec<_>>>()?;
                let next_cursor = if sessions.len() as i64 > limit {
                    sessions.truncate(limit as usize);
                    sessions.last().map(|s| Cursor { started_at_ms: s.started_at.timestamp_millis(), id: s.id }.encode())
                } else {
                    None
                };
                self.fill_details(&mut sessions, true).await?;
                Ok(SessionList { sessions, next_cursor })
            }

            async fn session_counts(&self, viewer: &Viewer, query: &SessionQuery) -> StoreResult<Vec<SessionCount>> {
                check_window(query)?;
                let Some((query, machines)) = self.resolve_names(viewer, query).await? else {
                    return Ok(Vec::new());
                };
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT m.name AS machine_name, u.email AS user_email, u.display_name AS user_name, s.state, \
                     COUNT(*) AS sessions FROM sessions s \
                     JOIN machines m ON m.id = s.machine_id JOIN members u ON u.id = s.started_by WHERE 1 = 1",
                );
                push_visibility(&mut qb, viewer);
                push_filters(&mut qb, &query, &machines, false);
                qb.push(" GROUP BY m.name, u.email, u.display_name, s.state ORDER BY m.name, u.email, s.state");
                qb.build()
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(SessionCount {
                            machine: r.try_get("machine_name")?,
                            user: r.try_get("user_email")?,
                            user_name: r.try_get("user_name")?,
                            state: parse_state(&r.try_get::<String, _>("state")?)?,
                            sessions: r.try_get::<i64, _>("sessions")?.max(0) as u64,
                        })
                    })
                    .collect()
            }

            async fn session(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Session> {
                self.session_with(viewer, id, true).await
            }

            async fn session_head(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Session> {
                self.session_with(viewer, id, false).await
            }

            async fn read_transcript_page(
                &self,
                viewer: &Viewer,
                id: Uuid,
                from_offset: u64,
                max_bytes: usize,
            ) -> StoreResult<TranscriptSlice> {
                // Visibility, the length and the gaps; not the clients (a session watched by many has many).
                let session = self.session_head(viewer, id).await?;
                // Everything below is bounded by the length read with the session: output committed after that
                // read (chunks, gaps, resizes past it) belongs to the next read, so that one slice never pairs
                // new chunks with an old list of gaps.
                let known_end = session.transcript.total_bytes;
                // Chunks are read in pages so that a bounded read does not fetch the whole ring buffer.
                let mut start_offset = None;
                let mut bytes = Vec::new();
                let mut next = from_offset;
                let mut more = false;
                // Where the next page starts, when this one stops early: resizes from there on belong to it.
                let mut next_page: Option<u64> = None;
                'pages: loop {
                    let rows = sqlx::query(
                        "SELECT byte_offset, bytes FROM transcript_chunks WHERE session_id = $1 \
                         AND byte_offset + LENGTH(bytes) > $2 AND byte_offset < $3 ORDER BY byte_offset LIMIT 256",
                    )
                    .bind(id)
                    .bind(next as i64)
                    .bind(known_end as i64)
                    .fetch_all(&self.pool)
                    .await?;
                    if rows.is_empty() {
                        break;
                    }
                    for r in rows {
                        let offset = u64_col(&r, "byte_offset")?;
                        // At least one chunk per page, whatever max_bytes says.
                        if !bytes.is_empty() && bytes.len() >= max_bytes {
                            more = true;
                            next_page = Some(offset);
                            break 'pages;
                        }
                        let chunk: Vec<u8> = r.try_get("bytes")?;
                        // The first chunk may begin before the requested offset: cut it there.
                        let skip = next.saturating_sub(offset) as usize;
                        start_offset.get_or_insert(offset + skip as u64);
                        bytes.extend_from_slice(&chunk[skip.min(chunk.len())..]);
                        next = offset + chunk.len() as u64;
                    }
                }
                let total = session.transcript.total_bytes;
                // Nothing retained from there on: the slice starts where the retained part would.
                let start_offset = start_offset.unwrap_or(from_offset.max(total));
                // Resizes up to where the next page starts (past declared gaps too), or all of them on the last page.
                let resizes = sqlx::query(
                    "SELECT at_offset, cols, rows FROM transcript_resizes WHERE session_id = $1 AND at_offset >= $2 \
                     AND at_offset < $3 ORDER BY at_offset, t_ms",
                )
                .bind(id)
                .bind(from_offset as i64)
                .bind(next_page.map_or(i64::MAX, |o| o as i64))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    Ok(ResizeAt {
                        offset: u64_col(r, "at_offset")?,
                        cols: r.try_get::<i32, _>("cols")? as u16,
                        rows: r.try_get::<i32, _>("rows")? as u16,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
                let size_before = sqlx::query(
                    "SELECT at_offset, cols, rows FROM transcript_resizes WHERE session_id = $1 AND at_offset < $2 \
                     ORDER BY at_offset DESC, t_ms DESC LIMIT 1",
                )
                .bind(id)
                .bind(from_offset as i64)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| -> StoreResult<ResizeAt> {
                    Ok(ResizeAt {
                        offset: u64_col(&r, "at_offset")?,
                        cols: r.try_get::<i32, _>("cols")? as u16,
                        rows: r.try_get::<i32, _>("rows")? as u16,
                    })
                })
                .transpose()?;
                Ok(TranscriptSlice {
                    size_before,
                    start_offset,
                    bytes,
                    total_bytes: total,
                    truncated_bytes: session.transcript.truncated_bytes,
                    gaps: session
                        .transcript
                        .gaps
                        .iter()
                        .filter(|g| g.at_offset < known_end)
                        .map(|g| Gap { at_offset: g.at_offset, bytes_lost: g.bytes_lost, reason: g.reason })
                        .collect(),
                    resizes: resizes.into_iter().filter(|r| r.offset <= known_end).collect(),
                    more,
                })
            }
        }
    };
}

pub(crate) use impl_sql_store;
