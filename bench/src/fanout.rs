//! (c) Fan-out: one session at a high rate watched by many viewers. A simulated recorder sends fixed chunks on a
//! fixed schedule; every viewer counts the bytes it received. Once a second the bench takes each viewer's lag
//! (bytes sent by the recorder minus bytes the viewer has), and at the end checks that every viewer received
//! every byte. The viewer bookkeeping is shared with the asciinema reference.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use cmdop_protocol::ingest::ServerFrame;
use cmdop_protocol::live::decode_live_output;
use futures_util::{StreamExt, stream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{self, INGEST_PATH, Message, Recorder, event_type, live_path, server_frame};
use crate::payload::Printable;
use crate::proc_stats::{Window, WindowStats, wait_quiet};
use crate::report::{self, Table};
use crate::server_proc::{Backend, MACHINE, Server, ServerOptions};
use crate::stats::{Percentiles, now_us};

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub viewers: usize,
    /// Bytes per second the recorder sends.
    pub rate: u64,
    /// Bytes per frame.
    pub chunk: usize,
    pub duration: Duration,
    /// Longest wait for the server to become quiet after the viewers connected.
    pub quiet_limit: Duration,
    /// Pause after that, before the first byte.
    pub settle: Duration,
    /// How long after the last byte viewers may take to receive everything.
    pub drain_grace: Duration,
    pub parallel_connects: usize,
}

impl FanoutOptions {
    /// Bytes the recorder sends in all: whole chunks.
    pub fn total(&self) -> u64 {
        let chunks = (self.rate as f64 * self.duration.as_secs_f64() / self.chunk as f64).round() as u64;
        chunks.max(1) * self.chunk as u64
    }

    pub fn chunk_interval(&self) -> Duration {
        Duration::from_secs_f64(self.chunk as f64 / self.rate as f64)
    }
}

/// What one viewer has received so far. Updated by its task, read by the sampler.
#[derive(Debug, Default)]
pub struct ViewerProgress {
    /// Transcript bytes received (the offset reached).
    pub bytes: AtomicU64,
    /// When `bytes` reached the total ([`now_us`]); 0 while it has not.
    pub done_us: AtomicU64,
    /// The viewer is following: the replay reached the live tail (asciinema: the init event arrived).
    pub live: AtomicBool,
    /// The end of the session arrived (`exit` / EOT).
    pub ended: AtomicBool,
    /// The socket closed or broke before the end of the session.
    pub dropped: AtomicBool,
    pub gaps: AtomicU64,
    /// Data out of order, or something the viewer did not expect.
    pub anomalies: AtomicU64,
}

/// Every viewer's progress, with the total they should all reach.
pub struct Progress {
    pub viewers: Vec<ViewerProgress>,
    pub total: u64,
}

impl Progress {
    pub fn new(viewers: usize, total: u64) -> Arc<Progress> {
        Arc::new(Progress { viewers: (0..viewers).map(|_| ViewerProgress::default()).collect(), total })
    }

    /// Viewer `i` now has `bytes`.
    pub fn advance(&self, i: usize, bytes: u64) {
        let v = &self.viewers[i];
        v.bytes.store(bytes, Ordering::Relaxed);
        if bytes >= self.total && v.done_us.load(Ordering::Relaxed) == 0 {
            v.done_us.store(now_us(), Ordering::Relaxed);
        }
    }

    pub fn count(&self, f: impl Fn(&ViewerProgress) -> bool) -> usize {
        self.viewers.iter().filter(|v| f(v)).count()
    }

