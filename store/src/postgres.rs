//! PostgreSQL, the scale-out backend: several server replicas on one database, migrated on connect.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use crate::Clock;

pub struct PostgresStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

impl PostgresStore {
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> crate::StoreResult<Self> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        // Replicas starting together serialize on sqlx's migration advisory lock.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool, clock })
    }

    async fn begin_write(&self) -> crate::StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

crate::sql::impl_sql_store!(PostgresStore, sqlx::Postgres, Backend::Postgres);
