//! `cmdop record` end to end: the real binary against a fake ingest server written here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmdop_protocol::ClientKind;
use cmdop_protocol::ingest::{MAX_OUTPUT_FRAME_BYTES, OpenSession, RecorderFrame, ServerFrame, decode_output};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use uuid::Uuid;

/// Every test is bounded: a hang is a failure, not a stuck CI run.
const TEST_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the fake server

struct Conn {
    ws: WebSocketStream<TcpStream>,
    uri: String,
    auth: Option<String>,
}

/// What the recorder sent.
#[derive(Debug)]
enum Up {
    Frame(RecorderFrame),
    Output { offset: u64, bytes: Vec<u8> },
    Gone,
}

// The handshake callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
async fn accept(listener: &TcpListener) -> Conn {
    let (tcp, _) = listener.accept().await.unwrap();
    let seen = Arc::new(Mutex::new((String::new(), None)));
    let record = seen.clone();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, move |req: &Request, resp: Response| {
        let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
        *record.lock().unwrap() = (req.uri().to_string(), auth);
        Ok(resp)
    })
    .await
    .unwrap();
    let (uri, auth) = seen.lock().unwrap().clone();
    Conn { ws, uri, auth }
}

impl Conn {
    async fn recv(&mut self) -> Up {
        loop {
            match self.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Up::Gone,
                Some(Ok(Message::Text(text))) => return Up::Frame(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Binary(frame))) => {
                    let out = decode_output(&frame).expect("a valid output frame");
                    assert!(out.bytes.len() <= MAX_OUTPUT_FRAME_BYTES);
                    return Up::Output { offset: out.offset, bytes: out.bytes.to_vec() };
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn send(&mut self, frame: ServerFrame) {
        // The recorder may already be gone (e.g. after `closed`); that is not the test's concern.
        let _ = self.ws.send(Message::text(serde_json::to_string(&frame).unwrap())).await;
    }

    async fn expect_open(&mut self) -> OpenSession {
        assert_eq!(self.uri, "/api/v1/ingest?protocol=1");
        assert_eq!(self.auth.as_deref(), Some("Bearer secret-token"));
        match self.recv().await {
            Up::Frame(RecorderFrame::Open(open)) => open,
            other => panic!("expected open, got {other:?}"),
        }
    }

    async fn ready(&mut self, session_id: Uuid, acked: u64) {
        let url = format!("http://inspector.test/sessions/{session_id}");
        self.send(ServerFrame::Ready { session_id, acked, url }).await;
    }
}

/// What the fake server stored, checked as it arrives: each output frame must continue exactly where the
/// transcript ends (no byte twice, none skipped without a gap).
#[derive(Debug, Default)]
struct Stored {
    /// Offset after the last byte stored or declared lost.
    next: u64,
    /// The bytes received, in order (gaps leave nothing here).
    bytes: Vec<u8>,
    gaps: Vec<(u64, u64)>,
    resizes: Vec<(u64, u16, u16)>,
    exit: Option<(u64, Option<i32>, Option<i32>)>,
    output_frames: usize,
}

impl Stored {
    fn output(&mut self, offset: u64, bytes: &[u8]) {
        assert_eq!(offset, self.next, "output frame at {offset} but the transcript ends at {}", self.next);
        self.bytes.extend_from_slice(bytes);
        self.next += bytes.len() as u64;
        self.output_frames += 1;
    }
}

/// Serves a connection after `ready` until the exit (answering `closed`, returns true) or a disconnect (false).
async fn serve(conn: &mut Conn, session_id: Uuid, stored: &mut Stored) -> bool {
    loop {
        match conn.recv().await {
            Up::Output { offset, bytes } => {
                stored.output(offset, &bytes);
                conn.send(ServerFrame::Ack { offset: stored.next }).await;
            }
            Up::Frame(RecorderFrame::Gap { at_offset, bytes_lost }) => {
                assert_eq!(at_offset, stored.next, "gap must start where the transcript ends");
                stored.gaps.push((at_offset, bytes_lost));
                stored.next += bytes_lost;
            }
            Up::Frame(RecorderFrame::Resize { offset, cols, rows, .. }) => {
                assert_eq!(offset, stored.next, "resize must come at the current offset");
                stored.resizes.push((offset, cols, rows));
            }
            Up::Frame(RecorderFrame::Exit { offset, code, signal }) => {
                assert_eq!(offset, stored.next, "exit must come after all output");
                stored.exit = Some((offset, code, signal));
                conn.send(ServerFrame::Closed { session_id }).await;
                return true;
            }
            Up::Frame(other) => panic!("unexpected frame {other:?}"),
            Up::Gone => return false,
        }
    }
}

/// A well-behaved server for one session on one connection.
async fn happy_server(listener: TcpListener) -> (OpenSession, Stored) {
    let mut conn = accept(&listener).await;
    let open = conn.expect_open().await;
    let session_id = Uuid::from_u128(0x5e55_1011_0000_4000_8000_0000_0000_0001);
    conn.ready(session_id, 0).await;
    let mut stored = Stored::default();
    assert!(serve(&mut conn, session_id, &mut stored).await, "connection dropped before the exit");
    (open, stored)
}

// ---------------------------------------------------------------- running cmdop

struct Recorder {
    child: Child,
    stderr: StderrLines,
    _config: tempfile::TempDir,
}

fn cmdop(port: u16, extra: &[&str], command: &[&str]) -> Recorder {
    let config = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmdop"))
        .arg("record")
        .arg("--headless")
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args(["--token", "secret-token", "--machine", "test-box", "--retry-max-delay-ms", "100"])
        .args(extra)
        .arg("--")
        .args(command)
        .env_remove("CMDOP_SERVER")
        .env_remove("CMDOP_TOKEN")
        .env("CMDOP_CONFIG_DIR", config.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = StderrLines::new(child.stderr.take().unwrap());
    Recorder { child, stderr, _config: config }
}

impl Recorder {
    /// cmdop's exit code and everything it printed on stderr.
    async fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().await.unwrap();
        let stderr = self.stderr.rest().await;
        (status.code().unwrap_or_else(|| panic!("cmdop was killed: {status:?}\n{stderr}")), stderr)
    }
}

struct StderrLines {
    rx: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl StderrLines {
    fn new(stderr: tokio::process::ChildStderr) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        StderrLines { rx, seen: Vec::new() }
    }

    async fn wait_for(&mut self, needle: &str) {
        while !self.seen.iter().any(|l| l.contains(needle)) {
            match self.rx.recv().await {
                Some(line) => self.seen.push(line),
                None => panic!("cmdop's stderr ended without {needle:?}: {:?}", self.seen),
            }
        }
    }

    async fn rest(mut self) -> String {
        while let Some(line) = self.rx.recv().await {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// A port nobody listens on (yet).
async fn free_port() -> u16 {
    listener().await.1
}

/// Deterministic bytes of every value, including the ones a terminal would otherwise interpret.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn write_data(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let bytes = data(len);
    let path = dir.join("data");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

async fn wait_for_file(path: &Path) {
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn resumes_after_a_dropped_connection_and_delivers_every_byte_once() {
    tokio::time::timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let (data_path, payload) = write_data(dir.path(), 300_000);
        let go = dir.path().join("go");
        let (listener, port) = listener().await;
        // stty -opost: the PTY passes bytes through unchanged. The command waits for `go` so that output lands
        // on both sides of the disconnect.
        let script = r#"stty -opost; printf first-part; while [ ! -e "$1" ]; do sleep 0.01; done; cat "$2"; exit 3"#;
        let recorder = cmdop(port, &[], &["sh", "-c", script, "sh", s(&go), s(&data_path)]);

        let session_id = Uuid::from_u128(0x5e55_1011_0000_4000_8000_0000_0000_0001);
        let mut stored = Stored::default();
        // First connection: store the first part, acknowledge it, then drop the connection.
        let mut conn = accept(&listener).await;
        let open = conn.expect_open().await;
        assert_eq!((open.machine.as_str(), open.cols, open.rows), ("test-box", 80, 24));
        assert_eq!(open.client_kind, ClientKind::Cli);
        assert!(open.command.starts_with("sh -c 'stty -opost;"), "{}", open.command);
        assert!(open.started_at.is_some());
        conn.ready(session_id, 0).await;
        while stored.next < 10 {
            match conn.recv().await {
                Up::Output { offset, bytes } => stored.output(offset, &bytes),
                other => panic!("expected output, got {other:?}"),
            }
        }
        assert_eq!(stored.bytes, b"first-part");
        conn.send(ServerFrame::Ack { offset: 10 }).await;
        drop(conn);
        std::fs::write(&go, b"").unwrap();

        // Second connection: a resume of the same session, continuing exactly at the acknowledged offset.
        let mut conn = accept(&listener).await;
        match conn.recv().await {
            Up::Frame(RecorderFrame::Resume { protocol: 1, session_id: resumed }) => assert_eq!(resumed, session_id),
            other => panic!("expected resume, got {other:?}"),
        }
        conn.ready(session_id, 10).await;
        assert!(serve(&mut conn, session_id, &mut stored).await);

        let mut expected = b"first-part".to_vec();
        expected.extend_from_slice(&payload);
        assert!(
            stored.bytes == expected,
            "transcript differs ({} bytes vs {} expected)",
            stored.bytes.len(),
            expected.len()
        );
        assert!(stored.gaps.is_empty(), "{:?}", stored.gaps);
        assert_eq!(stored.exit, Some((expected.len() as u64, Some(3), None)));
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.contains(&format!("cmdop: recording http://inspector.test/sessions/{session_id}")), "{stderr}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (listener, port) = listener().await;
        let recorder = cmdop(
            port,
            &["--client-kind", "bot", "--cols", "120", "--rows", "40"],
            &["sh", "-c", "stty -opost; printf bye; kill -9 $$"],
        );
        let (open, stored) = happy_server(listener).await;
        assert_eq!((open.client_kind, open.cols, open.rows), (ClientKind::Bot, 120, 40));
        assert_eq!(stored.bytes, b"bye");
        assert_eq!(stored.exit, Some((3, None, Some(9))));
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 137, "{stderr}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_fatal_error_stops_the_recording_but_not_the_command() {
    tokio::time::timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let (listener, port) = listener().await;
        let script = r#"while [ ! -e "$1" ]; do sleep 0.01; done; exit 5"#;
        let mut recorder = cmdop(port, &[], &["sh", "-c", script, "sh", s(&go)]);

        let mut conn = accept(&listener).await;
        conn.expect_open().await;
        let error = "no grant for machine test-box".to_string();
        conn.send(ServerFrame::Error { error, fatal: true }).await;
        drop(conn);
        // The command is still running when cmdop reports the refusal.
        recorder.stderr.wait_for("no grant for machine test-box").await;
        std::fs::write(&go, b"").unwrap();

        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 5, "{stderr}");
        assert!(stderr.contains("the server refused the recording: no grant for machine test-box"), "{stderr}");
        // A fatal error is not retried: nothing is waiting to be accepted now that cmdop is gone.
        let listener = listener.into_std().unwrap();
        listener.set_nonblocking(true).unwrap();
        let retry = listener.accept().map(|_| ()).map_err(|e| e.kind());
        assert_eq!(retry, Err(std::io::ErrorKind::WouldBlock), "cmdop reconnected after a fatal error");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn records_locally_while_the_server_is_unreachable_and_sends_it_all_later() {
    tokio::time::timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        let port = free_port().await;
        let script = r#"stty -opost; printf hello-offline; touch "$1""#;
        let mut recorder = cmdop(port, &[], &["sh", "-c", script, "sh", s(&done)]);

        recorder.stderr.wait_for("server unreachable").await;
        wait_for_file(&done).await;
        // Only now does the server come up, on the port cmdop has been trying.
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let server_up = chrono::Utc::now();
        let (open, stored) = happy_server(listener).await;
        assert!(open.started_at.unwrap() < server_up, "started_at must be when the command started");
        assert_eq!(stored.bytes, b"hello-offline");
        assert!(stored.gaps.is_empty());
        assert_eq!(stored.exit, Some((13, Some(0), None)));
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stderr.matches("server unreachable").count(), 1, "said once: {stderr}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_bytes_and_reports_an_exact_gap() {
    tokio::time::timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let (data_path, payload) = write_data(dir.path(), 10_000);
        let done = dir.path().join("done");
        let port = free_port().await;
        let script = r#"stty -opost; cat "$1"; touch "$2""#;
        let mut recorder =
            cmdop(port, &["--buffer-size", "1KiB"], &["sh", "-c", script, "sh", s(&data_path), s(&done)]);

        recorder.stderr.wait_for("server unreachable").await;
        wait_for_file(&done).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (_, stored) = happy_server(listener).await;

        assert_eq!(stored.gaps.len(), 1, "{:?}", stored.gaps);
        let (at, lost) = stored.gaps[0];
        assert_eq!(at, 0);
        assert_eq!(lost + stored.bytes.len() as u64, payload.len() as u64);
        assert!(stored.bytes.len() <= 1024, "kept {} bytes in a 1 KiB buffer", stored.bytes.len());
        assert_eq!(stored.bytes, payload[lost as usize..], "the newest bytes are kept");
        assert_eq!(stored.exit, Some((payload.len() as u64, Some(0), None)));
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains(&format!("{lost} bytes were dropped")), "{stderr}");
    })
    .await
    .expect("test timed out");
}

/// c_lflag of the terminal behind `fd`.
fn local_flags(fd: std::os::unix::io::RawFd) -> libc::tcflag_t {
    // SAFETY: termios is plain data filled in by tcgetattr.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd, &mut t), 0);
        t.c_lflag
    }
}

#[tokio::test]
async fn interactive_mode_is_a_transparent_raw_terminal_that_records_resizes() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::{Read, Write};

    tokio::time::timeout(TEST_LIMIT, async {
        let (listener, port) = listener().await;
        let config = tempfile::tempdir().unwrap();
        // cmdop runs in a terminal of our own, as it would under a person's terminal emulator.
        let pty =
            native_pty_system().openpty(PtySize { rows: 30, cols: 100, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_cmdop"));
        cmd.args(["record", "--server", &format!("http://127.0.0.1:{port}"), "--token", "secret-token"]);
        // The command reads one raw byte: Ctrl-C must arrive as that byte, not as a signal to cmdop.
        let script = "stty raw -echo; printf 'ready\\n'; dd bs=1 count=1 2>/dev/null | od -An -c; exit 4";
        cmd.args(["--machine", "test-box", "--", "sh", "-c", script]);
        cmd.env("CMDOP_CONFIG_DIR", config.path());
        cmd.env_remove("CMDOP_SERVER");
        cmd.env_remove("CMDOP_TOKEN");
        cmd.cwd(std::env::current_dir().unwrap());
        let fd = pty.master.as_raw_fd().unwrap();
        let cooked = local_flags(fd);
        assert_ne!(cooked & libc::ICANON, 0);
        let mut child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);

        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = pty.master.try_clone_reader().unwrap();
        let sink = screen.clone();
        let reading = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut keys = pty.master.take_writer().unwrap();

        let mut conn = accept(&listener).await;
        let open = conn.expect_open().await;
        assert_eq!((open.cols, open.rows), (100, 30), "the session takes the terminal's size");
        assert_eq!(local_flags(fd) & (libc::ICANON | libc::ECHO), 0, "raw while recording");
        let session_id = Uuid::from_u128(7);
        conn.ready(session_id, 0).await;

        let mut stored = Stored::default();
        pty.master.resize(PtySize { rows: 40, cols: 120, pixel_width: 0, pixel_height: 0 }).unwrap();
        while stored.resizes.is_empty() || !stored.bytes.ends_with(b"ready\n") {
            match conn.recv().await {
                Up::Output { offset, bytes } => {
                    stored.output(offset, &bytes);
                    conn.send(ServerFrame::Ack { offset: stored.next }).await;
                }
                Up::Frame(RecorderFrame::Resize { offset, cols, rows, .. }) => {
                    assert_eq!(offset, stored.next);
                    stored.resizes.push((offset, cols, rows));
                }
                other => panic!("expected output or resize, got {other:?}"),
            }
        }
        assert_eq!(stored.resizes.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(), [(120, 40)]);
        keys.write_all(b"\x03").unwrap();
        keys.flush().unwrap();
        assert!(serve(&mut conn, session_id, &mut stored).await);

        let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
        let text = String::from_utf8_lossy(&stored.bytes).into_owned();
        assert!(text.starts_with("ready\n") && text.trim_end().ends_with(" 003"), "transcript: {text:?}");
        assert_eq!(stored.exit.map(|e| e.1), Some(Some(4)));
        assert_eq!(status.exit_code(), 4);
        assert_eq!(local_flags(fd), cooked, "the terminal is restored");
        reading.join().unwrap();
        let mut screen = String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
        // The notice goes to stderr, the same terminal, anywhere among the output.
        let notice = format!("cmdop: recording http://inspector.test/sessions/{session_id}\r\n");
        assert!(screen.contains(&notice), "{screen:?}");
        screen = screen.replacen(&notice, "", 1);
        assert_eq!(screen, text, "the output is mirrored byte for byte");
        // Only now: dropping the writer types an end-of-file, which the restored terminal would echo.
        drop(keys);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn sigterm_hangs_up_the_command_and_its_exit_is_still_recorded() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (listener, port) = listener().await;
        let script = r#"trap 'exit 7' HUP; stty -opost; printf ready; while :; do sleep 0.01; done"#;
        let recorder = cmdop(port, &[], &["sh", "-c", script]);
        let mut conn = accept(&listener).await;
        conn.expect_open().await;
        let session_id = Uuid::from_u128(9);
        conn.ready(session_id, 0).await;
        let mut stored = Stored::default();
        while stored.bytes != b"ready" {
            match conn.recv().await {
                Up::Output { offset, bytes } => stored.output(offset, &bytes),
                other => panic!("expected output, got {other:?}"),
            }
        }
        let pid = recorder.child.id().unwrap() as libc::pid_t;
        // SAFETY: signals our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        assert!(serve(&mut conn, session_id, &mut stored).await);
        assert_eq!(stored.exit, Some((5, Some(7), None)));
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 7, "{stderr}");
        assert!(stderr.contains("hanging up the command"), "{stderr}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn gives_up_after_the_flush_timeout_with_the_commands_exit_code() {
    tokio::time::timeout(TEST_LIMIT, async {
        let port = free_port().await;
        let recorder = cmdop(port, &["--flush-timeout", "2"], &["sh", "-c", "stty -opost; printf 12345; exit 6"]);
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 6, "{stderr}");
        assert!(stderr.contains("5 bytes not yet stored by the server"), "progress after a second: {stderr}");
        assert!(stderr.contains("gave up after 2s (--flush-timeout): 5 bytes"), "{stderr}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn ctrl_c_while_waiting_for_the_server_stops_the_wait() {
    tokio::time::timeout(TEST_LIMIT, async {
        let port = free_port().await;
        let mut recorder = cmdop(port, &[], &["sh", "-c", "stty -opost; printf 1234; exit 2"]);
        // The progress line comes only once the command has exited and cmdop is waiting for the server.
        recorder.stderr.wait_for("bytes not yet stored by the server").await;
        let pid = recorder.child.id().unwrap() as libc::pid_t;
        // SAFETY: signals our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("stopped waiting: 4 bytes of output were not stored"), "{stderr}");
    })
    .await
    .expect("test timed out");
}
