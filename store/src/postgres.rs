//! PostgreSQL, the scale-out backend: several server replicas on one database, migrated on connect.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;

use crate::notify::{LIVE_CHANNEL, LiveNotice};

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

    /// PostgreSQL locks rows, not the database: writes share the pool and go side by side.
    async fn write_conn(&self) -> crate::StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    async fn begin_write(conn: &mut sqlx::PgConnection) -> crate::StoreResult<Transaction<'_, Postgres>> {
        Ok(conn.begin().await?)
    }

    /// A group commit (see `Store::append_batch`): read where the sessions stand, check the writes, insert the
    /// rows, update the sessions, commit.
    async fn group_commit(&self, batch: &[(Uuid, Vec<TranscriptWrite>)]) -> crate::StoreResult<Vec<AppendOutcome>> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let now = self.clock.now();
        let mut states = HashMap::new();
        for part in batch_ids(batch).chunks(ROWS_PER_STATEMENT) {
            states.extend(Self::read_append_states(&mut tx, part).await?);
        }
        let (outcomes, mut pending) = apply_batch(&mut tx, batch, &mut states).await?;
        flush_rows(&mut tx, &mut pending).await?;
        for part in sorted_states(&states).chunks(ROWS_PER_STATEMENT) {
            Self::write_append_states(&mut tx, part, now).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    // The group commit's statements take their rows as arrays: one statement text
    // whatever the row count, prepared once per connection. As multi-row VALUES, each batch size was a new
    // statement to parse and plan (thousands of parameters): 100-300 ms per batch of a thousand sessions.

    /// Reads without locking: a second replica writing to one of these sessions meanwhile (a recorder that
    /// reconnected elsewhere while its old connection's writes were in flight) makes the update below apply to
    /// fewer rows, and the batch fails and is retried session by session. Locking every row up front cost a third
    /// of each group commit.
    async fn read_append_states(
        conn: &mut sqlx::PgConnection,
        ids: &[Uuid],
    ) -> crate::StoreResult<Vec<(Uuid, AppendState)>> {
        let mut qb = QueryBuilder::<Postgres>::new(APPEND_STATE_SELECT);
        qb.push(" WHERE s.id = ANY(").push_bind(ids.to_vec()).push(")");
        let rows = qb.build().fetch_all(&mut *conn).await?;
        rows.iter()
            .map(|r| {
                let total = u64_col(r, "total_bytes")?;
                Ok((
                    r.try_get("id")?,
                    AppendState {
                        total,
                        loaded_total: total,
                        retained: u64_col(r, "retained_bytes")?,
                        truncated: u64_col(r, "truncated_bytes")?,
                        lost: u64_col(r, "lost_bytes")?,
                        limit: u64_col(r, "limit_bytes")?,
                        retained_from: u64_col(r, "retained_from")?,
                    },
                ))
            })
            .collect()
    }

    async fn insert_chunk_rows(conn: &mut sqlx::PgConnection, rows: &[ChunkRow<'_>]) -> crate::StoreResult<()> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let offsets: Vec<i64> = rows.iter().map(|r| r.1 as i64).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.2 as i64).collect();
        let bytes: Vec<&[u8]> = rows.iter().map(|r| r.3).collect();
        sqlx::query(
            "INSERT INTO transcript_chunks (session_id, byte_offset, t_ms, bytes) \
             SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::bytea[])",
        )
        .bind(ids)
        .bind(offsets)
        .bind(times)
        .bind(bytes)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn write_append_states(
        conn: &mut sqlx::PgConnection,
        states: &[(&Uuid, &AppendState)],
        now: DateTime<Utc>,
    ) -> crate::StoreResult<()> {
        let column = |f: fn(&AppendState) -> u64| states.iter().map(|(_, s)| f(s) as i64).collect::<Vec<i64>>();
        let ids: Vec<Uuid> = states.iter().map(|(id, _)| **id).collect();
        let done = sqlx::query(
            "UPDATE sessions AS s SET total_bytes = v.total, retained_bytes = v.retained, \
             truncated_bytes = v.truncated, lost_bytes = v.lost, retained_from = v.retained_from, last_seen_at = $7 \
             FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $8::int8[]) \
             AS v(id, total, retained, truncated, lost, retained_from, loaded_total) \
             WHERE s.id = v.id AND s.total_bytes = v.loaded_total",
        )
        .bind(ids)
        .bind(column(|s| s.total))
        .bind(column(|s| s.retained))
        .bind(column(|s| s.truncated))
        .bind(column(|s| s.lost))
        .bind(column(|s| s.retained_from))
        .bind(Ts(now))
        .bind(column(|s| s.loaded_total))
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != states.len() as u64 {
            return Err(crate::StoreError::Conflict(
                "another server wrote to one of these sessions at the same time".into(),
            ));
        }
        Ok(())
    }
}

// The store itself; it also brings the names the functions above use (DateTime, Uuid, QueryBuilder, Ts,
// AppendState, ...) into this module.
crate::sql::impl_sql_store!(PostgresStore, sqlx::Postgres, Backend::Postgres);
