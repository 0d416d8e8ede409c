//! The transcript writer: one task per server that group-commits what all recorders send.
//!
//! Each recorder connection hands over its frames as write requests and awaits their outcome; the writer takes
//! every request waiting (up to a size bound), commits them in one transaction, answers each, and tells the live
//! hub. If the group fails, each session's part is retried alone, so one bad recorder cannot fail the others.
//!
//! Heartbeats of quiet recorders go through the writer too, batched like output: a thousand recorders opened
//! together fall due together, and as separate writes they were a thousand transactions taking SQLite's one write
//! lock in turn beside the group commit; here they are one statement in the writer's next turn.

use std::collections::HashMap;
use std::sync::Arc;

use cmdop_store::{AppendOutcome, Backend, Store, StoreError, StoreResult, TranscriptWrite};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::live::Hub;

/// Bounds of one group commit.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
const MAX_BATCH_REQUESTS: usize = 4096;

/// Where a request's outcome goes.
type Reply = oneshot::Sender<StoreResult<AppendOutcome>>;

enum Request {
    Write {
        session_id: Uuid,
        writes: Vec<TranscriptWrite>,
        reply: Reply,
    },
    /// The recorder is connected but quiet: mark it heard from (no answer; a failure is logged, and the
    /// recorder-lost sweep is what a store that keeps failing leads to).
    Touch {
        session_id: Uuid,
    },
}

impl Request {
    fn bytes(&self) -> usize {
        match self {
            Request::Write { writes, .. } => writes.iter().map(TranscriptWrite::len).sum(),
            Request::Touch { .. } => 0,
        }
    }
}

/// Handle to the writer task. Cheap to clone.
///
/// One task, on both backends. Each commit takes a couple of round trips and a WAL flush; what arrives meanwhile
/// goes in the next one, so a heavier load makes bigger batches rather than more commits. PostgreSQL had four tasks,
/// each for its own share of the sessions, until a measure on two cores: four times the commits, each of a quarter
/// of the sessions, kept PostgreSQL busy on a whole core with per-statement work, and one task took the live
/// latency's p50 from ~9 to ~5 ms (BENCHMARKS.md, (b)). Replicas each have their own.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer task: on SQLite on a thread of its own, on PostgreSQL on the current tokio runtime. It
    /// ends when every handle to it is dropped.
    pub fn spawn(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let (queue, rx) = mpsc::channel(MAX_BATCH_REQUESTS);
        if store.backend() == Backend::Sqlite {
            // A thread of its own: a group commit is a few hand-overs to and from the SQLite connection's thread,
            // and on the shared runtime each wake-up queued behind the tasks of a thousand sockets. (PostgreSQL's
            // connections belong to the shared runtime's I/O driver.)
            std::thread::Builder::new()
                .name("transcript-writer".into())
                .spawn(move || {
                    let rt =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("writer runtime");
                    rt.block_on(run(store, hub, rx));
                })
                .expect("writer thread");
        } else {
            tokio::spawn(run(store, hub, rx));
        }
        Writer { queue }
    }

    /// Queues writes for a session; the returned receiver yields the outcome after they are committed.
    pub async fn submit(
        &self,
        session_id: Uuid,
        writes: Vec<TranscriptWrite>,
    ) -> oneshot::Receiver<StoreResult<AppendOutcome>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Request::Write { reply, .. })) =
            self.queue.send(Request::Write { session_id, writes, reply }).await
        {
            let _ = reply.send(Err(StoreError::Conflict("the server is shutting down".into())));
        }
        rx
    }

    /// Marks a quiet recorder's session as heard from, with the next group commit.
    pub async fn touch(&self, session_id: Uuid) {
        let _ = self.queue.send(Request::Touch { session_id }).await;
    }
}

async fn run(store: Arc<dyn Store>, hub: Arc<Hub>, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.bytes();
        let mut requests = vec![first];
        while bytes < MAX_BATCH_BYTES && requests.len() < MAX_BATCH_REQUESTS {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += req.bytes();
                    requests.push(req);
                }
                Err(_) => break,
            }
        }
        commit(&*store, &hub, requests).await;
    }
}

/// Commits requests grouped by session (in arrival order within each session) and answers them.
async fn commit(store: &dyn Store, hub: &Hub, requests: Vec<Request>) {
    let mut order: Vec<Uuid> = Vec::new();
    let mut groups: HashMap<Uuid, (Vec<TranscriptWrite>, Vec<Reply>)> = HashMap::new();
    let mut touched: Vec<Uuid> = Vec::new();
    for req in requests {
        let (session_id, writes, reply) = match req {
            Request::Write { session_id, writes, reply } => (session_id, writes, reply),
            Request::Touch { session_id } => {
                touched.push(session_id);
                continue;
            }
        };
        let group = groups.entry(session_id).or_insert_with(|| {
            order.push(session_id);
            (Vec::new(), Vec::new())
        });
        group.0.extend(writes);
        group.1.push(reply);
    }
    // A session written in this batch is marked heard from by its commit.
    touched.retain(|id| !groups.contains_key(id));
    touched.sort_unstable();
    touched.dedup();
    if !touched.is_empty()
        && let Err(e) = store.touch_sessions(&touched).await
    {
        tracing::warn!("recorder heartbeats of {} sessions not stored: {e}", touched.len());
    }
    if order.is_empty() {
        return;
    }
    let batch: Vec<(Uuid, Vec<TranscriptWrite>)> =
        order.iter().map(|id| (*id, std::mem::take(&mut groups.get_mut(id).expect("group").0))).collect();

    let started = std::time::Instant::now();
    let result = store.append_batch(&batch).await;
    tracing::debug!(
        sessions = batch.len(),
        bytes = batch.iter().flat_map(|(_, w)| w).map(TranscriptWrite::len).sum::<usize>(),
        us = started.elapsed().as_micros() as u64,
        "group commit"
    );
    match result {
        Ok(outcomes) => {
            for ((id, writes), outcome) in batch.iter().zip(outcomes) {
                hub.committed(*id, writes, &outcome);
                answer(groups.remove(id).expect("group").1, Ok(outcome));
            }
        }
        Err(group_error) if batch.len() == 1 => {
            answer(groups.remove(&batch[0].0).expect("group").1, Err(group_error));
        }
        Err(_) => {
            // Someone's writes were refused (or the database hiccuped): each session on its own.
            for entry in batch {
                let id = entry.0;
                let one = [entry];
                let result = store.append_batch(&one).await.map(|mut outcomes| outcomes.remove(0));
                if let Ok(outcome) = &result {
                    hub.committed(id, &one[0].1, outcome);
                }
                answer(groups.remove(&id).expect("group").1, result);
            }
        }
    }
}

fn answer(replies: Vec<Reply>, result: StoreResult<AppendOutcome>) {
    match result {
        Ok(outcome) => {
            for r in replies {
                let _ = r.send(Ok(outcome));
            }
        }
        Err(e) => {
            // StoreError is not Clone: every waiter gets the same message.
            let message = e.to_string();
            let mut replies = replies.into_iter();
            if let Some(first) = replies.next() {
                let _ = first.send(Err(e));
            }
            for r in replies {
                let _ = r.send(Err(StoreError::Conflict(message.clone())));
            }
        }
    }
}
