//! The group commit's common case, run on the writer's own thread against the raw SQLite connection.
//!
//! Through sqlx every statement is a hand-over to the connection's worker thread and back: two thread wake-ups,
//! each of which waits for a core when the machine is busy. With a thousand sessions writing, the writer spent
//! most of its time waiting on those rather than in SQLite (BENCHMARKS.md, (b) on SQLite). Here sqlx lends the
//! connection (`SqliteConnection::lock_handle`: one hand-over) and the whole commit runs here through rusqlite,
//! one prepared statement per row.
//!
//! Only plain appends take this path: a batch that resends stored bytes or fills a ring buffer (it must read and
//! trim the transcript) is rolled back here and committed by the general path (`SqliteStore::group_commit_on`),
//! which shares the checks (`apply_batch`) with it and runs its reads of where the sessions stand and its writes
//! here too (`begin_and_read_states`, `write_and_commit`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::params;
use sqlx::sqlite::LockedSqliteHandle;
use sqlx::{Connection, SqliteConnection};
use uuid::Uuid;

use super::{
    APPEND_STATE_SELECT, AppendOutcome, AppendState, PendingRows, TranscriptWrite, apply_batch, batch_ids,
    sorted_states,
};

/// Commits `batch` if it is plain appends: `None` (nothing written) if it needs the general path.
pub(super) async fn try_group_commit(
    conn: &mut SqliteConnection,
    batch: &[(Uuid, Vec<TranscriptWrite>)],
    now: DateTime<Utc>,
) -> crate::StoreResult<Option<Vec<AppendOutcome>>> {
    let ids = batch_ids(batch);
    let (mut handle, loan) = lend(conn).await?;
    let result = commit_if_plain(&mut handle, &ids, batch, now).await;
    drop(handle);
    loan.settle(conn).await;
    result
}

async fn commit_if_plain(
    handle: &mut LockedSqliteHandle<'_>,
    ids: &[Uuid],
    batch: &[(Uuid, Vec<TranscriptWrite>)],
    now: DateTime<Utc>,
) -> crate::StoreResult<Option<Vec<AppendOutcome>>> {
    let db = raw(handle)?;
    // The write lock up front (see `SqliteStore::begin_write`).
    db.execute_batch("BEGIN IMMEDIATE")?;
    // (`db` is not Sync: no borrow of it may live across the await.)
    let planned = match read_states(&db, ids) {
        Ok(mut states) => apply_batch(None, batch, &mut states).await.and_then(|plan| match plan {
            Some((outcomes, pending)) => write(&db, &pending, &states, now).map(|()| Some(outcomes)),
            None => Ok(None),
        }),
        Err(e) => Err(e),
    };
    let end = if matches!(planned, Ok(Some(_))) { "COMMIT" } else { "ROLLBACK" };
    match db.execute_batch(end) {
        Ok(()) => planned,
        // A failed COMMIT leaves the transaction open: roll it back before the connection goes back to sqlx.
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            planned.and(Err(e.into()))
        }
    }
}

/// The general path's writes (`SqliteStore::group_commit_on`), planned through sqlx inside the transaction
/// `begin_and_read_states` opened: written here too, and committed. On an error the transaction is left for the caller to roll back.
pub(super) async fn write_and_commit(
    conn: &mut SqliteConnection,
    pending: &PendingRows<'_>,
    states: &HashMap<Uuid, AppendState>,
    now: DateTime<Utc>,
) -> crate::StoreResult<()> {
    on_raw(conn, |db| {
        write(db, pending, states, now)?;
        Ok(db.execute_batch("COMMIT")?)
    })
    .await
}

/// The general path's start: its transaction, with the write lock up front (see `SqliteStore::begin_write`), and
/// where the sessions stand. On an error the transaction is left for the caller to roll back.
pub(super) async fn begin_and_read_states(
    conn: &mut SqliteConnection,
    ids: &[Uuid],
) -> crate::StoreResult<HashMap<Uuid, AppendState>> {
    on_raw(conn, |db| {
        db.execute_batch("BEGIN IMMEDIATE")?;
        read_states(db, ids)
    })
    .await
}

/// `f` on the raw connection sqlx lends, then the loan settled.
async fn on_raw<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&rusqlite::Connection) -> crate::StoreResult<T>,
) -> crate::StoreResult<T> {
    let (mut handle, loan) = lend(conn).await?;
    let result = raw(&mut handle).map_err(crate::StoreError::from).and_then(|db| f(&db));
    drop(handle);
    loan.settle(conn).await;
    result
}

/// A loan of the raw connection from sqlx's worker thread.
///
/// sqlx 0.9.1 lends it by queueing a command that tells the worker to let go of its lock, while waiting for that
/// lock. A loan comes at once when the worker has just let go of the lock for the last loan's command and has not
/// yet started to wait for it again (its fair lock grants a newcomer at once only when nobody waits): then this
/// loan's command is left over, and every later loan is granted by the command left over before it and leaves its
/// own, so the count only grows. Once the worker's queue (50 commands) is full, a loan holds the lock while it
/// waits to queue its command, and the worker waits for the lock: both hang (seen in the store's tests, one run
/// in a few). So a loan that came at once is followed by a ping, which returns once the worker has worked through
/// its queue and holds its lock again: at most one command is ever left over. (A loan whose task was dropped
/// halfway cannot settle, but it leaves `Writer::open_transaction` set, and the rollback that the connection's
/// next user sends first works through the queue the same way.)
struct Loan {
    came_at_once: bool,
}

