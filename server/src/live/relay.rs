//! Carries the hub's changes between replicas that share a PostgreSQL database: outgoing changes are coalesced
//! per session and published in one NOTIFY round trip; incoming ones from other replicas wake local viewers, who
//! read the store. On SQLite (one process) the store has no notices and nothing runs.

use std::collections::HashMap;
use std::sync::Arc;

use cmdop_store::Store;
use cmdop_store::notify::{LiveChange, LiveNotice};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Hub;

/// Starts both directions. Returns the sender the hub publishes into, or `None` when the store has no notices.
pub async fn start(store: Arc<dyn Store>, hub: Arc<Hub>) -> Option<mpsc::UnboundedSender<LiveNotice>> {
    let incoming = match store.live_notices().await {
        Ok(Some(rx)) => rx,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!("live notices between replicas are off: {e}");
            return None;
        }
    };
    let own = store.replica_id();
    tokio::spawn(receive(incoming, own, hub));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(publish(rx, store));
    Some(tx)
}

async fn receive(mut incoming: mpsc::Receiver<LiveNotice>, own: Uuid, hub: Arc<Hub>) {
    while let Some(n) = incoming.recv().await {
        if n.origin == own {
            continue;
        }
        match n.change {
            LiveChange::Output { total_bytes } => hub.poked(n.session_id, total_bytes),
            LiveChange::ClientsChanged => hub.remote_clients_changed(n.session_id),
            LiveChange::Ended => hub.remote_ended(n.session_id),
        }
    }
}

async fn publish(mut rx: mpsc::UnboundedReceiver<LiveNotice>, store: Arc<dyn Store>) {
    while let Some(first) = rx.recv().await {
        // Whatever queued up meanwhile goes in the same round trip; per session only the latest output counts.
        let mut latest_output: HashMap<Uuid, LiveNotice> = HashMap::new();
        let mut others = Vec::new();
        let mut next = Some(first);
        while let Some(n) = next {
            match n.change {
                LiveChange::Output { .. } => {
                    latest_output.insert(n.session_id, n);
                }
                _ => others.push(n),
            }
            next = rx.try_recv().ok();
        }
        let notices: Vec<LiveNotice> = latest_output.into_values().chain(others).collect();
        if let Err(e) = store.publish_live(&notices).await {
            tracing::warn!("publishing {} live notices: {e}", notices.len());
        }
    }
}
