//! Protocol clients over WebSockets: simulated recorders (the ingest protocol) and viewers (the live protocol),
//! without PTYs, so that one process can run thousands of them.

use std::time::Duration;

use anyhow::{Context, bail};
use cmdop_protocol::ClientKind;
use cmdop_protocol::ingest::{INGEST_PROTOCOL_VERSION, OpenSession, RecorderFrame, ServerFrame, encode_output};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub use tokio_tungstenite::tungstenite::Message;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type Sink = SplitSink<Ws, Message>;
pub type Stream = SplitStream<Ws>;

/// Opens a WebSocket (TCP_NODELAY on), with a Bearer token and/or a subprotocol.
pub async fn connect(url: &str, token: Option<&str>, subprotocol: Option<&str>) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    if let Some(t) = token {
        request.headers_mut().insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {t}"))?);
    }
    if let Some(p) = subprotocol {
        request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(p)?);
    }
    // Viewers receive `clients` events listing every attached client: allow big messages.
    // A small read buffer: tungstenite zeroes it before every read (128 KiB by default), which at a thousand
    // sockets of small frames made the bench itself a CPU hog beside the server it measures.
    let config = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20))
        .read_buffer_size(16 * 1024);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(60),
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await
    .with_context(|| format!("connecting to {url} timed out"))?
    .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// A simulated recorder with an open session.
pub struct Recorder {
    pub session_id: Uuid,
    pub sink: Sink,
    pub stream: Stream,
}

impl Recorder {
    /// Connects to the ingest socket and opens a session on `machine`.
    pub async fn open(ingest_url: &str, token: &str, machine: &str, name: &str) -> anyhow::Result<Recorder> {
        let ws = connect(ingest_url, Some(token), None).await?;
        let (mut sink, mut stream) = ws.split();
        let open = RecorderFrame::Open(OpenSession {
            protocol: INGEST_PROTOCOL_VERSION,
            machine: machine.to_string(),
            fleet: None,
            command: name.to_string(),
            cols: 80,
            rows: 24,
            client_kind: ClientKind::Bot,
            client_name: name.to_string(),
            chat_thread: None,
            started_at: None,
        });
        sink.send(Message::Text(serde_json::to_string(&open)?.into())).await?;
        loop {
            match server_frame(stream.next().await)? {
                Some(ServerFrame::Ready { session_id, .. }) => return Ok(Recorder { session_id, sink, stream }),
                Some(other) => bail!("expected ready, got {other:?}"),
                None => continue,
            }
        }
    }

    pub async fn output(&mut self, offset: u64, t_ms: u64, bytes: &[u8]) -> anyhow::Result<()> {
        self.sink.send(Message::Binary(encode_output(offset, t_ms, bytes).into())).await?;
        Ok(())
    }

    pub async fn exit(&mut self, offset: u64) -> anyhow::Result<()> {
        let exit = RecorderFrame::Exit { offset, code: Some(0), signal: None };
        self.sink.send(Message::Text(serde_json::to_string(&exit)?.into())).await?;
        Ok(())
    }
}

/// The server frame in a message: `Ok(None)` for messages that are not frames (pings); an error when the
/// connection ended or broke.
pub fn server_frame(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> anyhow::Result<Option<ServerFrame>> {
    match msg {
        None => bail!("the server closed the ingest socket"),
        Some(Err(e)) => bail!("ingest socket: {e}"),
        Some(Ok(Message::Text(t))) => Ok(Some(serde_json::from_str(&t)?)),
        Some(Ok(Message::Close(c))) => bail!("the server closed the ingest socket: {c:?}"),
        Some(Ok(_)) => Ok(None),
    }
}

/// The `type` of a live JSON event, read without parsing the rest (`clients` events can be large).
pub fn event_type(text: &str) -> &str {
    // Internally tagged: serde writes the tag first.
    text.strip_prefix(r#"{"type":""#).and_then(|rest| rest.split('"').next()).unwrap_or("")
}

/// URL of the live socket of a session.
pub fn live_path(session_id: Uuid, from: u64) -> String {
    format!("/api/v1/sessions/{session_id}/live?from={from}")
}

pub const INGEST_PATH: &str = "/api/v1/ingest?protocol=1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_read_from_the_tag() {
        assert_eq!(event_type(r#"{"type":"exit","exit_code":0}"#), "exit");
        assert_eq!(event_type(r#"{"type":"clients","clients":[]}"#), "clients");
        assert_eq!(event_type("garbage"), "");
    }
}
