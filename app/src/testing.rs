//! Test data shared by the crate's unit tests.

use std::sync::atomic::{AtomicU64, Ordering};

use cmdop_protocol::{Session, SessionState, TranscriptInfo};

/// A fresh id (counted: the browser build of `uuid` has no random or time-based ids).
pub fn new_id() -> uuid::Uuid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    uuid::Uuid::from_u128(u128::from(NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// An ended session (exit 0) with `total` transcript bytes, all retained.
pub fn session(total: u64) -> Session {
    let now = chrono::Utc::now();
    Session {
        id: new_id(),
        fleet: "f".into(),
        fleet_id: new_id(),
        machine: "m".into(),
        machine_id: new_id(),
        user: "u@example.com".into(),
        user_id: new_id(),
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
