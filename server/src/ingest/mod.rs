//! The ingest socket, `GET /api/v1/ingest`: a recorder opens or resumes a session and streams its output (see
//! `cmdop_protocol::ingest` for the protocol). Frames are checked here, written by the group-committing
//! [`Writer`], and acknowledged in order after their commit.

mod writer;

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use cmdop_protocol::ingest::{
    INGEST_PROTOCOL_VERSION, MAX_COMMAND_BYTES, MAX_OUTPUT_FRAME_BYTES, OUTPUT_FRAME_HEADER, OpenSession,
    RecorderFrame, ServerFrame, decode_output,
};
use cmdop_protocol::{ClientKind, EndReason, SessionState};
use cmdop_store::{
    AppendOutcome, Member, NewClient, NewSession, OutputChunk, SessionEnd, StoreError, StoreResult, TranscriptWrite,
    Viewer, validate_name,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use writer::Writer;

use crate::auth::CurrentMember;
use crate::state::AppState;

/// How long a recorder may take to say `open` or `resume`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Writes in flight per connection before the socket stops being read (the recorder's buffer absorbs it).
const MAX_IN_FLIGHT: usize = 256;
/// Bytes read from a recorder's socket at a time. tungstenite zeroes its whole read buffer before every read;
/// at its default (128 KiB) that was the largest single cost of a server taking many small frames.
const READ_BUFFER_BYTES: usize = 16 * 1024;

pub async fn ingest(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, crate::error::ApiError> {
    state.check_socket_origin(&headers)?;
    let base_url = state.base_url(&headers);
    // Twice the largest valid frame: a frame somewhat over the limit reaches `decode_output`, which refuses it
    // with a message that says the limit; only absurd ones are cut off by the socket itself.
    let max_message = 2 * (OUTPUT_FRAME_HEADER + MAX_OUTPUT_FRAME_BYTES);
    Ok(ws
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(state, member, base_url, socket)))
}

/// Why a connection ends early: said to the recorder in an `error` frame.
struct Refusal {
    message: String,
    fatal: bool,
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(_) | StoreError::Sqlite(_) | StoreError::Migrate(_) => {
                tracing::error!("ingest: store error: {e}");
                Refusal { message: "the server could not write its store; retrying".into(), fatal: false }
            }
            other => Refusal { message: other.to_string(), fatal: true },
        }
    }
}

fn refuse(message: impl Into<String>) -> Refusal {
    Refusal { message: message.into(), fatal: true }
}

async fn connection(state: AppState, member: Member, base_url: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<ServerFrame>(MAX_IN_FLIGHT);
    let sender = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            let closing = matches!(frame, ServerFrame::Closed { .. } | ServerFrame::Error { .. });
            let text = serde_json::to_string(&frame).expect("server frames serialize");
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
            if closing {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: Utf8Bytes::default() }))).await;
                return;
            }
        }
    });
    if let Err(refusal) = run(&state, &member, &base_url, &mut stream, &out).await {
        tracing::info!("ingest from {}: {}", member.email, refusal.message);
        let _ = out.send(ServerFrame::Error { error: refusal.message, fatal: refusal.fatal }).await;
    }
    drop(out);
    let _ = sender.await;
}

type Stream = futures_util::stream::SplitStream<WebSocket>;

