//! What the end-to-end tests share: the real `cmdop-inspector` server as a child process on its own database,
//! the real `cmdop` binary, and small clients for the HTTP API and the live viewer socket.
//!
//! Nothing here sleeps to make a point: waits poll a condition until a deadline and fail saying what they
//! waited for.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cmdop_protocol::live::{LiveEvent, decode_live_output};
use cmdop_protocol::{GapInfo, Session, SessionList};
use cmdop_store::testing::TestStore;
use cmdop_store::{Backend, NewMember, Role, secrets};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// The longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Variables of the server and of `cmdop` that must not leak in from the environment running the tests.
const FOREIGN_ENV: &[&str] = &[
    "CMDOP_SERVER",
    "CMDOP_TOKEN",
    "CMDOP_CONFIG_DIR",
    "CMDOP_DATA_DIR",
    "CMDOP_DATABASE_URL",
    "CMDOP_LISTEN",
    "CMDOP_PUBLIC_URL",
    "CMDOP_RECORDER_GRACE",
    "CMDOP_MEMBER_PASSWORD",
];

// ---------------------------------------------------------------- binaries

pub fn cmdop_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cmdop"))
}

/// `cmdop-inspector`, next to `cmdop` in the same target profile directory (or `$CMDOP_INSPECTOR_BIN`).
pub fn server_bin() -> PathBuf {
    let bin = std::env::var_os("CMDOP_INSPECTOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmdop_bin().with_file_name("cmdop-inspector"));
    assert!(
        bin.is_file(),
        "the server binary {} is missing: run `cargo build -p cmdop-inspector-server` first (with the same \
         CARGO_TARGET_DIR and profile as this test; scripts/test.sh builds the workspace before `cargo test`)",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------- waiting

/// Polls `probe` until it yields something, failing after `limit` with `what` it waited for.
pub async fn eventually<T>(what: &str, limit: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// `future`, or a failure naming `what` after `limit`.
pub async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

// ---------------------------------------------------------------- data

/// `len` bytes that look like real output and are not valid UTF-8: text lines (ASCII and multi-byte), SGR
/// sequences, lone continuation bytes, NULs, `\r`, and runs of random bytes of every value. Deterministic.
pub fn varied_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = Vec::with_capacity(len + 512);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        match next() % 6 {
            0 => out.extend_from_slice(format!("line {line}: plain ascii text, nothing special\n").as_bytes()),
            1 => out.extend_from_slice(format!("ligne {line}: déjà vu ✓ — ключ 鍵 🚀\r\n").as_bytes()),
            2 => out.extend_from_slice(
                format!("\x1b[3{}m{line}\x1b[0m \x1b[38;5;{}mcolor\x1b[0m\n", line % 8, line % 256).as_bytes(),
            ),
            3 => out.extend_from_slice(b"broken utf-8: \xc3\x28 \xa0\xa1 \xf0\x28\x8c\xbc \xff\xfe\x00\x01\r\n"),
            _ => {
                let n = 64 + (next() % 512) as usize;
                out.extend((0..n).map(|_| next() as u8));
            }
        }
    }
    out.truncate(len);
    out
}

/// Fails with the first differing offset rather than dumping megabytes.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual.iter().zip(expected).position(|(a, e)| a != e).unwrap_or(actual.len().min(expected.len()));
    let around = |b: &[u8]| {
        let lo = first.saturating_sub(16);
        let hi = (first + 32).min(b.len());
        format!("{:?}", String::from_utf8_lossy(&b[lo.min(hi)..hi]))
    };
    panic!(
        "{what}: {} bytes, expected {}; first difference at offset {first}:\n  actual   …{}…\n  expected …{}…",
        actual.len(),
        expected.len(),
        around(actual),
        around(expected)
    );
}

/// Places the retained bytes of a transcript (as the transcript endpoint returns them: starting at
/// `start_offset`, declared gaps left out) at their offsets: `(offset, bytes)` runs between gaps.
pub fn place<'a>(start_offset: u64, bytes: &'a [u8], gaps: &[GapInfo]) -> Vec<(u64, &'a [u8])> {
    let mut runs = Vec::new();
    let mut offset = start_offset;
    let mut rest = bytes;
    let mut gaps = gaps.iter().filter(|g| g.at_offset + g.bytes_lost > start_offset).peekable();
    while !rest.is_empty() {
        if let Some(g) = gaps.next_if(|g| g.at_offset <= offset) {
            offset = offset.max(g.at_offset + g.bytes_lost);
            continue;
        }
        let n = gaps.peek().map_or(rest.len(), |g| ((g.at_offset - offset) as usize).min(rest.len()));
        runs.push((offset, &rest[..n]));
        offset += n as u64;
        rest = &rest[n..];
    }
    runs
}

