//! SQLite only: the group commit runs its transaction as plain `BEGIN ... COMMIT` statements on the store's one
//! write connection (two round trips instead of sqlx's five). A caller that gives up halfway (its future dropped:
//! a closed socket, a timeout) must leave all of its writes or none, and a connection the next write can use.

use std::task::Poll;

use cmdop_store::testing::{TestStore, new_session, owner_and_machine};
use cmdop_store::*;
use uuid::Uuid;

fn out(offset: u64, bytes: &[u8]) -> TranscriptWrite {
    TranscriptWrite::Output(OutputChunk { offset, t_ms: offset, bytes: bytes.to_vec() })
}

#[tokio::test]
async fn a_group_commit_dropped_halfway_stores_all_or_nothing_and_the_next_one_goes_through() {
    let t = TestStore::sqlite().await;
    let (owner, machine) = owner_and_machine(&*t.store).await;
    let viewer = Viewer::Member(owner.id);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.store.create_session(new_session(&machine, &owner)).await.unwrap());
    }
    let mut want: Vec<Vec<u8>> = vec![Vec::new(); ids.len()];
    let mut abandoned = 0;
    for round in 0..60u64 {
        // Each session: a resend of its last byte (the commit reads the table for it) and new bytes.
        let fresh: Vec<Vec<u8>> = (0..ids.len()).map(|i| format!("<{round}:{i}>").into_bytes()).collect();
        let batch: Vec<(Uuid, Vec<TranscriptWrite>)> = ids
            .iter()
            .zip(&want)
            .zip(&fresh)
            .map(|((id, w), f)| {
                let end = w.len() as u64;
                let mut writes = Vec::new();
                if let Some(last) = w.last() {
                    writes.push(out(end - 1, &[*last]));
                }
                writes.push(out(end, f));
                (*id, writes)
            })
            .collect();
        // Dropped after 1 to 10 polls: at each of its awaits in turn, or not at all once it completes. (Not a
        // timeout: tokio's timer counts whole milliseconds, and a fast machine finished every commit within one.)
        let polls = (round % 10) as u32 + 1;
        let committed = match poll_at_most(t.store.append_batch(&batch), polls).await {
            Some(result) => {
                result.unwrap();
                true
            }
            None => {
                abandoned += 1;
                // A write through the same connection: whatever the dropped commit had sent to it has run.
                t.store.touch_sessions(&ids).await.unwrap();
                let total = t.store.recording_state(ids[0]).await.unwrap().total_bytes;
                assert!(
                    total == want[0].len() as u64 || total == (want[0].len() + fresh[0].len()) as u64,
                    "round {round}: {total} bytes stored, neither before ({}) nor after the batch",
                    want[0].len()
                );
                total != want[0].len() as u64
            }
        };
        if committed {
            for (w, f) in want.iter_mut().zip(&fresh) {
                w.extend_from_slice(f);
            }
        }
        // Every session agrees (all or nothing), byte for byte.
        for (id, w) in ids.iter().zip(&want) {
            let stored = t.store.read_transcript(&viewer, *id, 0).await.unwrap();
            assert_eq!(stored.total_bytes, w.len() as u64, "round {round}: length of {id}");
            assert!(stored.bytes == *w, "round {round}: bytes of {id}: {:?}", String::from_utf8_lossy(&stored.bytes));
        }
    }
    // One poll stops the commit at its first await (its first statement is sent to SQLite's thread, and the
    // answer comes later): at least those rounds were abandoned.
    assert!(abandoned >= 6, "{abandoned} commits abandoned");
}

/// Drives `fut` for at most `polls` polls (each after it was woken), then drops it: `None` if it had not finished.
async fn poll_at_most<F: Future>(fut: F, polls: u32) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut left = polls;
    std::future::poll_fn(move |cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => {
            left -= 1;
            if left == 0 { Poll::Ready(None) } else { Poll::Pending }
        }
    })
    .await
}

/// Group commits back to back, on a one-thread runtime like the transcript writer's, all go through. Each plain
/// append borrows the raw connection from sqlx's worker thread; when a loan came before the worker had retaken its
/// lock, sqlx's request to let go of it was left over in the worker's queue, and such requests piled up until the
/// queue was full and the next loan and the worker waited for each other for good (this test hung within a few
/// thousand commits).
#[tokio::test]
async fn thousands_of_group_commits_in_a_row_all_go_through() {
    let t = TestStore::sqlite().await;
    let (owner, machine) = owner_and_machine(&*t.store).await;
    let id = t.store.create_session(new_session(&machine, &owner)).await.unwrap();

    // Each commit gets 10 s, so that a slow machine is not mistaken for a hang.
    const COMMITS: u64 = 20_000;
    for i in 0..COMMITS {
        let batch = [(id, vec![out(i * 8, format!("{i:>7}\n").as_bytes())])];
        match tokio::time::timeout(std::time::Duration::from_secs(10), t.store.append_batch(&batch)).await {
            Ok(result) => {
                result.unwrap();
            }
            Err(_) => panic!("group commit {i} of {COMMITS} did not go through (a hang on the write connection)"),
        }
    }
    let head = t.store.session_head(&Viewer::Member(owner.id), id).await.unwrap();
    assert_eq!(head.transcript.total_bytes, COMMITS * 8);
}
