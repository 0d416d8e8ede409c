//! Ends sessions whose recorder vanished without an exit: after the grace period with no word from the recorder
//! (no output, no heartbeat), the session ends with reason `recorder_lost` and no exit code. A recorder that comes
//! back later reopens it (see the ingest socket).

use std::time::Duration;

use crate::state::AppState;

/// Starts the sweep on the current runtime. Every replica may run it: the store's update is idempotent.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_interval(state.recorder_grace));
        loop {
            tick.tick().await;
            sweep(&state).await;
        }
    })
}

/// Often enough that a lost session ends within a small fraction of the grace period after it expires.
pub fn sweep_interval(grace: Duration) -> Duration {
    (grace / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// One pass: ends what is lost and tells its viewers.
pub async fn sweep(state: &AppState) {
    let grace = chrono::Duration::from_std(state.recorder_grace).unwrap_or(chrono::Duration::MAX);
    let silent_since = state.store.clock().now() - grace;
    match state.store.end_lost_sessions(silent_since).await {
        Ok(lost) => {
            for id in lost {
                tracing::info!("session {id}: recorder lost (silent for {:?})", state.recorder_grace);
                state.hub.ended(id);
            }
        }
        Err(e) => tracing::warn!("recorder-lost sweep: {e}"),
    }
}