// ---------------------------------------------------------------- the server

/// `cmdop-inspector serve` on 127.0.0.1 and a database of its own; killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<std::process::Child>,
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    database_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    /// More `serve` options (e.g. `--recorder-grace 1s`).
    serve_args: Vec<String>,
}

impl Server {
    /// Starts on `port` (or a free one) and waits until `/healthz` answers 200.
    pub async fn start(database_url: &str, dir: &Path, port: Option<u16>, serve_args: &[&str]) -> Server {
        let data_dir = dir.join("server-data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = dir.join(format!("server-{}.log", Uuid::now_v7().simple()));
        let mut server = Server {
            child: None,
            port: 0,
            url: String::new(),
            database_url: database_url.into(),
            data_dir,
            log,
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
        };
        if let Some(port) = port {
            server.port = port;
            server.url = format!("http://127.0.0.1:{port}");
            server.restart().await;
            return server;
        }
        // Another process may take the port between our probe and the server's bind: try a few.
        for _ in 0..5 {
            server.port = free_port();
            server.url = format!("http://127.0.0.1:{}", server.port);
            if server.launch().await {
                return server;
            }
        }
        panic!("the server did not start on any port; its log:\n{}", server.log_text());
    }

    /// SIGKILL: no graceful shutdown, no flush, open connections just vanish.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server hangs; connections stay open, and what is sent to it is neither stored nor
    /// acknowledged.
    pub fn freeze(&mut self) {
        let child = self.child.as_ref().expect("the server runs");
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGSTOP) }, 0);
    }

    /// Starts again on the same port and database.
    pub async fn restart(&mut self) {
        self.kill9();
        // The port was just released: retry briefly should something still hold it.
        let deadline = Instant::now() + WAIT;
        while !self.launch().await {
            assert!(Instant::now() < deadline, "the server did not restart on port {}: {}", self.port, self.log_text());
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Spawns the server and waits for it to be healthy; false if it exited (e.g. the port was taken).
    async fn launch(&mut self) -> bool {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = std::process::Command::new(server_bin());
        cmd.arg("--database-url")
            .arg(&self.database_url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.serve_args)
            .env("CMDOP_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", server_bin().display())));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let health = format!("{}/healthz", self.url);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = client.get(&health).send().await
                && r.status() == 200
            {
                // Healthy, and it must be ours: an exited child means someone else answered on this port.
                if let Some(Ok(None)) = self.child.as_mut().map(|c| c.try_wait()) {
                    return true;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                eprintln!("server exited with {status} while starting on port {}", self.port);
                return false;
            }
            assert!(Instant::now() < deadline, "the server never became healthy: {}", self.log_text());
            sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log_text();
            let mut start = log.len().saturating_sub(6000);
            while !log.is_char_boundary(start) {
                start += 1;
            }
            eprintln!("---- server log (tail) ----\n{}\n---- end of server log ----", &log[start..]);
        }
    }
}

/// A port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------- per-test environment

/// One test's world: its own database (dropped at the end), a working directory for the recorded commands
/// (their files, markers) and for `cmdop`'s config.
pub struct Env {
    pub t: TestStore,
    /// What the server and the admin CLI are given: `sqlite://PATH` or the PostgreSQL URL.
    pub database_url: String,
    pub work: tempfile::TempDir,
}

/// A member with an API token.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

pub const FLEET: &str = "acme";
pub const MACHINE: &str = "web-1";
pub const CLIENT_NAME: &str = "e2e recorder";

