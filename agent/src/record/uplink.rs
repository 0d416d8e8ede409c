//! The uplink: the one task that talks to the server. It (re)connects, opens or resumes the session, sends the
//! outbox from the server's `acked` offset on, and releases what the server acknowledges.

use std::sync::Arc;
use std::time::Duration;

use cmdop_protocol::ingest::{
    INGEST_PROTOCOL_VERSION, MAX_OUTPUT_FRAME_BYTES, OpenSession, RecorderFrame, ServerFrame, encode_output,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use super::Shared;
use super::outbox::{Cursor, Next};
use super::terminal::notice;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 4096;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// A send that makes no progress this long means the connection is dead, even if TCP has not noticed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Silence this long (no ack, no pong) ends the connection.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

pub struct UplinkConfig {
    /// `ws://` or `wss://` URL of the ingest endpoint, `?protocol=1` included.
    pub url: String,
    pub token: String,
    /// Sent in the first `open`; later connections `resume`.
    pub open: OpenSession,
    pub retry_max_delay: Duration,
}

/// How the uplink ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server stored the exit: the recording is complete.
    Closed,
    /// The server refused for good; recording to the server stopped.
    Stopped(String),
}

/// Why a connection ended without `closed`.
#[derive(Debug)]
enum Failure {
    Retry(String),
    Fatal(String),
}

/// What survives from one connection to the next.
#[derive(Default)]
struct State {
    session: Option<Uuid>,
    /// An outage was reported to the user and not yet its end.
    outage_reported: bool,
}

