//! `cmdop record`: the command runs in a PTY; a reader thread appends its output to the outbox (and mirrors it to
//! the local terminal) and the uplink task streams the outbox to the server, reconnecting as needed. The command
//! never waits on the network.

pub mod outbox;
mod pty;
pub mod terminal;
mod uplink;

use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use cmdop_protocol::ingest::{INGEST_PROTOCOL_VERSION, MAX_COMMAND_BYTES, OpenSession};
use portable_pty::{MasterPty, PtySize};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cli::RecordArgs;
use crate::config;
use outbox::Outbox;
use pty::Exit;
use terminal::notice;
use uplink::{Outcome, UplinkConfig};

/// After the command exits, output still arriving this often (from something it left running on the terminal)
/// is taken as part of the recording, for at most [`DRAIN_LIMIT`].
const DRAIN_IDLE: Duration = Duration::from_millis(200);
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// While flushing at exit, how often to say how much is left.
const FLUSH_REPORT_EVERY: Duration = Duration::from_secs(5);

/// State shared by the PTY reader thread, the main task and the uplink.
pub struct Shared {
    outbox: Mutex<Outbox>,
    /// Wakes the uplink when the outbox has something new.
    wake: Notify,
    /// When the command started; `t_ms` counts from here.
    start: std::time::Instant,
}

