//! PostgreSQL, the scale-out backend: several server replicas on one database, migrated on connect.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;

use crate::notify::{LIVE_CHANNEL, LiveNotice};
use sqlx::{PgPool, Postgres, Transaction};

use crate::Clock;

pub struct PostgresStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    replica_id: uuid::Uuid,
}

impl PostgresStore {
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> crate::StoreResult<Self> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        // Replicas starting together serialize on sqlx's migration advisory lock.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool, clock, replica_id: uuid::Uuid::now_v7() })
    }

    async fn publish_live_notices(&self, notices: &[LiveNotice]) -> crate::StoreResult<()> {
        if notices.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = notices.iter().map(LiveNotice::encode).collect();
        sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
            .bind(LIVE_CHANNEL)
            .bind(payloads)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A dedicated connection LISTENs; sqlx's listener reconnects by itself after a connection loss.
    async fn listen_live_notices(&self) -> crate::StoreResult<Option<mpsc::Receiver<LiveNotice>>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(LIVE_CHANNEL).await?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Some(notice) = LiveNotice::decode(n.payload())
                            && tx.send(notice).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("live notices: {e}; listening again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn begin_write(&self) -> crate::StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

crate::sql::impl_sql_store!(PostgresStore, sqlx::Postgres, Backend::Postgres);