async fn run(
    state: &AppState,
    member: &Member,
    base_url: &str,
    stream: &mut Stream,
    out: &mpsc::Sender<ServerFrame>,
) -> Result<(), Refusal> {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, next_frame(stream)).await {
        Ok(Ok(Some(Frame::Control(frame)))) => frame,
        Ok(Ok(Some(Frame::Output(..)))) => return Err(refuse("send `open` or `resume` before any output")),
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(refusal)) => return Err(refusal),
        Err(_) => return Err(refuse("no `open` or `resume` within 30 seconds")),
    };
    // `ended`: the session had exited before this connection; it takes resends of what is stored and of its exit,
    // nothing new.
    let (session_id, acked, ended) = match hello {
        RecorderFrame::Open(open) => (open_session(state, member, open).await?, 0, false),
        RecorderFrame::Resume { protocol, session_id } => {
            check_protocol(protocol)?;
            let (acked, ended) = resume_session(state, member, session_id).await?;
            (session_id, acked, ended)
        }
        _ => return Err(refuse("the first frame must be `open` or `resume`")),
    };
    let url = format!("{base_url}/sessions/{session_id}");
    send(out, ServerFrame::Ready { session_id, acked, url }).await?;

    // Writes are acknowledged in order, after their commit, by a task of their own.
    let (pending_tx, pending_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let mut acker = tokio::spawn(acknowledge(pending_rx, out.clone()));
    let mut expected = acked;
    let mut heartbeat = tokio::time::interval(state.recorder_heartbeat());
    heartbeat.tick().await;
    // Whether anything was written since the last heartbeat: its commit marked the recorder as heard from.
    let mut wrote = false;
    loop {
        let frame = tokio::select! {
            frame = next_frame(stream) => frame?,
            _ = heartbeat.tick() => {
                if !std::mem::take(&mut wrote) {
                    state.writer.touch(session_id).await;
                }
                continue;
            }
            // The acker stops early only when a write failed: say so now, not when the recorder sends again.
            done = &mut acker => return done.map_err(|_| refuse("internal error"))?,
        };
        let write = match frame {
            None => return Ok(()),
            Some(Frame::Output(offset, t_ms, bytes)) => {
                if offset > expected {
                    return Err(refuse(format!(
                        "output at offset {offset} leaves a hole after offset {expected}; declare a gap first"
                    )));
                }
                if ended && offset + bytes.len() as u64 > acked {
                    return Err(refuse(format!("the session has ended after {acked} bytes; it takes no more output")));
                }
                expected = expected.max(offset + bytes.len() as u64);
                TranscriptWrite::Output(OutputChunk { offset, t_ms, bytes })
            }
            Some(Frame::Control(RecorderFrame::Gap { at_offset, bytes_lost })) => {
                if at_offset > expected {
                    return Err(refuse(format!("a gap at offset {at_offset} leaves a hole after offset {expected}")));
                }
                if ended && at_offset + bytes_lost > acked {
                    return Err(refuse(format!("the session has ended after {acked} bytes; it takes no more output")));
                }
                expected = expected.max(at_offset + bytes_lost);
                TranscriptWrite::Gap { at_offset, bytes_lost }
            }
            Some(Frame::Control(RecorderFrame::Resize { offset, t_ms, cols, rows })) => {
                if offset > expected {
                    return Err(refuse(format!("a resize at offset {offset} is past the output sent ({expected})")));
                }
                TranscriptWrite::Resize { offset, t_ms, cols, rows }
            }
            Some(Frame::Control(RecorderFrame::Exit { offset, code, signal })) => {
                if offset != expected {
                    return Err(refuse(format!(
                        "exit after {offset} bytes, but the output sent ends at offset {expected}"
                    )));
                }
                // Everything before the exit must be stored first.
                drop(pending_tx);
                acker.await.map_err(|_| refuse("internal error"))??;
                end_session(state, session_id, code, signal).await?;
                send(out, ServerFrame::Closed { session_id }).await?;
                return Ok(());
            }
            Some(Frame::Control(RecorderFrame::Open(_) | RecorderFrame::Resume { .. })) => {
                return Err(refuse("this connection already has a session"));
            }
        };
        wrote = true;
        let outcome = state.writer.submit(session_id, vec![write]).await;
        if pending_tx.send(outcome).await.is_err() {
            // The acker stopped: a write failed. Its error is the connection's.
            drop(pending_tx);
            return acker.await.map_err(|_| refuse("internal error"))?;
        }
    }
}

/// Sends `ack` after each commit, in order; stops at the first failed write.
async fn acknowledge(
    mut pending: mpsc::Receiver<oneshot::Receiver<StoreResult<AppendOutcome>>>,
    out: mpsc::Sender<ServerFrame>,
) -> Result<(), Refusal> {
    let mut acked = None;
    while let Some(outcome) = pending.recv().await {
        let outcome = outcome.await.map_err(|_| refuse("the server is shutting down"))??;
        // Several writes can come back from one commit: one ack says it.
        if acked != Some(outcome.total_bytes) {
            acked = Some(outcome.total_bytes);
            send(&out, ServerFrame::Ack { offset: outcome.total_bytes }).await?;
        }
    }
    Ok(())
}

async fn send(out: &mpsc::Sender<ServerFrame>, frame: ServerFrame) -> Result<(), Refusal> {
    out.send(frame).await.map_err(|_| Refusal { message: "connection closed".into(), fatal: false })
}

fn check_protocol(protocol: u32) -> Result<(), Refusal> {
    if protocol != INGEST_PROTOCOL_VERSION {
        return Err(refuse(format!(
            "ingest protocol {protocol} is not supported; this server speaks {INGEST_PROTOCOL_VERSION}"
        )));
    }
    Ok(())
}

