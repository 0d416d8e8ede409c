//! Checkpoints of the SQLite write-ahead log, off the writer's path.
//!
//! SQLite checkpoints in the connection that commits once the log passes `wal_autocheckpoint` pages: the commit
//! that crosses it copies the log into the database and syncs both files before it returns, and every write
//! queued behind it waits (tens of milliseconds with a thousand sessions writing). Here a connection of its own
//! copies the log in the background, often enough that little is left for the committing connection's own
//! checkpoint, which stays on (at a higher threshold) because only it can let the log start over from the
//! beginning: a background checkpoint never catches up with a log that is written to all the time.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Log pages after which the committing connection checkpoints and the log starts over: 128 MiB of 4 KiB pages.
/// That checkpoint has little left to copy but still syncs both files (~20 ms here); with a thousand sessions
/// writing (about 80 MB of log a second) a smaller threshold made it a stall every 0.4 s, this one every ~1.6 s
/// (BENCHMARKS.md). A quieter server's log never gets near it: the background pass catches up between commits.
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 32_768;
/// How often the background connection copies what was committed since its last pass.
const INTERVAL: Duration = Duration::from_millis(100);

/// Runs until the returned handle is aborted (the store is dropped).
pub(crate) async fn spawn(options: &SqliteConnectOptions) -> crate::StoreResult<tokio::task::JoinHandle<()>> {
    let mut conn = options.clone().connect().await?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // PASSIVE: copies what no reader still needs, never waits for or blocks the writer.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                tracing::warn!("background WAL checkpoint: {e}");
                if conn.ping().await.is_err() {
                    return;
                }
            }
        }
    }))
}
