//! The ingest protocol: how a recorder (`cmdop record`) streams a session to the server.
//!
//! One WebSocket per recorder connection, `GET /api/v1/ingest?protocol=1`, authenticated with the recorder's API
//! token (`Authorization: Bearer ...`). Control frames are JSON text frames ([`RecorderFrame`] up,
//! [`ServerFrame`] down); output travels in binary frames ([`encode_output`]) so that bytes are not inflated.
//!
//! Byte offsets are the identity of transcript data. The recorder numbers every byte the command printed,
//! including bytes it had to drop; the server stores each byte at its offset exactly once, so a resend of stored
//! bytes is skipped (if it agrees) and a reconnect resumes from the last acknowledged offset.
//!
//! Order on a connection: one `open` or `resume`, the server's `ready`, then output / `resize` / `gap` frames in
//! offset order (each output frame starts where the previous frame ended, or earlier for a resend), then `exit`.
//! The server answers `ack` after each commit and `closed` after the exit is stored. Any violation gets an `error`
//! frame and the connection is closed; what was stored stays intact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ClientKind;

/// Version of the ingest protocol described here. Sent by the recorder in `open` / `resume`.
pub const INGEST_PROTOCOL_VERSION: u32 = 1;

/// Largest payload of one output frame. Bigger frames are refused (the recorder splits its reads).
/// The longest command (bytes of UTF-8) a session records; the recorder shortens longer ones.
pub const MAX_COMMAND_BYTES: usize = 4096;

pub const MAX_OUTPUT_FRAME_BYTES: usize = 256 * 1024;

/// Tag byte of a binary output frame.
pub const OUTPUT_FRAME_TAG: u8 = 1;

/// Size of the binary output frame header: tag, offset (u64 BE), t_ms (u64 BE).
pub const OUTPUT_FRAME_HEADER: usize = 1 + 8 + 8;

/// Control frames from the recorder (JSON text frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecorderFrame {
    /// Start a new session.
    Open(OpenSession),
    /// Continue a session this recorder opened earlier (after any disconnect).
    Resume { protocol: u32, session_id: Uuid },
    /// The terminal changed size at this offset.
    Resize { offset: u64, t_ms: u64, cols: u16, rows: u16 },
    /// The recorder dropped `bytes_lost` bytes starting at `at_offset` (its local buffer overflowed while the
    /// server was unreachable). The next output continues at `at_offset + bytes_lost`.
    Gap { at_offset: u64, bytes_lost: u64 },
    /// The command exited after printing `offset` bytes in all. `signal` is set when a signal killed it.
    Exit { offset: u64, code: Option<i32>, signal: Option<i32> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession {
    pub protocol: u32,
    /// Machine name within the token member's fleets.
    pub machine: String,
    /// Fleet name; needed only when the member belongs to several fleets with a machine of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    pub command: String,
    pub cols: u16,
    pub rows: u16,
    /// `cli` for an interactive recorder, `bot` for scripted ones.
    pub client_kind: ClientKind,
    /// Shown among the session's attached clients (e.g. "cmdop on web-1").
    pub client_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_thread: Option<Uuid>,
    /// When the command started, by the recorder's clock (it may have run before the server was reachable).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::time::rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
}

/// Frames from the server to the recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The session is open (or resumed); `acked` is the offset after the last byte durably stored. The recorder
    /// continues from there.
    Ready { session_id: Uuid, acked: u64, url: String },
    /// Everything before `offset` is durably stored.
    Ack { offset: u64 },
    /// The exit is stored; the session has ended. The server closes the connection after this.
    Closed { session_id: Uuid },
    /// The connection is refused or closed because of this. `fatal` means retrying the same thing cannot
    /// succeed (bad token, no grant, bad frames); otherwise the recorder may reconnect.
    Error { error: String, fatal: bool },
}

/// An output frame: `bytes` printed at transcript offset `offset`, `t_ms` after the session started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFrame<'a> {
    pub offset: u64,
    pub t_ms: u64,
    pub bytes: &'a [u8],
}

/// Encodes an output frame: tag `1`, offset (u64 big-endian), t_ms (u64 big-endian), then the bytes.
pub fn encode_output(offset: u64, t_ms: u64, bytes: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(OUTPUT_FRAME_HEADER + bytes.len());
    frame.push(OUTPUT_FRAME_TAG);
    frame.extend_from_slice(&offset.to_be_bytes());
    frame.extend_from_slice(&t_ms.to_be_bytes());
    frame.extend_from_slice(bytes);
    frame
}

/// Why a binary frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooShort(usize),
    UnknownTag(u8),
    TooLarge(usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooShort(n) => {
                write!(f, "binary frame of {n} bytes is shorter than its {OUTPUT_FRAME_HEADER}-byte header")
            }
            FrameError::UnknownTag(t) => write!(f, "binary frame tag {t} is not an output frame (1)"),
            FrameError::TooLarge(n) => {
                write!(f, "output frame of {n} bytes exceeds the limit of {MAX_OUTPUT_FRAME_BYTES} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

pub fn decode_output(frame: &[u8]) -> Result<OutputFrame<'_>, FrameError> {
    if frame.len() < OUTPUT_FRAME_HEADER {
        return Err(FrameError::TooShort(frame.len()));
    }
    if frame[0] != OUTPUT_FRAME_TAG {
        return Err(FrameError::UnknownTag(frame[0]));
    }
    let bytes = &frame[OUTPUT_FRAME_HEADER..];
    if bytes.len() > MAX_OUTPUT_FRAME_BYTES {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    let offset = u64::from_be_bytes(frame[1..9].try_into().expect("8 bytes"));
    let t_ms = u64::from_be_bytes(frame[9..17].try_into().expect("8 bytes"));
    Ok(OutputFrame { offset, t_ms, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_frames_round_trip() {
        let bytes = b"\x1b[31mred\x1b[0m\r\n\xff";
        let frame = encode_output(1 << 40, 1234, bytes);
        let decoded = decode_output(&frame).unwrap();
        assert_eq!(decoded, OutputFrame { offset: 1 << 40, t_ms: 1234, bytes });
    }

    #[test]
    fn bad_binary_frames_say_what_is_wrong() {
        assert_eq!(decode_output(&[1, 2, 3]), Err(FrameError::TooShort(3)));
        let mut frame = encode_output(0, 0, b"x");
        frame[0] = 9;
        assert_eq!(decode_output(&frame), Err(FrameError::UnknownTag(9)));
        let big = encode_output(0, 0, &vec![0; MAX_OUTPUT_FRAME_BYTES + 1]);
        assert_eq!(decode_output(&big), Err(FrameError::TooLarge(MAX_OUTPUT_FRAME_BYTES + 1)));
    }

    #[test]
    fn control_frames_use_documented_json() {
        let f = RecorderFrame::Gap { at_offset: 10, bytes_lost: 5 };
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"type":"gap","at_offset":10,"bytes_lost":5}"#);
        let f: ServerFrame = serde_json::from_str(r#"{"type":"ack","offset":42}"#).unwrap();
        assert_eq!(f, ServerFrame::Ack { offset: 42 });
        let open: RecorderFrame = serde_json::from_str(
            r#"{"type":"open","protocol":1,"machine":"web-1","command":"bash","cols":80,"rows":24,
                "client_kind":"cli","client_name":"cmdop"}"#,
        )
        .unwrap();
        assert!(matches!(open, RecorderFrame::Open(OpenSession { cols: 80, chat_thread: None, .. })));
    }
}
