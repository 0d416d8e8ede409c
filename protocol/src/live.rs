//! The live protocol: how viewers (browser tabs, guests, the CLI) follow a session.
//!
//! `GET /api/v1/sessions/{id}/live?from=OFFSET` upgrades to a WebSocket. The server replays the stored transcript
//! from `OFFSET` (default 0), then pushes new output as it is committed. Output travels in binary frames
//! ([`encode_live_output`]: offset u64 big-endian, then the bytes); everything else is a JSON text frame,
//! [`LiveEvent`]. The socket is read-only: the only frames a viewer may send are [`ViewerFrame`]s (and WebSocket
//! ping/pong); anything else closes the connection with code 1008 (policy violation).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ClientInfo, EndReason, GapReason};

/// WebSocket close code for a viewer that sent something other than the protocol's own frames.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// Events pushed to viewers, in transcript order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// First frame: where the replay starts and how long the transcript is now. `client_id` is this viewer's
    /// attached client (while the session is active), so that a page can mark itself in the clients list.
    Hello {
        from: u64,
        total_bytes: u64,
        cols: u16,
        rows: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<uuid::Uuid>,
    },
    /// Bytes from `at_offset` on are missing: dropped by the ring buffer (`truncated`) or lost while the recorder
    /// was offline. Output continues at `at_offset + bytes_lost`.
    Gap { at_offset: u64, bytes_lost: u64, reason: GapReason },
    /// The terminal was resized at this offset.
    Resize { offset: u64, cols: u16, rows: u16 },
    /// The replay of stored output has reached the live tail; what follows arrives as it is recorded.
    Live { offset: u64 },
    /// The attached clients changed; this is the full current list.
    Clients { clients: Vec<ClientInfo> },
    /// The session ended. No output follows; the server closes the socket after this.
    Exit {
        exit_code: Option<i32>,
        end_reason: Option<EndReason>,
        #[serde(default, with = "crate::time::rfc3339_opt")]
        ended_at: Option<DateTime<Utc>>,
        duration_ms: u64,
        total_bytes: u64,
    },
    /// Something went wrong on the server's side; the socket closes after this.
    Error { error: String },
    /// Answer to a viewer's ping.
    Pong,
}

/// The only frames a viewer may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ViewerFrame {
    Ping,
    /// Start the replay again from this offset (e.g. after the reader jumped).
    Resume {
        from: u64,
    },
}

/// A binary live frame: the transcript bytes at `offset`.
pub fn encode_live_output(offset: u64, bytes: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + bytes.len());
    frame.extend_from_slice(&offset.to_be_bytes());
    frame.extend_from_slice(bytes);
    frame
}

/// Splits a binary live frame into offset and bytes; `None` if it is shorter than its header.
pub fn decode_live_output(frame: &[u8]) -> Option<(u64, &[u8])> {
    let header: [u8; 8] = frame.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(header), &frame[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_output_round_trips() {
        let frame = encode_live_output(77, b"abc");
        assert_eq!(decode_live_output(&frame), Some((77, &b"abc"[..])));
        assert_eq!(decode_live_output(&[0; 7]), None);
    }

    #[test]
    fn events_use_documented_json() {
        let e = LiveEvent::Gap { at_offset: 0, bytes_lost: 9, reason: GapReason::Truncated };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"gap","at_offset":0,"bytes_lost":9,"reason":"truncated"}"#
        );
        let f: ViewerFrame = serde_json::from_str(r#"{"type":"resume","from":5}"#).unwrap();
        assert_eq!(f, ViewerFrame::Resume { from: 5 });
        assert!(serde_json::from_str::<ViewerFrame>(r#"{"type":"input","data":"ls\n"}"#).is_err());
    }
}
