//! (b) Live latency: many sessions writing a little, some of them watched. Simulated recorders (ingest protocol
//! clients) send fixed-size frames at a steady pace, each frame starting with its send time; one viewer per watched
//! session reads the live socket and takes, for every frame, receipt time minus send time. Recorders also time
//! each frame's `ack` (the commit).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use cmdop_protocol::ingest::ServerFrame;
use cmdop_protocol::live::decode_live_output;
use futures_util::{StreamExt, stream};
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use crate::client::{self, INGEST_PATH, Message, Recorder, event_type, live_path, server_frame};
use crate::payload::Printable;
use crate::proc_stats::{Window, WindowStats};
use crate::report::{self, Table};
use crate::server_proc::{Backend, MACHINE, Server, ServerOptions};
use crate::stats::{Percentiles, now_us};

/// Each frame: send time (µs, u64 BE), then the recorder's index and sequence number, then filler.
const HEADER: usize = 16;

#[derive(Debug, Clone)]
pub struct LatencyOptions {
    pub sessions: usize,
    pub viewers: usize,
    pub frame_bytes: usize,
    pub interval: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    /// Connections opened at once while setting up.
    pub parallel_connects: usize,
}

pub struct LatencyResult {
    pub backend: String,
    pub opts: LatencyOptions,
    pub setup: Duration,
    /// Recorder write → viewer receipt, µs.
    pub live: Percentiles,
    /// Recorder write → `ack` received (committed), µs.
    pub ack: Percentiles,
    /// Frames the watched recorders sent in the measured window, and how many of them viewers received.
    pub watched_sent: u64,
    pub watched_received: u64,
    /// Frames of all recorders in the window.
    pub all_sent: u64,
    /// Out-of-order or missing data seen by viewers, and recorder/viewer failures.
    pub anomalies: u64,
    pub errors: Vec<String>,
    pub window: WindowStats,
    pub pg_cpu: Option<Duration>,
}

#[derive(Default)]
struct RecorderOutcome {
    sent_in_window: u64,
    ack_us: Vec<u64>,
    error: Option<String>,
}

#[derive(Default)]
struct ViewerOutcome {
    live_us: Vec<u64>,
    anomalies: u64,
    error: Option<String>,
}

/// The measured window, by send time (µs of [`now_us`]).
#[derive(Clone, Copy)]
struct Span {
    from: u64,
    to: u64,
}

impl Span {
    fn contains(&self, t: u64) -> bool {
        t >= self.from && t < self.to
    }
}

pub async fn run(
    opts: &LatencyOptions,
    server_opts: &ServerOptions,
    backend: Backend,
) -> anyhow::Result<LatencyResult> {
    let server = Server::start(server_opts, backend).await?;
    let ingest_url = server.ws_url(INGEST_PATH);
    eprintln!("latency [{}]: opening {} sessions ...", backend.name(), opts.sessions);
    let setup_start = std::time::Instant::now();
    let recorders: Vec<Recorder> = stream::iter(0..opts.sessions)
        .map(|i| {
            let (url, token) = (ingest_url.clone(), server.token.clone());
            async move { Recorder::open(&url, &token, MACHINE, &format!("latency-{i}")).await }
        })
        .buffered(opts.parallel_connects)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("opening sessions; server log:\n{}", server.log_tail()))?;
    eprintln!("latency [{}]: connecting {} viewers ...", backend.name(), opts.viewers);
    let watched: Vec<Uuid> = recorders.iter().take(opts.viewers).map(|r| r.session_id).collect();
    let viewers: Vec<client::Ws> = stream::iter(watched)
        .map(|id| {
            let (url, token) = (server.ws_url(&live_path(id, 0)), server.token.clone());
            async move { client::connect(&url, Some(&token), None).await }
        })
        .buffered(opts.parallel_connects)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let setup = setup_start.elapsed();

    // Recorder i starts at base + i * interval / sessions: the load is spread evenly.
    let base = Instant::now() + Duration::from_millis(500);
    let measure_from = base + opts.warmup;
    let stop_at = measure_from + opts.duration;
    let span = Span { from: to_us(measure_from), to: to_us(stop_at) };
    eprintln!(
        "latency [{}]: {} recorders × {} B every {:?}, warm-up {:?}, measuring {:?} ...",
        backend.name(),
        opts.sessions,
        opts.frame_bytes,
        opts.interval,
        opts.warmup,
        opts.duration
    );
    let viewer_tasks: Vec<_> = viewers.into_iter().map(|ws| tokio::spawn(viewer(ws, opts.frame_bytes, span))).collect();
    let n = opts.sessions as u32;
    let recorder_tasks: Vec<_> = recorders
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let start = base + opts.interval * i as u32 / n;
            tokio::spawn(recorder(r, i as u32, start, stop_at, opts.interval, opts.frame_bytes, span))
        })
        .collect();

    tokio::time::sleep_until(measure_from).await;
    let window = Window::start(server.pid())?;
    let pg_before = server.pg_backends().await?;
    tokio::time::sleep_until(stop_at).await;
    let stats = window.finish();
    let pg_cpu = match (pg_before, server.pg_backends().await?) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        _ => None,
    };
    eprintln!("latency [{}]: stopping ...", backend.name());

    let mut errors = Vec::new();
    let (mut ack, mut sent_per_recorder) = (Vec::new(), Vec::new());
    for t in recorder_tasks {
        let o = t.await?;
        ack.extend(o.ack_us);
        sent_per_recorder.push(o.sent_in_window);
        errors.extend(o.error);
    }
    let (mut live, mut anomalies) = (Vec::new(), 0);
    let mut watched_received = 0;
    for t in viewer_tasks {
        let o = tokio::time::timeout(Duration::from_secs(60), t).await.context("a viewer did not finish")??;
        watched_received += o.live_us.len() as u64;
        live.extend(o.live_us);
        anomalies += o.anomalies;
        errors.extend(o.error);
    }
    let problems = server.log_problems();
    if problems > 0 {
        errors.push(format!("server logged {problems} warnings/errors"));
    }
    Ok(LatencyResult {
        backend: server_opts.label(backend),
        opts: opts.clone(),
        setup,
        live: Percentiles::of(live),
        ack: Percentiles::of(ack),
        watched_sent: sent_per_recorder.iter().take(opts.viewers).sum(),
        watched_received,
        all_sent: sent_per_recorder.iter().sum(),
        anomalies,
        errors,
        window: stats,
        pg_cpu,
    })
}

