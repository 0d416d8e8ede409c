//! The server under test: a real `cmdop-inspector serve` process on a fresh store (a SQLite file in a temp dir, or
//! a PostgreSQL database created for the run and dropped after), set up with the admin CLI: one fleet, one bot
//! member who owns it, machines, and an API token.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use sqlx::PgPool;

use crate::http;
use crate::proc_stats::CpuTimes;

pub const FLEET: &str = "bench";
pub const MEMBER: &str = "bench@bench.local";
pub const MACHINE: &str = "bench-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// How to start servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bin: PathBuf,
    /// Where to create PostgreSQL databases (a URL to an existing database, e.g. `postgres`).
    pub postgres_url: String,
    /// Parent of the temp dirs (SQLite file, logs).
    pub work_dir: PathBuf,
    /// `admin fleet set --transcript-limit`, if given.
    pub transcript_limit: Option<String>,
    /// Keep each server's temp dir (store, logs) instead of removing it.
    pub keep: bool,
    /// More arguments for `serve` (e.g. `--recorder-grace`).
    pub serve_args: Vec<String>,
}

impl ServerOptions {
    /// The store as shown in tables; PostgreSQL says how the server reaches it (TCP or a Unix socket).
    pub fn label(&self, backend: Backend) -> String {
        match backend {
            Backend::Sqlite => "SQLite".into(),
            Backend::Postgres if self.postgres_url.contains("host=/") => "PostgreSQL (Unix socket)".into(),
            Backend::Postgres => "PostgreSQL (TCP)".into(),
        }
    }
}

/// A PostgreSQL database made for one server, dropped with it.
struct PgDatabase {
    admin_url: String,
    name: String,
    admin: PgPool,
}

/// A running server. Dropping it stops the process and drops its database.
pub struct Server {
    pub addr: SocketAddr,
    pub token: String,
    bin: PathBuf,
    database_url: String,
    child: Child,
    pg: Option<PgDatabase>,
    log: PathBuf,
    // Last: removed after the process stopped.
    dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(opts: &ServerOptions, backend: Backend) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&opts.work_dir)?;
        let mut dir = tempfile::Builder::new().prefix("cmdop-bench-").tempdir_in(&opts.work_dir)?;
        if opts.keep {
            dir.disable_cleanup(true);
            eprintln!("server files kept in {}", dir.path().display());
        }
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create(&opts.postgres_url).await?),
        };
        let database_url = match &pg {
            Some(db) => with_database(&db.admin_url, &db.name),
            None => format!("sqlite://{}", dir.path().join("inspector.db").display()),
        };
        let admin =
            |args: &[&str]| run_admin(admin_command(&opts.bin, dir.path(), &database_url, args), args.join(" "));
        admin(&["fleet", "create", FLEET]).await?;
        admin(&["member", "add", MEMBER, "--bot"]).await?;
        admin(&["member", "join", MEMBER, FLEET, "--role", "owner"]).await?;
        admin(&["machine", "add", FLEET, MACHINE]).await?;
        if let Some(limit) = &opts.transcript_limit {
            admin(&["fleet", "set", FLEET, "--transcript-limit", limit]).await?;
        }
        let out = admin(&["token", "create", MEMBER, "--name", "bench"]).await?;
        let token = out.lines().last().context("no token printed")?.trim().to_string();

        let addr = free_port()?;
        let log = dir.path().join("server.log");
        let child = Command::new(&opts.bin)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--database-url")
            .arg(&database_url)
            .args(["serve", "--listen", &addr.to_string()])
            .args(&opts.serve_args)
            // CMDOP_BENCH_SERVER_LOG=FILTER (e.g. `cmdop_inspector_server=debug`, with --keep to find the log
            // afterwards) for looking into a run.
            .env("CMDOP_LOG", std::env::var("CMDOP_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", opts.bin.display()))?;
        let bin = opts.bin.clone();
        let mut server = Server { addr, token, bin, database_url, child, pg, log, dir };
        server.wait_healthy().await?;
        Ok(server)
    }

    /// Runs `cmdop-inspector admin ARGS` against this server's store; returns what it printed.
    pub async fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        run_admin(admin_command(&self.bin, self.dir.path(), &self.database_url, args), args.join(" ")).await
    }

    /// The store's URL (`sqlite://...` or `postgres://...`).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// A path in the server's temp dir (for logs of processes run against it).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's log so far (its last lines), for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Number of WARN/ERROR lines the server logged.
    pub fn log_problems(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).count()
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited ({status}) at start:\n{}", self.log_tail());
            }
            if let Ok((200, _)) = http::get(self.addr, "/healthz", None).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not become healthy within 60 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU of the PostgreSQL backends serving this server's database (per backend pid), `None` on SQLite.
    pub async fn pg_backends(&self) -> anyhow::Result<Option<PgBackends>> {
        let Some(db) = &self.pg else { return Ok(None) };
        let pids: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(&db.name)
            .fetch_all(&db.admin)
            .await?;
        let cpu = pids.into_iter().filter_map(|p| Some((p, CpuTimes::of(p as u32).ok()?.own))).collect();
        Ok(Some(PgBackends { cpu }))
    }
}

/// CPU time of a database's PostgreSQL backends at one moment.
#[derive(Debug, Clone, Default)]
pub struct PgBackends {
    cpu: HashMap<i32, Duration>,
}

impl PgBackends {
    /// CPU the backends used since `earlier` (backends that appeared since count from zero).
    pub fn since(&self, earlier: &PgBackends) -> Duration {
        self.cpu.iter().map(|(pid, t)| t.saturating_sub(earlier.cpu.get(pid).copied().unwrap_or_default())).sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(db) = self.pg.take() {
            db.drop_blocking();
        }
    }
}

impl PgDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<PgDatabase> {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await
            .with_context(|| format!("PostgreSQL at {admin_url} (set --postgres-url)"))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
        let name = format!("cmdop_bench_{}_{nanos}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await?;
        Ok(PgDatabase { admin_url: admin_url.to_string(), name, admin })
    }

    /// Drops the database; runs its own runtime on its own thread, so it works from sync and async code alike.
    fn drop_blocking(self) {
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                self.admin.close().await;
                if let Ok(admin) = PgPool::connect(&self.admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await {
                        eprintln!("warning: could not drop database {}: {e}", self.name);
                    }
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// `cmdop-inspector admin ARGS` against a store.
fn admin_command(bin: &Path, data_dir: &Path, database_url: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--data-dir").arg(data_dir).arg("--database-url").arg(database_url);
    cmd.arg("admin").args(args).env("CMDOP_LOG", "warn");
    cmd
}

async fn run_admin(mut cmd: tokio::process::Command, what: String) -> anyhow::Result<String> {
    let out = cmd.output().await.with_context(|| format!("admin {what}"))?;
    if !out.status.success() {
        bail!("admin {what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `postgres://host/db?x` with the database part replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    }
}

/// The binary `name` beside this one (same target profile dir), unless given.
pub fn sibling_binary(given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let dir = me.parent().context("bench binary has no directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p cmdop-inspector-server -p cmdop-agent \
             -p cmdop-bench` or pass its path",
            path.display()
        );
    }
    Ok(path)
}

/// A path as a shell word, single-quoted.
pub fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
    }

    #[test]
    fn paths_are_quoted_for_sh() {
        assert_eq!(shell_quote(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(shell_quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }
}
