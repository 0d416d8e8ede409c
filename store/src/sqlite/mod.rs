//! SQLite, the embedded default: one file in the data directory, WAL, migrated on open.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::Clock;

mod direct;

/// The store's one write connection (see `SqliteStore::writer`).
pub(crate) type WriteConnection = Arc<tokio::sync::Mutex<Writer>>;

pub(crate) struct Writer {
    conn: SqliteConnection,
    /// A group commit opens its transaction with `BEGIN IMMEDIATE` as SQL, not through sqlx's transaction object
    /// (see `SqliteStore::group_commit`): set while one may be open, so that if its task was dropped halfway the
    /// next user of the connection rolls it back.
    open_transaction: bool,
}

impl Writer {
    /// The connection, with no group commit's transaction left open on it.
    pub(crate) async fn conn(&mut self) -> sqlx::Result<&mut SqliteConnection> {
        if self.open_transaction {
            match sqlx::query("ROLLBACK").execute(&mut self.conn).await {
                Ok(_) => {}
                // The transaction had ended (committed) or never begun.
                Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {}
                // Still open, maybe: no write may run inside it. The next user tries again.
                Err(e) => return Err(e),
            }
            self.open_transaction = false;
        }
        Ok(&mut self.conn)
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    replica_id: uuid::Uuid,
    /// Stops the WAL checkpointer's thread when the store is dropped.
    _checkpointer: crate::wal_checkpointer::Checkpointer,
    /// The one connection every write of this process goes through, held by the store rather than pooled.
    /// SQLite lets one connection write at a time, and one that finds the lock taken waits in SQLite's busy
    /// handler, which sleeps 1, 2, 5, 10 ... ms between tries: writes from several pooled connections took turns
    /// that way. Waiting for this lock is first come, first served, and reads never wait for it. Not a pool of
    /// one: a pool tests a connection each time it is handed back (a round trip to the connection's thread), and
    /// the group commit paid that on every batch.
    writer: WriteConnection,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies migrations.
    pub async fn open(path: &Path, clock: Arc<dyn Clock>) -> crate::StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| crate::StoreError::invalid("data_dir", format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process crash; only an OS crash can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // The pages a group commit touches (one per session written, and the b-tree above them) stay in
            // memory instead of being read back from the file: 32 MiB per connection (the default is 2 MiB).
            .pragma("cache_size", "-32768")
            // Statement journals (multi-row INSERTs inside the group commit) in memory, not in temp files.
            .pragma("temp_store", "MEMORY")
            .pragma("wal_autocheckpoint", crate::wal_checkpointer::WRITER_CHECKPOINT_PAGES.to_string());
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options.clone()).await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        let writer = Writer { conn: options.connect().await?, open_transaction: false };
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let _checkpointer = crate::wal_checkpointer::spawn(path, &writer)?;
        Ok(Self { pool, clock, replica_id: uuid::Uuid::now_v7(), _checkpointer, writer })
    }

    /// One process owns a SQLite file: there is nobody to tell.
    async fn publish_live_notices(&self, _notices: &[crate::notify::LiveNotice]) -> crate::StoreResult<()> {
        Ok(())
    }

    async fn listen_live_notices(
        &self,
    ) -> crate::StoreResult<Option<tokio::sync::mpsc::Receiver<crate::notify::LiveNotice>>> {
        Ok(None)
    }

    /// Where the store's writes go (see `writer`).
    async fn write_conn(&self) -> crate::StoreResult<tokio::sync::MappedMutexGuard<'_, SqliteConnection>> {
        let mut writer = self.writer.lock().await;
        writer.conn().await?;
        Ok(tokio::sync::MutexGuard::map(writer, |w| &mut w.conn))
    }

    /// Write transactions take the write lock up front: a deferred transaction that reads first and then writes
    /// can fail with SQLITE_BUSY when another writer got there in between, and busy_timeout does not help then.
    async fn begin_write(conn: &mut SqliteConnection) -> crate::StoreResult<Transaction<'_, Sqlite>> {
        Ok(conn.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A group commit (see `Store::append_batch`). Plain appends run on the calling thread against the raw
    /// connection (`direct`). The rest (a resend to compare, a ring buffer to trim) goes through sqlx in
    /// `group_commit_on`.
    async fn group_commit(&self, batch: &[(Uuid, Vec<TranscriptWrite>)]) -> crate::StoreResult<Vec<AppendOutcome>> {
        let mut writer = self.writer.lock().await;
        writer.conn().await?;
        // After waiting for the connection: a commit that waited must not mark its sessions as heard from earlier
        // than a write that went before it.
        let now = self.clock.now();
        // Both paths open their transaction as plain SQL (see `Writer::open_transaction`).
        writer.open_transaction = true;
        // Plain appends, the common case, on this thread (see `direct`), which ends its transaction unless a
        // rollback failed; the rest below.
        match direct::try_group_commit(&mut writer.conn, batch, now).await {
            Ok(Some(outcomes)) => {
                writer.open_transaction = false;
                return Ok(outcomes);
            }
            // Rolled back: the general path opens its own.
            Ok(None) => {}
            Err(e) => {
                // Rolls back if the direct path could not (its error is the one to report).
                let _ = writer.conn().await;
                return Err(e);
            }
        }
        let result = Self::group_commit_on(&mut writer.conn, batch, now).await;
        if result.is_ok() {
            // It ended with COMMIT.
            writer.open_transaction = false;
        } else {
            // Rolls back; if that fails too, the commit's own error is the one to report, and the next user of the
            // connection tries the rollback again.
            let _ = writer.conn().await;
        }
        result
    }

    /// The general path, for batches whose checks read the transcript tables (a resend to compare, a ring buffer
    /// to trim): `BEGIN` and the read of where the sessions stand on the raw connection as in `direct`, the checks
    /// through sqlx, then the rows, the update of the sessions and `COMMIT` on the raw connection again.
    async fn group_commit_on(
        conn: &mut SqliteConnection,
        batch: &[(Uuid, Vec<TranscriptWrite>)],
        now: DateTime<Utc>,
    ) -> crate::StoreResult<Vec<AppendOutcome>> {
        let ids = batch_ids(batch);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut states = direct::begin_and_read_states(conn, &ids).await?;
        let (outcomes, pending) =
            apply_batch(Some(&mut *conn), batch, &mut states).await?.expect("with a connection every batch applies");
        direct::write_and_commit(conn, &pending, &states, now).await?;
        Ok(outcomes)
    }

    async fn insert_chunk_rows(conn: &mut SqliteConnection, rows: &[ChunkRow<'_>]) -> crate::StoreResult<()> {
        let mut qb = QueryBuilder::<Sqlite>::new("");
        push_chunk_rows(&mut qb, rows);
        qb.build().persistent(false).execute(&mut *conn).await?;
        Ok(())
    }
}

/// One INSERT of transcript chunks.
fn push_chunk_rows(qb: &mut QueryBuilder<Sqlite>, rows: &[ChunkRow<'_>]) {
    qb.push("INSERT INTO transcript_chunks (session_id, byte_offset, t_ms, bytes) ");
    qb.push_values(rows, |mut row, (id, offset, t_ms, bytes)| {
        row.push_bind(*id).push_bind(*offset as i64).push_bind(*t_ms as i64).push_bind(*bytes);
    });
}

// The store itself; it also brings the names the functions above use (DateTime, Uuid, QueryBuilder, Ts,
// AppendState, ...) into this module.
crate::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, Backend::Sqlite);