impl Env {
    pub async fn new(t: TestStore) -> Env {
        let database_url = match t.store.backend() {
            Backend::Sqlite => format!("sqlite://{}", t.url),
            Backend::Postgres => t.url.clone(),
        };
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(work.path().join("config")).unwrap();
        Env { t, database_url, work }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub async fn start_server(&self) -> Server {
        Server::start(&self.database_url, self.work.path(), None, &[]).await
    }

    /// The server with more `serve` options (e.g. `--recorder-grace 1s`).
    pub async fn start_server_with(&self, serve_args: &[&str]) -> Server {
        Server::start(&self.database_url, self.work.path(), None, serve_args).await
    }

    /// The server on a port the test chose (e.g. one a recorder already tries).
    pub async fn start_server_at(&self, port: u16) -> Server {
        Server::start(&self.database_url, self.work.path(), Some(port), &[]).await
    }

    /// Fleet `acme` with machine `web-1` and its owner `owner@acme.io` (a bot with a token), set up through
    /// the store.
    pub async fn owner(&self) -> Member {
        let store = &self.t.store;
        let fleet = store.create_fleet(FLEET).await.unwrap();
        store.create_machine(fleet.id, MACHINE).await.unwrap();
        let email = "owner@acme.io".to_string();
        let member = store
            .create_member(NewMember {
                email: email.clone(),
                display_name: "Owner".into(),
                password_hash: None,
                is_bot: true,
            })
            .await
            .unwrap();
        store.add_fleet_member(fleet.id, member.id, Role::Owner).await.unwrap();
        let (token, digest) = secrets::new_token("cmdop");
        store.create_api_token(member.id, "e2e", &digest).await.unwrap();
        Member { id: member.id, email, token }
    }

    /// `cmdop-inspector admin ARGS` on this test's database; its stdout.
    pub async fn admin(&self, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::new(server_bin());
        cmd.arg("--database-url").arg(&self.database_url).arg("admin").args(args).kill_on_drop(true);
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        let out = within(&format!("admin {args:?}"), WAIT, cmd.output()).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "admin {args:?} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `cmdop` with a clean environment and its config in the work directory, run from the work directory.
    pub fn cmdop(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(cmdop_bin());
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        cmd.env("CMDOP_CONFIG_DIR", self.path("config"))
            .current_dir(self.work.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// `cmdop record --headless` of `sh -c SCRIPT` on `machine`, retrying fast when the server is away.
    pub fn record(&self, server_url: &str, token: &str, machine: &str, extra: &[&str], script: &str) -> Recorder {
        let mut cmd = self.cmdop();
        cmd.args(["record", "--server", server_url, "--token", token, "--machine", machine, "--headless"])
            .args(["--client-name", CLIENT_NAME, "--retry-max-delay-ms", "200"])
            .args(extra);
        if !extra.contains(&"--flush-timeout") {
            cmd.args(["--flush-timeout", "30"]);
        }
        cmd.args(["--", "sh", "-c", script]);
        Recorder::spawn(cmd)
    }
}

/// How `cmdop` shows `sh -c SCRIPT` on the server (the scripts here avoid single quotes).
pub fn displayed(script: &str) -> String {
    assert!(!script.contains('\'') && !script.chars().any(char::is_control), "keep test scripts quote-free");
    format!("sh -c '{script}'")
}

// ---------------------------------------------------------------- the recorder

/// A running `cmdop record`, its stderr collected as it comes.
pub struct Recorder {
    child: tokio::process::Child,
    stderr: watch::Receiver<String>,
    reader: Option<JoinHandle<String>>,
}

impl Recorder {
    fn spawn(mut cmd: tokio::process::Command) -> Recorder {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start cmdop");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, stderr) = watch::channel(String::new());
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tx.send_modify(|s| {
                    s.push_str(&line);
                    s.push('\n');
                });
            }
            tx.borrow().clone()
        });
        Recorder { child, stderr, reader: Some(reader) }
    }

    pub fn stderr(&self) -> String {
        self.stderr.borrow().clone()
    }

    /// Waits until stderr contains `needle`.
    pub async fn wait_for_stderr(&mut self, needle: &str) {
        let found = matches!(timeout(WAIT, self.stderr.wait_for(|s| s.contains(needle))).await, Ok(Ok(_)));
        if !found {
            panic!("cmdop never said {needle:?}; its stderr:\n{}", self.stderr());
        }
    }

    /// The session from `cmdop: recording <server>/sessions/<id>`.
    pub async fn session_id(&mut self, server_url: &str) -> Uuid {
        let prefix = format!("cmdop: recording {server_url}/sessions/");
        self.wait_for_stderr(&prefix).await;
        let text = self.stderr();
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].trim().parse().unwrap_or_else(|e| panic!("bad session id in {line:?}: {e}"))
    }