    /// Waits until every viewer is done (all bytes, or dropped), or the deadline.
    pub async fn wait_done(&self, deadline: Instant) {
        while Instant::now() < deadline
            && self.count(|v| v.done_us.load(Ordering::Relaxed) == 0 && !v.dropped.load(Ordering::Relaxed)) > 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every viewer follows live (or dropped); false at the deadline.
    pub async fn wait_live(&self, deadline: Instant) -> bool {
        loop {
            let waiting = self.count(|v| !v.live.load(Ordering::Relaxed) && !v.dropped.load(Ordering::Relaxed));
            if waiting == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Lag samples taken once a second while the recorder sends.
#[derive(Debug, Default)]
pub struct LagSamples {
    /// Every viewer's lag at every sample, bytes.
    pub all: Vec<u64>,
    /// The largest lag of each sample, bytes.
    pub max_per_second: Vec<u64>,
}

/// Samples every `every` until `stop` is set: lag = `sent()` − each viewer's bytes.
pub async fn sample_lag(
    progress: Arc<Progress>,
    sent: impl Fn() -> u64,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> LagSamples {
    let mut out = LagSamples::default();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let sent = sent();
        let mut max = 0;
        for v in progress.viewers.iter().filter(|v| !v.dropped.load(Ordering::Relaxed)) {
            let lag = sent.saturating_sub(v.bytes.load(Ordering::Relaxed));
            max = max.max(lag);
            out.all.push(lag);
        }
        out.max_per_second.push(max);
    }
    out
}

pub struct FanoutResult {
    pub system: String,
    pub backend: String,
    pub opts: FanoutOptions,
    pub total: u64,
    /// Time to connect all viewers until they all followed live.
    pub connect: Duration,
    /// After that, how long until the server was quiet again (below 10% of a core for 2 s).
    pub quiet: Duration,
    pub lag: Percentiles,
    pub lag_max_per_second: Vec<u64>,
    /// Viewers that received every byte, dropped ones, and gap events seen.
    pub complete: usize,
    pub dropped: usize,
    pub gaps: u64,
    pub anomalies: u64,
    /// From the last byte sent until the last complete viewer had it.
    pub drain: Option<Duration>,
    /// From the first to the last chunk sent (the schedule says `duration`).
    pub send_time: Duration,
    pub window: WindowStats,
    pub pg_cpu: Option<Duration>,
    pub notes: Vec<String>,
}

/// Summary of the progress after the run.
pub struct Outcome {
    pub complete: usize,
    pub dropped: usize,
    pub gaps: u64,
    pub anomalies: u64,
    pub drain: Option<Duration>,
}

impl Progress {
    pub fn outcome(&self, last_sent_us: u64) -> Outcome {
        let done: Vec<u64> =
            self.viewers.iter().map(|v| v.done_us.load(Ordering::Relaxed)).filter(|d| *d > 0).collect();
        Outcome {
            complete: done.len(),
            dropped: self.count(|v| v.dropped.load(Ordering::Relaxed)),
            gaps: self.viewers.iter().map(|v| v.gaps.load(Ordering::Relaxed)).sum(),
            anomalies: self.viewers.iter().map(|v| v.anomalies.load(Ordering::Relaxed)).sum(),
            drain: done.iter().max().map(|d| Duration::from_micros(d.saturating_sub(last_sent_us))),
        }
    }
}

pub async fn run(opts: &FanoutOptions, server_opts: &ServerOptions, backend: Backend) -> anyhow::Result<FanoutResult> {
    let server = Server::start(server_opts, backend).await?;
    let mut recorder = Recorder::open(&server.ws_url(INGEST_PATH), &server.token, MACHINE, "fanout").await?;
    let total = opts.total();
    let progress = Progress::new(opts.viewers, total);

    eprintln!("fanout [{}]: connecting {} viewers ...", backend.name(), opts.viewers);
    let connect_start = Instant::now();
    let url = server.ws_url(&live_path(recorder.session_id, 0));
    let viewers: Vec<JoinHandle<()>> = stream::iter(0..opts.viewers)
        .map(|i| {
            let (url, token, progress) = (url.clone(), server.token.clone(), progress.clone());
            async move {
                let ws = client::connect(&url, Some(&token), None).await?;
                anyhow::Ok(tokio::spawn(viewer(ws, i, progress)))
            }
        })
        .buffered(opts.parallel_connects)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("connecting viewers; server log:\n{}", server.log_tail()))?;
    let mut notes = Vec::new();
    if !progress.wait_live(Instant::now() + Duration::from_secs(600)).await {
        notes.push("not every viewer reached the live tail within 600 s of connecting".to_string());
    }
    let connect = connect_start.elapsed();
    eprintln!("fanout [{}]: {} viewers live after {:.1} s", backend.name(), opts.viewers, connect.as_secs_f64());
    let (quiet, calm) = wait_quiet(server.pid(), 0.1, 2, opts.quiet_limit).await;
    if !calm {
        notes.push(format!("the server was still busy {:.0} s after the viewers connected", quiet.as_secs_f64()));
    }
    eprintln!("fanout [{}]: server quiet after {:.1} s more", backend.name(), quiet.as_secs_f64());
    tokio::time::sleep(opts.settle).await;

    eprintln!(
        "fanout [{}]: sending {} B/s in {} B chunks for {:?} ...",
        backend.name(),
        opts.rate,
        opts.chunk,
        opts.duration
    );
    let window = Window::start(server.pid())?;
    let pg_before = server.pg_backends().await?;
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_lag(
        progress.clone(),
        {
            let sent = sent.clone();
            move || sent.load(Ordering::Relaxed)
        },
        Duration::from_secs(1),
        stop.clone(),
    ));
    let send_start_us = now_us();
    let last_sent_us = AtomicU64::new(send_start_us);
    let sent_result = send(&mut recorder, opts, total, &sent, &last_sent_us).await;
    let last_sent_us = last_sent_us.load(Ordering::Relaxed);
    let send_time = Duration::from_micros(last_sent_us - send_start_us);
    stop.store(true, Ordering::Relaxed);
    progress.wait_done(Instant::now() + opts.drain_grace).await;
    let stats = window.finish();
    let pg_cpu = match (pg_before, server.pg_backends().await?) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        _ => None,
    };
    if let Err(e) = sent_result {
        notes.push(format!("recorder: {e:#}"));
    }
    let lag = sampler.await?;
    let outcome = progress.outcome(last_sent_us);
    // The exit reaches viewers after their last bytes; give them a moment, then stop waiting.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && progress.count(|v| !v.ended.load(Ordering::Relaxed)) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let not_ended = progress.count(|v| !v.ended.load(Ordering::Relaxed));
    if not_ended > 0 {
        notes.push(format!("{not_ended} viewers had not received `exit` 10 s after the drain"));
    }
    for v in viewers {
        v.abort();
    }
    let problems = server.log_problems();
    if problems > 0 {
        notes.push(format!("server logged {problems} warnings/errors"));
    }
    Ok(FanoutResult {
        system: "cmdop inspector".into(),
        backend: server_opts.label(backend),
        opts: opts.clone(),
        total,
        connect,
        quiet,
        lag: Percentiles::of(lag.all),
        lag_max_per_second: lag.max_per_second,
        complete: outcome.complete,
        dropped: outcome.dropped,
        gaps: outcome.gaps,
        anomalies: outcome.anomalies,
        drain: outcome.drain,
        send_time,
        window: stats,
        pg_cpu,
        notes,
    })
}

/// The recorder: `total` bytes in chunks on schedule, then `exit`, then waits for `closed`. Keeps `sent` (bytes)
/// and `last_sent_us` (when the latest chunk went out) up to date.
async fn send(
    rec: &mut Recorder,
    opts: &FanoutOptions,
    total: u64,
    sent: &AtomicU64,
    last_sent_us: &AtomicU64,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(opts.chunk_interval());
    let mut payload = Printable::new(42);
    let start_us = now_us();
    let mut offset = 0u64;
    while offset < total {
        tokio::select! {
            _ = tick.tick() => {
                let chunk = payload.next_chunk(opts.chunk);
                rec.output(offset, (now_us() - start_us) / 1000, &chunk).await?;
                offset += chunk.len() as u64;
                sent.store(offset, Ordering::Relaxed);
                last_sent_us.store(now_us(), Ordering::Relaxed);
            }
            msg = rec.stream.next() => {
                if let Some(f @ (ServerFrame::Error { .. } | ServerFrame::Closed { .. })) = server_frame(msg)? {
                    anyhow::bail!("unexpected {f:?}");
                }
            }
        }
    }
    rec.exit(offset).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline, rec.stream.next()).await.context("no `closed` within 60 s")?;
        match server_frame(msg)? {
            Some(ServerFrame::Closed { .. }) => return Ok(()),
            Some(f @ ServerFrame::Error { .. }) => anyhow::bail!("unexpected {f:?}"),
            _ => {}
        }
    }
}

