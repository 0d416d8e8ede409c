//! Checkpoints of the SQLite write-ahead log, off the writer's path.
//!
//! SQLite checkpoints in the connection that commits once the log passes `wal_autocheckpoint` pages: the commit
//! that crosses it copies the log into the database and syncs both files before it returns, and every write
//! queued behind it waits (20-30 ms with a thousand sessions writing, several times a second). Here a thread with a
//! connection of its own copies the log in the background every second, never blocking the writer. That alone
//! never lets the log start over (with writes all the time there is always something it has not copied yet), so
//! once the log is long the last pass runs while holding the writer's lock, after more background passes have
//! copied what came in meanwhile and the database file has been synced: the pass that holds up every write has a
//! few milliseconds of log left to copy and sync, and with everything copied the next write starts the log over.
//!
//! Every second rather than more often: each pass copies the newest version of each page the log holds, and a
//! page written many times (a session's row, the leaf its chunks go to) is copied once per pass. With a thousand
//! sessions writing, a pass every 100 ms copied nearly as many pages as were committed.
//!
//! Its own thread and a rusqlite connection (the same bundled SQLite as sqlx's, so SQLite's per-file locks are
//! shared): the database file's sync below is a blocking call of ~10 ms, which must not run on the async runtime.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rusqlite::ffi;

/// Backstop: log pages after which the committing connection checkpoints by itself (256 MiB of 4 KiB pages), a
/// stall of every write (60-70 ms measured). Only reached if the passes below cannot keep up: it must stay well
/// above `RESTART_PAGES` plus what a second of writes adds (~20,000 pages with a thousand sessions writing; at
/// 32,768 a log just short of `RESTART_PAGES` at one pass crossed it before the next).
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 65_536;
/// Log pages after which a pass finishes holding the writer's lock so that the log can start over (32 MiB).
const RESTART_PAGES: i64 = 8_192;
/// A background pass this short leaves little for the pass that holds the writer's lock.
const CATCH_UP: Duration = Duration::from_millis(3);
/// Background passes before the one holding the writer's lock, at most.
const MAX_CATCH_UP_ROUNDS: u32 = 4;
/// How often the background connection copies what was committed since its last pass.
const INTERVAL: Duration = Duration::from_millis(1000);

/// The checkpointer thread; dropping this stops it (within one pass).
pub(crate) struct Checkpointer {
    thread: std::thread::Thread,
    stop: Arc<AtomicBool>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Opens the checkpointer's connection to the database file at `path` (already in WAL mode) and starts its thread.
pub(crate) fn spawn(path: &Path, writer: &crate::sqlite::WriteConnection) -> crate::StoreResult<Checkpointer> {
    let conn = rusqlite::Connection::open(path)?;
    // As the store's connections: a checkpoint syncs the log before copying it and the database after.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let writer = Arc::downgrade(writer);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("wal-checkpointer".into())
        .spawn({
            let stop = stop.clone();
            move || run(&conn, &writer, &stop)
        })
        .map_err(|e| crate::StoreError::Database(sqlx::Error::Io(e)))?;
    Ok(Checkpointer { thread: thread.thread().clone(), stop })
}

fn run(conn: &rusqlite::Connection, writer: &Weak<tokio::sync::Mutex<crate::sqlite::Writer>>, stop: &AtomicBool) {
    let mut next = Instant::now() + INTERVAL;
    let mut failures = 0u32;
    loop {
        // Parked until the next pass is due or the store is dropped (`park_timeout` may also wake early).
        while !stop.load(Ordering::Acquire) && Instant::now() < next {
            std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Some(writer) = writer.upgrade() else { return };
        match pass(conn, &writer, stop) {
            Ok(()) => failures = 0,
            Err(e) => {
                // Once, then once a minute while it keeps failing (a full disk, a removed file).
                if failures.is_multiple_of(60) {
                    tracing::warn!("background WAL checkpoint (failed {} times in a row): {e}", failures + 1);
                }
                failures += 1;
            }
        }
        next = Instant::now() + INTERVAL;
    }
}

/// One pass, with its catch-up rounds. It gives up between steps once the store is dropped (`stop`), so that the
/// file is left alone soon after.
fn pass(
    conn: &rusqlite::Connection,
    writer: &tokio::sync::Mutex<crate::sqlite::Writer>,
    stop: &AtomicBool,
) -> rusqlite::Result<()> {
    let mut rounds = 0;
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let started = Instant::now();
        let log_pages = checkpoint(conn)?;
        let took = started.elapsed();
        tracing::debug!(log_pages, us = took.as_micros() as u64, "background WAL checkpoint");
        if log_pages < RESTART_PAGES {
            return Ok(());
        }
        rounds += 1;
        // What was committed while this pass ran is left to copy. The pass holding the writer's lock blocks every
        // write until it is done (copy and sync), so while that is much the background copies it first: each pass
        // has less to copy than the last.
        if took <= CATCH_UP || rounds == MAX_CATCH_UP_ROUNDS {
            break;
        }
    }
    // A pass syncs the database file only when it has copied the whole log, which with writes coming in only the
    // pass holding the writer's lock does: that sync would then flush every page the background passes copied
    // (~10 ms measured with a thousand sessions writing), with every write held up. Synced here, the pass below
    // flushes only its own few pages.
    if stop.load(Ordering::Acquire) {
        return Ok(());
    }
    let started = Instant::now();
    sync_database_file(conn)?;
    tracing::debug!(us = started.elapsed().as_micros() as u64, "database file synced");
    // Holding the writer's lock, no write can come in between: the rest is copied and the next write starts the
    // log over. (A group commit dropped halfway may have left its transaction open on the writer's connection; its
    // frames are not committed, and the checkpoint copies only committed ones.)
    let _writes_held = writer.blocking_lock();
    let started = Instant::now();
    checkpoint(conn)?;
    tracing::debug!(us = started.elapsed().as_micros() as u64, "WAL checkpoint holding the writer's lock");
    Ok(())
}

/// A PASSIVE checkpoint (copies what no reader still needs; never waits for or blocks the writer): the log's
/// length in pages.
fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

/// fsync of the database file, through the connection's own file handle (a second handle of our own would drop
/// SQLite's POSIX locks on the file when closed).
fn sync_database_file(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    // SAFETY: the handle is this thread's open connection, unused by anything else while this runs; the file
    // pointer SQLite returns stays valid while the connection is open, and xSync is the VFS's own sync of it.
    let rc = unsafe {
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
            rc
        } else {
            match (*(*file).pMethods).xSync {
                Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
                None => ffi::SQLITE_OK,
            }
        }
    };
    if rc == ffi::SQLITE_OK { Ok(()) } else { Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)) }
}
