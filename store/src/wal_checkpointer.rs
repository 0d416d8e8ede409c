//! Checkpoints of the SQLite write-ahead log, off the writer's path.
//!
//! SQLite checkpoints in the connection that commits once the log passes `wal_autocheckpoint` pages: the commit
//! that crosses it copies the log into the database and syncs both files before it returns, and every write
//! queued behind it waits (20-30 ms with a thousand sessions writing, several times a second). Here a connection
//! of its own copies the log in the background every second, never blocking the writer. That alone never lets the
//! log start over (with writes all the time there is always something it has not copied yet), so once the log is
//! long the pass finishes on the writer's own connection, in its turn among the writes, after more background
//! passes have copied what came in meanwhile: the writer's pass, which holds up every write until it has copied
//! and synced, has a few milliseconds of log left, and with everything copied the next write starts the log over.
//!
//! Every second rather than more often: each pass copies the newest version of each page the log holds, and a
//! page written many times (a session's row, the leaf its chunks go to) is copied once per pass. With a thousand
//! sessions writing, a pass every 100 ms copied nearly as many pages as were committed.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

/// Backstop: log pages after which the committing connection checkpoints by itself (256 MiB of 4 KiB pages), a
/// stall of every write (60-70 ms measured). Only reached if the passes below cannot keep up: it must stay well
/// above `RESTART_PAGES` plus what a second of writes adds (~20,000 pages with a thousand sessions writing; at
/// 32,768 a log just short of `RESTART_PAGES` at one pass crossed it before the next).
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 65_536;
/// Log pages after which a pass finishes on the writer's connection so that the log can start over (32 MiB).
const RESTART_PAGES: i64 = 8_192;
/// A background pass this short leaves little for the writer's pass to copy.
const CATCH_UP: Duration = Duration::from_millis(3);
/// Background passes before the writer's, at most.
const MAX_CATCH_UP_ROUNDS: u32 = 4;
/// How often the background connection copies what was committed since its last pass.
const INTERVAL: Duration = Duration::from_millis(1000);

/// Runs until the returned handle is aborted (the store is dropped).
pub(crate) async fn spawn(
    options: &SqliteConnectOptions,
    writer: crate::sqlite::WriteConnection,
) -> crate::StoreResult<tokio::task::JoinHandle<()>> {
    let mut conn = options.clone().connect().await?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = pass(&mut conn, &writer).await {
                tracing::warn!("background WAL checkpoint: {e}");
                if conn.ping().await.is_err() {
                    return;
                }
            }
        }
    }))
}

async fn pass(conn: &mut SqliteConnection, writer: &crate::sqlite::WriteConnection) -> sqlx::Result<()> {
    let mut rounds = 0;
    loop {
        // PASSIVE: copies what no reader still needs; never waits for or blocks the writer.
        let started = std::time::Instant::now();
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?;
        let log_pages: i64 = row.try_get(1)?;
        let took = started.elapsed();
        tracing::debug!(log_pages, us = took.as_micros() as u64, "background WAL checkpoint");
        if log_pages < RESTART_PAGES {
            return Ok(());
        }
        rounds += 1;
        // What was committed while this pass ran is left to copy. The writer's own pass blocks every write until
        // it is done (copy and sync), so while that is much the background copies it first: each pass has less
        // to copy than the last.
        if took <= CATCH_UP || rounds == MAX_CATCH_UP_ROUNDS {
            break;
        }
    }
    // On the writer's connection no write can come in between: the rest is copied and the log restarts.
    let mut writer = writer.lock().await;
    let started = std::time::Instant::now();
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(writer.conn().await?).await?;
    tracing::debug!(us = started.elapsed().as_micros() as u64, "WAL checkpoint on the writer's connection");
    Ok(())
}
