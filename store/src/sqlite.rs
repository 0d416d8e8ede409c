//! SQLite, the embedded default: one file in the data directory, WAL, migrated on open.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::Clock;

pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    replica_id: uuid::Uuid,
    checkpointer: tokio::task::JoinHandle<()>,
    /// The one connection every write of this process goes through. SQLite lets one connection write at a time,
    /// and one that finds the lock taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms between
    /// tries: writes from several pooled connections took turns that way. Waiting for this connection is first
    /// come, first served, and reads never wait for it.
    writer: SqlitePool,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
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
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        let checkpointer = crate::wal_checkpointer::spawn(&options, writer.clone()).await?;
        Ok(Self { pool, clock, replica_id: uuid::Uuid::now_v7(), checkpointer, writer })
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
    fn write_pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Write transactions take the write lock up front: a deferred transaction that reads first and then writes
    /// can fail with SQLITE_BUSY when another writer got there in between, and busy_timeout does not help then.
    async fn begin_write(&self) -> crate::StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    // The group commit's statements (see `sql::append_batch_in_tx`): multi-row, their text varies with the row
    // count, which SQLite prepares cheaply. (The write lock is already held: no row locks.)

    async fn load_append_rows(
        tx: &mut Transaction<'static, Sqlite>,
        ids: &[Uuid],
    ) -> crate::StoreResult<Vec<SqliteRow>> {
        let mut qb = QueryBuilder::<Sqlite>::new(APPEND_STATE_SELECT);
        qb.push(" WHERE s.id IN (");
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        qb.push(") ORDER BY s.id");
        Ok(qb.build().fetch_all(&mut **tx).await?)
    }

    async fn insert_chunk_rows(tx: &mut Transaction<'static, Sqlite>, rows: &[ChunkRow<'_>]) -> crate::StoreResult<()> {
        let mut qb =
            QueryBuilder::<Sqlite>::new("INSERT INTO transcript_chunks (session_id, byte_offset, t_ms, bytes) ");
        qb.push_values(rows, |mut row, (id, offset, t_ms, bytes)| {
            row.push_bind(*id).push_bind(*offset as i64).push_bind(*t_ms as i64).push_bind(*bytes);
        });
        qb.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn write_append_states(
        tx: &mut Transaction<'static, Sqlite>,
        states: &[(&Uuid, &AppendState)],
        now: DateTime<Utc>,
    ) -> crate::StoreResult<()> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "UPDATE sessions SET total_bytes = v.column2, retained_bytes = v.column3, truncated_bytes = v.column4, \
             lost_bytes = v.column5, retained_from = v.column6, last_seen_at = ",
        );
        qb.push_bind(Ts(now)).push(" FROM (");
        qb.push_values(states, |mut row, (id, s)| {
            row.push_bind(**id)
                .push_bind(s.total as i64)
                .push_bind(s.retained as i64)
                .push_bind(s.truncated as i64)
                .push_bind(s.lost as i64)
                .push_bind(s.retained_from as i64);
        });
        qb.push(") AS v WHERE sessions.id = v.column1");
        qb.build().execute(&mut **tx).await?;
        Ok(())
    }
}

// The store itself; it also brings the names the functions above use (DateTime, Uuid, QueryBuilder, Ts,
// AppendState, ...) into this module.
crate::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, Backend::Sqlite);
