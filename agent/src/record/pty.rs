//! The command in a real PTY: spawning it, reading its output into the outbox, feeding it input, and its exit.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::Context;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::oneshot;

use super::Shared;

/// Largest single read from the PTY (also the largest record the outbox builds from one read).
const READ_BUFFER: usize = 64 * 1024;

pub struct Spawned {
    pub master: Box<dyn MasterPty + Send>,
    pub pid: libc::pid_t,
    /// Kept so the child handle outlives the recording; its exit is collected with `waitpid` (see [`wait`]).
    pub _child: Box<dyn portable_pty::Child + Send + Sync>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The exit code a shell would report: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal,
        }
    }
}

/// Starts `argv` in a new PTY of `cols` x `rows`, in the current directory.
pub fn spawn(argv: &[OsString], cols: u16, rows: u16) -> anyhow::Result<Spawned> {
    let pty = native_pty_system()
        .openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 })
        .context("cannot open a pseudo-terminal")?;
    let mut cmd = CommandBuilder::from_argv(argv.to_vec());
    // portable-pty starts in $HOME unless told otherwise; a recorder should not move the user.
    if let Ok(dir) = std::env::current_dir() {
        cmd.cwd(dir);
    }
    if cmd.get_env("TERM").is_none() {
        cmd.env("TERM", "xterm-256color");
    }
    let program = argv.first().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let child = pty.slave.spawn_command(cmd).with_context(|| format!("cannot start `{program}`"))?;
    // The reader sees EOF only once every slave handle is closed, ours included.
    drop(pty.slave);
    let pid = child.process_id().context("the command has no process id")? as libc::pid_t;
    Ok(Spawned { master: pty.master, pid, _child: child })
}

/// Reads the PTY until EOF: every read goes to the outbox first (never waiting on the network), then to stdout
/// when `mirror` is set. `done` fires at EOF.
pub fn start_reader(
    master: &dyn MasterPty,
    shared: Arc<Shared>,
    mirror: bool,
    done: oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut reader = master.try_clone_reader().context("cannot read from the pseudo-terminal")?;
    std::thread::Builder::new().name("pty-reader".into()).spawn(move || {
        let mut buf = vec![0u8; READ_BUFFER];
        let mut stdout = std::io::stdout();
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let accepted = shared.push_output(&buf[..n]);
                    if accepted && mirror {
                        // A closed stdout must not stop the recording.
                        let _ = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Linux answers EIO once the command and everything it started have closed the terminal.
                Err(_) => break,
            }
        }
        let _ = done.send(());
    })?;
    Ok(())
}

/// Passes our stdin to the command, byte for byte, until stdin ends.
pub fn start_input(master: &dyn MasterPty) -> anyhow::Result<()> {
    let mut writer = master.take_writer().context("cannot write to the pseudo-terminal")?;
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).and_then(|()| writer.flush()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // Dropping the writer sends the command an end-of-file.
    })?;
    Ok(())
}

/// Waits for the command in a thread of its own. `waitpid` rather than portable-pty's `wait`, whose status
/// carries only the signal's description, not its number.
pub fn wait(pid: libc::pid_t) -> oneshot::Receiver<std::io::Result<Exit>> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let result = loop {
            let mut status = 0;
            // SAFETY: plain syscall on our own child with a valid out pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                if libc::WIFEXITED(status) {
                    break Ok(Exit::Code(libc::WEXITSTATUS(status)));
                }
                if libc::WIFSIGNALED(status) {
                    break Ok(Exit::Signal(libc::WTERMSIG(status)));
                }
                continue; // stopped / continued: keep waiting
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                break Err(err);
            }
        };
        let _ = tx.send(result);
    });
    rx
}

/// Sends `signal` to the command.
pub fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; a vanished pid just fails.
    unsafe {
        libc::kill(pid, signal);
    }
}