    /// True while `cmdop` runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL to `cmdop` itself (the command loses its terminal and gets a hangup).
    pub async fn kill9(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Waits for `cmdop` to exit: its exit code and all of its stderr.
    pub async fn finish(mut self) -> (i32, String) {
        let waited = timeout(WAIT * 2, self.child.wait()).await;
        let Ok(status) = waited else {
            panic!("cmdop did not exit in time; its stderr so far:\n{}", self.stderr());
        };
        let status = status.unwrap();
        let stderr = within("cmdop's stderr to end", WAIT, self.reader.take().unwrap()).await.unwrap();
        let code = status.code().unwrap_or_else(|| panic!("cmdop was killed ({status}); stderr:\n{stderr}"));
        (code, stderr)
    }
}

// ---------------------------------------------------------------- an interactive recorder

/// `cmdop record` (not headless) with a terminal of its own: a PTY whose master the test drives like a person at
/// a terminal (typing, resizing, reading the screen's bytes).
pub struct Terminal {
    master: Box<dyn portable_pty::MasterPty + Send>,
    writer: Box<dyn std::io::Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    /// Everything `cmdop` wrote to its terminal (mirrored output and its notices).
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Env {
    /// `cmdop record` of `sh -c SCRIPT` in a `cols` x `rows` terminal.
    pub fn record_interactively(&self, server_url: &str, token: &str, script: &str, cols: u16, rows: u16) -> Terminal {
        use portable_pty::{CommandBuilder, PtySize, native_pty_system};
        let pty = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(cmdop_bin());
        cmd.args(["record", "--server", server_url, "--token", token, "--machine", MACHINE]);
        cmd.args(["--client-name", CLIENT_NAME, "--retry-max-delay-ms", "200", "--flush-timeout", "30"]);
        cmd.args(["--", "sh", "-c", script]);
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        cmd.env("CMDOP_CONFIG_DIR", self.path("config"));
        cmd.cwd(self.work.path());
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { master: pty.master, writer, child, screen }
    }
}

impl Terminal {
    pub fn screen(&self) -> Vec<u8> {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until the terminal shows `needle`.
    pub async fn wait_for(&self, needle: &str) {
        let needle = needle.as_bytes();
        eventually(&format!("the terminal to show {:?}", String::from_utf8_lossy(needle)), WAIT, async || {
            self.screen().windows(needle.len()).any(|w| w == needle).then_some(())
        })
        .await;
    }

    /// Types `keys`.
    pub fn type_keys(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).unwrap();
        self.writer.flush().unwrap();
    }

    /// Resizes the terminal (the kernel sends `cmdop` SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        self.master.resize(portable_pty::PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).unwrap();
    }

    /// Whether the terminal is in canonical mode with echo, as a shell leaves it (not raw).
    pub fn cooked(&self) -> bool {
        let fd = self.master.as_raw_fd().expect("a unix PTY");
        // SAFETY: tcgetattr fills the zeroed struct for a valid descriptor we own.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut termios) }, 0);
        termios.c_lflag & (libc::ICANON | libc::ECHO) == (libc::ICANON | libc::ECHO)
    }

