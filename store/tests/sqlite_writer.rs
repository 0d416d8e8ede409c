//! SQLite only: the group commit runs its transaction as plain `BEGIN ... COMMIT` statements on the store's one
//! write connection (two round trips instead of sqlx's five). A caller that gives up halfway (its future dropped:
//! a closed socket, a timeout) must leave all of its writes or none, and a connection the next write can use.

use std::time::Duration;

use cmdop_store::testing::{TestStore, new_session};
use cmdop_store::*;
use uuid::Uuid;

fn out(offset: u64, bytes: &[u8]) -> TranscriptWrite {
    TranscriptWrite::Output(OutputChunk { offset, t_ms: offset, bytes: bytes.to_vec() })
}

#[tokio::test]
async fn a_group_commit_dropped_halfway_stores_all_or_nothing_and_the_next_one_goes_through() {
    let t = TestStore::sqlite().await;
    let fleet = t.store.create_fleet("acme").await.unwrap();
    let machine = t.store.create_machine(fleet.id, "web-1").await.unwrap();
    let new = NewMember { email: "o@example.com".into(), display_name: "O".into(), password_hash: None, is_bot: false };
    let owner = t.store.create_member(new).await.unwrap();
    t.store.add_fleet_member(fleet.id, owner.id, Role::Owner).await.unwrap();
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
        // From no time at all to 3 ms: the commit is dropped at different steps, or completes.
        let limit = Duration::from_micros(round * 50);
        let committed = match tokio::time::timeout(limit, t.store.append_batch(&batch)).await {
            Ok(result) => {
                result.unwrap();
                true
            }
            Err(_) => {
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
    // A timeout of zero drops the commit at its first await: at least that round was abandoned.
    assert!(abandoned > 0);
}
