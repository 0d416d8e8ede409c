//! The data behind `list`: a deterministic fleet of three fleets, ~60 machines, 25 members and N sessions over the
//! last year, generated in memory (so that the bench knows the right first page of every query), then written
//! straight into the server's database with multi-row INSERTs after the server migrated it.
//!
//! Also a copy of the SQL the store builds for `list_sessions` (store/src/sql.rs: `SESSION_SELECT`,
//! `push_visibility`, the filters and the keyset), to time the query without HTTP and to show its plan.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, QueryBuilder, Row, SqlitePool};
use uuid::Uuid;

use crate::server_proc::Backend;

pub const DAY_MS: i64 = 86_400_000;
pub const OWNER: &str = "owner@acme.test";
pub const VIEWER: &str = "viewer@acme.test";
pub const ADMIN: &str = "admin@acme.test";
/// Password of the two members the bench signs in as (made with the admin CLI).
pub const PASSWORD: &str = "bench-list-password";

/// splitmix64: a small deterministic generator, so both backends get the very same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in `[lo, hi)`.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }

    /// A UUID v7 for a time, as the server makes them (`Uuid::now_v7`): 48-bit milliseconds, then random bits.
    pub fn uuid_v7(&mut self, ms: i64) -> Uuid {
        let mut rand = [0u8; 10];
        rand[..8].copy_from_slice(&self.next().to_le_bytes());
        rand[8..].copy_from_slice(&self.next().to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(ms as u64, &rand).into_uuid()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

pub struct Fleet {
    pub id: Uuid,
    pub name: String,
}

pub struct Machine {
    pub id: Uuid,
    pub fleet: usize,
    pub name: String,
}

pub struct Member {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    /// Made by the admin CLI (with a password and a token), not by the seeding.
    pub by_cli: bool,
}

/// One session, compactly; its fleet is its machine's.
#[derive(Debug, Clone, Copy)]
pub struct SessionRow {
    pub id: Uuid,
    pub client_id: Uuid,
    pub started: i64,
    pub ended: Option<i64>,
    pub last_seen: i64,
    pub machine: u16,
    pub user: u8,
    pub exit_code: Option<i32>,
    pub lost: bool,
    pub size: u8,
    pub command: u8,
    pub total_bytes: u32,
}

pub const COMMANDS: &[&str] = &[
    "bash",
    "zsh",
    "make deploy",
    "./nightly.sh",
    "kubectl logs -f deploy/api",
    "psql app",
    "htop",
    "cargo build --release",
    "docker compose up",
    "tail -F /var/log/syslog",
    "python3 manage.py migrate",
    "ssh-agent bash",
];
pub const SIZES: &[(u16, u16)] = &[(80, 24), (120, 40), (160, 48), (200, 60), (100, 30)];

/// Fleets: name, share of the sessions, machines.
const FLEETS: &[(&str, f64, usize)] = &[("prod", 0.5, 30), ("staging", 0.3, 18), ("dev", 0.2, 12)];
const MACHINE_ROLES: &[&str] = &["web", "api", "db", "worker", "cache", "build"];
const MEMBERS: usize = 25;

/// Everything the bench puts in the database, and what it needs to know the right answers.
pub struct World {
    pub now_ms: i64,
    pub fleets: Vec<Fleet>,
    pub machines: Vec<Machine>,
    pub members: Vec<Member>,
    /// (fleet, member, role)
    pub roles: Vec<(usize, usize, Role)>,
    /// (machine, member)
    pub grants: Vec<(usize, usize)>,
    /// Ascending by (started_at, id): the reverse of the list's order.
    pub sessions: Vec<SessionRow>,
}

impl World {
    /// Members 0 (owner of prod), 1 (owner of staging and dev, admin of prod), 2 (plain member of prod with grants
    /// on three machines), then 22 plain members of one to three fleets with four grants in each. `cli_ids` are
    /// the ids of the members the admin CLI already made (by email).
    pub fn generate(sessions: usize, now_ms: i64, cli_ids: &[(&str, Uuid)], seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let created = now_ms - 400 * DAY_MS;
        let fleets: Vec<Fleet> =
            FLEETS.iter().map(|(name, _, _)| Fleet { id: rng.uuid_v7(created), name: name.to_string() }).collect();
        let mut machines = Vec::new();
        for (f, (fleet, _, count)) in FLEETS.iter().enumerate() {
            for i in 0..*count {
                let role = MACHINE_ROLES[i % MACHINE_ROLES.len()];
                let name = format!("{fleet}-{role}-{}", i / MACHINE_ROLES.len() + 1);
                machines.push(Machine { id: rng.uuid_v7(created), fleet: f, name });
            }
        }
        let mut members = Vec::new();
        for m in 0..MEMBERS {
            let (email, display_name) = match m {
                0 => (OWNER.to_string(), "Olivia Owner".to_string()),
                1 => (ADMIN.to_string(), "Adam Admin".to_string()),
                2 => (VIEWER.to_string(), "Vera Viewer".to_string()),
                _ => (format!("user{m:02}@acme.test"), format!("User {m:02}")),
            };
            let cli = cli_ids.iter().find(|(e, _)| *e == email).map(|(_, id)| *id);
            members.push(Member {
                id: cli.unwrap_or_else(|| rng.uuid_v7(created)),
                email,
                display_name,
                by_cli: cli.is_some(),
            });
        }
        let mut roles = vec![(0, 0, Role::Owner), (1, 1, Role::Owner), (2, 1, Role::Owner), (0, 1, Role::Admin)];
        roles.push((0, 2, Role::Member));
        let fleet_machines =
            |f: usize| machines.iter().enumerate().filter(|(_, m)| m.fleet == f).map(|(i, _)| i).collect::<Vec<_>>();
        // The viewer may see prod-web-1, prod-api-1 and prod-db-1.
        let mut grants: Vec<(usize, usize)> = fleet_machines(0).into_iter().take(3).map(|mi| (mi, 2)).collect();
        for m in 3..MEMBERS {
            let mut fleets_of = vec![0];
            if m % 2 == 0 {
                fleets_of.push(1);
            }
            if m % 3 == 0 {
                fleets_of.push(2);
            }
            for f in fleets_of {
                roles.push((f, m, Role::Member));
                let pool = fleet_machines(f);
                let mut chosen = HashSet::new();
                while chosen.len() < 4 {
                    chosen.insert(pool[rng.below(pool.len() as u64) as usize]);
                }
                let mut chosen: Vec<usize> = chosen.into_iter().collect();
                chosen.sort_unstable();
                grants.extend(chosen.into_iter().map(|mi| (mi, m)));
            }
        }
        // Who records on a machine: its fleet's owners and admins, and the members granted it.
        let starters: Vec<Vec<u8>> = (0..machines.len())
            .map(|mi| {
                let f = machines[mi].fleet;
                let mut s: Vec<u8> = roles
                    .iter()
                    .filter(|(rf, _, r)| *rf == f && *r != Role::Member)
                    .map(|(_, m, _)| *m as u8)
                    .chain(grants.iter().filter(|(gm, _)| *gm == mi).map(|(_, m)| *m as u8))
                    .collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let per_fleet: Vec<Vec<usize>> = (0..fleets.len()).map(fleet_machines).collect();

        let newest = now_ms - 60_000;
        let span = 365 * DAY_MS - 60_000;
        let mut starts: Vec<i64> = (0..sessions).map(|_| newest - rng.below(span as u64) as i64).collect();
        starts.sort_unstable();
        let mut rows = Vec::with_capacity(sessions);
        for started in starts {
            let pick = rng.unit();
            let mut f = FLEETS.len() - 1;
            let mut acc = 0.0;
            for (i, (_, share, _)) in FLEETS.iter().enumerate() {
                acc += share;
                if pick < acc {
                    f = i;
                    break;
                }
            }
            let machine = per_fleet[f][rng.below(per_fleet[f].len() as u64) as usize];
            let who = &starters[machine];
            let user = who[rng.below(who.len() as u64) as usize];
            let active = rng.unit() < 0.005;
            let (ended, last_seen, exit_code, lost) = if active {
                (None, now_ms - rng.below(30_000) as i64, None, false)
            } else {
                let ended = (started + rng.log_uniform(2_000.0, 8.0 * 3_600_000.0) as i64).min(now_ms - 1_000);
                let lost = rng.unit() < 0.01;
                let code = match rng.below(100) {
                    0..85 => 0,
                    85..94 => 1,
                    94..96 => 2,
                    96..98 => 130,
                    98 => 127,
                    _ => 137,
                };
                (Some(ended), ended, if lost { None } else { Some(code) }, lost)
            };
            rows.push(SessionRow {
                id: rng.uuid_v7(started),
                client_id: rng.uuid_v7(started),
                started,
                ended,
                last_seen,
                machine: machine as u16,
                user,
                exit_code,
                lost,
                size: rng.below(SIZES.len() as u64) as u8,
                command: rng.below(COMMANDS.len() as u64) as u8,
                total_bytes: rng.log_uniform(200.0, 256.0 * 1024.0) as u32,
            });
        }
        rows.sort_unstable_by_key(|r| (r.started, r.id));
        World { now_ms, fleets, machines, members, roles, grants, sessions: rows }
    }

    pub fn member(&self, email: &str) -> usize {
        self.members.iter().position(|m| m.email == email).expect("known member")
    }

    /// Which machines `member` may see sessions of (the store's visibility rule).
    pub fn visible_machines(&self, member: usize) -> Vec<bool> {
        self.machines
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                let role = self.roles.iter().find(|(f, mm, _)| *f == m.fleet && *mm == member).map(|(_, _, r)| *r);
                match role {
                    Some(Role::Owner | Role::Admin) => true,
                    Some(Role::Member) => self.grants.iter().any(|(gm, gu)| *gm == mi && *gu == member),
                    None => false,
                }
            })
            .collect()
    }

    pub fn active_count(&self) -> usize {
        self.sessions.iter().filter(|r| r.ended.is_none()).count()
    }
}

/// Binds [`Param`]s to a query of either backend (`$ts` turns milliseconds into the backend's time type).
macro_rules! bind_params {
    ($query:expr, $params:expr, $ts:path) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                Param::Id(u) => q.bind(*u),
                Param::Text(s) => q.bind(s.clone()),
                Param::Ts(ms) => q.bind($ts(*ms)),
                Param::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

fn ts_pg(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("time in range")
}

fn ts_sqlite(ms: i64) -> i64 {
    ms
}

/// Rows per INSERT: 15 parameters each stays below SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_INSERT: usize = 1000;
/// INSERTs per transaction.
const INSERTS_PER_TX: usize = 50;

/// Writes fleets, members (but those the CLI made), roles, machines, grants, then the sessions with one recorder
/// client each, with multi-row INSERTs in transactions of 50,000 rows.
macro_rules! seed_fn {
    ($name:ident, $db:ty, $pool:ty, $ts:path) => {
        async fn $name(pool: &$pool, w: &World, progress: &dyn Fn(usize)) -> anyhow::Result<()> {
            let mut tx = pool.begin().await?;
            let created = w.now_ms - 400 * DAY_MS;
            let mut qb = QueryBuilder::<$db>::new("INSERT INTO fleets (id, name, created_at) ");
            qb.push_values(&w.fleets, |mut b, f| {
                b.push_bind(f.id).push_bind(f.name.clone()).push_bind($ts(created));
            });
            qb.build().execute(&mut *tx).await?;
            let seeded: Vec<&Member> = w.members.iter().filter(|m| !m.by_cli).collect();
            let mut qb =
                QueryBuilder::<$db>::new("INSERT INTO members (id, email, display_name, is_bot, created_at) ");
            qb.push_values(seeded, |mut b, m| {
                b.push_bind(m.id)
                    .push_bind(m.email.clone())
                    .push_bind(m.display_name.clone())
                    .push_bind(false)
                    .push_bind($ts(created));
            });
            qb.build().execute(&mut *tx).await?;
            let mut qb = QueryBuilder::<$db>::new("INSERT INTO fleet_members (fleet_id, member_id, role, created_at) ");
            qb.push_values(&w.roles, |mut b, (f, m, r)| {
                b.push_bind(w.fleets[*f].id)
                    .push_bind(w.members[*m].id)
                    .push_bind(r.as_str())
                    .push_bind($ts(created));
            });
            qb.build().execute(&mut *tx).await?;
            let mut qb = QueryBuilder::<$db>::new("INSERT INTO machines (id, fleet_id, name, created_at) ");
            qb.push_values(&w.machines, |mut b, m| {
                b.push_bind(m.id).push_bind(w.fleets[m.fleet].id).push_bind(m.name.clone()).push_bind($ts(created));
            });
            qb.build().execute(&mut *tx).await?;
            let mut qb = QueryBuilder::<$db>::new("INSERT INTO machine_grants (machine_id, member_id, created_at) ");
            qb.push_values(&w.grants, |mut b, (mi, m)| {
                b.push_bind(w.machines[*mi].id).push_bind(w.members[*m].id).push_bind($ts(created));
            });
            qb.build().execute(&mut *tx).await?;
            tx.commit().await?;

            let mut done = 0;
            for group in w.sessions.chunks(ROWS_PER_INSERT * INSERTS_PER_TX) {
                let mut tx = pool.begin().await?;
                for chunk in group.chunks(ROWS_PER_INSERT) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO sessions (id, fleet_id, machine_id, started_by, command, state, end_reason, \
                         started_at, ended_at, exit_code, cols, rows, total_bytes, retained_bytes, last_seen_at) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        let machine = &w.machines[r.machine as usize];
                        let (cols, rows) = SIZES[r.size as usize];
                        b.push_bind(r.id)
                            .push_bind(w.fleets[machine.fleet].id)
                            .push_bind(machine.id)
                            .push_bind(w.members[r.user as usize].id)
                            .push_bind(COMMANDS[r.command as usize])
                            .push_bind(if r.ended.is_some() { "ended" } else { "active" })
                            .push_bind(r.ended.map(|_| if r.lost { "recorder_lost" } else { "exited" }))
                            .push_bind($ts(r.started))
                            .push_bind(r.ended.map($ts))
                            .push_bind(r.exit_code)
                            .push_bind(i32::from(cols))
                            .push_bind(i32::from(rows))
                            .push_bind(i64::from(r.total_bytes))
                            .push_bind(i64::from(r.total_bytes))
                            .push_bind($ts(r.last_seen));
                    });
                    qb.build().execute(&mut *tx).await?;
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO session_clients (id, session_id, kind, name, member_id, attached_at, detached_at) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.client_id)
                            .push_bind(r.id)
                            .push_bind("cli")
                            .push_bind("cmdop record")
                            .push_bind(w.members[r.user as usize].id)
                            .push_bind($ts(r.started))
                            .push_bind(r.ended.map($ts));
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                done += group.len();
                progress(done);
            }
            Ok(())
        }
    };
}