fn to_us(t: Instant) -> u64 {
    let now = Instant::now();
    if t >= now {
        now_us() + (t - now).as_micros() as u64
    } else {
        now_us().saturating_sub((now - t).as_micros() as u64)
    }
}

async fn recorder(
    mut rec: Recorder,
    index: u32,
    start: Instant,
    stop_at: Instant,
    interval: Duration,
    frame_bytes: usize,
    span: Span,
) -> RecorderOutcome {
    let mut out = RecorderOutcome::default();
    if let Err(e) = record(&mut rec, index, start, stop_at, interval, frame_bytes, span, &mut out).await {
        out.error = Some(format!("recorder {index}: {e:#}"));
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn record(
    rec: &mut Recorder,
    index: u32,
    start: Instant,
    stop_at: Instant,
    interval: Duration,
    frame_bytes: usize,
    span: Span,
    out: &mut RecorderOutcome,
) -> anyhow::Result<()> {
    let mut filler = Printable::new(u64::from(index) + 1);
    // (end offset, send time) of frames not yet acknowledged.
    let mut pending: VecDeque<(u64, u64)> = VecDeque::new();
    let on_ack = |acked: u64, pending: &mut VecDeque<(u64, u64)>, out: &mut RecorderOutcome| {
        let now = now_us();
        while let Some(&(end, sent)) = pending.front() {
            if end > acked {
                break;
            }
            pending.pop_front();
            if span.contains(sent) {
                out.ack_us.push(now - sent);
            }
        }
    };
    let mut tick = tokio::time::interval_at(start, interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started_us = to_us(start);
    let (mut offset, mut seq) = (0u64, 0u32);
    let mut frame = vec![0u8; frame_bytes];
    loop {
        tokio::select! {
            at = tick.tick() => {
                if at >= stop_at {
                    break;
                }
                filler.fill(&mut frame[HEADER..]);
                let sent = now_us();
                frame[..8].copy_from_slice(&sent.to_be_bytes());
                frame[8..12].copy_from_slice(&index.to_be_bytes());
                frame[12..16].copy_from_slice(&seq.to_be_bytes());
                rec.output(offset, (sent.saturating_sub(started_us)) / 1000, &frame).await?;
                offset += frame_bytes as u64;
                seq += 1;
                pending.push_back((offset, sent));
                if span.contains(sent) {
                    out.sent_in_window += 1;
                }
            }
            msg = rec.stream.next() => match server_frame(msg)? {
                Some(ServerFrame::Ack { offset: acked }) => on_ack(acked, &mut pending, out),
                Some(other) => anyhow::bail!("unexpected {other:?}"),
                None => {}
            },
        }
    }
    rec.exit(offset).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline, rec.stream.next()).await.context("no `closed` within 60 s")?;
        match server_frame(msg)? {
            Some(ServerFrame::Ack { offset: acked }) => on_ack(acked, &mut pending, out),
            Some(ServerFrame::Closed { .. }) => return Ok(()),
            Some(other) => anyhow::bail!("unexpected {other:?}"),
            None => {}
        }
    }
}

async fn viewer(ws: client::Ws, frame_bytes: usize, span: Span) -> ViewerOutcome {
    let mut out = ViewerOutcome::default();
    let (_sink, mut stream) = ws.split();
    let mut expected = 0u64;
    // The start of a frame split across live messages.
    let mut partial: Vec<u8> = Vec::with_capacity(frame_bytes);
    let fb = frame_bytes as u64;
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Binary(data)) => {
                let now = now_us();
                let Some((offset, mut bytes)) = decode_live_output(&data) else {
                    out.anomalies += 1;
                    continue;
                };
                if offset != expected {
                    // Missing or repeated data: resynchronize at the next frame boundary.
                    out.anomalies += 1;
                    partial.clear();
                    let skip = ((fb - offset % fb) % fb).min(bytes.len() as u64) as usize;
                    bytes = &bytes[skip..];
                    expected = offset + skip as u64;
                }
                expected += bytes.len() as u64;
                while !bytes.is_empty() {
                    let take = (frame_bytes - partial.len()).min(bytes.len());
                    partial.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if partial.len() == frame_bytes {
                        let sent = u64::from_be_bytes(partial[..8].try_into().expect("8 bytes"));
                        if span.contains(sent) {
                            out.live_us.push(now.saturating_sub(sent));
                        }
                        partial.clear();
                    }
                }
            }
            Ok(Message::Text(text)) => {
                if event_type(&text) == "error" {
                    out.error = Some(format!("viewer got {text}"));
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => {
                out.error = Some(format!("viewer socket: {e}"));
                break;
            }
        }
    }
    out
}

