//! Checkpoints of the SQLite write-ahead log, off the writer's path.
//!
//! SQLite checkpoints in the connection that commits once the log passes `wal_autocheckpoint` pages: the commit
//! that crosses it copies the log into the database and syncs both files before it returns, and every write
//! queued behind it waits (20-30 ms with a thousand sessions writing, several times a second). Here a connection
//! of its own copies the log in the background every 100 ms, never blocking the writer. That alone never lets the
//! log start over (with writes all the time there is always something it has not copied yet), so once the log is
//! long the pass finishes on the writer's own connection, in its turn among the writes: by then a few
//! milliseconds of log are left to copy, and with everything copied the next write starts the log over.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

/// Backstop: log pages after which the committing connection checkpoints by itself (128 MiB of 4 KiB pages).
/// Only reached if the passes below cannot keep up.
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 32_768;
/// Log pages after which a pass finishes on the writer's connection so that the log can start over (16 MiB).
const RESTART_PAGES: i64 = 4096;
/// How often the background connection copies what was committed since its last pass.
const INTERVAL: Duration = Duration::from_millis(100);

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
    // PASSIVE: copies what no reader still needs; never waits for or blocks the writer.
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?;
    let log_pages: i64 = row.try_get(1)?;
    if log_pages >= RESTART_PAGES {
        // On the writer's connection no write can come in between: the rest is copied and the log restarts.
        let mut writer = writer.lock().await;
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(writer.conn().await?).await?;
    }
    Ok(())
}