async fn open_session(state: &AppState, member: &Member, open: OpenSession) -> Result<Uuid, Refusal> {
    check_protocol(open.protocol)?;
    if !matches!(open.client_kind, ClientKind::Cli | ClientKind::Bot) {
        return Err(refuse("client_kind: a recorder is `cli` or `bot`"));
    }
    if open.command.len() > MAX_COMMAND_BYTES || open.command.chars().any(|c| c.is_control()) {
        return Err(refuse(format!("command: must be at most {MAX_COMMAND_BYTES} bytes without control characters")));
    }
    // Checked before anything is created: a refused open leaves no session behind.
    let client_name = validate_name("client_name", &open.client_name)?;
    let store = &state.store;
    let machine = store.recordable_machine(member.id, &open.machine, open.fleet.as_deref()).await?;
    if let Some(thread) = open.chat_thread {
        let thread = store.chat_thread(&Viewer::Member(member.id), thread).await?;
        if thread.fleet_id != machine.fleet_id {
            return Err(refuse("chat_thread: the thread belongs to another fleet than the machine"));
        }
    }
    let now = store.clock().now();
    let session_id = store
        .create_session(NewSession {
            fleet_id: machine.fleet_id,
            machine_id: machine.id,
            started_by: member.id,
            command: open.command,
            cols: open.cols,
            rows: open.rows,
            chat_thread_id: open.chat_thread,
            // The command may have started while the server was unreachable; never in the future.
            started_at: Some(open.started_at.map_or(now, |t| t.min(now))),
        })
        .await?;
    store
        .attach_client(session_id, NewClient { kind: open.client_kind, name: client_name, member_id: Some(member.id) })
        .await?;
    state.hub.clients_changed(session_id);
    Ok(session_id)
}

/// Returns the offset the recorder continues from, and whether the session has ended (with an exit).
async fn resume_session(state: &AppState, member: &Member, session_id: Uuid) -> Result<(u64, bool), Refusal> {
    let recording = match state.store.recording_state(session_id).await {
        Ok(r) if r.started_by == member.id => r,
        // Another member's session is as good as missing.
        Ok(_) | Err(StoreError::NotFound(_)) => return Err(refuse("session not found among yours")),
        Err(e) => return Err(e.into()),
    };
    if recording.state == SessionState::Ended && recording.end_reason == Some(EndReason::RecorderLost) {
        // The recorder was given up for lost but is back: the session goes on.
        state.store.reopen_lost_session(session_id).await?;
        // The sweep detached everyone, the recorder too: it is attached again, as what it opened the session as
        // (the first recorder-kind client).
        if let Ok(session) = state.store.session(&Viewer::Member(member.id), session_id).await
            && let Some(recorder) = session.clients.iter().find(|c| matches!(c.kind, ClientKind::Cli | ClientKind::Bot))
        {
            let again = NewClient { kind: recorder.kind, name: recorder.name.clone(), member_id: Some(member.id) };
            state.store.attach_client(session_id, again).await?;
            state.hub.clients_changed(session_id);
        }
        return Ok((recording.total_bytes, false));
    }
    Ok((recording.total_bytes, recording.state == SessionState::Ended))
}

async fn end_session(
    state: &AppState,
    session_id: Uuid,
    code: Option<i32>,
    signal: Option<i32>,
) -> Result<(), Refusal> {
    let exit_code = code.or(signal.map(|s| 128 + s));
    let end = SessionEnd { exit_code, exit_signal: signal, reason: EndReason::Exited, ended_at: None };
    match state.store.end_session(session_id, end).await {
        Ok(()) => {}
        // A resend of an exit that was stored before the connection dropped.
        Err(StoreError::Conflict(_)) => {
            let r = state.store.recording_state(session_id).await?;
            if r.end_reason != Some(EndReason::Exited) || r.exit_code != exit_code {
                return Err(refuse("the session has already ended differently"));
            }
        }
        Err(e) => return Err(e.into()),
    }
    state.hub.ended(session_id);
    Ok(())
}

enum Frame {
    Control(RecorderFrame),
    Output(u64, u64, Vec<u8>),
}

/// The next protocol frame; `None` when the recorder closed the connection.
async fn next_frame(stream: &mut Stream) -> Result<Option<Frame>, Refusal> {
    loop {
        let Some(msg) = stream.next().await else { return Ok(None) };
        let msg = msg.map_err(|e| Refusal { message: format!("connection error: {e}"), fatal: false })?;
        return match msg {
            Message::Text(text) => serde_json::from_str(&text)
                .map(|f| Some(Frame::Control(f)))
                .map_err(|e| refuse(format!("undecodable control frame: {e}"))),
            Message::Binary(bytes) => {
                let frame = decode_output(&bytes).map_err(|e| refuse(e.to_string()))?;
                Ok(Some(Frame::Output(frame.offset, frame.t_ms, frame.bytes.to_vec())))
            }
            Message::Close(_) => Ok(None),
            Message::Ping(_) | Message::Pong(_) => continue,
        };
    }
}