pub fn table(results: &[LatencyResult], target_p99_ms: f64) -> String {
    let mut t = Table::new(&[
        "store",
        "sessions × rate",
        "viewers",
        "measured",
        "samples",
        "p50 ms",
        "p90 ms",
        "**p99 ms**",
        "max ms",
        "ack p50 / p99 ms",
        "frames lost",
        "server CPU",
        "server peak RSS MiB",
        "PostgreSQL backends CPU",
        "bench CPU",
        "machine busy (2 cores)",
        "load 1m",
        "p99 ≤ target",
    ]);
    for r in results {
        let o = &r.opts;
        let rate = o.frame_bytes as f64 / o.interval.as_secs_f64();
        let w = &r.window;
        let wall = Duration::from_secs_f64(o.duration.as_secs_f64());
        let (server_cpu, server_rss) = match &w.process {
            Some(p) => (report::cpu(p.cpu, p.wall), report::mib(p.peak_rss)),
            None => ("—".into(), "—".into()),
        };
        t.row(vec![
            r.backend.clone(),
            format!("{} × {:.0} B/s", o.sessions, rate),
            o.viewers.to_string(),
            format!("{} s", o.duration.as_secs()),
            r.live.n.to_string(),
            report::ms(r.live.p50),
            report::ms(r.live.p90),
            format!("**{}**", report::ms(r.live.p99)),
            report::ms(r.live.max),
            format!("{} / {}", report::ms(r.ack.p50), report::ms(r.ack.p99)),
            format!("{} of {}", r.watched_sent.saturating_sub(r.watched_received), r.watched_sent),
            server_cpu,
            server_rss,
            r.pg_cpu.map(|c| report::cpu(c, wall)).unwrap_or_else(|| "—".into()),
            report::cpu(w.bench_cpu, wall),
            format!("{:.0}%", w.machine_busy),
            format!("{:.2}→{:.2}", w.load_start, w.load_end),
            report::yes_no(met(r, target_p99_ms)).to_string(),
        ]);
    }
    let mut md = t.to_markdown();
    for r in results {
        md.push_str(&format!(
            "\n{}: setup (open {} sessions, connect {} viewers) took {:.1} s; {} frames sent by all recorders in the \
             window; {} anomalies.",
            r.backend,
            r.opts.sessions,
            r.opts.viewers,
            r.setup.as_secs_f64(),
            r.all_sent,
            r.anomalies
        ));
        for e in r.errors.iter().take(5) {
            md.push_str(&format!(" Error: {e}."));
        }
        if r.errors.len() > 5 {
            md.push_str(&format!(" ({} more errors.)", r.errors.len() - 5));
        }
        md.push('\n');
    }
    md
}

/// Whether the run met the p99 target (and had no errors).
pub fn met(r: &LatencyResult, target_p99_ms: f64) -> bool {
    r.live.p99 as f64 / 1000.0 <= target_p99_ms && r.errors.is_empty()
}
