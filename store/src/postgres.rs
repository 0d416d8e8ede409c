//! PostgreSQL, the scale-out backend: several server replicas on one database, migrated on connect.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;

use crate::notify::{LIVE_CHANNEL, LiveNotice};

use crate::Clock;

/// What `cmdop_conflict_unless` raises: serialization_failure.
const CONFLICT_SQLSTATE: &str = "40001";

/// Entries kept in [`PostgresStore::append_states`] before it is emptied (about 100 bytes each).
const APPEND_STATE_CACHE_MAX: usize = 50_000;

pub struct PostgresStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    replica_id: uuid::Uuid,
    /// Where each session stood after this replica's last group commit to it, so that the next one need not read
    /// it first. Only a hint: the commit's update checks every session's length, and any failure drops the hints
    /// and tries once more with what the database says (see `group_commit`).
    append_states: std::sync::Mutex<HashMap<Uuid, AppendState>>,
}

impl PostgresStore {
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> crate::StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings a connection when it is handed back, and by default again when it is handed out: a round
            // trip on every group commit's path. A connection handed back alive and idle since for less than a few
            // seconds is taken as it is; one that died meanwhile fails its statement, and is dropped.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= Duration::from_secs(5) {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        // Replicas starting together serialize on sqlx's migration advisory lock.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool, clock, replica_id: uuid::Uuid::now_v7(), append_states: Default::default() })
    }

    /// One statement, whose commit does not wait for the WAL to be flushed (`cmdop_notify`, migration 0005).
    async fn publish_live_notices(&self, notices: &[LiveNotice]) -> crate::StoreResult<()> {
        if notices.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = notices.iter().map(LiveNotice::encode).collect();
        sqlx::query("SELECT cmdop_notify($1, $2)").bind(LIVE_CHANNEL).bind(payloads).execute(&self.pool).await?;
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

    /// A group commit (see `Store::append_batch`): find where the sessions stand, check the writes, then write the
    /// rows and the sessions' new lengths. Plain appends (the steady state of every live session) go in one
    /// statement, atomic by itself. Where the sessions stand comes from this replica's last commit to them when it
    /// has one, so a live session's commit is one round trip; only a session new to this replica is read first. A
    /// batch that must read the transcript tables (a resend to compare with stored bytes, a ring buffer to trim)
    /// runs in a transaction instead. Each round trip is a wake-up of a PostgreSQL backend and of this process;
    /// with `BEGIN`, three statements and `COMMIT` apart, a thousand sessions at 1 KB/s kept PostgreSQL's backends
    /// busy on a core of their own.
    async fn group_commit(&self, batch: &[(Uuid, Vec<TranscriptWrite>)]) -> crate::StoreResult<Vec<AppendOutcome>> {
        let ids = batch_ids(batch);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.write_conn().await?;
        let now = self.clock.now();
        let mut states = self.take_cached_states(&ids);
        let cached = !states.is_empty();
        match self.commit_appends(&mut conn, batch, &ids, &mut states, now).await {
            Ok(outcomes) => {
                self.remember_states(states);
                return Ok(outcomes);
            }
            // A hint was stale (another replica wrote to that session since) or the batch is bad: which one, only
            // the database can say.
            Err(_) if cached => {}
            Err(e) => return Err(e),
        }
        let mut states = HashMap::new();
        let outcomes = self.commit_appends(&mut conn, batch, &ids, &mut states, now).await?;
        self.remember_states(states);
        Ok(outcomes)
    }

    /// One try of a group commit on `states`, after reading those of `ids` it lacks. On success `states` is where
    /// the sessions stand now.
    async fn commit_appends(
        &self,
        conn: &mut sqlx::PgConnection,
        batch: &[(Uuid, Vec<TranscriptWrite>)],
        ids: &[Uuid],
        states: &mut HashMap<Uuid, AppendState>,
        now: DateTime<Utc>,
    ) -> crate::StoreResult<Vec<AppendOutcome>> {
        let missing: Vec<Uuid> = ids.iter().filter(|id| !states.contains_key(id)).copied().collect();
        if !missing.is_empty() {
            states.extend(Self::read_append_states(&mut *conn, &missing).await?);
        }
        let Some((mut outcomes, pending)) = apply_batch(None, batch, states).await? else {
            // The plan stopped halfway through `states`: read them again (a round trip only batches like these pay).
            let (outcomes, fresh) = Self::commit_in_transaction(conn, batch, ids, now).await?;
            *states = fresh;
            return Ok(outcomes);
        };
        let over_limit = Self::write_appends(&mut *conn, &pending, states, now).await?;
        if !over_limit.is_empty() {
            // Their fleet's ring buffer was made smaller since the states kept from an earlier commit were read:
            // trim now, as a commit that writes nothing. A session's last entry reports it, as in `apply_batch`.
            let trims: Vec<(Uuid, Vec<TranscriptWrite>)> = over_limit.iter().map(|id| (*id, Vec::new())).collect();
            let (trimmed, fresh) = Self::commit_in_transaction(conn, &trims, &over_limit, now).await?;
            for ((id, _), outcome) in trims.iter().zip(trimmed) {
                if let Some(last) = batch.iter().rposition(|(b, _)| b == id) {
                    outcomes[last] = outcome;
                }
            }
            states.extend(fresh);
        }
        Ok(outcomes)
    }

    /// A group commit that reads the transcript tables: in a transaction, on states read in it. Returns the
    /// outcomes and where the sessions stand after it.
    async fn commit_in_transaction(
        conn: &mut sqlx::PgConnection,
        batch: &[(Uuid, Vec<TranscriptWrite>)],
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> crate::StoreResult<(Vec<AppendOutcome>, HashMap<Uuid, AppendState>)> {
        let mut tx = Self::begin_write(conn).await?;
        let mut states = Self::read_append_states(&mut tx, ids).await?;
        let (outcomes, pending) =
            apply_batch(Some(&mut *tx), batch, &mut states).await?.expect("with a connection every batch applies");
        // Limits read in this transaction: what is over them was trimmed (a limit changed since shows at the next
        // commit).
        Self::write_appends(&mut tx, &pending, &states, now).await?;
        tx.commit().await?;
        Ok((outcomes, states))
    }

    /// Takes the hints of `ids` that this replica has (see `append_states`).
    fn take_cached_states(&self, ids: &[Uuid]) -> HashMap<Uuid, AppendState> {
        let mut cache = self.append_states.lock().expect("append states");
        ids.iter().filter_map(|id| cache.remove(id).map(|s| (*id, s))).collect()
    }

    /// Keeps where sessions stand after a commit, as the hints for the next.
    fn remember_states(&self, states: HashMap<Uuid, AppendState>) {
        let mut cache = self.append_states.lock().expect("append states");
        if cache.len() + states.len() > APPEND_STATE_CACHE_MAX {
            // Mostly sessions that ended: the live ones are read again once.
            cache.clear();
        }
        cache.extend(states.into_iter().map(|(id, mut s)| {
            s.loaded_total = s.total;
            (id, s)
        }));
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
    ) -> crate::StoreResult<HashMap<Uuid, AppendState>> {
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
        let query = sqlx::query(
            "INSERT INTO transcript_chunks (session_id, byte_offset, t_ms, bytes) \
             SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::bytea[])",
        );
        bind_chunk_columns(query, rows).execute(&mut *conn).await?;
        Ok(())
    }

    /// The rows `pending` still holds and every batched session's new lengths, as one statement: it inserts into
    /// the three transcript tables and updates the sessions (in id order: replicas writing the same sessions take
    /// their row locks in the same order). The update only applies where a session's length is still what was
    /// read; if another server wrote to one meanwhile, `cmdop_conflict_unless` (migration 0005) fails the whole
    /// statement. (`s.id = ANY`: joined with the unnested rows alone, the generic plan of this prepared statement
    /// scanned the whole sessions table on every commit.) Returns the sessions that now retain more than their
    /// fleet's limit: states kept from an earlier commit do not see a limit lowered since.
    async fn write_appends(
        conn: &mut sqlx::PgConnection,
        pending: &PendingRows<'_>,
        states: &HashMap<Uuid, AppendState>,
        now: DateTime<Utc>,
    ) -> crate::StoreResult<Vec<Uuid>> {
        let states = sorted_states(states);
        let column = |f: fn(&AppendState) -> u64| states.iter().map(|(_, s)| f(s) as i64).collect::<Vec<i64>>();
        let ids: Vec<Uuid> = states.iter().map(|(id, _)| **id).collect();
        let (gaps, resizes) = (&pending.gaps, &pending.resizes);
        let query = sqlx::query(
            "WITH chunks AS (\
               INSERT INTO transcript_chunks (session_id, byte_offset, t_ms, bytes) \
               SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::bytea[])), \
             gaps AS (\
               INSERT INTO transcript_gaps (session_id, at_offset, bytes_lost, reason) \
               SELECT g.id, g.at, g.lost, 'recorder_offline' FROM UNNEST($5::uuid[], $6::int8[], $7::int8[]) \
               AS g(id, at, lost)), \
             resizes AS (\
               INSERT INTO transcript_resizes (session_id, at_offset, t_ms, cols, rows) \
               SELECT * FROM UNNEST($8::uuid[], $9::int8[], $10::int8[], $11::int4[], $12::int4[]) \
               ON CONFLICT DO NOTHING), \
             updated AS (\
               UPDATE sessions AS s SET total_bytes = v.total, retained_bytes = v.retained, \
               truncated_bytes = v.truncated, lost_bytes = v.lost, retained_from = v.retained_from, \
               last_seen_at = $13 \
               FROM UNNEST($14::uuid[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[], \
               $20::int8[]) AS v(id, total, retained, truncated, lost, retained_from, loaded_total) \
               WHERE s.id = v.id AND s.total_bytes = v.loaded_total AND s.id = ANY($14) \
               RETURNING s.id, s.fleet_id, s.retained_bytes) \
             SELECT cmdop_conflict_unless((SELECT count(*) FROM updated) = $21, \
               'another server wrote to one of these sessions at the same time') AS ok, \
             ARRAY(SELECT u.id FROM updated u JOIN fleets f ON f.id = u.fleet_id \
               WHERE u.retained_bytes > f.transcript_limit_bytes) AS over_limit",
        );
        let row = bind_chunk_columns(query, &pending.chunks)
            .bind(gaps.iter().map(|g| g.0).collect::<Vec<Uuid>>())
            .bind(gaps.iter().map(|g| g.1 as i64).collect::<Vec<i64>>())
            .bind(gaps.iter().map(|g| g.2 as i64).collect::<Vec<i64>>())
            .bind(resizes.iter().map(|r| r.0).collect::<Vec<Uuid>>())
            .bind(resizes.iter().map(|r| r.1 as i64).collect::<Vec<i64>>())
            .bind(resizes.iter().map(|r| r.2 as i64).collect::<Vec<i64>>())
            .bind(resizes.iter().map(|r| i32::from(r.3)).collect::<Vec<i32>>())
            .bind(resizes.iter().map(|r| i32::from(r.4)).collect::<Vec<i32>>())
            .bind(Ts(now))
            .bind(ids)
            .bind(column(|s| s.total))
            .bind(column(|s| s.retained))
            .bind(column(|s| s.truncated))
            .bind(column(|s| s.lost))
            .bind(column(|s| s.retained_from))
            .bind(column(|s| s.loaded_total))
            .bind(states.len() as i64)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some(CONFLICT_SQLSTATE) => {
                    crate::StoreError::Conflict(db.message().to_string())
                }
                _ => e.into(),
            })?;
        Ok(row.try_get("over_limit")?)
    }
}

/// Chunk rows as the four arrays (`$1`..`$4`: session, offset, t_ms, bytes) that both chunk inserts unnest.
fn bind_chunk_columns<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    rows: &[ChunkRow<'q>],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(rows.iter().map(|r| r.0).collect::<Vec<Uuid>>())
        .bind(rows.iter().map(|r| r.1 as i64).collect::<Vec<i64>>())
        .bind(rows.iter().map(|r| r.2 as i64).collect::<Vec<i64>>())
        .bind(rows.iter().map(|r| r.3).collect::<Vec<&[u8]>>())
}

// The store itself; it also brings the names the functions above use (DateTime, Uuid, QueryBuilder, Ts,
// AppendState, ...) into this module.
crate::sql::impl_sql_store!(PostgresStore, sqlx::Postgres, Backend::Postgres);
