//! The reference: asciinema 3's `stream --local`, which records a command in a PTY and serves it live from memory
//! over WebSockets (`/ws`, subprotocol `v1.alis`). It keeps no durable store. The bench never installs it: it
//! takes the binary from `--asciinema` / `$CMDOP_BENCH_ASCIINEMA`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{self, Message};
use crate::fanout::{FanoutOptions, FanoutResult, Progress, sample_lag};
use crate::ingest::{IngestOptions, IngestRow, command_line};
use crate::proc_stats::{Window, run_measured, wait_quiet, written_bytes};
use crate::server_proc::{free_port, shell_quote};
use crate::stats::{Percentiles, now_us};

const ALIS_MAGIC: &[u8] = b"ALiS\x01";

/// `asciinema stream --local ADDR --headless --command COMMAND`, with a throwaway HOME.
fn stream_command(bin: &Path, addr: &str, command: &str, home: &Path, log: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(bin);
    cmd.args(["stream", "--local", addr, "--headless", "--command", command])
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?);
    Ok(cmd)
}

/// (a) with asciinema: the same command and payload, timed until asciinema exits.
pub async fn ingest(bin: &Path, opts: &IngestOptions, work_dir: &Path) -> anyhow::Result<IngestRow> {
    let dir = tempfile::Builder::new().prefix("cmdop-bench-asciinema-").tempdir_in(work_dir)?;
    let addr = free_port()?.to_string();
    let cmd = stream_command(bin, &addr, &command_line(&opts.payload), dir.path(), &dir.path().join("log"))?;
    eprintln!("ingest [asciinema]: streaming {} bytes with asciinema ...", opts.size);
    let window = Window::machine_only();
    let run = tokio::task::spawn_blocking(move || run_measured(cmd)).await??;
    let stats = window.finish();
    if run.code != 0 {
        let err = std::fs::read_to_string(dir.path().join("log.err")).unwrap_or_default();
        bail!("asciinema exited with {}:\n{err}", run.code);
    }
    Ok(IngestRow {
        system: "asciinema stream --local".into(),
        buffer: "—".into(),
        backend: "none (memory only)".into(),
        bytes: opts.size,
        run,
        window: stats,
        pg_cpu: None,
        stored: "nothing: no durable store, no viewers connected".into(),
        complete: true,
    })
}

