//! `cmdop-bench pace`: prints printable lines at a fixed rate on stdout, one `write` per chunk. It is the
//! command run inside asciinema's PTY for the fan-out reference (asciinema records a real command, not a protocol
//! client).

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::payload::Printable;

#[derive(Debug, Clone, Args)]
pub struct PaceArgs {
    /// Bytes per second
    #[arg(id = "pace_rate", long = "rate")]
    pub rate: u64,
    /// Bytes per write
    #[arg(id = "pace_chunk", long = "chunk")]
    pub chunk: usize,
    /// Bytes in all
    #[arg(id = "pace_bytes", long = "bytes")]
    pub bytes: u64,
    /// Write this process's id here first
    #[arg(id = "pace_pid_file", long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Start once this file exists
    #[arg(id = "pace_wait_for", long = "wait-for")]
    pub wait_for: Option<PathBuf>,
}

pub fn run(args: &PaceArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.pid_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, std::process::id().to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    if let Some(go) = &args.wait_for {
        while !go.exists() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Unbuffered: Rust's stdout would flush at every newline.
    let mut out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let interval = Duration::from_secs_f64(args.chunk as f64 / args.rate as f64);
    let mut payload = Printable::new(42);
    let start = Instant::now();
    let (mut sent, mut i) = (0u64, 0u32);
    while sent < args.bytes {
        let due = start + interval * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let n = (args.bytes - sent).min(args.chunk as u64) as usize;
        out.write_all(&payload.next_chunk(n))?;
        sent += n as u64;
        i += 1;
    }
    Ok(())
}