    /// Waits for `cmdop` to exit; its exit code.
    pub async fn finish(&mut self) -> u32 {
        let status = eventually("cmdop to exit", WAIT, async || self.child.try_wait().unwrap()).await;
        status.exit_code()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

// ---------------------------------------------------------------- the HTTP API

pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

/// `GET /api/v1/sessions/{id}/transcript`: the bytes and the headers that place them.
#[derive(Debug)]
pub struct Transcript {
    pub start_offset: u64,
    pub total_bytes: u64,
    pub truncated_bytes: u64,
    pub bytes: Vec<u8>,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        Api { client, base: base.to_string(), token: token.to_string() }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.client.get(&url).bearer_auth(&self.token).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// `GET path` as JSON, failing on any status but 200.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    pub async fn status(&self, path: &str) -> u16 {
        self.get(path).await.status().as_u16()
    }

    /// The session as the API says it, also as raw JSON (to check the documented field names).
    pub async fn session(&self, id: Uuid) -> (Session, serde_json::Value) {
        let raw = self.json(&format!("/api/v1/sessions/{id}")).await;
        let session = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("not a Session ({e}): {raw}"));
        (session, raw)
    }

    /// Every session this token sees (one page is plenty here).
    pub async fn sessions(&self) -> Vec<Session> {
        let list: SessionList = serde_json::from_value(self.json("/api/v1/sessions?limit=200").await).unwrap();
        assert!(list.next_cursor.is_none());
        list.sessions
    }

    /// Polls the session until it has ended.
    pub async fn ended(&self, id: Uuid) -> Session {
        eventually("the session to end", WAIT, async || {
            let (s, _) = self.session(id).await;
            (s.state == cmdop_protocol::SessionState::Ended).then_some(s)
        })
        .await
    }

    pub async fn transcript(&self, id: Uuid) -> Transcript {
        let response = self.get(&format!("/api/v1/sessions/{id}/transcript")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/octet-stream");
        let header = |name: &str| -> u64 {
            let value = response.headers().get(name).unwrap_or_else(|| panic!("no {name} header"));
            value.to_str().unwrap().parse().unwrap()
        };
        let (start_offset, total_bytes, truncated_bytes) = (
            header("x-transcript-start-offset"),
            header("x-transcript-total-bytes"),
            header("x-transcript-truncated-bytes"),
        );
        let bytes = response.bytes().await.unwrap().to_vec();
        Transcript { start_offset, total_bytes, truncated_bytes, bytes }
    }
}

// ---------------------------------------------------------------- live viewers

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `GET /api/v1/sessions/{id}/live[?from=N]` with a Bearer token.
pub async fn live(base: &str, token: &str, id: Uuid, from: Option<u64>) -> Ws {
    let ws_base = base.replacen("http://", "ws://", 1);
    let url = match from {
        Some(n) => format!("{ws_base}/api/v1/sessions/{id}/live?from={n}"),
        None => format!("{ws_base}/api/v1/sessions/{id}/live"),
    };
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let (ws, _) = within("connecting a live viewer", WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|e| panic!("live viewer on {url}: {e}"));
    ws
}

/// The HTTP status with which the live endpoint refuses the upgrade.
pub async fn live_refused(base: &str, token: &str, id: Uuid) -> u16 {
    let url = format!("{}/api/v1/sessions/{id}/live", base.replacen("http://", "ws://", 1));
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    match within("a refused live viewer", WAIT, tokio_tungstenite::connect_async(request)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the live endpoint failed otherwise: {e}"),
        Ok(_) => panic!("the live endpoint accepted a viewer it should have refused"),
    }
}

/// What a live viewer received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveItem {
    Bytes(u64, Vec<u8>),
    Event(LiveEvent),
}

#[derive(Debug, Default)]
pub struct LiveLog {
    pub items: Vec<LiveItem>,
    /// The close frame's code and reason, if the server sent one.
    pub close: Option<(u16, String)>,
}

/// The next frame: `Ok(item)`, or `Err(close)` once the socket closed.
pub async fn next_item(ws: &mut Ws) -> Result<LiveItem, Option<(u16, String)>> {
    loop {
        let msg = within("the next live frame", WAIT, ws.next()).await;
        return match msg {
            None | Some(Err(_)) => Err(None),
            Some(Ok(Message::Close(frame))) => Err(frame.map(|f| (u16::from(f.code), f.reason.to_string()))),
            Some(Ok(Message::Binary(frame))) => {
                let (offset, bytes) = decode_live_output(&frame).expect("a binary live frame has an offset");
                Ok(LiveItem::Bytes(offset, bytes.to_vec()))
            }
            Some(Ok(Message::Text(text))) => Ok(LiveItem::Event(
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not a live event ({e}): {text}")),
            )),
            Some(Ok(_)) => continue,
        };
    }
}

/// Reads until the server closes the socket.
pub async fn read_live(mut ws: Ws) -> LiveLog {
    let mut log = LiveLog::default();
    loop {
        match next_item(&mut ws).await {
            Ok(item) => log.items.push(item),
            Err(close) => {
                log.close = close;
                return log;
            }
        }
    }
}

/// Sends `message` as a viewer must not, and returns how the server closed the socket.
pub async fn violate(mut ws: Ws, message: Message) -> Option<(u16, String)> {
    // The hello first: the socket is fully set up (and the viewer attached) before it misbehaves.
    match next_item(&mut ws).await {
        Ok(LiveItem::Event(LiveEvent::Hello { .. })) => {}
        other => panic!("expected hello first, got {other:?}"),
    }
    ws.send(message).await.unwrap();
    loop {
        match next_item(&mut ws).await {
            Ok(_) => continue,
            Err(close) => return close,
        }
    }
}

impl LiveLog {
    pub fn events(&self) -> Vec<&LiveEvent> {
        self.items
            .iter()
            .filter_map(|i| match i {
                LiveItem::Event(e) => Some(e),
                LiveItem::Bytes(..) => None,
            })
            .collect()
    }

