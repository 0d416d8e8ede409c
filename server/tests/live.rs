//! The recorder's ingest socket and the viewers' live socket, over real WebSockets: a fake recorder streams
//! sessions (`protocol/src/ingest.rs`), fake viewers follow them (`protocol/src/live.rs`), and what was stored is
//! checked through the HTTP API. Every test runs against SQLite and PostgreSQL.
//!
//! Frames are built and read by hand from the documented wire format, not with the server's own codec. Every
//! wait has a timeout, so a hang fails the test instead of blocking the run.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use cmdop_store::testing::TestStore;
use cmdop_store::{Clock, Fleet, Machine, Member, Role};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, COOKIE};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

common::both_backends!(
    // ingest: the happy path
    recorder_streams_a_session_and_exits,
    recorder_resumes_after_disconnects_without_duplicates,
    resend_that_disagrees_is_refused_and_changes_nothing,
    exit_is_stored_once_and_an_ended_session_takes_no_more_output,
    open_takes_the_recorders_start_time_but_never_a_future_one,
    one_bad_recorder_does_not_fail_the_others,
    // ingest: refusals
    bad_frames_are_refused_with_a_clear_error,
    recording_needs_a_token_and_a_grant,
    resuming_another_members_session_is_refused,
    refused_open_creates_no_session,
    // gaps and the ring buffer
    gaps_are_stored_and_replayed_in_place,
    ring_buffer_overflow_replays_as_a_truncated_gap,
    // viewers
    viewers_follow_a_session_live,
    viewer_from_an_offset_gets_exactly_the_rest,
    resizes_reach_viewers_in_place,
    viewers_are_read_only,
    viewer_refusals_happen_before_the_upgrade,
    // recorder lost
    lost_recorder_ends_the_session_and_resume_reopens_it,
    // the sessions list's change stream
    list_followers_hear_of_their_sessions_only,
    // clients and chat
    clients_api_attaches_and_detaches,
    chat_thread_is_linked_at_open,
);

/// Several replicas share one PostgreSQL database (SQLite is one process by design): a viewer on one replica
/// follows a recorder writing through another, told by NOTIFY, and sees clients change and the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_viewer_on_another_replica_follows_the_session() {
    let w = world(TestStore::postgres().await).await;
    let replica = w.app.serve_replica().await;
    let (mut r, id) = w.recording("tail -f /var/log/syslog").await;
    r.output(0, b"first line\r\n").await;
    r.acked_to(12).await;

    let path = format!("/api/v1/sessions/{id}/live");
    let ws = ws_connect(replica, &path, &w.alice_cookie).await.unwrap_or_else(|(s, b)| panic!("{path}: {s} {b}"));
    let mut v = Viewer::new(ws, "viewer on the other replica");
    v.until_event("live").await;
    // Written through the first replica after the viewer caught up: it arrives only if the replicas talk.
    r.output(12, b"second line\r\n").await;
    r.acked_to(25).await;
    v.until_offset(25).await;
    assert_eq!(v.bytes(), b"first line\r\nsecond line\r\n");
    r.exit(id, 25, 0).await;
    assert_eq!(v.until_close().await, Some(1000));
    let exit = v.events("exit").pop().unwrap_or_else(|| panic!("no exit event: {:?}", v.summary()));
    assert_eq!(exit["exit_code"], json!(0));
}

/// How long any one step may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------------------------
// the world

struct World {
    app: App,
    addr: SocketAddr,
    acme: Fleet,
    web: Machine,
    /// Owner of acme.
    alice_cookie: Auth,
    alice_token: Auth,
    /// Plain member of acme, granted web-1: the usual recorder.
    bob: Member,
    bob_token: Auth,
    /// Plain member of acme without any grant.
    dave_token: Auth,
    /// Owner of fleet "other" only.
    carol_token: Auth,
}

async fn world(t: TestStore) -> World {
    world_of(App::new(t)).await
}

async fn world_of(app: App) -> World {
    let store = app.t.store.clone();
    let acme = store.create_fleet("acme").await.unwrap();
    let other = store.create_fleet("other").await.unwrap();
    let web = store.create_machine(acme.id, "web-1").await.unwrap();
    store.create_machine(other.id, "far-1").await.unwrap();
    let alice = app.person("alice@acme.test", "Alice").await;
    let bob = app.person("bob@acme.test", "Bob").await;
    let dave = app.person("dave@acme.test", "Dave").await;
    let carol = app.person("carol@other.test", "Carol").await;
    store.add_fleet_member(acme.id, alice.id, Role::Owner).await.unwrap();
    store.add_fleet_member(acme.id, bob.id, Role::Member).await.unwrap();
    store.add_fleet_member(acme.id, dave.id, Role::Member).await.unwrap();
    store.add_fleet_member(other.id, carol.id, Role::Owner).await.unwrap();
    store.grant_machine(web.id, bob.id).await.unwrap();
    let alice_cookie = app.cookie_for(&alice).await;
    let alice_token = app.token_for(&alice).await;
    let bob_token = app.token_for(&bob).await;
    let dave_token = app.token_for(&dave).await;
    let carol_token = app.token_for(&carol).await;
    let addr = app.serve().await;
    World { app, addr, acme, web, alice_cookie, alice_token, bob, bob_token, dave_token, carol_token }
}

impl World {
    async fn session(&self, id: Uuid) -> Value {
        let res = self.app.get_as(&format!("/api/v1/sessions/{id}"), &self.alice_token).await;
        assert_eq!(res.status, StatusCode::OK, "{res}");
        res.json()
    }

    /// The stored transcript bytes (and where they start), as the API serves them.
    async fn transcript(&self, id: Uuid) -> (u64, Vec<u8>) {
        let res = self.app.get_as(&format!("/api/v1/sessions/{id}/transcript"), &self.alice_token).await;
        assert_eq!(res.status, StatusCode::OK, "{res}");
        assert_eq!(res.header("content-type"), Some("application/octet-stream"), "{res}");
        let start = res.header("x-transcript-start-offset").expect("start offset header").parse().unwrap();
        (start, res.body)
    }

    async fn session_count(&self) -> usize {
        let res = self.app.get_as("/api/v1/sessions", &self.alice_token).await;
        assert_eq!(res.status, StatusCode::OK, "{res}");
        res.json()["sessions"].as_array().unwrap().len()
    }

    /// Bob's recorder, connected (no `open` yet).
    async fn recorder(&self) -> Recorder {
        Recorder::connect(self.addr, &self.bob_token).await
    }

    /// Bob's recorder with a session opened on web-1.
    async fn recording(&self, command: &str) -> (Recorder, Uuid) {
        let mut r = self.recorder().await;
        let id = r.open(command).await;
        (r, id)
    }

    async fn viewer(&self, id: Uuid, from: Option<u64>, auth: &Auth) -> Viewer {
        let path = match from {
            Some(f) => format!("/api/v1/sessions/{id}/live?from={f}"),
            None => format!("/api/v1/sessions/{id}/live"),
        };
        let ws = ws_connect(self.addr, &path, auth).await.unwrap_or_else(|(s, b)| panic!("GET {path}: {s} {b}"));
        Viewer::new(ws, &path)
    }
}

fn open_frame(command: &str) -> Value {
    json!({
        "type": "open", "protocol": 1, "machine": "web-1", "command": command, "cols": 120, "rows": 40,
        "client_kind": "cli", "client_name": "cmdop on web-1",
    })
}

// ------------------------------------------------------------------------------------------------------------
// WebSocket plumbing

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `path`; an HTTP answer instead of the upgrade is `Err((status, body))`.
async fn ws_connect(addr: SocketAddr, path: &str, auth: &Auth) -> Result<Ws, (u16, String)> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    match auth {
        Auth::None => {}
        Auth::Cookie(c) => {
            req.headers_mut().insert(COOKIE, c.parse().unwrap());
        }
        Auth::Bearer(t) => {
            req.headers_mut().insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
    }
    let connected = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no handshake within {WAIT:?}"));
    match connected {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(res)) => {
            let body = res.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().to_string();
            Err((res.status().as_u16(), body))
        }
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// One thing read from a socket.
#[derive(Debug)]
enum Got {
    Text(Value),
    Binary(Vec<u8>),
    /// A close frame: code and reason.
    Close(Option<(u16, String)>),
    /// The connection ended without (another) close frame.
    End(String),
}

async fn recv(ws: &mut Ws, what: &str) -> Got {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing arrived within {WAIT:?}"));
        return match msg {
            None => Got::End("the stream ended".into()),
            Some(Err(e)) => Got::End(e.to_string()),
            Some(Ok(Message::Text(t))) => Got::Text(
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("{what}: a text frame is not JSON ({e}): {t}")),
            ),
            Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
            Some(Ok(Message::Close(f))) => Got::Close(f.map(|f| (u16::from(f.code), f.reason.to_string()))),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
        };
    }
}