impl Shared {
    fn new(capacity: usize) -> Self {
        Shared { outbox: Mutex::new(Outbox::new(capacity)), wake: Notify::new(), start: std::time::Instant::now() }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // The outbox stays consistent across a panic elsewhere: every method leaves it valid.
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn instant_at(&self, t_ms: u64) -> Instant {
        Instant::from_std(self.start + Duration::from_millis(t_ms))
    }

    /// Appends output; false once the exit is recorded.
    fn push_output(&self, bytes: &[u8]) -> bool {
        let accepted = self.outbox().push(bytes, self.now_ms());
        self.wake.notify_one();
        accepted
    }

    fn push_resize(&self, cols: u16, rows: u16) {
        self.outbox().push_resize(cols, rows, self.now_ms());
        self.wake.notify_one();
    }

    fn finish(&self, exit: Exit) {
        let (code, signal) = match exit {
            Exit::Code(code) => (Some(code), None),
            Exit::Signal(signal) => (None, Some(signal)),
        };
        self.outbox().finish(code, signal);
        self.wake.notify_one();
    }
}

/// Runs `cmdop record`; returns the exit code to leave with (the command's).
pub fn run(args: RecordArgs) -> anyhow::Result<i32> {
    let target = config::resolve(args.server.server.as_deref(), args.server.token.as_deref())?;
    let argv = command_line(&args.command);
    let host = hostname();
    let machine = match &args.machine {
        Some(m) if m.trim().is_empty() => bail!("--machine must not be empty"),
        Some(m) => m.clone(),
        None if host.is_empty() => bail!("cannot tell this machine's name: pass --machine NAME"),
        None => host.clone(),
    };
    let client_name = args.client_name.clone().unwrap_or_else(|| format!("cmdop on {host}"));
    // Both the WebSocket and HTTP clients use ring; installing it explicitly avoids relying on crate features.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(record(args, target, argv, machine, client_name));
    // An uplink still retrying after the flush timeout must not hold up the exit.
    runtime.shutdown_background();
    result
}

async fn record(
    args: RecordArgs,
    target: config::Target,
    argv: Vec<OsString>,
    machine: String,
    client_name: String,
) -> anyhow::Result<i32> {
    let headless = args.headless;
    // Before the size is read, so that no resize goes unnoticed.
    let mut signals = Signals::new()?;
    let raw = if headless { None } else { terminal::RawMode::enable()? };
    let mut size = if headless { (args.cols, args.rows) } else { terminal::size().unwrap_or((args.cols, args.rows)) };

    let started_at = Utc::now();
    let shared = Arc::new(Shared::new(args.buffer_size));
    let spawned = pty::spawn(&argv, size.0, size.1)?;
    let pid = spawned.pid;
    let (reader_done_tx, reader_done) = oneshot::channel();
    pty::start_reader(&*spawned.master, shared.clone(), !headless, reader_done_tx)?;
    if !headless {
        pty::start_input(&*spawned.master)?;
    }
    let mut exited = pty::wait(pid);

    let open = OpenSession {
        protocol: INGEST_PROTOCOL_VERSION,
        machine,
        fleet: args.fleet.clone(),
        command: display_command(&argv),
        cols: size.0,
        rows: size.1,
        client_kind: args.client_kind.into(),
        client_name,
        chat_thread: args.chat_thread,
        started_at: Some(started_at),
    };
    let uplink = tokio::spawn(uplink::run(
        shared.clone(),
        UplinkConfig {
            url: target.ingest_url(),
            token: target.token.clone(),
            open,
            retry_max_delay: Duration::from_millis(args.retry_max_delay_ms),
        },
    ));

    let mut hung_up = false;
    let exit = loop {
        let stop_signal = tokio::select! {
            status = &mut exited => {
                break status.context("lost track of the command")?.context("cannot wait for the command")?;
            }
            _ = signals.winch.recv(), if !headless => {
                if let Some(now) = terminal::size().filter(|now| *now != size) {
                    size = now;
                    resize(&*spawned.master, size);
                    shared.push_resize(size.0, size.1);
                }
                continue;
            }
            _ = signals.int.recv() => {
                pty::signal(pid, libc::SIGINT);
                continue;
            }
            _ = signals.quit.recv() => {
                pty::signal(pid, libc::SIGQUIT);
                continue;
            }
            _ = signals.term.recv() => libc::SIGTERM,
            _ = signals.hup.recv() => libc::SIGHUP,
        };
        terminal::restore();
        if hung_up {
            notice("second stop signal: leaving without waiting for the command");
            return Ok(128 + stop_signal);
        }
        // What a closing terminal would do: hang up the command, then record its exit as usual.
        hung_up = true;
        notice(format_args!("got signal {stop_signal}: hanging up the command"));
        pty::signal(pid, libc::SIGHUP);
    };

    drain_output(&shared, reader_done).await;
    shared.finish(exit);
    drop(raw);
    flush(&shared, uplink, Duration::from_secs(args.flush_timeout), &mut signals).await;
    Ok(exit.shell_code())
}

/// The signals cmdop handles while the command runs.
struct Signals {
    winch: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        let on = |kind| signal(kind).context("cannot install signal handlers");
        Ok(Signals {
            winch: on(SignalKind::window_change())?,
            int: on(SignalKind::interrupt())?,
            quit: on(SignalKind::quit())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }
}

fn resize(master: &dyn MasterPty, (cols, rows): (u16, u16)) {
    let _ = master.resize(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 });
}

/// Waits for the reader to reach the end of the output. Something the command left running may keep the terminal
/// open: then output is taken while it keeps coming, within limits.
async fn drain_output(shared: &Shared, mut reader_done: oneshot::Receiver<()>) {
    let limit = Instant::now() + DRAIN_LIMIT;
    let mut seen = shared.outbox().total();
    loop {
        tokio::select! {
            _ = &mut reader_done => return,
            () = tokio::time::sleep(DRAIN_IDLE) => {
                let total = shared.outbox().total();
                if total == seen || Instant::now() >= limit {
                    return;
                }
                seen = total;
            }
        }
    }
}

/// Waits up to `limit` for the server to store everything, saying what is left when it takes a while. Ctrl-C
/// (the terminal is no longer raw), SIGTERM or SIGHUP stop the wait.
async fn flush(shared: &Shared, mut uplink: JoinHandle<Outcome>, limit: Duration, signals: &mut Signals) {
    let start = Instant::now();
    let deadline = start + limit;
    let mut report_at = start + Duration::from_secs(1);
    loop {
        tokio::select! {
            outcome = &mut uplink => {
                match outcome {
                    Ok(Outcome::Closed) | Ok(Outcome::Stopped(_)) => {}
                    Err(e) => notice(format_args!("the uplink failed: {e}")),
                }
                break;
            }
            () = tokio::time::sleep_until(report_at), if report_at < deadline => {
                let left = deadline.saturating_duration_since(Instant::now()).as_millis().div_ceil(1000);
                notice(format_args!(
                    "{} bytes not yet stored by the server; waiting up to {left}s more",
                    shared.outbox().held()
                ));
                report_at += FLUSH_REPORT_EVERY;
            }
            () = tokio::time::sleep_until(deadline) => {
                notice(format_args!(
                    "gave up after {}s (--flush-timeout): {} bytes of output were not stored by the server",
                    limit.as_secs(),
                    shared.outbox().unstored()
                ));
                break;
            }
            _ = signals.int.recv() => break stopped_waiting(shared),
            _ = signals.term.recv() => break stopped_waiting(shared),
            _ = signals.hup.recv() => break stopped_waiting(shared),
        }
    }
    let dropped = shared.outbox().dropped();
    if dropped > 0 {
        notice(format_args!(
            "{dropped} bytes were dropped because the local buffer (--buffer-size) filled while the server was \
             unreachable"
        ));
    }
}

fn stopped_waiting(shared: &Shared) {
    notice(format_args!(
        "stopped waiting: {} bytes of output were not stored by the server",
        shared.outbox().unstored()
    ));
}

/// The command to run: the given one, else $SHELL, else /bin/sh.
fn command_line(command: &[OsString]) -> Vec<OsString> {
    if !command.is_empty() {
        return command.to_vec();
    }
    match std::env::var_os("SHELL").filter(|s| !s.is_empty()) {
        Some(shell) => vec![shell],
        None => vec![OsString::from("/bin/sh")],
    }
}

/// The command as a shell would read it back, for display on the server: one line, no control characters
/// (the server refuses them), at most [`MAX_COMMAND_BYTES`].
fn display_command(argv: &[OsString]) -> String {
    let mut text = argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    if text.len() > MAX_COMMAND_BYTES {
        let mut cut = MAX_COMMAND_BYTES - '…'.len_utf8();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn shell_quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.into_owned()
    } else if arg.chars().any(char::is_control) {
        // Bash's $'...' spells control characters with escapes.
        let mut quoted = String::from("$'");
        for c in arg.chars() {
            match c {
                '\\' => quoted.push_str("\\\\"),
                '\'' => quoted.push_str("\\'"),
                '\n' => quoted.push_str("\\n"),
                '\t' => quoted.push_str("\\t"),
                '\r' => quoted.push_str("\\r"),
                // Control characters are all below U+0100.
                c if c.is_control() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
                c => quoted.push(c),
            }
        }
        quoted.push('\'');
        quoted
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_quoted_like_a_shell_would_need() {
        let argv: Vec<OsString> = ["sh", "-c", "printf 'a b'; exit 3", ""].iter().map(OsString::from).collect();
        assert_eq!(display_command(&argv), r#"sh -c 'printf '\''a b'\''; exit 3' ''"#);
        let argv: Vec<OsString> = ["sh", "-c", "echo 'a'\n\tb\x1b\\"].iter().map(OsString::from).collect();
        assert_eq!(display_command(&argv), r#"sh -c $'echo \'a\'\n\tb\x1b\\'"#);
        let long = display_command(&[OsString::from("é".repeat(3000))]);
        assert!(long.len() <= MAX_COMMAND_BYTES && long.ends_with('…'), "{}", long.len());
    }

    #[test]
    fn the_default_command_is_the_users_shell() {
        assert_eq!(command_line(&[OsString::from("ls")]), [OsString::from("ls")]);
        assert!(!command_line(&[]).is_empty());
    }
}
