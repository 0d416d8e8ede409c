//! `cmdop-bench`: measures the sessions inspector against its targets, end to end with the real release binaries,
//! and prints the results as markdown. See BENCHMARKS.md for what each benchmark does and how to read it.
//!
//! (a) `ingest`: one session printing as fast as it can, `cmdop record` → server → durable store.
//! (b) `latency`: 1,000 sessions at 1 KB/s and 100 viewers; recorder write → viewer receipt.
//! (c) `fanout`: one session at 1 MiB/s and 1,000 viewers; does any viewer fall behind?
//! (d) `list`: `GET /api/v1/sessions` first pages with filters over 1,000,000 sessions seeded with SQL.
//! Each against SQLite and/or PostgreSQL, and asciinema 3 as the reference where it applies.

mod asciinema;
mod client;
mod fanout;
mod http;
mod ingest;
mod latency;
mod list;
mod list_data;
mod pace;
mod payload;
mod proc_stats;
mod pty_baseline;
mod report;
mod server_proc;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use fanout::FanoutOptions;
use ingest::{IngestOptions, IngestRow};
use latency::LatencyOptions;
use list::ListOptions;
use server_proc::{Backend, ServerOptions, sibling_binary};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Parser)]
#[command(name = "cmdop-bench", about = "Benchmarks of the cmdop sessions inspector (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    ingest: IngestArgs,
    #[command(flatten)]
    latency: LatencyArgs,
    #[command(flatten)]
    fanout: FanoutArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// (a) ingest throughput of one session, recorder to durable store
    Ingest,
    /// (b) live latency with many sessions and viewers
    Latency,
    /// (c) one fast session, many viewers
    Fanout,
    /// (a), (b) and (c)
    All,
    /// (d) the sessions list's first page with filters over many sessions (not part of `all`: it seeds 1,000,000)
    List(ListArgs),
    /// Print at a fixed rate (the command asciinema records in the fan-out reference)
    #[command(hide = true)]
    Pace(pace::PaceArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

impl BackendChoice {
    fn backends(self) -> Vec<Backend> {
        match self {
            BackendChoice::Sqlite => vec![Backend::Sqlite],
            BackendChoice::Postgres => vec![Backend::Postgres],
            BackendChoice::Both => vec![Backend::Sqlite, Backend::Postgres],
        }
    }
}

#[derive(Debug, Args)]
struct Common {
    /// Store(s) to run the server on
    #[arg(long, global = true, value_enum, default_value = "both")]
    backend: BackendChoice,
    /// The `cmdop-inspector` binary [default: beside this one]
    #[arg(long, global = true, env = "CMDOP_BENCH_SERVER", value_name = "PATH")]
    server: Option<PathBuf>,
    /// The `cmdop` binary [default: beside this one]
    #[arg(long, global = true, env = "CMDOP_BENCH_CMDOP", value_name = "PATH")]
    cmdop: Option<PathBuf>,
    /// asciinema 3 for the reference runs; skipped (with a note) when not given
    #[arg(long, global = true, env = "CMDOP_BENCH_ASCIINEMA", value_name = "PATH")]
    asciinema: Option<PathBuf>,
    /// PostgreSQL to create throwaway databases in (trust auth)
    #[arg(long, global = true, env = "CMDOP_BENCH_POSTGRES_URL", default_value = DEFAULT_POSTGRES_URL)]
    postgres_url: String,
    /// Where temp dirs (SQLite files, logs, the payload) go [default: the system temp dir]
    #[arg(long, global = true, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Set the bench fleet's transcript ring buffer (`admin fleet set --transcript-limit`), e.g. 1GiB
    #[arg(long, global = true, value_name = "SIZE")]
    transcript_limit: Option<String>,
    /// Keep each server's temp dir (SQLite store, server and recorder logs) for inspection
    #[arg(long, global = true)]
    keep: bool,
    /// Also write the markdown report here
    #[arg(long, global = true, value_name = "FILE")]
    out: Option<PathBuf>,
    /// WebSocket connections opened at once while setting up
    #[arg(long, global = true, default_value_t = 64)]
    parallel_connects: usize,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// (a) payload size
    #[arg(long = "ingest-size", global = true, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// (a) `cmdop record --buffer-size`: `auto` is the payload size plus 1 MiB (nothing can be dropped, so the
    /// run measures the ingest), `default` leaves cmdop's own (64 MiB: a faster command loses its oldest bytes)
    #[arg(long = "ingest-buffer-size", global = true, value_name = "SIZE", default_value = "auto")]
    buffer_size: String,
    /// (a) `cmdop record --flush-timeout`, seconds: how long cmdop waits for the server after the command ends
    #[arg(long = "ingest-flush-timeout", global = true, default_value_t = 900)]
    flush_timeout: u64,
    /// (a) runs of each recorder per store
    #[arg(long = "ingest-repeat", global = true, default_value_t = 1)]
    repeat: usize,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    /// (b) sessions (simulated recorders)
    #[arg(long = "latency-sessions", global = true, default_value_t = 1000)]
    sessions: usize,
    /// (b) viewers, each on a different session
    #[arg(id = "latency_viewers", long = "latency-viewers", global = true, default_value_t = 100)]
    viewers: usize,
    /// (b) bytes per frame
    #[arg(long = "latency-frame", global = true, default_value_t = 100, value_parser = clap::value_parser!(u64).range(16..))]
    frame: u64,
    /// (b) one frame per session every this many milliseconds
    #[arg(long = "latency-interval-ms", global = true, default_value_t = 100)]
    interval_ms: u64,
    /// (b) seconds of warm-up before measuring
    #[arg(long = "latency-warmup", global = true, default_value_t = 5)]
    warmup: u64,
    /// (b) seconds measured
    #[arg(id = "latency_duration", long = "latency-duration", global = true, default_value_t = 30)]
    duration: u64,
    /// (b) the p99 target, milliseconds
    #[arg(long = "latency-target-ms", global = true, default_value_t = 25.0)]
    target_ms: f64,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// (c) viewers of the one session
    #[arg(id = "fanout_viewers", long = "fanout-viewers", global = true, default_value_t = 1000)]
    viewers: usize,
    /// (c) bytes per second the session prints
    #[arg(id = "fanout_rate", long = "fanout-rate", global = true, default_value = "1MiB", value_parser = parse_size)]
    rate: u64,
    /// (c) bytes per frame
    #[arg(id = "fanout_chunk", long = "fanout-chunk", global = true, default_value = "16KiB", value_parser = parse_size)]
    chunk: u64,
    /// (c) seconds of output
    #[arg(id = "fanout_duration", long = "fanout-duration", global = true, default_value_t = 30)]
    duration: u64,
    /// (c) longest wait, seconds, for the server to become quiet after the viewers connected
    #[arg(long = "fanout-quiet-limit", global = true, default_value_t = 600)]
    quiet_limit: u64,
    /// (c) seconds between the server becoming quiet and the first byte
    #[arg(long = "fanout-settle", global = true, default_value_t = 1)]
    settle: u64,
    /// (c) seconds viewers may take after the last byte to have everything
    #[arg(long = "fanout-drain", global = true, default_value_t = 10)]
    drain: u64,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Sessions to seed
    #[arg(id = "list_sessions", long = "sessions", default_value_t = 1_000_000)]
    sessions: usize,
    /// Timed requests per case and viewer
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Untimed requests before them
    #[arg(id = "list_warmup", long = "warmup", default_value_t = 20)]
    warmup: usize,
    /// Seconds one case (per viewer) may take; it stops early, with fewer samples (at least 20), after that
    #[arg(long, default_value_t = 60)]
    case_budget: u64,
    /// p95 target on SQLite, milliseconds
    #[arg(long, default_value_t = 20.0)]
    target_sqlite_ms: f64,
    /// p95 target on PostgreSQL, milliseconds
    #[arg(long, default_value_t = 50.0)]
    target_postgres_ms: f64,
    /// Skip timing the SQL alone and printing the query plans
    #[arg(long)]
    no_explain: bool,
}

/// `65536`, `64KiB`, `1MiB`, `2GiB`.
fn parse_size(text: &str) -> Result<u64, String> {
    match cmdop_protocol::parse_size(text)? {
        0 => Err(format!("`{}` is not a usable size", text.trim())),
        n => Ok(n),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Pace(args) = &cli.command {
        return match pace::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pace: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cmdop-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("cmdop-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen benchmarks; Ok(false) when one of them failed to run.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let common = &cli.common;
    let fd_limit = proc_stats::raise_fd_limit(65_536)?;
    let server_bin = sibling_binary(common.server.clone(), "cmdop-inspector")?;
    let cmdop_bin = sibling_binary(common.cmdop.clone(), "cmdop")?;
    let bench_bin = std::env::current_exe()?;
    let asciinema = match &common.asciinema {
        Some(p) if p.exists() => Some(p.clone()),
        Some(p) => {
            eprintln!("warning: asciinema not found at {}; skipping the reference", p.display());
            None
        }
        None => None,
    };
    let work_dir = common.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let server_opts = ServerOptions {
        bin: server_bin.clone(),
        postgres_url: common.postgres_url.clone(),
        work_dir: work_dir.clone(),
        transcript_limit: common.transcript_limit.clone(),
        keep: common.keep,
        serve_args: Vec::new(),
    };
    let backends = common.backend.backends();
    let (do_ingest, do_latency, do_fanout) = match cli.command {
        Cmd::Ingest => (true, false, false),
        Cmd::Latency => (false, true, false),
        Cmd::Fanout => (false, false, true),
        Cmd::All => (true, true, true),
        Cmd::List(_) => (false, false, false),
        Cmd::Pace(_) => unreachable!("handled in main"),
    };

    let mut md = header(&server_bin, &cmdop_bin, asciinema.as_deref(), fd_limit);
    if backends.contains(&Backend::Postgres) {
        md.push_str(&format!("- PostgreSQL: `{}` (a fresh database per run)\n", common.postgres_url));
    }
    let mut all_ran = true;
    let mut section = |md: &mut String, title: &str, body: anyhow::Result<String>| {
        md.push_str(&format!("\n### {title}\n\n"));
        match body {
            Ok(b) => md.push_str(&b),
            Err(e) => {
                all_ran = false;
                eprintln!("{title} failed: {e:#}");
                md.push_str(&format!("**Failed:** {e:#}\n"));
            }
        }
    };

    if do_ingest {
        let a = &cli.ingest;
        let payload = work_dir.join(format!("cmdop-bench-payload-{}.txt", a.size));
        let opts = IngestOptions {
            size: a.size,
            cmdop_bin: cmdop_bin.clone(),
            buffer_size: match a.buffer_size.as_str() {
                "auto" => Some(format!("{}MiB", a.size.div_ceil(1 << 20) + 1)),
                "default" => None,
                size => Some(size.to_string()),
            },
            flush_timeout: a.flush_timeout,
            payload: payload.clone(),
        };
        let body = run_ingest(&opts, &server_opts, &backends, asciinema.as_deref(), a.repeat, &work_dir).await;
        let _ = std::fs::remove_file(&payload);
        section(&mut md, "(a) Ingest: one session as fast as it can print", body);
    }
    if do_latency {
        let a = &cli.latency;
        let opts = LatencyOptions {
            sessions: a.sessions,
            viewers: a.viewers.min(a.sessions),
            frame_bytes: a.frame as usize,
            interval: Duration::from_millis(a.interval_ms),
            warmup: Duration::from_secs(a.warmup),
            duration: Duration::from_secs(a.duration),
            parallel_connects: common.parallel_connects,
        };
        let mut results = Vec::new();
        let mut failures = Vec::new();
        for &b in &backends {
            match latency::run(&opts, &server_opts, b).await {
                Ok(r) => results.push(r),
                Err(e) => failures.push(format!("{}: {e:#}", b.name())),
            }
        }
        let mut body = latency::table(&results, a.target_ms);
        if asciinema.is_some() {
            body.push_str("\nasciinema has no equivalent of many sessions on one server: no reference row.\n");
        }
        section(&mut md, "(b) Live latency: many sessions, some watched", failures_or(body, failures));
    }
    if do_fanout {
        let a = &cli.fanout;
        let opts = FanoutOptions {
            viewers: a.viewers,
            rate: a.rate,
            chunk: a.chunk as usize,
            duration: Duration::from_secs(a.duration),
            quiet_limit: Duration::from_secs(a.quiet_limit),
            settle: Duration::from_secs(a.settle),
            drain_grace: Duration::from_secs(a.drain),
            parallel_connects: common.parallel_connects,
        };
        let mut results = Vec::new();
        let mut failures = Vec::new();
        for &b in &backends {
            match fanout::run(&opts, &server_opts, b).await {
                Ok(r) => results.push(r),
                Err(e) => failures.push(format!("{}: {e:#}", b.name())),
            }
        }
        if let Some(bin) = &asciinema {
            match asciinema::fanout(bin, &bench_bin, &opts, &work_dir).await {
                Ok(r) => results.push(r),
                Err(e) => failures.push(format!("asciinema: {e:#}")),
            }
        }
        let mut body = fanout::table(&results);
        if asciinema.is_none() {
            body.push_str("\nasciinema reference skipped: pass --asciinema PATH or set CMDOP_BENCH_ASCIINEMA.\n");
        }
        section(&mut md, "(c) Fan-out: one fast session, many viewers", failures_or(body, failures));
    }

    if let Cmd::List(a) = &cli.command {
        let opts = ListOptions {
            sessions: a.sessions,
            requests: a.requests,
            warmup: a.warmup,
            case_budget: Duration::from_secs(a.case_budget),
            target_sqlite_ms: a.target_sqlite_ms,
            target_postgres_ms: a.target_postgres_ms,
            explain: !a.no_explain,
        };
        let mut results = Vec::new();
        let mut failures = Vec::new();
        for &b in &backends {
            match list::run(&opts, &server_opts, b).await {
                Ok(r) => results.push(r),
                Err(e) => failures.push(format!("{}: {e:#}", b.name())),
            }
        }
        let body = list::table(&results);
        let title = format!(
            "(d) Sessions list: `GET /api/v1/sessions` first page with filters over {} sessions",
            opts.sessions
        );
        section(&mut md, &title, failures_or(body, failures));
        let plans = list::plans(&results);
        if !plans.is_empty() {
            md.push_str("\n#### Query plans (the list query as the store builds it, against the seeded database)\n");
            md.push_str(&plans);
        }
    }

    println!("{md}");
    if let Some(out) = &common.out {
        std::fs::write(out, &md)?;
        eprintln!("report written to {}", out.display());
    }
    Ok(all_ran)
}

/// The body, or an error when nothing ran; partial failures are appended to the body.
fn failures_or(mut body: String, failures: Vec<String>) -> anyhow::Result<String> {
    for f in &failures {
        body.push_str(&format!("\n**Failed:** {f}\n"));
    }
    Ok(body)
}

async fn run_ingest(
    opts: &IngestOptions,
    server_opts: &ServerOptions,
    backends: &[Backend],
    asciinema: Option<&Path>,
    repeat: usize,
    work_dir: &Path,
) -> anyhow::Result<String> {
    eprintln!("ingest: writing the {} byte payload ...", opts.size);
    let (path, size) = (opts.payload.clone(), opts.size);
    tokio::task::spawn_blocking(move || payload::write_file(&path, size)).await??;
    let mut rows: Vec<IngestRow> = Vec::new();
    let mut failures = Vec::new();

    let command = ingest::command_line(&opts.payload);
    let baseline = tokio::task::spawn_blocking(move || {
        let window = proc_stats::Window::machine_only();
        pty_baseline::run(&command).map(|r| (r, window.finish()))
    })
    .await?;
    match baseline {
        Ok(((run, read), window)) => rows.push(IngestRow {
            system: "PTY only (bench reads the master)".into(),
            buffer: "—".into(),
            backend: "none".into(),
            bytes: read,
            run,
            window,
            pg_cpu: None,
            stored: format!("{read} B read, nothing stored"),
            complete: read == opts.size,
        }),
        Err(e) => failures.push(format!("PTY baseline: {e:#}")),
    }
    for _ in 0..repeat {
        for &b in backends {
            match ingest::run(opts, server_opts, b).await {
                Ok(r) => rows.push(r),
                Err(e) => failures.push(format!("{}: {e:#}", b.name())),
            }
        }
        if let Some(bin) = asciinema {
            match asciinema::ingest(bin, opts, work_dir).await {
                Ok(r) => rows.push(r),
                Err(e) => failures.push(format!("asciinema: {e:#}")),
            }
        }
    }
    let mut body = ingest::table(&rows);
    body.push_str(&format!(
        "\nCommand recorded: `sh -c '{}'` ({} bytes of printable lines). Target: ≥ 50 MB/s on SQLite.\n",
        ingest::command_line(Path::new("PAYLOAD")),
        opts.size
    ));
    for r in rows.iter().filter(|r| r.system.starts_with("cmdop")) {
        let ok = r.complete && r.mb_per_s() >= 50.0;
        body.push_str(&format!(
            "- {} on {}: {:.1} MB/s, all bytes stored: {} → target (≥ 50 MB/s) met: {}\n",
            r.system,
            r.backend,
            r.mb_per_s(),
            report::yes_no(r.complete),
            report::yes_no(ok)
        ));
    }
    if asciinema.is_none() {
        body.push_str("\nasciinema reference skipped: pass --asciinema PATH or set CMDOP_BENCH_ASCIINEMA.\n");
    }
    failures_or(body, failures)
}

/// Machine, date, versions and limits.
fn header(server: &Path, cmdop: &Path, asciinema: Option<&Path>, fd_limit: u64) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, m)| m.trim()))
        .unwrap_or("unknown");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let version = |bin: &Path| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let mut md = format!(
        "## Run of {}\n\n- machine: {cores} cores ({model}), {:.1} GiB RAM, Linux {}\n- load average at start: {:.2}\n\
         - binaries: {} ({}), {} ({})\n- open files limit: {fd_limit}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        proc_stats::load_average(),
        server.display(),
        version(server),
        cmdop.display(),
        version(cmdop),
    );
    if let Some(a) = asciinema {
        md.push_str(&format!("- reference: {} ({})\n", a.display(), version(a)));
    }
    // The source tree this bench was built in (the binaries are normally built from the same tree).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) {
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        md.push_str(&format!("- source: commit {commit}{}\n", if dirty { " (with local changes)" } else { "" }));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("16KiB"), Ok(16 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1 parsec").is_err());
    }

    #[test]
    fn the_cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["cmdop-bench", "fanout", "--backend", "sqlite", "--fanout-viewers", "10"]).unwrap();
        assert_eq!(cli.fanout.viewers, 10);
        assert_eq!(cli.common.backend, BackendChoice::Sqlite);
        let cli = Cli::try_parse_from(["cmdop-bench", "pace", "--rate", "10", "--chunk", "2", "--bytes", "4"]).unwrap();
        let Cmd::Pace(p) = cli.command else { panic!("pace") };
        assert_eq!((p.rate, p.chunk, p.bytes), (10, 2, 4));
        let cli = Cli::try_parse_from([
            "cmdop-bench",
            "list",
            "--backend",
            "postgres",
            "--sessions",
            "1000",
            "--requests",
            "5",
            "--out",
            "x.md",
        ])
        .unwrap();
        let Cmd::List(l) = cli.command else { panic!("list") };
        assert_eq!((l.sessions, l.requests, l.warmup), (1000, 5, 20));
        assert_eq!(cli.common.backend, BackendChoice::Postgres);
    }
}