/// Nothing at all arrives on `ws` for `quiet`.
async fn assert_silent(ws: &mut Ws, quiet: Duration, what: &str) {
    if let Ok(msg) = tokio::time::timeout(quiet, ws.next()).await {
        panic!("{what}: expected silence, got {msg:?}");
    }
}

async fn send(ws: &mut Ws, msg: Message, what: &str) {
    tokio::time::timeout(WAIT, ws.send(msg))
        .await
        .unwrap_or_else(|_| panic!("{what}: could not send within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
}

/// A binary output frame as documented: tag 1, offset u64 BE, t_ms u64 BE, the bytes.
fn output_frame(offset: u64, t_ms: u64, bytes: &[u8]) -> Vec<u8> {
    let mut f = vec![1u8];
    f.extend_from_slice(&offset.to_be_bytes());
    f.extend_from_slice(&t_ms.to_be_bytes());
    f.extend_from_slice(bytes);
    f
}

// ------------------------------------------------------------------------------------------------------------
// the fake recorder

struct Recorder {
    ws: Ws,
    /// The last `ack` received on this connection.
    acked: Option<u64>,
    t_ms: u64,
}

impl Recorder {
    async fn connect(addr: SocketAddr, token: &Auth) -> Recorder {
        let ws = ws_connect(addr, "/api/v1/ingest?protocol=1", token)
            .await
            .unwrap_or_else(|(s, b)| panic!("ingest: {s} {b}"));
        Recorder { ws, acked: None, t_ms: 0 }
    }

    async fn json(&mut self, v: Value) {
        send(&mut self.ws, Message::Text(v.to_string().into()), "recorder").await;
    }

    async fn output(&mut self, offset: u64, bytes: &[u8]) {
        self.t_ms += 7;
        send(&mut self.ws, Message::Binary(output_frame(offset, self.t_ms, bytes).into()), "recorder").await;
    }

    /// The next server frame, which must be JSON text.
    async fn frame(&mut self) -> Value {
        match recv(&mut self.ws, "recorder").await {
            Got::Text(v) => v,
            other => panic!("recorder: expected a JSON frame, got {other:?}"),
        }
    }

    /// Sends `open` and expects `ready` with nothing acknowledged yet.
    async fn open(&mut self, command: &str) -> Uuid {
        self.json(open_frame(command)).await;
        let (id, acked, _) = self.ready().await;
        assert_eq!(acked, 0, "a new session has nothing stored yet");
        id
    }

    /// Expects `ready`: session id, acked offset, url.
    async fn ready(&mut self) -> (Uuid, u64, String) {
        let f = self.frame().await;
        assert_eq!(f["type"], "ready", "expected ready: {f}");
        let id: Uuid = f["session_id"].as_str().unwrap_or_else(|| panic!("no session_id: {f}")).parse().unwrap();
        let acked = f["acked"].as_u64().unwrap_or_else(|| panic!("no acked: {f}"));
        let url = f["url"].as_str().unwrap_or_else(|| panic!("no url: {f}")).to_string();
        (id, acked, url)
    }

    async fn resume(&mut self, id: Uuid) -> u64 {
        self.json(json!({ "type": "resume", "protocol": 1, "session_id": id })).await;
        let (got, acked, url) = self.ready().await;
        assert_eq!(got, id, "ready names the resumed session");
        assert!(url.ends_with(&format!("/sessions/{id}")), "{url}");
        acked
    }

    /// Reads acks until one says `offset`; they must grow and never pass it.
    async fn acked_to(&mut self, offset: u64) {
        while self.acked != Some(offset) {
            let f = self.frame().await;
            assert_eq!(f["type"], "ack", "waiting for ack {offset}: {f}");
            let at = f["offset"].as_u64().unwrap_or_else(|| panic!("ack without offset: {f}"));
            if let Some(before) = self.acked {
                assert!(at > before, "acks must grow: {at} after {before}");
            }
            assert!(at <= offset, "ack {at} beyond what was sent ({offset})");
            self.acked = Some(at);
        }
    }

    /// Sends `exit`, expects `closed` (after any outstanding acks), then the end of the connection.
    async fn exit(mut self, id: Uuid, offset: u64, code: i32) {
        self.json(json!({ "type": "exit", "offset": offset, "code": code, "signal": null })).await;
        loop {
            let f = self.frame().await;
            match f["type"].as_str() {
                Some("ack") => {
                    let at = f["offset"].as_u64().unwrap();
                    assert!(at <= offset && self.acked.is_none_or(|a| at > a), "ack {at} after {:?}", self.acked);
                    self.acked = Some(at);
                }
                Some("closed") => {
                    assert_eq!(f["session_id"], id.to_string(), "{f}");
                    break;
                }
                _ => panic!("expected closed after exit, got {f}"),
            }
        }
        self.expect_end("after closed").await;
    }

    /// Expects a (fatal, unless said otherwise) `error` frame, possibly after acks, then the end of the
    /// connection. Returns the message.
    async fn refused(mut self, fatal: bool) -> String {
        let error = loop {
            let f = self.frame().await;
            match f["type"].as_str() {
                Some("ack") => continue,
                Some("error") => break f,
                _ => panic!("expected an error frame, got {f}"),
            }
        };
        assert_eq!(error["fatal"], fatal, "{error}");
        let message = error["error"].as_str().unwrap_or_else(|| panic!("error without message: {error}"));
        assert!(!message.is_empty(), "{error}");
        self.expect_end("after error").await;
        message.to_string()
    }

    /// The server closes the connection: a close frame or the end of the stream, and nothing else.
    async fn expect_end(&mut self, what: &str) {
        match recv(&mut self.ws, what).await {
            Got::Close(_) | Got::End(_) => {}
            other => panic!("recorder {what}: expected the connection to close, got {other:?}"),
        }
    }

    /// Goes away without a word (as a recorder whose network died).
    async fn vanish(self) {
        drop(self.ws);
    }
}

// ------------------------------------------------------------------------------------------------------------
// the fake viewer

/// What a viewer was sent, in order: consecutive bytes merged into one run.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Bytes { offset: u64, bytes: Vec<u8> },
    Event(Value),
}

struct Viewer {
    ws: Ws,
    what: String,
    seen: Vec<Seen>,
    /// Where the next byte must be: set by `hello`, moved by bytes and gaps. Checks that nothing is skipped or
    /// sent twice.
    cursor: Option<u64>,
    closed: Option<Option<(u16, String)>>,
}

impl Viewer {
    fn new(ws: Ws, what: &str) -> Viewer {
        Viewer { ws, what: what.to_string(), seen: Vec::new(), cursor: None, closed: None }
    }

    /// Reads one frame; false once the socket has closed.
    async fn step(&mut self) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let what = format!("{} (so far: {:?})", self.what, self.summary());
        match recv(&mut self.ws, &what).await {
            Got::Binary(frame) => {
                assert!(frame.len() >= 8, "{}: binary frame shorter than its offset: {frame:?}", self.what);
                let offset = u64::from_be_bytes(frame[..8].try_into().unwrap());
                let bytes = &frame[8..];
                let cursor = self.cursor.unwrap_or_else(|| panic!("{}: bytes before hello", self.what));
                assert_eq!(offset, cursor, "{}: bytes at {offset}, but the stream was at {cursor}", self.what);
                assert!(!bytes.is_empty(), "{}: empty output frame at {offset}", self.what);
                self.cursor = Some(cursor + bytes.len() as u64);
                match self.seen.last_mut() {
                    Some(Seen::Bytes { offset: o, bytes: b }) if *o + b.len() as u64 == offset => {
                        b.extend_from_slice(bytes)
                    }
                    _ => self.seen.push(Seen::Bytes { offset, bytes: bytes.to_vec() }),
                }
            }
            Got::Text(e) => {
                match e["type"].as_str() {
                    Some("hello") => {
                        assert!(self.cursor.is_none(), "{}: second hello {e}", self.what);
                        self.cursor = Some(e["from"].as_u64().unwrap_or_else(|| panic!("hello without from: {e}")));
                    }
                    Some("gap") => {
                        let at = e["at_offset"].as_u64().unwrap();
                        let lost = e["bytes_lost"].as_u64().unwrap();
                        assert!(lost > 0, "{}: empty gap {e}", self.what);
                        assert_eq!(Some(at), self.cursor, "{}: gap not where the stream is: {e}", self.what);
                        self.cursor = Some(at + lost);
                    }
                    Some(_) => {}
                    None => panic!("{}: event without type: {e}", self.what),
                }
                self.seen.push(Seen::Event(e));
            }
            Got::Close(f) => {
                self.closed = Some(f);
                return false;
            }
            Got::End(why) => {
                // 1006: the code WebSocket reserves for "closed without a close frame".
                self.closed = Some(Some((1006, why)));
                return false;
            }
        }
        true
    }

    /// Reads until an event of type `ty` arrives (from now on: events already read do not count); returns it.
    async fn until_event(&mut self, ty: &str) -> Value {
        let mut looked = self.seen.len();
        loop {
            if let Some(e) = self.seen[looked..].iter().find_map(|s| match s {
                Seen::Event(e) if e["type"] == ty => Some(e.clone()),
                _ => None,
            }) {
                return e;
            }
            looked = self.seen.len();
            assert!(self.step().await, "{}: closed before a {ty} event; saw {:?}", self.what, self.summary());
        }
    }

    /// Reads until a `clients` event satisfies `ok`; returns its list.
    async fn until_clients(&mut self, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut looked = 0;
        loop {
            for s in &self.seen[looked..] {
                if let Seen::Event(e) = s
                    && e["type"] == "clients"
                {
                    let list = e["clients"].as_array().unwrap_or_else(|| panic!("clients without a list: {e}"));
                    if ok(list) {
                        return list.clone();
                    }
                }
            }
            looked = self.seen.len();
            assert!(self.step().await, "{}: closed before the expected clients; saw {:?}", self.what, self.summary());
        }
    }

    /// Reads until the stream has reached `offset`.
    async fn until_offset(&mut self, offset: u64) {
        while self.cursor.is_none_or(|c| c < offset) {
            assert!(self.step().await, "{}: closed at {:?}, before offset {offset}", self.what, self.cursor);
        }
        assert_eq!(self.cursor, Some(offset), "{}: past {offset}", self.what);
    }

    /// Reads to the end; returns the close code.
    async fn until_close(&mut self) -> Option<u16> {
        while self.step().await {}
        self.closed.clone().flatten().map(|(code, _)| code)
    }

    async fn text(&mut self, text: &str) {
        send(&mut self.ws, Message::Text(text.to_string().into()), &self.what).await;
    }

    /// Every byte received, in order.
    fn bytes(&self) -> Vec<u8> {
        self.seen
            .iter()
            .flat_map(|s| match s {
                Seen::Bytes { bytes, .. } => bytes.clone(),
                Seen::Event(_) => Vec::new(),
            })
            .collect()
    }

    fn events(&self, ty: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Event(e) if e["type"] == ty => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// What was seen, readable: byte runs as offsets and lengths.
    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|s| match s {
                Seen::Bytes { offset, bytes } => format!("bytes {offset}..{}", offset + bytes.len() as u64),
                Seen::Event(e) => e.to_string(),
            })
            .collect()
    }

    /// The transcript as this viewer saw it: bytes (consecutive runs merged) and gaps and resizes, without the
    /// chatter in between (hello, live, clients, exit).
    fn transcript_sequence(&self) -> Vec<Seen> {
        let mut out: Vec<Seen> = Vec::new();
        for s in &self.seen {
            match s {
                Seen::Event(e) if e["type"] == "gap" || e["type"] == "resize" => out.push(s.clone()),
                Seen::Event(_) => {}
                Seen::Bytes { offset, bytes } => match out.last_mut() {
                    Some(Seen::Bytes { offset: o, bytes: b }) if *o + b.len() as u64 == *offset => {
                        b.extend_from_slice(bytes)
                    }
                    _ => out.push(s.clone()),
                },
            }
        }
        out
    }
}

