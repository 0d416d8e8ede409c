//! SQLite, the embedded default: one file in the data directory, WAL, migrated on open.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::Clock;

pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    replica_id: uuid::Uuid,
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
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, clock, replica_id: uuid::Uuid::now_v7() })
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

    /// Write transactions take the write lock up front: a deferred transaction that reads first and then writes
    /// can fail with SQLITE_BUSY when another writer got there in between, and busy_timeout does not help then.
    async fn begin_write(&self) -> crate::StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

crate::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, Backend::Sqlite);
