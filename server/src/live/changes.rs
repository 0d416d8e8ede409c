//! `GET /api/v1/sessions/changes`: a server-sent event stream that tells the sessions list which of the caller's
//! visible sessions started, ended or changed clients, so that it can reload without polling.
//!
//! Each event is `event: sessions`, `data: [{"id": "...", "state": "active"|"ended"}]`, changes coalesced over
//! a short window. Sessions the caller may not see are never named (each id goes through the visibility rule).
//! `event: resync` means changes were missed: reload.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use cmdop_protocol::SessionState;
use cmdop_store::Viewer;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use uuid::Uuid;

use crate::auth::CurrentMember;
use crate::state::AppState;

/// How long changes gather before one event goes out (a burst of starts costs one reload).
const COALESCE: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize)]
struct SessionChange {
    id: Uuid,
    state: SessionState,
}

pub async fn session_changes(
    State(state): State<AppState>,
    CurrentMember(member): CurrentMember,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let follower = Follower { changes: state.hub.session_changes(), state, viewer: Viewer::Member(member.id) };
    let events = futures_util::stream::unfold(follower, |mut f| async move {
        let event = f.next_event().await?;
        Some((Ok(event), f))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

struct Follower {
    changes: Receiver<Uuid>,
    state: AppState,
    viewer: Viewer,
}

impl Follower {
    /// The next event for this viewer; `None` when the hub is gone.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let first = match self.changes.recv().await {
                Ok(id) => id,
                Err(RecvError::Lagged(_)) => return Some(resync()),
                Err(RecvError::Closed) => return None,
            };
            tokio::time::sleep(COALESCE).await;
            let mut ids = vec![first];
            loop {
                match self.changes.try_recv() {
                    Ok(id) if !ids.contains(&id) => ids.push(id),
                    Ok(_) => {}
                    Err(TryRecvError::Lagged(_)) => return Some(resync()),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return None,
                }
            }
            let mut visible = Vec::new();
            for id in ids {
                // Not found is also what an invisible session looks like: say nothing of it.
                if let Ok(s) = self.state.store.session(&self.viewer, id).await {
                    visible.push(SessionChange { id, state: s.state });
                }
            }
            if !visible.is_empty() {
                return Some(Event::default().event("sessions").json_data(&visible).unwrap_or_else(|_| resync()));
            }
        }
    }
}

fn resync() -> Event {
    Event::default().event("resync").data("")
}