/// Output as a terminal prints it: colours, progress redrawn with `\r`, bytes that are not UTF-8, and a
/// multi-byte character split across frames.
fn terminal_output() -> Vec<Vec<u8>> {
    vec![
        b"\x1b[1;32m==>\x1b[0m Building \x1b[4mcmdop\x1b[24m\r\n".to_vec(),
        b"progress:  10% [#         ]\r".to_vec(),
        b"progress:  50% [#####     ]\r".to_vec(),
        b"progress: 100% [##########]\r\n".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b'\r', b'\n'],
        b"\x1b[38;5;208morange\x1b[39m \x1b[48;2;10;20;30mtrue colour\x1b[0m done \xe2\x9c".to_vec(),
        b"\x94\r\n\x1b[31merror:\x1b[0m exit 3\r\n".to_vec(),
    ]
}

/// Sends `chunks` from `offset` on; returns the offset after them.
async fn stream(r: &mut Recorder, mut offset: u64, chunks: &[Vec<u8>]) -> u64 {
    for c in chunks {
        r.output(offset, c).await;
        offset += c.len() as u64;
    }
    offset
}

fn client_named<'a>(clients: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    clients.iter().find(|c| c["kind"] == kind && c["name"] == name)
}

// ------------------------------------------------------------------------------------------------------------
// ingest: the happy path

async fn recorder_streams_a_session_and_exits(t: TestStore) {
    let w = world(t).await;
    let mut r = w.recorder().await;
    r.json(open_frame("make build")).await;
    let (id, acked, url) = r.ready().await;
    assert_eq!(acked, 0);
    assert_eq!(url, format!("http://{}/sessions/{id}", w.addr), "the url the recorder prints");

    let chunks = terminal_output();
    let all: Vec<u8> = chunks.concat();
    // Acks come after commits, in order, and end at the total.
    let end = stream(&mut r, 0, &chunks).await;
    assert_eq!(end, all.len() as u64);
    r.acked_to(end).await;

    // While it runs, the session is active with the recorder attached.
    let s = w.session(id).await;
    assert_eq!(s["state"], "active", "{s}");
    assert_eq!(s["transcript"]["total_bytes"], end, "{s}");

    r.exit(id, end, 3).await;

    let s = w.session(id).await;
    assert_eq!(s["state"], "ended", "{s}");
    assert_eq!(s["end_reason"], "exited", "{s}");
    assert_eq!(s["exit_code"], 3, "{s}");
    assert_eq!(s["command"], "make build", "{s}");
    assert_eq!(s["machine"], "web-1", "{s}");
    assert_eq!(s["fleet"], "acme", "{s}");
    assert_eq!(s["user"], "bob@acme.test", "{s}");
    assert_eq!((s["cols"].as_u64(), s["rows"].as_u64()), (Some(120), Some(40)), "{s}");
    assert!(s["ended_at"].is_string(), "{s}");
    assert_eq!(s["transcript"]["total_bytes"], end, "{s}");
    assert_eq!(s["transcript"]["retained_bytes"], end, "{s}");
    assert_eq!(s["transcript"]["truncated_bytes"], 0, "{s}");
    assert_eq!(s["transcript"]["gaps"], json!([]), "{s}");
    let clients = s["clients"].as_array().unwrap();
    let recorder = client_named(clients, "cli", "cmdop on web-1").unwrap_or_else(|| panic!("recorder missing: {s}"));
    assert!(recorder["detached_at"].is_string(), "an ended session has nobody attached: {s}");

    let res = w.app.get_as(&format!("/api/v1/sessions/{id}/transcript"), &w.bob_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_eq!(res.header("content-type"), Some("application/octet-stream"), "{res}");
    assert_eq!(res.header("x-transcript-start-offset"), Some("0"), "{res}");
    assert_eq!(res.header("x-transcript-total-bytes"), Some(end.to_string().as_str()), "{res}");
    assert_eq!(res.body, all, "the transcript is exactly the bytes printed");
}

async fn recorder_resumes_after_disconnects_without_duplicates(t: TestStore) {
    let w = world(t).await;
    let chunks: Vec<Vec<u8>> =
        (0..12).map(|i| format!("line {i:02} \x1b[3{}mcolour\x1b[0m\r\n", i % 8).into_bytes()).collect();
    let all = chunks.concat();
    let at = |i: usize| chunks[..i].iter().map(Vec::len).sum::<usize>() as u64;

    let (mut r, id) = w.recording("tail -f log").await;
    stream(&mut r, 0, &chunks[..4]).await;
    r.acked_to(at(4)).await;
    r.vanish().await;

    // Back: the server says where to continue, exactly what was acknowledged.
    let mut r = w.recorder().await;
    let acked = r.resume(id).await;
    assert_eq!(acked, at(4), "ready.acked is what was acknowledged before the disconnect");
    // The recorder resends a little of what was stored (it cannot know) and continues.
    let overlap = acked - 10;
    r.output(overlap, &all[overlap as usize..at(6) as usize]).await;
    r.acked_to(at(6)).await;
    // One more frame, and gone before its ack.
    r.output(at(6), &chunks[6]).await;
    r.vanish().await;

    let mut r = w.recorder().await;
    let acked = r.resume(id).await;
    assert!(acked == at(6) || acked == at(7), "ready.acked {acked}: neither the last ack nor after the last frame");
    // Resent from the last ack this recorder saw, overlapping whatever was stored meanwhile.
    let end = stream(&mut r, at(6), &chunks[6..]).await;
    r.acked_to(end).await;
    r.exit(id, end, 0).await;

    let (start, bytes) = w.transcript(id).await;
    assert_eq!(start, 0);
    assert_eq!(bytes, all, "no byte twice, none missing");
    let s = w.session(id).await;
    assert_eq!(s["transcript"]["total_bytes"], all.len(), "{s}");
    assert_eq!(s["exit_code"], 0, "{s}");
}

async fn resend_that_disagrees_is_refused_and_changes_nothing(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("date").await;
    r.output(0, b"Thu Jan  1 00:00:00 UTC 2026\r\n").await;
    r.acked_to(30).await;
    r.vanish().await;

    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 30);
    // Same offsets, other bytes: the recorder is confused; storing either would corrupt the transcript.
    r.output(20, b"XXXXXXXXXX and more").await;
    let message = r.refused(true).await;
    assert!(message.contains("differ"), "the error says the bytes differ: {message}");
    assert!(message.contains("20"), "the error says where: {message}");

    let (_, bytes) = w.transcript(id).await;
    assert_eq!(bytes, b"Thu Jan  1 00:00:00 UTC 2026\r\n", "stored transcript unchanged");
    // The right bytes still go on from there.
    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 30);
    r.output(30, b"ok\r\n").await;
    r.acked_to(34).await;
    r.exit(id, 34, 0).await;
    assert_eq!(w.transcript(id).await.1, b"Thu Jan  1 00:00:00 UTC 2026\r\nok\r\n");
}