/// Runs until the server stores the exit or refuses the recording for good.
pub async fn run(shared: Arc<Shared>, cfg: UplinkConfig) -> Outcome {
    let mut state = State::default();
    let mut backoff = Backoff::new(cfg.retry_max_delay);
    loop {
        match connection(&shared, &cfg, &mut state, &mut backoff).await {
            Ok(()) => return Outcome::Closed,
            Err(Failure::Fatal(message)) => {
                notice(format_args!(
                    "the server refused the recording: {message}. Recording to the server stopped; the command goes on."
                ));
                return Outcome::Stopped(message);
            }
            Err(Failure::Retry(message)) => {
                if !state.outage_reported {
                    state.outage_reported = true;
                    if state.session.is_none() {
                        let url = &cfg.url;
                        notice(format_args!("server unreachable at {url} ({message}); recording locally and retrying"));
                    } else {
                        notice(format_args!("lost the server ({message}); buffering locally and retrying"));
                    }
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// One connection: handshake, then stream until `closed` or failure.
async fn connection(
    shared: &Shared,
    cfg: &UplinkConfig,
    state: &mut State,
    backoff: &mut Backoff,
) -> Result<(), Failure> {
    let ws = connect(cfg).await?;
    let (mut sink, stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _reader = AbortOnDrop(tokio::spawn(read_frames(stream, tx)));

    let hello = match state.session {
        Some(session_id) => RecorderFrame::Resume { protocol: INGEST_PROTOCOL_VERSION, session_id },
        None => RecorderFrame::Open(cfg.open.clone()),
    };
    send(&mut sink, json(&hello)).await?;

    let (session_id, acked, url) = match timeout(READY_TIMEOUT, rx.recv()).await {
        Err(_) => return Err(Failure::Retry("no answer to the handshake".into())),
        Ok(None) => return Err(Failure::Retry("connection closed during the handshake".into())),
        Ok(Some(Incoming::Frame(ServerFrame::Ready { session_id, acked, url }))) => (session_id, acked, url),
        // Resuming a session whose exit was stored already.
        Ok(Some(Incoming::Frame(ServerFrame::Closed { .. }))) if state.session.is_some() => return Ok(()),
        Ok(Some(other)) => return Err(unexpected(other, "ready")),
    };
    {
        let mut outbox = shared.outbox();
        if acked > outbox.total() {
            return Err(Failure::Fatal(format!(
                "the server says it stored {acked} bytes, but the command printed only {}",
                outbox.total()
            )));
        }
        outbox.release(acked);
    }
    match state.session {
        None => notice(format_args!("recording {url}")),
        Some(_) if state.outage_reported => notice("reconnected to the server"),
        Some(_) => {}
    }
    state.session = Some(session_id);
    state.outage_reported = false;
    backoff.reset();

    let mut cursor = Cursor::new(acked);
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // Acks first, so the outbox frees room as early as possible.
        while let Ok(incoming) = rx.try_recv() {
            last_heard = Instant::now();
            if handle(shared, &cursor, incoming)? {
                return Ok(());
            }
        }
        let next = shared.outbox().next(&cursor, shared.now_ms(), MAX_OUTPUT_FRAME_BYTES);
        let wait_until = match next {
            Next::Idle => None,
            Next::WaitUntil(t_ms) => Some(shared.instant_at(t_ms)),
            frame => {
                if let Err(failure) = send(&mut sink, to_message(&frame)).await {
                    // The server may have said why before it closed: a fatal reason must not be retried.
                    return Err(said_before_closing(&mut rx).unwrap_or(failure));
                }
                cursor.advance(&frame);
                continue;
            }
        };
        tokio::select! {
            incoming = rx.recv() => {
                let incoming = incoming.ok_or_else(|| Failure::Retry("connection closed".into()))?;
                last_heard = Instant::now();
                if handle(shared, &cursor, incoming)? {
                    return Ok(());
                }
            }
            () = shared.wake.notified() => {}
            () = sleep_until(wait_until) => {}
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return Err(Failure::Retry("the server stopped answering".into()));
                }
                send(&mut sink, Message::Ping(Vec::new().into())).await?;
            }
        }
    }
}

async fn connect(cfg: &UplinkConfig) -> Result<Ws, Failure> {
    let mut request =
        cfg.url.as_str().into_client_request().map_err(|e| Failure::Fatal(format!("bad server URL: {e}")))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", cfg.token))
        .map_err(|_| Failure::Fatal("the token contains characters that cannot go in an HTTP header".into()))?;
    request.headers_mut().insert(AUTHORIZATION, bearer);
    // `true`: TCP_NODELAY. Output goes out as it comes, in small frames; Nagle's algorithm would hold one back
    // until the server acknowledged the previous.
    // The server sends small frames (acks): a small read buffer. tungstenite zeroes its read buffer before each
    // read, 128 KiB by default.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    match timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async_with_config(request, Some(config), true)).await {
        Err(_) => Err(Failure::Retry("timed out connecting".into())),
        Ok(Err(e)) => Err(classify(e)),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

/// A refused upgrade with a 4xx status will be refused again: stop. Anything else may pass: retry.
fn classify(e: WsError) -> Failure {
    match e {
        WsError::Http(response) => {
            let status = response.status();
            let detail = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<cmdop_protocol::ErrorBody>(b).ok())
                .map(|b| b.error)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
            let message = match status {
                StatusCode::UNAUTHORIZED => format!("token refused (HTTP 401: {detail})"),
                StatusCode::NOT_FOUND => format!("the server has no ingest endpoint (HTTP 404: {detail})"),
                _ => format!("HTTP {}: {detail}", status.as_u16()),
            };
            let permanent = status.is_client_error()
                && status != StatusCode::REQUEST_TIMEOUT
                && status != StatusCode::TOO_MANY_REQUESTS;
            if permanent { Failure::Fatal(message) } else { Failure::Retry(message) }
        }
        WsError::Url(e) => Failure::Fatal(format!("bad server URL: {e}")),
        WsError::Io(e) => Failure::Retry(e.to_string()),
        other => Failure::Retry(other.to_string()),
    }
}

/// Handles a frame from the server after `ready`. `Ok(true)`: the session is closed.
fn handle(shared: &Shared, cursor: &Cursor, incoming: Incoming) -> Result<bool, Failure> {
    match incoming {
        Incoming::Frame(ServerFrame::Ack { offset }) => {
            shared.outbox().release(offset);
            Ok(false)
        }
        Incoming::Frame(ServerFrame::Closed { .. }) if cursor.exit_sent() => Ok(true),
        Incoming::Frame(ServerFrame::Closed { .. }) => {
            Err(Failure::Fatal("the server ended the session before the command exited".into()))
        }
        Incoming::Heard => Ok(false),
        other => Err(unexpected(other, "ack or closed")),
    }
}

/// An `error` frame already received, if any.
fn said_before_closing(rx: &mut mpsc::UnboundedReceiver<Incoming>) -> Option<Failure> {
    while let Ok(incoming) = rx.try_recv() {
        if let Incoming::Frame(ServerFrame::Error { .. }) = incoming {
            return Some(unexpected(incoming, "ack"));
        }
    }
    None
}

fn unexpected(incoming: Incoming, wanted: &str) -> Failure {
    match incoming {
        Incoming::Frame(ServerFrame::Error { error, fatal: true }) => Failure::Fatal(error),
        Incoming::Frame(ServerFrame::Error { error, fatal: false }) => Failure::Retry(error),
        Incoming::Gone(reason) => Failure::Retry(reason),
        Incoming::Frame(frame) => {
            Failure::Retry(format!("unexpected frame from the server (wanted {wanted}): {frame:?}"))
        }
        Incoming::Heard => Failure::Retry(format!("unexpected control message (wanted {wanted})")),
    }
}

/// What the read half reports.
#[derive(Debug)]
enum Incoming {
    Frame(ServerFrame),
    /// A ping or pong: the server is alive.
    Heard,
    /// The connection ended; why.
    Gone(String),
}

async fn read_frames(mut stream: SplitStream<Ws>, tx: mpsc::UnboundedSender<Incoming>) {
    let gone = loop {
        let incoming = match stream.next().await {
            None => break "connection closed".to_string(),
            Some(Err(e)) => break e.to_string(),
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerFrame>(&text) {
                Ok(frame) => Incoming::Frame(frame),
                Err(e) => break format!("unreadable frame from the server ({e}): {text}"),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Heard,
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(f) if !f.reason.is_empty() => format!("the server closed the connection: {}", f.reason),
                    _ => "the server closed the connection".to_string(),
                };
            }
            Some(Ok(Message::Binary(_))) => break "unexpected binary frame from the server".to_string(),
            Some(Ok(Message::Frame(_))) => continue,
        };
        if tx.send(incoming).is_err() {
            return;
        }
    };
    let _ = tx.send(Incoming::Gone(gone));
}

fn json(frame: &RecorderFrame) -> Message {
    Message::text(serde_json::to_string(frame).expect("recorder frames serialize"))
}

fn to_message(next: &Next) -> Message {
    match next {
        Next::Output { offset, t_ms, bytes } => Message::binary(encode_output(*offset, *t_ms, bytes)),
        Next::Gap { at_offset, bytes_lost } => {
            json(&RecorderFrame::Gap { at_offset: *at_offset, bytes_lost: *bytes_lost })
        }
        Next::Resize { offset, t_ms, cols, rows, .. } => {
            json(&RecorderFrame::Resize { offset: *offset, t_ms: *t_ms, cols: *cols, rows: *rows })
        }
        Next::Exit(exit) => json(&RecorderFrame::Exit { offset: exit.offset, code: exit.code, signal: exit.signal }),
        Next::WaitUntil(_) | Next::Idle => unreachable!("not a frame"),
    }
}

async fn send(sink: &mut SplitSink<Ws, Message>, message: Message) -> Result<(), Failure> {
    match timeout(SEND_TIMEOUT, sink.send(message)).await {
        Err(_) => Err(Failure::Retry("sending to the server timed out".into())),
        Ok(Err(e)) => Err(Failure::Retry(e.to_string())),
        Ok(Ok(())) => Ok(()),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of a doubling window.
struct Backoff {
    window: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        let max = max.max(Duration::from_millis(1));
        Backoff { window: FIRST_RETRY_DELAY.min(max), max }
    }

    fn reset(&mut self) {
        self.window = FIRST_RETRY_DELAY.min(self.max);
    }

    fn next_delay(&mut self) -> Duration {
        let window = self.window;
        self.window = (window * 2).min(self.max);
        let half = window / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=window - half)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(1000));
        let windows = [200, 400, 800, 1000, 1000];
        for window in windows {
            let d = backoff.next_delay();
            assert!(d >= Duration::from_millis(window / 2) && d <= Duration::from_millis(window), "{d:?} vs {window}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(200));
    }

    #[test]
    fn refused_upgrades_stop_only_when_retrying_cannot_help() {
        let response = |status: u16, body: &str| {
            let mut r = tokio_tungstenite::tungstenite::http::Response::new(Some(body.as_bytes().to_vec()));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            WsError::Http(Box::new(r))
        };
        match classify(response(401, r#"{"error":"unknown token"}"#)) {
            Failure::Fatal(m) => assert_eq!(m, "token refused (HTTP 401: unknown token)"),
            f => panic!("{f:?}"),
        }
        assert!(matches!(classify(response(403, "")), Failure::Fatal(_)));
        assert!(matches!(classify(response(429, "")), Failure::Retry(_)));
        assert!(matches!(classify(response(502, "")), Failure::Retry(_)));
    }
}
