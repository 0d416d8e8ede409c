//! Test data shared by the crate's unit tests.

use cmdop_protocol::{Session, SessionState, TranscriptInfo};

/// An ended session (exit 0) with `total` transcript bytes, all retained.
pub fn session(total: u64) -> Session {
    let now = chrono::Utc::now();
    Session {
        id: uuid::Uuid::now_v7(),
        fleet: "f".into(),
        fleet_id: uuid::Uuid::now_v7(),
        machine: "m".into(),
        machine_id: uuid::Uuid::now_v7(),
        user: "u@example.com".into(),
        user_id: uuid::Uuid::now_v7(),
        user_name: "U".into(),
        command: "c".into(),
        state: SessionState::Ended,
        end_reason: None,
        started_at: now,
        ended_at: Some(now),
        exit_code: Some(0),
        duration_ms: 0,
        cols: 80,
        rows: 24,
        clients: Vec::new(),
        chat_thread: None,
        transcript: TranscriptInfo { total_bytes: total, retained_bytes: total, truncated_bytes: 0, gaps: Vec::new() },
    }
}