seed_fn!(seed_sqlite_rows, sqlx::Sqlite, SqlitePool, ts_sqlite);
seed_fn!(seed_pg_rows, sqlx::Postgres, PgPool, ts_pg);

/// A connection to the server's database, for seeding, timing the query alone and reading plans.
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    pub async fn connect(backend: Backend, url: &str) -> anyhow::Result<Db> {
        Ok(match backend {
            Backend::Sqlite => {
                // Seeding only: no foreign-key checks (the rows are consistent by construction) and no syncs.
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                    .foreign_keys(false)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
                    .busy_timeout(Duration::from_secs(60));
                Db::Sqlite(sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?)
            }
            Backend::Postgres => Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // Seeding only: no foreign-key triggers (consistent by construction), no WAL flush per
                            // commit. The server's own connections are not affected.
                            sqlx::query("SET session_replication_role = replica").execute(&mut *conn).await?;
                            sqlx::query("SET synchronous_commit = off").execute(&mut *conn).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?,
            ),
        })
    }

    /// Inserts the world; then makes the store as a running server would have it: PostgreSQL vacuumed and
    /// analyzed (autovacuum does both after a bulk insert), the SQLite WAL checkpointed. SQLite is *not* analyzed:
    /// the server never runs ANALYZE, so a production database has no sqlite_stat1 either.
    pub async fn seed(&self, w: &World, progress: &dyn Fn(usize)) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => {
                seed_sqlite_rows(pool, w, progress).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
            }
            Db::Postgres(pool) => {
                seed_pg_rows(pool, w, progress).await?;
                // One statement per call: VACUUM cannot run in the implicit transaction of a multi-statement query.
                sqlx::raw_sql("VACUUM (ANALYZE)").execute(pool).await?;
                sqlx::raw_sql("CHECKPOINT").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Size of the database (SQLite: the file and its WAL).
    pub async fn size_bytes(&self, sqlite_file: &std::path::Path) -> anyhow::Result<u64> {
        match self {
            Db::Sqlite(_) => {
                let len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                Ok(len(sqlite_file) + len(&sqlite_file.with_extension("db-wal")))
            }
            Db::Postgres(pool) => {
                let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(pool).await?;
                Ok(n as u64)
            }
        }
    }

    pub async fn member_id(&self, email: &str) -> anyhow::Result<Uuid> {
        let sql = "SELECT id FROM members WHERE email = $1";
        let id = match self {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).bind(email).fetch_one(pool).await,
            Db::Postgres(pool) => sqlx::query_scalar(sql).bind(email).fetch_one(pool).await,
        };
        id.with_context(|| format!("member {email}"))
    }

    /// Runs `q` `n` times on one connection (prepared once, as the server's pool does); microseconds each, and
    /// the rows of the last run.
    pub async fn time_query(&self, q: &MirrorQuery, n: usize) -> anyhow::Result<(Vec<u64>, usize)> {
        let mut samples = Vec::with_capacity(n);
        let mut rows = 0;
        for _ in 0..n {
            let t0 = Instant::now();
            rows = match self {
                Db::Sqlite(pool) => bind_params!(sqlx::query(sqlx::AssertSqlSafe(q.sql.clone())), &q.params, ts_sqlite)
                    .fetch_all(pool)
                    .await?
                    .len(),
                Db::Postgres(pool) => bind_params!(sqlx::query(sqlx::AssertSqlSafe(q.sql.clone())), &q.params, ts_pg)
                    .fetch_all(pool)
                    .await?
                    .len(),
            };
            samples.push(t0.elapsed().as_micros() as u64);
        }
        Ok((samples, rows))
    }

    /// The plan: SQLite's EXPLAIN QUERY PLAN; PostgreSQL's EXPLAIN (ANALYZE, BUFFERS) with the values bound (a
    /// custom plan) and, after `time_query` ran the statement many times, what the plan cache chose for it.
    pub async fn explain(&self, q: &MirrorQuery) -> anyhow::Result<String> {
        match self {
            Db::Sqlite(pool) => {
                let sql = format!("EXPLAIN QUERY PLAN {}", q.sql);
                let rows =
                    bind_params!(sqlx::query(sqlx::AssertSqlSafe(sql)), &q.params, ts_sqlite).fetch_all(pool).await?;
                // (id, parent, notused, detail): indent by depth.
                let mut depth: Vec<(i64, usize)> = Vec::new();
                let mut out = String::new();
                for r in rows {
                    let (id, parent, detail): (i64, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(3)?);
                    let d = depth.iter().find(|(i, _)| *i == parent).map(|(_, d)| d + 1).unwrap_or(0);
                    depth.push((id, d));
                    out.push_str(&format!("{}{detail}\n", "  ".repeat(d)));
                }
                Ok(out)
            }
            Db::Postgres(pool) => {
                let sql = format!("EXPLAIN (ANALYZE, BUFFERS) {}", q.sql);
                let rows =
                    bind_params!(sqlx::query(sqlx::AssertSqlSafe(sql)), &q.params, ts_pg).fetch_all(pool).await?;
                let mut out = String::from("custom plan (values bound):\n");
                for r in rows {
                    out.push_str(&r.try_get::<String, _>(0)?);
                    out.push('\n');
                }
                // The same statement as a generic plan (what the plan cache may switch to after five runs).
                let mut conn = pool.acquire().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE bench_list AS {}", q.sql)))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await?;
                let args: Vec<String> = q.params.iter().map(Param::pg_literal).collect();
                let sql = format!("EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_list({})", args.join(", "));
                let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *conn).await;
                sqlx::raw_sql("RESET plan_cache_mode; DEALLOCATE bench_list").execute(&mut *conn).await?;
                out.push_str("\ngeneric plan (plan_cache_mode = force_generic_plan):\n");
                for r in rows? {
                    out.push_str(&r.try_get::<String, _>(0)?);
                    out.push('\n');
                }
                Ok(out)
            }
        }
    }

    /// PostgreSQL: how often the plan cache planned the timed statement generically / custom (pg_prepared_statements
    /// of this connection).
    pub async fn plan_cache(&self, q: &MirrorQuery) -> anyhow::Result<Option<(i64, i64)>> {
        let Db::Postgres(pool) = self else { return Ok(None) };
        let row = sqlx::query(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1 ORDER BY prepare_time \
             DESC LIMIT 1",
        )
        .bind(&q.sql)
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn close(self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// A bound value of a [`MirrorQuery`].
#[derive(Debug, Clone)]
pub enum Param {
    Id(Uuid),
    Text(String),
    /// Milliseconds since the epoch (SQLite INTEGER, PostgreSQL TIMESTAMPTZ).
    Ts(i64),
    Int(i64),
}

impl Param {
    fn pg_literal(&self) -> String {
        match self {
            Param::Id(u) => format!("'{u}'"),
            Param::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Param::Ts(ms) => format!("'{}'", ts_pg(*ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            Param::Int(i) => i.to_string(),
        }
    }
}

/// The filters of one list request, by name as the API takes them.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub fleet: Option<String>,
    pub machine: Option<String>,
    pub user: Option<String>,
    /// Filters by id instead (the store's `fleet_id`/`machine_id`/`user_id`): the variant with the names looked
    /// up first, which the bench times beside the store's SQL.
    pub fleet_id: Option<Uuid>,
    pub machine_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub active: Option<bool>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Keyset position of a page after the first: (started_at ms, id).
    pub after: Option<(i64, Uuid)>,
    pub limit: i64,
}

/// The list query as store/src/sql.rs builds it (`SESSION_SELECT`, `push_visibility`, `push_filters` with names
/// through sub-selects, the keyset, `ORDER BY ... LIMIT limit + 1`), with `$n` placeholders. A copy: if the store's
/// SQL changes, this must follow (on PostgreSQL the bench compares it with what the server's backends ran).
/// Not in step since 7ea4601: the store now looks names up as ids before the list query, so `--explain` shows
/// the plans of the earlier sub-select form (useful as the "before"; the HTTP timings are of the real server).
pub struct MirrorQuery {
    pub sql: String,
    pub params: Vec<Param>,
}

pub const SESSION_SELECT: &str = "SELECT s.id, s.fleet_id, f.name AS fleet_name, s.machine_id, \
     m.name AS machine_name, s.started_by, u.email AS user_email, u.display_name AS user_name, s.command, s.state, \
     s.end_reason, s.started_at, s.ended_at, s.exit_code, s.cols, s.rows, s.total_bytes, s.retained_bytes, \
     s.truncated_bytes, s.chat_thread_id, ct.title AS chat_title \
     FROM sessions s \
     JOIN fleets f ON f.id = s.fleet_id \
     JOIN machines m ON m.id = s.machine_id \
     JOIN members u ON u.id = s.started_by \
     LEFT JOIN chat_threads ct ON ct.id = s.chat_thread_id \
     WHERE 1 = 1";

impl MirrorQuery {
    pub fn build(viewer: Uuid, f: &Filters) -> MirrorQuery {
        let mut sql = String::from(SESSION_SELECT);
        let mut params = Vec::new();
        let mut bind = |sql: &mut String, p: Param| {
            params.push(p);
            sql.push_str(&format!("${}", params.len()));
        };
        sql.push_str(" AND EXISTS (SELECT 1 FROM fleet_members fm WHERE fm.fleet_id = s.fleet_id AND fm.member_id = ");
        bind(&mut sql, Param::Id(viewer));
        sql.push_str(
            " AND (fm.role IN ('owner', 'admin') OR EXISTS (SELECT 1 FROM machine_grants g \
             WHERE g.machine_id = s.machine_id AND g.member_id = fm.member_id)))",
        );
        if let Some(v) = f.fleet_id {
            sql.push_str(" AND s.fleet_id = ");
            bind(&mut sql, Param::Id(v));
        }
        if let Some(v) = f.machine_id {
            sql.push_str(" AND s.machine_id = ");
            bind(&mut sql, Param::Id(v));
        }
        if let Some(v) = f.user_id {
            sql.push_str(" AND s.started_by = ");
            bind(&mut sql, Param::Id(v));
        }
        if let Some(v) = &f.fleet {
            sql.push_str(" AND s.fleet_id IN (SELECT id FROM fleets WHERE name = ");
            bind(&mut sql, Param::Text(v.clone()));
            sql.push(')');
        }
        if let Some(v) = &f.machine {
            sql.push_str(" AND s.machine_id IN (SELECT id FROM machines WHERE name = ");
            bind(&mut sql, Param::Text(v.clone()));
            sql.push(')');
        }
        if let Some(v) = &f.user {
            sql.push_str(" AND s.started_by IN (SELECT id FROM members WHERE email = ");
            bind(&mut sql, Param::Text(v.clone()));
            sql.push(')');
        }
        if let Some(a) = f.active {
            sql.push_str(" AND s.state = ");
            bind(&mut sql, Param::Text(if a { "active" } else { "ended" }.into()));
        }
        if let Some(v) = f.since_ms {
            sql.push_str(" AND s.started_at >= ");
            bind(&mut sql, Param::Ts(v));
        }
        if let Some(v) = f.until_ms {
            sql.push_str(" AND s.started_at < ");
            bind(&mut sql, Param::Ts(v));
        }
        if let Some((at, id)) = f.after {
            sql.push_str(" AND (s.started_at < ");
            bind(&mut sql, Param::Ts(at));
            sql.push_str(" OR (s.started_at = ");
            bind(&mut sql, Param::Ts(at));
            sql.push_str(" AND s.id < ");
            bind(&mut sql, Param::Id(id));
            sql.push_str("))");
        }
        sql.push_str(" ORDER BY s.started_at DESC, s.id DESC LIMIT ");
        bind(&mut sql, Param::Int(f.limit + 1));
        MirrorQuery { sql, params }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_has_the_promised_shape() {
        let now = 1_800_000_000_000;
        let w = World::generate(20_000, now, &[(OWNER, Uuid::nil())], 7);
        assert_eq!(w.fleets.len(), 3);
        assert_eq!(w.machines.len(), 60);
        assert_eq!(w.members.len(), 25);
        assert!(w.members[0].by_cli && w.members[0].id.is_nil() && !w.members[1].by_cli);
        assert!(w.sessions.windows(2).all(|p| (p[0].started, p[0].id) < (p[1].started, p[1].id)));
        assert!(w.sessions.iter().all(|r| r.started > now - 366 * DAY_MS && r.started < now));
        let active = w.active_count();
        assert!((50..=150).contains(&active), "{active} active");
        // The owner sees prod; the viewer sees three machines.
        assert_eq!(w.visible_machines(0).iter().filter(|v| **v).count(), 30);
        assert_eq!(w.visible_machines(2).iter().filter(|v| **v).count(), 3);
        assert_eq!(w.visible_machines(1).iter().filter(|v| **v).count(), 60);
        // Everyone who started a session could see its machine.
        for r in w.sessions.iter().take(1000) {
            assert!(w.visible_machines(r.user as usize)[r.machine as usize]);
        }
        // v7 ids carry the start time.
        let r = &w.sessions[0];
        let (secs, nanos) = r.id.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64 * 1000 + nanos as i64 / 1_000_000, r.started);
    }

    #[test]
    fn the_mirror_query_numbers_its_parameters() {
        let f = Filters {
            fleet: Some("prod".into()),
            since_ms: Some(5),
            after: Some((9, Uuid::nil())),
            limit: 50,
            ..Default::default()
        };
        let q = MirrorQuery::build(Uuid::nil(), &f);
        assert_eq!(q.params.len(), 7);
        assert!(q.sql.contains("fm.member_id = $1") && q.sql.contains("WHERE name = $2)"));
        assert!(q.sql.ends_with("LIMIT $7"));
        let f = Filters { fleet: None, fleet_id: Some(Uuid::nil()), ..f };
        assert!(MirrorQuery::build(Uuid::nil(), &f).sql.contains("AND s.fleet_id = $2 AND s.started_at >= $3"));
        assert_eq!(Param::Ts(0).pg_literal(), "'1970-01-01T00:00:00.000Z'");
    }
}