async fn exit_is_stored_once_and_an_ended_session_takes_no_more_output(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("make").await;
    r.output(0, b"all done\r\n").await;
    r.acked_to(10).await;
    r.exit(id, 10, 0).await;
    let ended_at = w.session(id).await["ended_at"].clone();

    // The `closed` got lost: the recorder comes back and says the same exit again. It is told `closed`.
    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 10);
    r.exit(id, 10, 0).await;
    // An exit that says something else is refused.
    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 10);
    r.json(json!({ "type": "exit", "offset": 10, "code": 1, "signal": null })).await;
    assert!(r.refused(true).await.contains("ended"));
    // So is new output: the session is over.
    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 10);
    r.output(10, b"more?\r\n").await;
    let message = r.refused(true).await;
    assert!(message.contains("ended"), "{message}");

    let s = w.session(id).await;
    assert_eq!((&s["state"], &s["exit_code"], &s["ended_at"]), (&json!("ended"), &json!(0), &ended_at), "{s}");
    assert_eq!(s["transcript"]["total_bytes"], 10, "{s}");
    assert_eq!(w.transcript(id).await.1, b"all done\r\n");

    // Killed by a signal: the exit code is 128 + the signal, as a shell reports it.
    let (mut r, id) = w.recording("sleep infinity").await;
    r.json(json!({ "type": "exit", "offset": 0, "code": null, "signal": 9 })).await;
    assert_eq!(r.frame().await["type"], "closed");
    let s = w.session(id).await;
    assert_eq!(s["exit_code"], 137, "{s}");
}

