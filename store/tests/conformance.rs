//! The store conformance suite: every test runs against SQLite and PostgreSQL.

use cmdop_store::testing::TestStore;
use cmdop_store::*;

/// Expands each listed `async fn(TestStore)` into one `#[tokio::test]` per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(cmdop_store::testing::TestStore::sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(cmdop_store::testing::TestStore::postgres().await).await } )*
        }
    };
}

conformance!(smoke_session_round_trip);

async fn smoke_session_round_trip(t: TestStore) {
    let s = &t.store;
    let fleet = s.create_fleet("acme").await.unwrap();
    let m = s
        .create_member(NewMember {
            email: "a@x.io".into(),
            display_name: "".into(),
            password_hash: None,
            is_bot: false,
        })
        .await
        .unwrap();
    s.add_fleet_member(fleet.id, m.id, Role::Owner)
        .await
        .unwrap();
    let machine = s.create_machine(fleet.id, "web-1").await.unwrap();
    let id = s
        .create_session(NewSession {
            fleet_id: fleet.id,
            machine_id: machine.id,
            started_by: m.id,
            command: "ls".into(),
            cols: 80,
            rows: 24,
            chat_thread_id: None,
            started_at: None,
        })
        .await
        .unwrap();
    s.append_output(
        id,
        &[
            OutputChunk {
                offset: 0,
                t_ms: 0,
                bytes: b"hello ".to_vec(),
            },
            OutputChunk {
                offset: 6,
                t_ms: 5,
                bytes: b"world".to_vec(),
            },
        ],
    )
    .await
    .unwrap();
    t.clock.advance(chrono::Duration::milliseconds(1500));
    s.end_session(
        id,
        SessionEnd {
            exit_code: Some(3),
            exit_signal: None,
            reason: cmdop_protocol::EndReason::Exited,
            ended_at: None,
        },
    )
    .await
    .unwrap();
    let v = Viewer::Member(m.id);
    let got = s.session(&v, id).await.unwrap();
    assert_eq!(got.exit_code, Some(3));
    assert_eq!(got.duration_ms, 1500);
    let tr = s.read_transcript(&v, id, 3).await.unwrap();
    assert_eq!(tr.bytes, b"lo world");
    assert_eq!(tr.start_offset, 3);
    let list = s.list_sessions(&v, &SessionQuery::default()).await.unwrap();
    assert_eq!(list.sessions.len(), 1);
}