/// Stops and reaps asciinema when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// (c) with asciinema: the pacer (`cmdop-bench pace`) prints at the same rate inside asciinema's PTY; the same
/// number of ALiS viewers count what they receive. "Sent" is what the pacer has written (`wchar`).
pub async fn fanout(
    bin: &Path,
    bench_bin: &Path,
    opts: &FanoutOptions,
    work_dir: &Path,
) -> anyhow::Result<FanoutResult> {
    let dir = tempfile::Builder::new().prefix("cmdop-bench-asciinema-").tempdir_in(work_dir)?;
    let (pid_file, go) = (dir.path().join("pacer.pid"), dir.path().join("go"));
    let total = opts.total();
    let pace = format!(
        "stty -opost; exec {} pace --rate {} --chunk {} --bytes {total} --pid-file {} --wait-for {}",
        shell_quote(bench_bin),
        opts.rate,
        opts.chunk,
        shell_quote(&pid_file),
        shell_quote(&go)
    );
    let addr = free_port()?;
    let log = dir.path().join("log");
    let running = Running(stream_command(bin, &addr.to_string(), &pace, dir.path(), &log)?.spawn()?);
    let asciinema_pid = running.0.id();
    let pacer_pid = wait_for_pid(&pid_file).await?;
    let url = format!("ws://{addr}/ws");
    wait_listening(addr).await?;

    eprintln!("fanout [asciinema]: connecting {} viewers ...", opts.viewers);
    let progress = Progress::new(opts.viewers, total);
    let connect_start = Instant::now();
    let viewers: Vec<JoinHandle<()>> = stream::iter(0..opts.viewers)
        .map(|i| {
            let (url, progress) = (url.clone(), progress.clone());
            async move {
                let ws = client::connect(&url, None, Some("v1.alis")).await?;
                anyhow::Ok(tokio::spawn(alis_viewer(ws, i, progress)))
            }
        })
        .buffered(opts.parallel_connects)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let mut notes = Vec::new();
    if !progress.wait_live(Instant::now() + Duration::from_secs(600)).await {
        notes.push("not every viewer got the init event within 600 s".to_string());
    }
    let connect = connect_start.elapsed();
    let (quiet, _) = wait_quiet(asciinema_pid, 0.1, 2, opts.quiet_limit).await;
    tokio::time::sleep(opts.settle).await;

    eprintln!("fanout [asciinema]: pacing {} B/s for {:?} ...", opts.rate, opts.duration);
    let window = Window::start(asciinema_pid)?;
    let base = written_bytes(pacer_pid).context("cannot read the pacer's /proc/<pid>/io")?;
    let written = move || written_bytes(pacer_pid).map(|w| w.saturating_sub(base)).unwrap_or(total);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_lag(progress.clone(), written, Duration::from_secs(1), stop.clone()));
    let send_start = Instant::now();
    std::fs::write(&go, b"go")?;
    while written() < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let send_time = send_start.elapsed();
    let last_sent_us = now_us();
    stop.store(true, Ordering::Relaxed);
    progress.wait_done(Instant::now() + opts.drain_grace).await;
    let stats = window.finish();
    let lag = sampler.await?;
    let outcome = progress.outcome(last_sent_us);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && progress.count(|v| !v.ended.load(Ordering::Relaxed)) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let not_ended = progress.count(|v| !v.ended.load(Ordering::Relaxed) && !v.dropped.load(Ordering::Relaxed));
    if not_ended > 0 {
        notes.push(format!("{not_ended} viewers had not received the end of stream 10 s after the drain"));
    }
    for v in viewers {
        v.abort();
    }
    drop(running);
    Ok(FanoutResult {
        system: "asciinema stream --local".into(),
        backend: "none (memory only)".into(),
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
        pg_cpu: None,
        notes,
    })
}

async fn wait_for_pid(path: &PathBuf) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text.trim().parse()?);
        }
        if Instant::now() > deadline {
            bail!("asciinema did not start the pacer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_listening(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("asciinema is not listening on {addr} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// An ALiS viewer: the magic string, then one event per message; output events carry the text's length.
async fn alis_viewer(ws: client::Ws, i: usize, progress: Arc<Progress>) {
    let me = &progress.viewers[i];
    let (_sink, mut stream) = ws.split();
    let (mut magic, mut bytes) = (false, 0u64);
    while let Some(msg) = stream.next().await {
        let data = match msg {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        if !magic {
            magic = data.as_ref() == ALIS_MAGIC;
            if !magic {
                me.anomalies.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        match data.first() {
            Some(0x01) => me.live.store(true, Ordering::Relaxed),
            Some(b'o') => match output_len(&data[1..]) {
                Some(len) => {
                    bytes += len;
                    progress.advance(i, bytes);
                }
                None => {
                    me.anomalies.fetch_add(1, Ordering::Relaxed);
                }
            },
            Some(0x04) => me.ended.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
    if !me.ended.load(Ordering::Relaxed) {
        me.dropped.store(true, Ordering::Relaxed);
    }
}

/// Length of the text of an output event (after its type byte): id, time, length, each LEB128.
fn output_len(mut data: &[u8]) -> Option<u64> {
    let _id = leb128(&mut data)?;
    let _time = leb128(&mut data)?;
    let len = leb128(&mut data)?;
    (data.len() as u64 == len).then_some(len)
}

fn leb128(data: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *data = &data[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_events_are_measured() {
        // 'o', id 5, time 200 (0xC8 0x01), length 3, "abc"
        assert_eq!(output_len(&[0x05, 0xC8, 0x01, 0x03, b'a', b'b', b'c']), Some(3));
        assert_eq!(output_len(&[0x05, 0xC8]), None);
        let mut d: &[u8] = &[0xE8, 0x07, 0xFF];
        assert_eq!(leb128(&mut d), Some(1000));
        assert_eq!(d, &[0xFF]);
    }
}