async fn open_takes_the_recorders_start_time_but_never_a_future_one(t: TestStore) {
    let w = world(t).await;
    let now = w.app.t.clock.now();
    let earlier = now - chrono::Duration::seconds(90);
    for (started, expected) in [(earlier, earlier), (now + chrono::Duration::hours(1), now)] {
        let mut r = w.recorder().await;
        let mut open = open_frame("long-running");
        open["started_at"] = json!(started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        r.json(open).await;
        let (id, _, _) = r.ready().await;
        let s = w.session(id).await;
        let got = chrono::DateTime::parse_from_rfc3339(s["started_at"].as_str().unwrap()).unwrap().to_utc();
        assert_eq!(got, expected, "started_at {started}: {s}");
        r.exit(id, 0, 0).await;
    }
}

async fn one_bad_recorder_does_not_fail_the_others(t: TestStore) {
    let w = world(t).await;
    let (mut bad, bad_id) = w.recording("confused").await;
    bad.output(0, b"original").await;
    bad.acked_to(8).await;
    let (mut a, a_id) = w.recording("good a").await;
    let (mut b, b_id) = w.recording("good b").await;

    // All three at once, so that their writes share group commits; one of them disagrees with what is stored.
    let a_bytes: Vec<u8> = (0..200).flat_map(|i| format!("a{i}\r\n").into_bytes()).collect();
    let b_bytes: Vec<u8> = (0..200).flat_map(|i| format!("b{i}\r\n").into_bytes()).collect();
    let wrong = async {
        bad.output(0, b"rewritten and longer").await;
    };
    tokio::join!(stream_all(&mut a, &a_bytes), stream_all(&mut b, &b_bytes), wrong);
    assert!(bad.refused(true).await.contains("differ"));
    a.exit(a_id, a_bytes.len() as u64, 0).await;
    b.exit(b_id, b_bytes.len() as u64, 0).await;

    assert_eq!(w.transcript(a_id).await.1, a_bytes);
    assert_eq!(w.transcript(b_id).await.1, b_bytes);
    assert_eq!(w.transcript(bad_id).await.1, b"original");
}

/// Streams `bytes` from 0 in small frames and waits for the last ack.
async fn stream_all(r: &mut Recorder, bytes: &[u8]) {
    let mut at = 0u64;
    for piece in bytes.chunks(37) {
        r.output(at, piece).await;
        at += piece.len() as u64;
    }
    r.acked_to(at).await;
}

// ------------------------------------------------------------------------------------------------------------
// ingest: refusals

async fn bad_frames_are_refused_with_a_clear_error(t: TestStore) {
    let w = world(t).await;

    // Output before open: nothing is created.
    let mut r = w.recorder().await;
    r.output(0, b"too early").await;
    let message = r.refused(true).await;
    assert!(message.contains("open"), "{message}");
    assert_eq!(w.session_count().await, 0);

    // A session with some output, then each bad frame on a connection of its own.
    let (mut r, id) = w.recording("./deploy.sh").await;
    r.output(0, b"step 1\r\n").await;
    r.acked_to(8).await;
    r.json(open_frame("./deploy.sh")).await;
    let message = r.refused(true).await;
    assert!(message.contains("already"), "a second open: {message}");

    let text = |t: &str| Message::Text(t.to_string().into());
    let binary = |b: Vec<u8>| Message::Binary(b.into());
    let cases: Vec<(&str, Message, &[&str])> = vec![
        ("a hole", binary(output_frame(20, 1, b"after a hole")), &["hole", "20", "8", "gap"]),
        ("undecodable JSON", text("{\"type\": \"output\", "), &["undecodable"]),
        ("an unknown frame type", text(r#"{"type":"input","data":"ls\n"}"#), &["undecodable", "input"]),
        ("a binary frame with a bad tag", binary(bad_tag()), &["tag", "7"]),
        ("a binary frame shorter than its header", binary(vec![1, 0, 0]), &["header"]),
        ("an oversize output frame", binary(oversize()), &["262145", "limit"]),
        ("exit at the wrong offset", text(r#"{"type":"exit","offset":5,"code":0,"signal":null}"#), &["exit", "5", "8"]),
        ("a second resume", text(&resume_text(Uuid::nil())), &["already"]),
        ("a gap past the end", text(r#"{"type":"gap","at_offset":9,"bytes_lost":3}"#), &["gap", "9"]),
    ];
    for (what, bad, words) in cases {
        let mut r = w.recorder().await;
        assert_eq!(r.resume(id).await, 8, "{what}: stored data intact before");
        send(&mut r.ws, bad, what).await;
        let message = r.refused(true).await;
        for word in words {
            assert!(message.contains(word), "{what}: the error should say {word:?}: {message}");
        }
        let (_, bytes) = w.transcript(id).await;
        assert_eq!(bytes, b"step 1\r\n", "{what}: stored data intact after");
        assert_eq!(w.session(id).await["state"], "active", "{what}");
    }

    // A protocol this server does not speak.
    let mut r = w.recorder().await;
    r.json(json!({ "type": "resume", "protocol": 2, "session_id": id })).await;
    let message = r.refused(true).await;
    assert!(message.contains("protocol 2"), "{message}");

    // After all that, the session goes on normally.
    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 8);
    r.output(8, b"step 2\r\n").await;
    r.acked_to(16).await;
    r.exit(id, 16, 0).await;
    assert_eq!(w.transcript(id).await.1, b"step 1\r\nstep 2\r\n");
    assert_eq!(w.session_count().await, 1);
}

fn bad_tag() -> Vec<u8> {
    let mut f = output_frame(8, 1, b"x");
    f[0] = 7;
    f
}

/// One byte more than the documented 256 KiB limit of an output frame.
fn oversize() -> Vec<u8> {
    output_frame(8, 1, &vec![b'x'; 256 * 1024 + 1])
}

fn resume_text(id: Uuid) -> String {
    json!({ "type": "resume", "protocol": 1, "session_id": id }).to_string()
}

async fn recording_needs_a_token_and_a_grant(t: TestStore) {
    let w = world(t).await;

    // No token, or a wrong one: 401 before any upgrade.
    for auth in [Auth::None, Auth::Bearer("cmdop_not-a-token".into())] {
        match ws_connect(w.addr, "/api/v1/ingest?protocol=1", &auth).await {
            Err((status, body)) => {
                assert_eq!(status, 401, "{auth:?}: {body}");
                assert!(body.contains("error"), "{auth:?}: {body}");
            }
            Ok(_) => panic!("{auth:?}: the ingest socket opened without credentials"),
        }
    }

    // A member of the fleet without a grant on the machine.
    let mut r = Recorder::connect(w.addr, &w.dave_token).await;
    r.json(open_frame("rm -rf /tmp/x")).await;
    let message = r.refused(true).await;
    assert!(message.contains("web-1"), "the error names the machine: {message}");
    assert!(message.contains("grant"), "and says what is missing: {message}");

    // A member of another fleet: the machine does not exist for them.
    let mut r = Recorder::connect(w.addr, &w.carol_token).await;
    r.json(open_frame("ls")).await;
    let message = r.refused(true).await;
    assert!(message.contains("web-1") && message.contains("not found"), "{message}");

    // A machine nobody has.
    let mut r = Recorder::connect(w.addr, &w.bob_token).await;
    let mut open = open_frame("ls");
    open["machine"] = json!("nope-9");
    r.json(open).await;
    let message = r.refused(true).await;
    assert!(message.contains("nope-9") && message.contains("not found"), "{message}");

    assert_eq!(w.session_count().await, 0, "no session was created");
    // The owner may record without a grant.
    let mut r = Recorder::connect(w.addr, &w.alice_token).await;
    let id = r.open("uptime").await;
    r.exit(id, 0, 0).await;
    assert_eq!(w.session_count().await, 1);
}

async fn resuming_another_members_session_is_refused(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("top").await;
    r.output(0, b"load average: 0.00\r\n").await;
    r.acked_to(20).await;
    r.vanish().await;

    // Alice owns the fleet and may watch the session, but it is not her recorder's.
    for (who, token) in [("alice", &w.alice_token), ("dave", &w.dave_token), ("carol", &w.carol_token)] {
        let mut other = Recorder::connect(w.addr, token).await;
        other.json(json!({ "type": "resume", "protocol": 1, "session_id": id })).await;
        let message = other.refused(true).await;
        assert!(message.contains("not found"), "{who}: {message}");
    }
    // Nor a made-up id.
    let mut r = w.recorder().await;
    r.json(json!({ "type": "resume", "protocol": 1, "session_id": Uuid::now_v7() })).await;
    assert!(r.refused(true).await.contains("not found"));

    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 20, "the session is untouched and still Bob's to resume");
    r.exit(id, 20, 0).await;
    assert_eq!(w.transcript(id).await.1, b"load average: 0.00\r\n");
}

async fn refused_open_creates_no_session(t: TestStore) {
    let w = world(t).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("an empty client name", json!({ "client_name": "" }), "name"),
        ("a browser recorder", json!({ "client_kind": "browser" }), "client_kind"),
        ("no columns", json!({ "cols": 0 }), "cols"),
        ("a command with a newline", json!({ "command": "ls\nrm -rf /" }), "command"),
    ];
    for (what, change, word) in cases {
        let mut open = open_frame("ls");
        for (k, v) in change.as_object().unwrap() {
            open[k] = v.clone();
        }
        let mut r = w.recorder().await;
        r.json(open).await;
        let message = r.refused(true).await;
        assert!(message.contains(word), "{what}: the error should name {word:?}: {message}");
        assert_eq!(w.session_count().await, 0, "{what}: no session may be left behind");
    }
}

// ------------------------------------------------------------------------------------------------------------
// gaps and the ring buffer

async fn gaps_are_stored_and_replayed_in_place(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("journalctl -f").await;
    // Watching from the start while it is recorded (the live tail).
    let mut live = w.viewer(id, None, &w.alice_cookie).await;
    live.until_event("live").await;

    r.output(0, b"before the outage\r\n").await; // 19 bytes
    r.json(json!({ "type": "gap", "at_offset": 19, "bytes_lost": 1000 })).await;
    r.output(1019, b"after the outage\r\n").await; // 18 bytes
    r.acked_to(1037).await;
    r.exit(id, 1037, 0).await;

    let s = w.session(id).await;
    assert_eq!(
        s["transcript"]["gaps"],
        json!([{ "at_offset": 19, "bytes_lost": 1000, "reason": "recorder_offline" }]),
        "{s}"
    );
    assert_eq!(s["transcript"]["total_bytes"], 1037, "{s}");
    let (start, bytes) = w.transcript(id).await;
    assert_eq!(start, 0);
    assert_eq!(bytes, b"before the outage\r\nafter the outage\r\n", "the transcript holds what was printed");

    let expected = vec![
        Seen::Bytes { offset: 0, bytes: b"before the outage\r\n".to_vec() },
        Seen::Event(json!({ "type": "gap", "at_offset": 19, "bytes_lost": 1000, "reason": "recorder_offline" })),
        Seen::Bytes { offset: 1019, bytes: b"after the outage\r\n".to_vec() },
    ];
    assert_eq!(live.until_close().await, Some(1000));
    assert_eq!(live.transcript_sequence(), expected, "live viewer: {:?}", live.summary());

    // Replayed from the store after the end: the same.
    let mut later = w.viewer(id, Some(0), &w.alice_token).await;
    assert_eq!(later.until_close().await, Some(1000));
    assert_eq!(later.transcript_sequence(), expected, "replay: {:?}", later.summary());
    // From inside the gap: the rest of the gap, then the bytes after it.
    let mut inside = w.viewer(id, Some(500), &w.alice_token).await;
    inside.until_close().await;
    assert_eq!(
        inside.transcript_sequence(),
        vec![
            Seen::Event(json!({ "type": "gap", "at_offset": 500, "bytes_lost": 519, "reason": "recorder_offline" })),
            Seen::Bytes { offset: 1019, bytes: b"after the outage\r\n".to_vec() },
        ],
        "from 500: {:?}",
        inside.summary()
    );
}

async fn ring_buffer_overflow_replays_as_a_truncated_gap(t: TestStore) {
    let w = world(t).await;
    let limit = w.app.t.store.fleet_by_name("acme").await.unwrap().transcript_limit_bytes as u64;
    assert_eq!(limit, 8 * 1024 * 1024, "the documented default ring buffer");

    let (mut r, id) = w.recording("yes | head -c 9M").await;
    // 8 MiB plus a bit, in 64 KiB frames of distinct content, so that any misplaced byte shows.
    let frame = 64 * 1024;
    let total = limit + 5 * frame as u64 + 123;
    let all: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut offset = 0u64;
    for piece in all.chunks(frame) {
        r.output(offset, piece).await;
        offset += piece.len() as u64;
        if offset.is_multiple_of(16 * frame as u64) {
            r.acked_to(offset).await;
        }
    }
    r.acked_to(total).await;

    let s = w.session(id).await;
    let retained = s["transcript"]["retained_bytes"].as_u64().unwrap();
    let truncated = s["transcript"]["truncated_bytes"].as_u64().unwrap();
    assert_eq!(s["transcript"]["total_bytes"], total, "{s}");
    assert!(retained <= limit && retained > 0, "{s}");
    assert_eq!(retained + truncated, total, "{s}");

    let (start, bytes) = w.transcript(id).await;
    assert_eq!(start, truncated, "the transcript starts at the first retained byte");
    assert_eq!(bytes, &all[start as usize..], "the retained bytes are the newest ones");

    // A viewer from 0 while it runs: first what was dropped, then exactly the retained bytes.
    let mut v = w.viewer(id, Some(0), &w.alice_cookie).await;
    v.until_event("live").await;
    r.output(total, b"tail\r\n").await;
    r.acked_to(total + 6).await;
    r.exit(id, total + 6, 0).await;
    assert_eq!(v.until_close().await, Some(1000));
    let seq = v.transcript_sequence();
    assert_eq!(
        seq.first(),
        Some(&Seen::Event(json!({ "type": "gap", "at_offset": 0, "bytes_lost": start, "reason": "truncated" }))),
        "{:?}",
        v.summary()
    );
    let mut expected = all[start as usize..].to_vec();
    expected.extend_from_slice(b"tail\r\n");
    assert_eq!(v.bytes().len(), expected.len());
    assert!(v.bytes() == expected, "the viewer got exactly the retained bytes");
    assert_eq!(seq.len(), 2, "one gap, then one run of bytes: {:?}", v.summary());
}

// ------------------------------------------------------------------------------------------------------------
// viewers

async fn viewers_follow_a_session_live(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("cargo test").await;
    let bob_cookie = w.app.cookie_for(&w.bob).await;
    let mut v1 = w.viewer(id, None, &w.alice_cookie).await;
    let mut hello = v1.until_event("hello").await;
    // The viewer learns which attached client it is (a page marks itself with it).
    let own_client = hello.as_object_mut().unwrap().remove("client_id").expect("hello names the viewer's client");
    assert_eq!(hello, json!({ "type": "hello", "from": 0, "total_bytes": 0, "cols": 120, "rows": 40 }));
    v1.until_event("live").await;
    let mut v2 = w.viewer(id, Some(0), &bob_cookie).await;
    v2.until_event("live").await;

    // Both see who is attached: the recorder and both browsers, by the members' names.
    let everyone = |list: &[Value]| {
        list.len() == 3
            && client_named(list, "cli", "cmdop on web-1").is_some()
            && client_named(list, "browser", "Alice").is_some()
            && client_named(list, "browser", "Bob").is_some()
    };
    v1.until_clients(everyone).await;
    v2.until_clients(everyone).await;
    let s = w.session(id).await;
    assert!(everyone(s["clients"].as_array().unwrap()), "the session lists them too: {s}");
    let alice_client = client_named(s["clients"].as_array().unwrap(), "browser", "Alice").unwrap();
    assert_eq!(alice_client["id"], own_client, "hello's client_id is the viewer's own client");

    // Streamed while they watch.
    let mut chunks = terminal_output();
    chunks.extend((0..40).map(|i| format!("\rtest {i:03} ... \x1b[32mok\x1b[0m").into_bytes()));
    let all = chunks.concat();
    let end = stream(&mut r, 0, &chunks).await;
    r.acked_to(end).await;
    v1.until_offset(end).await;
    v2.until_offset(end).await;
    r.exit(id, end, 7).await;

    for v in [&mut v1, &mut v2] {
        assert_eq!(v.until_close().await, Some(1000), "{}: a normal close after the exit", v.what);
        assert_eq!(v.bytes(), all, "{}: the bytes as printed", v.what);
        assert_eq!(v.events("live").len(), 1, "{}: {:?}", v.what, v.summary());
        assert!(v.events("gap").is_empty(), "{}: {:?}", v.what, v.summary());
        let exit = match v.seen.last() {
            Some(Seen::Event(e)) if e["type"] == "exit" => e.clone(),
            _ => panic!("{}: the last thing sent is the exit: {:?}", v.what, v.summary()),
        };
        assert_eq!(exit["exit_code"], 7, "{exit}");
        assert_eq!(exit["end_reason"], "exited", "{exit}");
        assert_eq!(exit["total_bytes"], end, "{exit}");
        assert!(exit["ended_at"].is_string(), "{exit}");
    }
    assert_eq!(v1.bytes(), v2.bytes());
    assert_eq!(w.transcript(id).await.1, all, "what viewers saw is the transcript");
    // Nobody is attached after the end.
    let s = w.session(id).await;
    let clients = s["clients"].as_array().unwrap();
    assert!(clients.iter().all(|c| c["detached_at"].is_string()), "{s}");
}

async fn viewer_from_an_offset_gets_exactly_the_rest(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("seq 1000").await;
    let all: Vec<u8> = (1..=300).flat_map(|i| format!("{i}\r\n").into_bytes()).collect();
    let half = all.len() / 2;
    r.output(0, &all[..half]).await;
    r.acked_to(half as u64).await;

    // From the middle of a stored chunk.
    let from = 101u64;
    let mut v = w.viewer(id, Some(from), &w.alice_cookie).await;
    let hello = v.until_event("hello").await;
    assert_eq!(hello["from"], from);
    assert_eq!(hello["total_bytes"], half);
    assert_eq!(v.until_event("live").await["offset"], half);
    assert_eq!(v.bytes(), &all[from as usize..half]);

    // Live from there on.
    r.output(half as u64, &all[half..]).await;
    r.acked_to(all.len() as u64).await;
    v.until_offset(all.len() as u64).await;
    assert_eq!(v.bytes(), &all[from as usize..]);

    // `resume` starts the replay again where the reader jumped to.
    v.text(r#"{"type":"resume","from":3}"#).await;
    v.cursor = Some(3);
    let before = v.bytes().len();
    v.until_offset(all.len() as u64).await;
    assert_eq!(&v.bytes()[before..], &all[3..], "{:?}", v.summary());

    r.exit(id, all.len() as u64, 0).await;
    assert_eq!(v.until_close().await, Some(1000));

    // After the end, from the very last byte and from past the end: nothing but the exit.
    for from in [all.len() as u64 - 1, all.len() as u64] {
        let mut v = w.viewer(id, Some(from), &w.alice_token).await;
        assert_eq!(v.until_close().await, Some(1000));
        assert_eq!(v.bytes(), &all[from as usize..], "from {from}");
        assert_eq!(v.events("exit").len(), 1, "from {from}: {:?}", v.summary());
    }
}

async fn resizes_reach_viewers_in_place(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("vim").await;
    let mut live = w.viewer(id, None, &w.alice_cookie).await;
    live.until_event("live").await;
    r.output(0, b"0123456789").await;
    r.json(json!({ "type": "resize", "offset": 10, "t_ms": 50, "cols": 100, "rows": 30 })).await;
    r.output(10, b"abcdefghij").await;
    r.acked_to(20).await;
    live.until_offset(20).await;

    let expected = vec![
        Seen::Bytes { offset: 0, bytes: b"0123456789".to_vec() },
        Seen::Event(json!({ "type": "resize", "offset": 10, "cols": 100, "rows": 30 })),
        Seen::Bytes { offset: 10, bytes: b"abcdefghij".to_vec() },
    ];
    assert_eq!(live.transcript_sequence(), expected, "live: {:?}", live.summary());
    // A late viewer from 0 replays the stored resize in the same place.
    let mut late = w.viewer(id, None, &w.alice_cookie).await;
    late.until_offset(20).await;
    assert_eq!(late.transcript_sequence(), expected, "replay: {:?}", late.summary());

    // From past the resize: first the size in effect there, then the bytes from there.
    let mut mid = w.viewer(id, Some(15), &w.alice_cookie).await;
    mid.until_offset(20).await;
    assert_eq!(
        mid.transcript_sequence(),
        vec![
            Seen::Event(json!({ "type": "resize", "offset": 15, "cols": 100, "rows": 30 })),
            Seen::Bytes { offset: 15, bytes: b"fghij".to_vec() },
        ]
    );
    // From before it: no size event up front.
    let mut early = w.viewer(id, Some(5), &w.alice_cookie).await;
    early.until_offset(20).await;
    assert_eq!(early.transcript_sequence()[0], Seen::Bytes { offset: 5, bytes: b"56789".to_vec() });

    r.exit(id, 20, 0).await;
    assert_eq!(live.until_close().await, Some(1000));
    assert_eq!(live.transcript_sequence(), expected, "live: {:?}", live.summary());
}

async fn viewers_are_read_only(t: TestStore) {
    let w = world(t).await;
    let (mut r, id) = w.recording("bash").await;
    r.output(0, b"$ ").await;
    r.acked_to(2).await;

    // A ping is answered.
    let mut v = w.viewer(id, None, &w.alice_cookie).await;
    v.until_event("live").await;
    v.text(r#"{"type":"ping"}"#).await;
    assert_eq!(v.until_event("pong").await, json!({ "type": "pong" }));

    // Anything else closes the socket with 1008 and goes nowhere.
    let attempts: Vec<(&str, Message)> = vec![
        ("input as text", Message::Text(r#"{"type":"input","data":"ls\n"}"#.into())),
        ("input as binary", Message::Binary(b"ls\n".to_vec().into())),
        ("a binary output frame", Message::Binary(output_frame(2, 0, b"rm -rf ~\n").into())),
        ("not JSON", Message::Text("ls\n".into())),
        ("resize", Message::Text(r#"{"type":"resize","cols":10,"rows":10}"#.into())),
    ];
    for (what, msg) in attempts {
        let mut v = w.viewer(id, None, &w.alice_cookie).await;
        v.until_event("live").await;
        send(&mut v.ws, msg, what).await;
        let code = v.until_close().await;
        assert_eq!(code, Some(1008), "{what}: closed as a policy violation: {:?}", v.closed);
    }
    assert_silent(&mut r.ws, Duration::from_millis(300), "the recorder after viewers sent input").await;
    assert_eq!(w.transcript(id).await.1, b"$ ", "nothing was written");

    // The first viewer is unaffected and sees the session end.
    r.exit(id, 2, 0).await;
    assert_eq!(v.until_close().await, Some(1000));
    assert_eq!(v.bytes(), b"$ ");
}

async fn viewer_refusals_happen_before_the_upgrade(t: TestStore) {
    let w = world(t).await;
    let (r, id) = w.recording("sleep 1").await;

    let cases: Vec<(&str, String, &Auth, u16, &str)> = vec![
        ("no credentials", format!("/api/v1/sessions/{id}/live"), &Auth::None, 401, "sign in"),
        ("another fleet", format!("/api/v1/sessions/{id}/live"), &w.carol_token, 404, "not found"),
        ("no grant", format!("/api/v1/sessions/{id}/live"), &w.dave_token, 404, "not found"),
        ("no such session", format!("/api/v1/sessions/{}/live", Uuid::now_v7()), &w.alice_token, 404, "not found"),
        ("bad from", format!("/api/v1/sessions/{id}/live?from=abc"), &w.alice_token, 400, "from"),
        ("negative from", format!("/api/v1/sessions/{id}/live?from=-1"), &w.alice_token, 400, "from"),
        ("bad id", "/api/v1/sessions/123/live".to_string(), &w.alice_token, 400, "id"),
    ];
    for (what, path, auth, status, word) in cases {
        match ws_connect(w.addr, &path, auth).await {
            Ok(_) => panic!("{what}: the live socket opened"),
            Err((got, body)) => {
                assert_eq!(got, status, "{what}: {body}");
                let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
                let error = v["error"].as_str().unwrap_or_else(|| panic!("{what}: {body}"));
                assert!(error.contains(word), "{what}: {error}");
            }
        }
    }
    // A browser page of another site may carry the login cookie; its socket is refused by origin. The
    // inspector's own origin passes.
    for (origin, status) in [("https://evil.example", Some(403)), (&format!("http://{}", w.addr) as &str, None)] {
        let mut req = format!("ws://{}/api/v1/sessions/{id}/live", w.addr).into_client_request().unwrap();
        let Auth::Cookie(cookie) = &w.alice_cookie else { panic!("alice signs in with a cookie") };
        req.headers_mut().insert(COOKIE, cookie.parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let got = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("handshake");
        match (got, status) {
            (Err(tungstenite::Error::Http(res)), Some(want)) => assert_eq!(res.status().as_u16(), want, "{origin}"),
            (Ok((ws, _)), None) => {
                // Attached once it says it is live; then it leaves.
                let mut v = Viewer::new(ws, "same-origin viewer");
                v.until_event("live").await;
                let _ = v.ws.close(None).await;
            }
            (other, want) => panic!("origin {origin}: expected {want:?}, got {:?}", other.map(|_| "an open socket")),
        }
    }
    // Refused viewers were never attached: besides the recorder only the same-origin viewer, which has left.
    let s = w.session(id).await;
    let clients = s["clients"].as_array().unwrap();
    let kinds: Vec<&str> = clients.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["cli", "browser"], "{s}");
    r.exit(id, 0, 0).await;
}

// ------------------------------------------------------------------------------------------------------------
// recorder lost

async fn lost_recorder_ends_the_session_and_resume_reopens_it(t: TestStore) {
    let grace = Duration::from_millis(300);
    let w = world_of(App::with_recorder_grace(t, grace)).await;
    let state = w.app.state().clone();
    let (mut r, id) = w.recording("ssh db-1").await;
    r.output(0, b"connected\r\n").await;
    r.acked_to(11).await;

    // A recorder that is connected but quiet is heard from (its heartbeat), so it is not lost.
    w.app.t.clock.advance(chrono::Duration::seconds(10));
    tokio::time::sleep(Duration::from_millis(600)).await;
    cmdop_inspector_server::reaper::sweep(&state).await;
    assert_eq!(w.session(id).await["state"], "active", "a connected recorder is not lost");

    let mut v = w.viewer(id, None, &w.alice_cookie).await;
    v.until_event("live").await;
    r.vanish().await;

    // Past the grace period without a word: the sweep ends it. (The server notices the disconnect on its own
    // time, and a heartbeat may land before it does: sweep until it is over, advancing the clock each time.)
    let mut s = Value::Null;
    for _ in 0..50 {
        w.app.t.clock.advance(chrono::Duration::seconds(1));
        cmdop_inspector_server::reaper::sweep(&state).await;
        s = w.session(id).await;
        if s["state"] == "ended" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s["state"], "ended", "{s}");
    assert_eq!(s["end_reason"], "recorder_lost", "{s}");
    assert_eq!(s["exit_code"], Value::Null, "{s}");

    assert_eq!(v.until_close().await, Some(1000));
    let exit = v.events("exit").pop().unwrap_or_else(|| panic!("no exit event: {:?}", v.summary()));
    assert_eq!(exit["end_reason"], "recorder_lost", "{exit}");
    assert_eq!(exit["exit_code"], Value::Null, "{exit}");
    assert_eq!(exit["total_bytes"], 11, "{exit}");
    assert_eq!(v.bytes(), b"connected\r\n");

    // The recorder comes back: the session goes on.
    let mut r = w.recorder().await;
    assert_eq!(r.resume(id).await, 11);
    let s = w.session(id).await;
    assert_eq!(s["state"], "active", "{s}");
    assert_eq!(s["end_reason"], Value::Null, "{s}");
    assert_eq!(s["ended_at"], Value::Null, "{s}");
    // The recorder is attached again (the sweep had detached it with everyone else).
    let attached: Vec<&Value> =
        s["clients"].as_array().unwrap().iter().filter(|c| c["detached_at"].is_null()).collect();
    assert_eq!(attached.len(), 1, "{s}");
    assert_eq!((&attached[0]["kind"], &attached[0]["name"]), (&json!("cli"), &json!("cmdop on web-1")), "{s}");
    let mut v = w.viewer(id, None, &w.alice_cookie).await;
    v.until_event("live").await;
    r.output(11, b"back again\r\n").await;
    r.acked_to(23).await;
    r.exit(id, 23, 0).await;
    assert_eq!(v.until_close().await, Some(1000));
    assert_eq!(v.bytes(), b"connected\r\nback again\r\n");
    let s = w.session(id).await;
    assert_eq!((&s["state"], &s["end_reason"], &s["exit_code"]), (&json!("ended"), &json!("exited"), &json!(0)), "{s}");
}

// ------------------------------------------------------------------------------------------------------------
// clients and chat

async fn clients_api_attaches_and_detaches(t: TestStore) {
    let w = world(t).await;
    let (r, id) = w.recording("htop").await;
    let mut v = w.viewer(id, None, &w.alice_cookie).await;
    v.until_event("live").await;

    let clients = format!("/api/v1/sessions/{id}/clients");
    let attach = |auth: &Auth, body: Value| {
        w.app.send(
            auth.apply(req(Method::POST, &clients))
                .header("content-type", "application/json")
                .body(body.to_string().into())
                .unwrap(),
        )
    };
    let res = attach(&w.bob_token, json!({ "kind": "desktop", "name": "Bob's laptop" })).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res}");
    let client_id = res.json()["client_id"].as_str().unwrap_or_else(|| panic!("{res}")).to_string();

    let s = w.session(id).await;
    let laptop = client_named(s["clients"].as_array().unwrap(), "desktop", "Bob's laptop")
        .unwrap_or_else(|| panic!("not listed: {s}"));
    assert_eq!(laptop["id"], client_id.as_str());
    assert!(laptop["detached_at"].is_null(), "{s}");
    // Viewers are told.
    v.until_clients(|l| client_named(l, "desktop", "Bob's laptop").is_some()).await;

    // Browsers attach by watching, not through the API.
    let res = attach(&w.bob_token, json!({ "kind": "browser", "name": "sneaky" })).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{res}");
    assert!(res.error().contains("kind"), "{res}");
    // Someone who cannot see the session cannot attach to it.
    let res = attach(&w.dave_token, json!({ "kind": "desktop", "name": "dave's" })).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{res}");

    let detach = |auth: &Auth, client: &str| {
        w.app.send(
            auth.apply(req(Method::DELETE, &format!("{clients}/{client}"))).body(axum::body::Body::empty()).unwrap(),
        )
    };
    // Alice may see the session, but the client is not hers to detach.
    let res = detach(&w.alice_token, &client_id).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{res}");
    let res = detach(&w.carol_token, &client_id).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{res}");
    let s = w.session(id).await;
    assert!(
        client_named(s["clients"].as_array().unwrap(), "desktop", "Bob's laptop").unwrap()["detached_at"].is_null()
    );

    let res = detach(&w.bob_token, &client_id).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{res}");
    assert!(res.body.is_empty(), "{res}");
    let s = w.session(id).await;
    assert!(
        client_named(s["clients"].as_array().unwrap(), "desktop", "Bob's laptop").unwrap()["detached_at"].is_string(),
        "{s}"
    );
    v.until_clients(|l| client_named(l, "desktop", "Bob's laptop").is_none()).await;
    // Twice is not found.
    let res = detach(&w.bob_token, &client_id).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{res}");

    r.exit(id, 0, 0).await;
    // An ended session takes no new clients.
    let res = attach(&w.bob_token, json!({ "kind": "desktop", "name": "too late" })).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{res}");
}

async fn chat_thread_is_linked_at_open(t: TestStore) {
    let w = world(t).await;
    let store = w.app.t.store.clone();
    let bot = w.app.member_without_password("ci-bot@acme.test", true).await;
    store.add_fleet_member(w.acme.id, bot.id, Role::Member).await.unwrap();
    store.grant_machine(w.web.id, bot.id).await.unwrap();
    let bot_token = w.app.token_for(&bot).await;

    let post = |auth: &Auth, uri: &str, body: Value| {
        w.app.send(
            auth.apply(req(Method::POST, uri))
                .header("content-type", "application/json")
                .body(body.to_string().into())
                .unwrap(),
        )
    };
    let res = post(&bot_token, "/api/v1/chat/threads", json!({ "title": "deploy #42" })).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res}");
    let thread = res.json();
    assert_eq!(thread["fleet"], "acme", "{res}");
    let thread_id = thread["id"].as_str().unwrap().to_string();
    let res = post(
        &bot_token,
        &format!("/api/v1/chat/threads/{thread_id}/messages"),
        json!({ "body": "running the deploy" }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res}");

    let mut r = Recorder::connect(w.addr, &bot_token).await;
    let mut open = open_frame("./deploy.sh 42");
    open["client_kind"] = json!("bot");
    open["client_name"] = json!("ci-bot");
    open["chat_thread"] = json!(thread_id);
    r.json(open).await;
    let (id, _, _) = r.ready().await;
    r.output(0, b"deployed\r\n").await;
    r.acked_to(10).await;
    r.exit(id, 10, 0).await;

    let s = w.session(id).await;
    assert_eq!(s["chat_thread"], json!({ "id": thread_id, "title": "deploy #42" }), "{s}");
    assert_eq!(s["user"], "ci-bot@acme.test", "{s}");
    assert!(client_named(s["clients"].as_array().unwrap(), "bot", "ci-bot").is_some(), "{s}");
    let res = w.app.get_as(&format!("/api/v1/chat/threads/{thread_id}"), &w.alice_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_eq!(res.json()["messages"][0]["body"], "running the deploy", "{res}");

    // A thread of another fleet cannot be linked, even by a member of both fleets.
    let other = store.fleet_by_name("other").await.unwrap();
    store.add_fleet_member(other.id, bot.id, Role::Member).await.unwrap();
    let res = post(&bot_token, "/api/v1/chat/threads", json!({ "fleet": "other", "title": "elsewhere" })).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res}");
    let foreign = res.json()["id"].as_str().unwrap().to_string();
    let before = w.session_count().await;
    for (what, thread) in [("another fleet's thread", foreign), ("no such thread", Uuid::now_v7().to_string())] {
        let mut r = Recorder::connect(w.addr, &bot_token).await;
        let mut open = open_frame("./deploy.sh 43");
        open["client_kind"] = json!("bot");
        open["chat_thread"] = json!(thread);
        r.json(open).await;
        let message = r.refused(true).await;
        assert!(message.contains("chat") && message.contains("thread"), "{what}: {message}");
    }
    assert_eq!(w.session_count().await, before, "no session was created");
    // The owner of the other fleet never sees acme's thread either.
    let res = w.app.get_as(&format!("/api/v1/chat/threads/{thread_id}"), &w.carol_token).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{res}");
}

// ------------------------------------------------------------------------------------------------------------
// the sessions list's change stream (server-sent events)

/// A follower of `GET /api/v1/sessions/changes`, read from a raw socket (the stream is chunked text).
struct ChangeStream {
    stream: TcpStream,
    text: String,
    /// How much of `text` was already taken as events.
    read: usize,
}

impl ChangeStream {
    async fn open(addr: SocketAddr, auth: &Auth) -> ChangeStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let auth = match auth {
            Auth::Bearer(t) => format!("Authorization: Bearer {t}\r\n"),
            Auth::Cookie(c) => format!("Cookie: {c}\r\n"),
            Auth::None => String::new(),
        };
        let request =
            format!("GET /api/v1/sessions/changes HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{auth}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut s = ChangeStream { stream, text: String::new(), read: 0 };
        tokio::time::timeout(WAIT, async {
            while !s.text.contains("\r\n\r\n") {
                s.fill().await;
            }
        })
        .await
        .expect("the change stream's headers");
        let head = s.text[..s.text.find("\r\n\r\n").unwrap()].to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        s.read = head.len();
        s
    }

    async fn fill(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the change stream closed");
        self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }

    /// `data` of the `sessions` events received so far and not yet taken, as (id, state) pairs.
    fn take(&mut self) -> Vec<(Uuid, String)> {
        let mut got = Vec::new();
        let rest = &self.text[self.read..];
        let mut consumed = 0;
        let mut expect_data = false;
        for line in rest.split_inclusive('\n') {
            if !line.ends_with('\n') {
                break;
            }
            consumed += line.len();
            let line = line.trim_end();
            if line == "event: sessions" {
                expect_data = true;
            } else if let (true, Some(data)) = (expect_data, line.strip_prefix("data: ")) {
                let changes: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
                for c in changes.as_array().unwrap() {
                    got.push((c["id"].as_str().unwrap().parse().unwrap(), c["state"].as_str().unwrap().to_string()));
                }
                expect_data = false;
            }
        }
        self.read += consumed;
        got
    }

    /// Waits until the change `(id, state)` has come.
    async fn until(&mut self, id: Uuid, state: &str) -> Vec<(Uuid, String)> {
        let mut seen = Vec::new();
        tokio::time::timeout(WAIT, async {
            loop {
                seen.extend(self.take());
                if seen.iter().any(|(i, s)| *i == id && s == state) {
                    return;
                }
                self.fill().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no change {id} {state}; got {seen:?}"));
        seen
    }

    /// What came within `quiet`.
    async fn within(&mut self, quiet: Duration) -> Vec<(Uuid, String)> {
        let _ = tokio::time::timeout(quiet, async {
            loop {
                self.fill().await;
            }
        })
        .await;
        self.take()
    }
}

async fn list_followers_hear_of_their_sessions_only(t: TestStore) {
    let w = world(t).await;
    let mut alice = ChangeStream::open(w.addr, &w.alice_cookie).await;
    let mut bob = ChangeStream::open(w.addr, &w.bob_token).await;
    let mut dave = ChangeStream::open(w.addr, &w.dave_token).await;
    let mut carol = ChangeStream::open(w.addr, &w.carol_token).await;

    // A session starts on web-1: its fleet's owner and the granted member hear of it.
    let (mut r, id) = w.recording("make release").await;
    alice.until(id, "active").await;
    bob.until(id, "active").await;
    // Output alone is no change of the list.
    r.output(0, b"building\r\n").await;
    r.acked_to(10).await;
    r.exit(id, 10, 0).await;
    let seen = alice.until(id, "ended").await;
    assert!(seen.iter().all(|(i, _)| *i == id), "{seen:?}");
    bob.until(id, "ended").await;

    // A member without a grant on web-1, and the owner of another fleet, hear nothing of it.
    assert_eq!(dave.within(Duration::from_millis(800)).await, vec![]);
    assert_eq!(carol.within(Duration::from_millis(100)).await, vec![]);

    // Signed out: no stream.
    let res = w.app.get("/api/v1/sessions/changes").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
}