    /// The output from `from` on, checking that every binary frame continues exactly where the previous one (or
    /// a gap) ended: nothing twice, nothing skipped.
    #[track_caller]
    pub fn bytes_from(&self, from: u64) -> Vec<u8> {
        let mut at = from;
        let mut out = Vec::new();
        let mut trace = String::new();
        for item in &self.items {
            match item {
                LiveItem::Bytes(offset, bytes) => {
                    let _ = write!(trace, " bytes@{offset}+{}", bytes.len());
                    assert_eq!(*offset, at, "a live frame at {offset} where the output stood at {at}:{trace}");
                    out.extend_from_slice(bytes);
                    at += bytes.len() as u64;
                }
                LiveItem::Event(LiveEvent::Gap { at_offset, bytes_lost, .. }) => {
                    let _ = write!(trace, " gap@{at_offset}+{bytes_lost}");
                    assert_eq!(*at_offset, at, "a gap at {at_offset} where the output stood at {at}:{trace}");
                    at += bytes_lost;
                }
                LiveItem::Event(_) => {}
            }
        }
        out
    }

    /// Checks everything received from `from` on against what the command printed: each binary frame holds
    /// exactly the bytes at its offset and continues where the previous frame (or gap) ended, and the log runs
    /// to the end of the output. Returns the gaps announced, in order.
    #[track_caller]
    pub fn check_against(&self, from: u64, expected: &[u8]) -> Vec<(u64, u64, cmdop_protocol::GapReason)> {
        let mut at = from;
        let mut gaps = Vec::new();
        for item in &self.items {
            match item {
                LiveItem::Bytes(offset, bytes) => {
                    assert_eq!(*offset, at, "a live frame at {offset} where the output stood at {at}");
                    let end = at as usize + bytes.len();
                    assert!(end <= expected.len(), "a live frame past the end of the output: {at}..{end}");
                    assert_bytes_eq(bytes, &expected[at as usize..end], &format!("the live frame at {offset}"));
                    at = end as u64;
                }
                LiveItem::Event(LiveEvent::Gap { at_offset, bytes_lost, reason }) => {
                    assert_eq!(*at_offset, at, "a gap at {at_offset} where the output stood at {at}");
                    gaps.push((*at_offset, *bytes_lost, *reason));
                    at += bytes_lost;
                }
                LiveItem::Event(_) => {}
            }
        }
        assert_eq!(at, expected.len() as u64, "the live log stops short of the end of the output");
        gaps
    }

    /// The `exit` event, which must be the last item.
    #[track_caller]
    pub fn exit(&self) -> &LiveEvent {
        match self.items.last() {
            Some(LiveItem::Event(e @ LiveEvent::Exit { .. })) => e,
            other => panic!("the last live item is {other:?}, not an exit; close {:?}", self.close),
        }
    }
}