async fn lend(conn: &mut SqliteConnection) -> sqlx::Result<(LockedSqliteHandle<'_>, Loan)> {
    let mut lending = std::pin::pin!(conn.lock_handle());
    let mut first_poll = true;
    std::future::poll_fn(|cx| {
        let poll = lending.as_mut().poll(cx);
        let came_at_once = std::mem::take(&mut first_poll);
        poll.map(|handle| handle.map(|handle| (handle, Loan { came_at_once })))
    })
    .await
}

impl Loan {
    /// After the handle is dropped. A failed ping means the worker is gone, which the connection's next user
    /// hears of: the commit's own outcome stands.
    async fn settle(self, conn: &mut SqliteConnection) {
        if self.came_at_once
            && let Err(e) = conn.ping().await
        {
            tracing::warn!("the SQLite write connection did not answer after lending its handle: {e}");
        }
    }
}

/// rusqlite on the connection sqlx lent. Drop it before `handle`, which it borrows from.
fn raw(handle: &mut LockedSqliteHandle<'_>) -> rusqlite::Result<rusqlite::Connection> {
    // SAFETY: sqlx's worker thread does not touch the connection while `handle` is held, and the returned
    // connection, which does not close it, is dropped first (with the statements it prepared): both callers
    // declare it after `handle`.
    unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }
}

/// Where each session stands, with its fleet's ring-buffer size. Sessions that do not exist are left out
/// (`apply_batch` refuses their writes).
fn read_states(db: &rusqlite::Connection, ids: &[Uuid]) -> crate::StoreResult<HashMap<Uuid, AppendState>> {
    let mut read = db.prepare(&format!("{APPEND_STATE_SELECT} WHERE s.id = ?1"))?;
    let mut states = HashMap::with_capacity(ids.len());
    for id in ids {
        let state = read.query_row([id.as_bytes().as_slice()], |r| {
            let n = |column| r.get::<_, i64>(column).map(|v| v as u64);
            Ok(AppendState {
                total: n("total_bytes")?,
                loaded_total: n("total_bytes")?,
                retained: n("retained_bytes")?,
                truncated: n("truncated_bytes")?,
                lost: n("lost_bytes")?,
                retained_from: n("retained_from")?,
                limit: n("limit_bytes")?,
            })
        });
        match state {
            Ok(state) => {
                states.insert(*id, state);
            }
            Err(rusqlite::Error::QueryReturnedNoRows) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(states)
}

/// The batch's rows, and every session's new lengths (and that its recorder was heard from `now`).
fn write(
    db: &rusqlite::Connection,
    pending: &PendingRows<'_>,
    states: &HashMap<Uuid, AppendState>,
    now: DateTime<Utc>,
) -> crate::StoreResult<()> {
    if !pending.chunks.is_empty() {
        let mut insert =
            db.prepare("INSERT INTO transcript_chunks (session_id, byte_offset, t_ms, bytes) VALUES (?1, ?2, ?3, ?4)")?;
        for (id, offset, t_ms, bytes) in &pending.chunks {
            insert.execute(params![id.as_bytes().as_slice(), *offset as i64, *t_ms as i64, bytes])?;
        }
    }
    if !pending.gaps.is_empty() {
        let mut insert = db.prepare(
            "INSERT INTO transcript_gaps (session_id, at_offset, bytes_lost, reason) \
             VALUES (?1, ?2, ?3, 'recorder_offline')",
        )?;
        for (id, at, lost) in &pending.gaps {
            insert.execute(params![id.as_bytes().as_slice(), *at as i64, *lost as i64])?;
        }
    }
    if !pending.resizes.is_empty() {
        // A resent resize is the same row again.
        let mut insert = db.prepare(
            "INSERT INTO transcript_resizes (session_id, at_offset, t_ms, cols, rows) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
        )?;
        for (id, at, t_ms, cols, rows) in &pending.resizes {
            insert.execute(params![id.as_bytes().as_slice(), *at as i64, *t_ms as i64, cols, rows])?;
        }
    }
    let mut update = db.prepare(
        "UPDATE sessions SET total_bytes = ?2, retained_bytes = ?3, truncated_bytes = ?4, lost_bytes = ?5, \
         retained_from = ?6, last_seen_at = ?7 WHERE id = ?1",
    )?;
    let now_ms = now.timestamp_millis();
    for (id, s) in sorted_states(states) {
        update.execute(params![
            id.as_bytes().as_slice(),
            s.total as i64,
            s.retained as i64,
            s.truncated as i64,
            s.lost as i64,
            s.retained_from as i64,
            now_ms
        ])?;
    }
    Ok(())
}
