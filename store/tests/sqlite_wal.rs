//! SQLite only: committed output reaches the database file through the background checkpoints, while the
//! committing connection's own checkpoint threshold (256 MiB of log) is far away.

use std::path::Path;
use std::time::Duration;

use cmdop_store::testing::{TestStore, new_session, owner_and_machine};
use cmdop_store::*;

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn committed_output_is_checkpointed_into_the_database_file_in_the_background() {
    let t = TestStore::sqlite().await;
    let db = Path::new(&t.url).to_path_buf();
    let (owner, machine) = owner_and_machine(&*t.store).await;
    let id = t.store.create_session(new_session(&machine, &owner)).await.unwrap();

    // 2 MiB in 4 KiB chunks, one group commit each: all of it lands in the log first.
    let before = file_len(&db);
    let chunk: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    for i in 0..512u64 {
        let write = TranscriptWrite::Output(OutputChunk { offset: i * 4096, t_ms: i, bytes: chunk.clone() });
        t.store.append_batch(&[(id, vec![write])]).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while file_len(&db) < before + 2 * 1024 * 1024 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database file stayed at {} bytes (from {before}): nothing checkpointed the log",
            file_len(&db)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And what was written reads back whole.
    let viewer = Viewer::Member(owner.id);
    let page = t.store.read_transcript_page(&viewer, id, 0, 4 * 1024 * 1024).await.unwrap();
    let stored: Vec<u8> = page
        .pieces(0)
        .into_iter()
        .flat_map(|p| match p {
            TranscriptPiece::Bytes { bytes, .. } => bytes.to_vec(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(stored.len(), 512 * 4096);
    assert!(stored.chunks(4096).all(|c| c == chunk.as_slice()));
}
