//! The ingest ceiling of the PTY itself: the same command on a PTY whose master the bench reads and discards, with
//! no recorder and no network. What a PTY-based recorder cannot beat on this machine.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::bail;

use crate::proc_stats::{ChildRun, own_cpu, wait_with_usage};

/// Runs `sh -c command` on a fresh PTY and reads everything it prints; returns the run and the bytes read.
pub fn run(command: &str) -> anyhow::Result<(ChildRun, u64)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: out-pointers to two ints; name, termios and winsize may be null.
    let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    if r != 0 {
        bail!("openpty: {}", std::io::Error::last_os_error());
    }
    // SAFETY: openpty returned two fresh descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: fcntl on a descriptor we own. The child must not inherit the master.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&master), libc::F_SETFD, libc::FD_CLOEXEC) };
    let mut master = File::from(master);
    let cpu_before = own_cpu();
    let start = Instant::now();
    let child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        .spawn()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            // EIO: every slave descriptor is closed (the command is done).
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let reaped = wait_with_usage(child.id())?;
    let run = ChildRun {
        wall: start.elapsed(),
        code: reaped.code,
        own_cpu: own_cpu().saturating_sub(cpu_before),
        children_cpu: reaped.cpu,
        peak_rss: 0,
    };
    Ok((run, total))
}