/// A live-socket viewer: counts bytes, checks they are contiguous, notes gaps and the end.
async fn viewer(ws: client::Ws, i: usize, progress: Arc<Progress>) {
    let me = &progress.viewers[i];
    let (_sink, mut stream) = ws.split();
    let mut offset = 0u64;
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Binary(data)) => match decode_live_output(&data) {
                Some((at, bytes)) => {
                    if at != offset {
                        me.anomalies.fetch_add(1, Ordering::Relaxed);
                    }
                    offset = at + bytes.len() as u64;
                    progress.advance(i, offset);
                }
                None => {
                    me.anomalies.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Message::Text(text)) => match event_type(&text) {
                "live" => me.live.store(true, Ordering::Relaxed),
                "gap" => {
                    me.gaps.fetch_add(1, Ordering::Relaxed);
                }
                "exit" => me.ended.store(true, Ordering::Relaxed),
                "error" => {
                    me.anomalies.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            },
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if !me.ended.load(Ordering::Relaxed) {
        me.dropped.store(true, Ordering::Relaxed);
    }
}

pub fn table(results: &[FanoutResult]) -> String {
    let mut t = Table::new(&[
        "system",
        "store",
        "viewers",
        "rate × time",
        "connect all s + until quiet s",
        "lag p50 / p99 / max KiB",
        "**complete viewers**",
        "dropped",
        "gaps",
        "drain after last byte s",
        "sending took s",
        "server CPU",
        "server peak RSS MiB",
        "PostgreSQL backends CPU",
        "bench CPU",
        "machine busy (2 cores)",
        "load 1m",
        "no viewer behind",
    ]);
    for r in results {
        let o = &r.opts;
        let w = &r.window;
        let wall = w.process.map(|p| p.wall).unwrap_or(r.send_time);
        let (cpu, rss) = match &w.process {
            Some(p) => (report::cpu(p.cpu, p.wall), report::mib(p.peak_rss)),
            None => ("—".into(), "—".into()),
        };
        let ok = r.complete == o.viewers && r.dropped == 0 && r.gaps == 0;
        t.row(vec![
            r.system.clone(),
            r.backend.clone(),
            o.viewers.to_string(),
            format!("{} KiB/s × {} s", o.rate / 1024, o.duration.as_secs()),
            format!("{} + {}", report::secs(r.connect), report::secs(r.quiet)),
            format!("{} / {} / {}", report::kib(r.lag.p50), report::kib(r.lag.p99), report::kib(r.lag.max)),
            format!("**{} of {}**", r.complete, o.viewers),
            r.dropped.to_string(),
            r.gaps.to_string(),
            r.drain.map(report::secs).unwrap_or_else(|| "—".into()),
            report::secs(r.send_time),
            cpu,
            rss,
            r.pg_cpu.map(|c| report::cpu(c, wall)).unwrap_or_else(|| "—".into()),
            report::cpu(w.bench_cpu, wall),
            format!("{:.0}%", w.machine_busy),
            format!("{:.2}→{:.2}", w.load_start, w.load_end),
            report::yes_no(ok).to_string(),
        ]);
    }
    let mut md = t.to_markdown();
    for r in results {
        let series: Vec<String> = r.lag_max_per_second.iter().map(|b| report::kib(*b)).collect();
        md.push_str(&format!(
            "\n{} / {}: {} bytes per viewer; worst lag each second (KiB): {}.",
            r.system,
            r.backend,
            r.total,
            series.join(" ")
        ));
        if r.anomalies > 0 {
            md.push_str(&format!(" {} anomalies (out-of-order data or error events).", r.anomalies));
        }
        for n in &r.notes {
            md.push_str(&format!(" Note: {n}."));
        }
        md.push('\n');
    }
    md
}
