//! End to end: the real `cmdop` recorder records real PTY sessions into the real `cmdop-inspector` server over
//! real sockets, on SQLite and on PostgreSQL (each test on each, with a database of its own).
//!
//! Needs the server binary next to `cmdop` (`cargo build -p cmdop-inspector-server`) and, for the PostgreSQL
//! half, PostgreSQL at `$CMDOP_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Recorded commands start with `stty -opost` so that the PTY passes their bytes unchanged (no `\n` to `\r\n`):
//! what the command printed is then exactly what the transcript must hold.

mod e2e_support;

use std::time::Duration;

use cmdop_protocol::live::{CLOSE_POLICY_VIOLATION, LiveEvent};
use cmdop_protocol::{ClientKind, EndReason, GapReason, Session, SessionState};
use cmdop_store::testing::TestStore;
use e2e_support::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// No test may take longer than this, whatever hangs.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// The largest record `cmdop` sends as one output frame (its outbox's `MAX_RECORD_BYTES`); the server stores
/// each frame as one chunk.
const RECORD_BYTES: u64 = 64 * 1024;

async fn run<F: Future<Output = ()>>(backend: cmdop_store::Backend, test: impl FnOnce(TestStore) -> F) {
    let t = TestStore::of(backend).await;
    if tokio::time::timeout(TEST_LIMIT, test(t)).await.is_err() {
        panic!("the test took longer than {TEST_LIMIT:?}");
    }
}

/// Each listed test runs once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(cmdop_store::Backend::Sqlite, super::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(cmdop_store::Backend::Postgres, super::$name).await } )*
        }
    };
}

on_both_backends!(
    a_recorded_session_is_stored_byte_for_byte_with_its_exit,
    a_server_killed_mid_stream_loses_and_duplicates_nothing,
    a_recorder_offline_past_its_buffer_leaves_one_exact_gap,
    a_server_gone_mid_session_leaves_one_exact_gap_in_the_middle,
    a_session_given_up_for_lost_gets_its_recorder_back,
    truncation_and_a_gap_add_up_to_what_was_printed,
    a_killed_recorder_ends_its_session_as_lost,
    the_ring_buffer_keeps_the_newest_output_and_says_what_it_dropped,
    live_viewers_follow_the_session_and_cannot_type_into_it,
    concurrent_recorders_each_get_exactly_their_own_output,
    an_interactive_recording_passes_keys_mirrors_output_and_records_resizes,
    a_token_without_a_grant_cannot_record_but_the_command_runs,
    session_list_and_attach_show_recorded_sessions,
);

/// `printf` lines of `stty -opost` scripts: SGR colors in 16, 256 and 24-bit flavours, then a `\r` progress bar.
const COLORS_SCRIPT: &str = r#"printf "\033[1;31mred\033[0m \033[38;5;208m256\033[0m \033[38;2;255;128;0mtrue\033[0m\n"; for p in 0 25 50 75 100; do printf "\rprogress %3d%%" $p; done; printf "\n""#;
const COLORS_BYTES: &[u8] = b"\x1b[1;31mred\x1b[0m \x1b[38;5;208m256\x1b[0m \x1b[38;2;255;128;0mtrue\x1b[0m\n\
      \rprogress   0%\rprogress  25%\rprogress  50%\rprogress  75%\rprogress 100%\n";

fn numbered_lines(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<u8> {
    range.flat_map(|i| format!("{prefix} {i:05}\n").into_bytes()).collect()
}

/// Test 1: colors, a progress bar and a megabyte of arbitrary bytes, exit code 3: stored exactly, with the
/// session's metadata right.
async fn a_recorded_session_is_stored_byte_for_byte_with_its_exit(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let server = env.start_server().await;
    let big = varied_bytes(1 << 20, 1);
    std::fs::write(env.path("big.bin"), &big).unwrap();
    let script = format!("stty -opost; {COLORS_SCRIPT}; cat big.bin; exit 3");
    let expected = [COLORS_BYTES, &big].concat();

    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &["--cols", "100", "--rows", "30"], &script);
    let id = recorder.session_id(&server.url).await;
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 3, "cmdop exits with the command's code; stderr:\n{stderr}");

    let api = Api::new(&server.url, &owner.token);
    let transcript = api.transcript(id).await;
    assert_eq!(
        (transcript.start_offset, transcript.total_bytes, transcript.truncated_bytes),
        (0, expected.len() as u64, 0)
    );
    assert_bytes_eq(&transcript.bytes, &expected, "the transcript");

    let (s, raw) = api.session(id).await;
    let documented = "id fleet fleet_id machine machine_id user user_id user_name command state end_reason started_at \
                      ended_at exit_code duration_ms cols rows clients chat_thread transcript";
    for field in documented.split_whitespace() {
        assert!(raw.get(field).is_some(), "the session JSON lacks {field}: {raw}");
    }
    assert_eq!((s.id, s.state, s.end_reason, s.exit_code), (id, SessionState::Ended, Some(EndReason::Exited), Some(3)));
    assert_eq!((s.fleet.as_str(), s.machine.as_str(), s.user.as_str()), (FLEET, MACHINE, owner.email.as_str()));
    assert_eq!(s.user_id, owner.id);
    assert_eq!(s.command, displayed(&script));
    assert_eq!((s.cols, s.rows), (100, 30));
    let ended_at = s.ended_at.expect("an ended session says when");
    assert!(ended_at >= s.started_at);
    assert_eq!(s.duration_ms, (ended_at - s.started_at).num_milliseconds() as u64);
    assert!(s.duration_ms > 0 && s.duration_ms < 60_000, "duration {} ms", s.duration_ms);
    assert_eq!(s.clients.len(), 1, "{:?}", s.clients);
    let recorder_client = &s.clients[0];
    assert_eq!((recorder_client.kind, recorder_client.name.as_str()), (ClientKind::Cli, CLIENT_NAME));
    assert!(recorder_client.detached_at.is_some(), "the recorder is detached once the session ended");
    let info = &s.transcript;
    assert_eq!(
        (info.total_bytes, info.retained_bytes, info.truncated_bytes),
        (expected.len() as u64, expected.len() as u64, 0)
    );
    assert!(info.gaps.is_empty(), "{:?}", info.gaps);
    assert!(!stderr.contains("not stored"), "cmdop reports lost output:\n{stderr}");
}

/// Test 2: the server hangs (SIGSTOP) and is then killed (SIGKILL) while output streams, and comes back on the
/// same port and database: what the recorder sent into the hung server was never stored and must be sent again,
/// what was stored must not be sent twice; the transcript is complete, nothing twice, no gap.
async fn a_server_killed_mid_stream_loses_and_duplicates_nothing(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let mut server = env.start_server().await;
    let api = Api::new(&server.url, &owner.token);
    // 300 numbered lines over ~3 s.
    let script =
        "stty -opost; i=0; while [ $i -lt 300 ]; do i=$((i+1)); printf \"line %05d\\n\" $i; sleep 0.01; done; exit 7";
    let expected = numbered_lines("line", 1..=300);

    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &[], script);
    let id = recorder.session_id(&server.url).await;
    let stored = eventually("a third of the output to be stored", WAIT, async || {
        let (s, _) = api.session(id).await;
        (s.transcript.total_bytes >= expected.len() as u64 / 3).then_some(s)
    })
    .await;
    server.freeze();
    assert_eq!(stored.state, SessionState::Active);
    assert!(stored.transcript.total_bytes < expected.len() as u64, "the server must die mid-stream");
    // The sleeps set the scene only (the assertions below hold whatever happened meanwhile): the recorder sends
    // output into the hung server's socket, then output piles up in its buffer while the server is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill9();
    recorder.wait_for_stderr("lost the server").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(recorder.running(), "the command should still be printing while the server is away");
    server.restart().await;

    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 7, "stderr:\n{stderr}");
    assert!(stderr.contains("reconnected to the server"), "stderr:\n{stderr}");
    let s = api.ended(id).await;
    assert_eq!((s.exit_code, s.end_reason), (Some(7), Some(EndReason::Exited)));
    assert_eq!(s.transcript.total_bytes, expected.len() as u64);
    assert_eq!(s.transcript.retained_bytes, expected.len() as u64);
    assert!(s.transcript.gaps.is_empty(), "{:?}", s.transcript.gaps);
    let transcript = api.transcript(id).await;
    assert_bytes_eq(&transcript.bytes, &expected, "the transcript after the server's restart");
    let sessions = api.sessions().await;
    assert_eq!(sessions.iter().map(|s| s.id).collect::<Vec<_>>(), [id], "the recorder resumed, not reopened");
}

/// Test 3: the server is not running while the command prints a megabyte into a 64 KiB buffer: once the server
/// comes, the session has exactly one gap, and the bytes kept are the right ones at the right offsets.
async fn a_recorder_offline_past_its_buffer_leaves_one_exact_gap(t: TestStore) {
    const BUFFER: u64 = 64 * 1024;
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let big = varied_bytes(1 << 20, 3);
    std::fs::write(env.path("big.bin"), &big).unwrap();
    let script = "stty -opost; cat big.bin; exit 0";

    // Nobody listens on the port yet.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut recorder = env.record(&url, &owner.token, MACHINE, &["--buffer-size", "64KiB"], script);
    recorder.wait_for_stderr("server unreachable").await;
    // Said once the command has exited and all its output is in the buffer (1 s into the flush wait): the
    // buffer is final, holding exactly its capacity.
    recorder.wait_for_stderr(&format!("{BUFFER} bytes not yet stored by the server")).await;

    let server = env.start_server_at(port).await;
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let lost = big.len() as u64 - BUFFER;
    assert!(
        stderr.contains(&format!("{lost} bytes were dropped because the local buffer (--buffer-size) filled")),
        "stderr:\n{stderr}"
    );

    let api = Api::new(&server.url, &owner.token);
    let id = recorder_session(&api).await;
    let s = api.ended(id).await;
    let info = &s.transcript;
    assert_eq!(info.gaps.len(), 1, "{:?}", info.gaps);
    let gap = &info.gaps[0];
    assert_eq!(gap.reason, GapReason::RecorderOffline);
    assert_eq!(info.total_bytes, big.len() as u64);
    assert_eq!(gap.bytes_lost + info.retained_bytes, big.len() as u64);
    assert_eq!((gap.at_offset, gap.bytes_lost, info.retained_bytes), (0, lost, BUFFER), "the oldest bytes went");
    assert_eq!(info.truncated_bytes, 0);

    let transcript = api.transcript(id).await;
    assert_eq!(transcript.bytes.len() as u64, info.retained_bytes);
    let runs = place(transcript.start_offset, &transcript.bytes, &info.gaps);
    assert!(!runs.is_empty());
    for (offset, bytes) in runs {
        let at = offset as usize;
        assert_bytes_eq(bytes, &big[at..at + bytes.len()], &format!("the retained bytes at offset {offset}"));
    }

    // A viewer from the start is told about the gap first, then gets the bytes kept.
    let log = read_live(live(&server.url, &owner.token, id, Some(0)).await).await;
    match &log.items[..2] {
        [
            LiveItem::Event(LiveEvent::Hello { from: 0, .. }),
            LiveItem::Event(LiveEvent::Gap { at_offset: 0, bytes_lost, reason }),
        ] => {
            assert_eq!((*bytes_lost, *reason), (lost, GapReason::RecorderOffline));
        }
        other => panic!("expected hello then the gap, got {other:?}"),
    }
    assert_bytes_eq(&log.bytes_from(0), &big[lost as usize..], "the live replay");
}

/// Test 3, the other way round: the session is open and stored up to a point when the server dies; the
/// command then prints a megabyte into the 64 KiB buffer. The gap sits in the middle, exactly, and viewers
/// and the transcript endpoint place the bytes on both sides of it.
async fn a_server_gone_mid_session_leaves_one_exact_gap_in_the_middle(t: TestStore) {
    const BUFFER: u64 = 64 * 1024;
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let mut server = env.start_server().await;
    let api = Api::new(&server.url, &owner.token);
    let big = varied_bytes(1 << 20, 33);
    std::fs::write(env.path("big.bin"), &big).unwrap();
    let head = numbered_lines("before", 1..=100);
    let script = "stty -opost; i=0; while [ $i -lt 100 ]; do i=$((i+1)); printf \"before %05d\\n\" $i; done; \
                  while [ ! -e go ]; do sleep 0.02; done; cat big.bin; exit 9";
    let expected = [head.as_slice(), &big].concat();

    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &["--buffer-size", "64KiB"], script);
    let id = recorder.session_id(&server.url).await;
    eventually("the first lines to be stored", WAIT, async || {
        let (s, _) = api.session(id).await;
        (s.transcript.total_bytes == head.len() as u64).then_some(())
    })
    .await;
    server.kill9();
    recorder.wait_for_stderr("lost the server").await;
    std::fs::write(env.path("go"), b"").unwrap();
    // Once the command has exited and its output is all in the (full) buffer.
    recorder.wait_for_stderr(&format!("{BUFFER} bytes not yet stored by the server")).await;
    server.restart().await;
    // A viewer from the start, connected as soon as the server is back: whether it sees the gap from the store
    // or as it is committed, it must see the same thing.
    let early = live(&server.url, &owner.token, id, Some(0)).await;
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 9, "stderr:\n{stderr}");

    let lost = big.len() as u64 - BUFFER;
    let s = api.ended(id).await;
    let info = &s.transcript;
    assert_eq!(info.total_bytes, expected.len() as u64);
    assert_eq!(info.gaps.len(), 1, "{:?}", info.gaps);
    let gap = &info.gaps[0];
    assert_eq!((gap.at_offset, gap.bytes_lost, gap.reason), (head.len() as u64, lost, GapReason::RecorderOffline));
    assert_eq!(gap.bytes_lost + info.retained_bytes, info.total_bytes);
    assert_eq!(info.truncated_bytes, 0);

    let transcript = api.transcript(id).await;
    assert_eq!(transcript.start_offset, 0);
    let runs = place(transcript.start_offset, &transcript.bytes, &info.gaps);
    assert_eq!(
        runs.iter().map(|(at, b)| (*at, b.len() as u64)).collect::<Vec<_>>(),
        [(0, head.len() as u64), (gap.at_offset + gap.bytes_lost, BUFFER)]
    );
    for (offset, bytes) in runs {
        let at = offset as usize;
        assert_bytes_eq(bytes, &expected[at..at + bytes.len()], &format!("the retained bytes at offset {offset}"));
    }

    let tail = &expected[(gap.at_offset + gap.bytes_lost) as usize..];
    let after = read_live(live(&server.url, &owner.token, id, Some(0)).await).await;
    for (name, log) in [("a viewer after the end", after), ("a viewer during the resume", read_live(early).await)] {
        let gaps: Vec<_> = log.events().into_iter().filter(|e| matches!(e, LiveEvent::Gap { .. })).cloned().collect();
        assert_eq!(
            gaps,
            [LiveEvent::Gap { at_offset: gap.at_offset, bytes_lost: lost, reason: GapReason::RecorderOffline }],
            "{name}"
        );
        assert_bytes_eq(&log.bytes_from(0), &[head.as_slice(), tail].concat(), name);
        assert!(matches!(log.exit(), LiveEvent::Exit { exit_code: Some(9), .. }), "{name}");
    }
}

/// Both at once: a gap in the middle (recorder offline) and a 64 KiB ring buffer that then drops what came
/// before it. Dropped, lost and kept bytes add up to what was printed, and a viewer from 0 is told which is which.
async fn truncation_and_a_gap_add_up_to_what_was_printed(t: TestStore) {
    const BUFFER: u64 = 64 * 1024;
    let env = Env::new(t).await;
    let owner = env.owner().await;
    env.admin(&["fleet", "set", FLEET, "--transcript-limit", "64KiB"]).await;
    let mut server = env.start_server().await;
    let api = Api::new(&server.url, &owner.token);
    let big = varied_bytes(1 << 20, 44);
    std::fs::write(env.path("big.bin"), &big).unwrap();
    let head = numbered_lines("before", 1..=100);
    let script = "stty -opost; i=0; while [ $i -lt 100 ]; do i=$((i+1)); printf \"before %05d\\n\" $i; done; \
                  while [ ! -e go ]; do sleep 0.02; done; cat big.bin";
    let expected = [head.as_slice(), &big].concat();

    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &["--buffer-size", "64KiB"], script);
    let id = recorder.session_id(&server.url).await;
    eventually("the first lines to be stored", WAIT, async || {
        let (s, _) = api.session(id).await;
        (s.transcript.total_bytes == head.len() as u64).then_some(())
    })
    .await;
    server.kill9();
    recorder.wait_for_stderr("lost the server").await;
    std::fs::write(env.path("go"), b"").unwrap();
    recorder.wait_for_stderr(&format!("{BUFFER} bytes not yet stored by the server")).await;
    server.restart().await;
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 0, "stderr:\n{stderr}");

    let s = api.ended(id).await;
    let info = &s.transcript;
    let lost = big.len() as u64 - BUFFER;
    assert_eq!(info.total_bytes, expected.len() as u64);
    assert_eq!(info.gaps.len(), 1, "{:?}", info.gaps);
    let gap = &info.gaps[0];
    assert_eq!((gap.at_offset, gap.bytes_lost, gap.reason), (head.len() as u64, lost, GapReason::RecorderOffline));
    assert_eq!(info.truncated_bytes + gap.bytes_lost + info.retained_bytes, info.total_bytes, "{info:?}");
    assert!(info.truncated_bytes > 0 && info.retained_bytes <= BUFFER + RECORD_BYTES, "{info:?}");

    let transcript = api.transcript(id).await;
    assert_eq!(transcript.bytes.len() as u64, info.retained_bytes);
    assert_eq!(transcript.truncated_bytes, info.truncated_bytes);
    let end = expected.len();
    assert_bytes_eq(&transcript.bytes, &expected[end - transcript.bytes.len()..], "the bytes kept");
    assert_eq!(transcript.start_offset as usize, end - transcript.bytes.len());

    let log = read_live(live(&server.url, &owner.token, id, Some(0)).await).await;
    let gaps = log.check_against(0, &expected);
    // The head went to the ring buffer (possibly only part of it), the middle was lost offline.
    assert!(gaps.contains(&(gap.at_offset, lost, GapReason::RecorderOffline)), "{gaps:?}");
    let truncated: u64 = gaps.iter().filter(|g| g.2 == GapReason::Truncated).map(|g| g.1).sum();
    assert_eq!(truncated, info.truncated_bytes, "{gaps:?}");
}

/// The server stays away longer than the recorder grace, and a server on another port (same database) gives
/// the session up as `recorder_lost`; when the recorder reaches its server again, the session goes on and ends
/// with the command's exit, complete.
async fn a_session_given_up_for_lost_gets_its_recorder_back(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let grace = ["--recorder-grace", "1s"];
    let mut server = env.start_server_with(&grace).await;
    let api = Api::new(&server.url, &owner.token);
    let script =
        "stty -opost; printf \"first\\n\"; while [ ! -e go ]; do sleep 0.02; done; printf \"second\\n\"; exit 6";

    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &[], script);
    let id = recorder.session_id(&server.url).await;
    eventually("the first line to be stored", WAIT, async || {
        let (s, _) = api.session(id).await;
        (s.transcript.total_bytes == 6).then_some(())
    })
    .await;
    server.kill9();
    recorder.wait_for_stderr("lost the server").await;

    // Elsewhere, the recorder is given up for lost (the grace is 1 s).
    let other = env.start_server_with(&grace).await;
    let other_api = Api::new(&other.url, &owner.token);
    let lost = eventually("the session to be given up", WAIT, async || {
        let (s, _) = other_api.session(id).await;
        (s.state == SessionState::Ended).then_some(s)
    })
    .await;
    assert_eq!((lost.end_reason, lost.exit_code), (Some(EndReason::RecorderLost), None));
    let viewer = live(&other.url, &owner.token, id, None).await;
    let seen = read_live(viewer).await;
    assert!(matches!(seen.exit(), LiveEvent::Exit { end_reason: Some(EndReason::RecorderLost), exit_code: None, .. }));
    drop(other);

    server.restart().await;
    recorder.wait_for_stderr("reconnected to the server").await;
    // The session goes on, with its recorder attached again.
    let (s, _) = api.session(id).await;
    assert_eq!((s.state, s.end_reason), (SessionState::Active, None), "{s:?}");
    let mut viewer = live(&server.url, &owner.token, id, None).await;
    let clients = loop {
        if let LiveItem::Event(LiveEvent::Clients { clients }) = next_item(&mut viewer).await.expect("live events") {
            break clients;
        }
    };
    assert!(clients.iter().any(|c| c.kind == ClientKind::Cli && c.name == CLIENT_NAME), "{clients:?}");
    std::fs::write(env.path("go"), b"").unwrap();
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 6, "stderr:\n{stderr}");
    let seen = read_live(viewer).await;
    assert_bytes_eq(&seen.bytes_from(6), b"second\n", "the viewer of the resumed session");
    let s = api.ended(id).await;
    assert_eq!((s.end_reason, s.exit_code), (Some(EndReason::Exited), Some(6)), "{s:?}");
    assert_eq!(api.transcript(id).await.bytes, b"first\nsecond\n");
    assert!(s.transcript.gaps.is_empty(), "{:?}", s.transcript.gaps);
    let recorders: Vec<_> = s.clients.iter().filter(|c| c.kind == ClientKind::Cli).collect();
    assert!(!recorders.is_empty() && recorders.iter().all(|c| c.detached_at.is_some()), "{:?}", s.clients);
}

/// `cmdop` itself is killed: its session ends as `recorder_lost` after the grace, with what was stored, and a
/// viewer following it is told.
async fn a_killed_recorder_ends_its_session_as_lost(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let server = env.start_server_with(&["--recorder-grace", "1s"]).await;
    let api = Api::new(&server.url, &owner.token);
    let script = "stty -opost; printf \"still here\\n\"; while true; do sleep 0.05; done";

    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &[], script);
    let id = recorder.session_id(&server.url).await;
    eventually("the first line to be stored", WAIT, async || {
        let (s, _) = api.session(id).await;
        (s.transcript.total_bytes == 11).then_some(())
    })
    .await;
    let viewer = live(&server.url, &owner.token, id, None).await;
    recorder.kill9().await;

    let log = read_live(viewer).await;
    assert_eq!(log.bytes_from(0), b"still here\n");
    assert!(
        matches!(
            log.exit(),
            LiveEvent::Exit { end_reason: Some(EndReason::RecorderLost), exit_code: None, total_bytes: 11, .. }
        ),
        "{:?}",
        log.exit()
    );
    let s = api.ended(id).await;
    assert_eq!((s.end_reason, s.exit_code), (Some(EndReason::RecorderLost), None));
    assert_eq!(api.transcript(id).await.bytes, b"still here\n");
}

/// Two replicas on one PostgreSQL database: the recorder streams into one, a viewer follows on the other (which
/// learns of new output through the database's notifications and reads it from the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_serve_each_others_live_sessions() {
    run(cmdop_store::Backend::Postgres, async |t| {
        let env = Env::new(t).await;
        let owner = env.owner().await;
        let a = env.start_server().await;
        let b = env.start_server().await;
        let script = "stty -opost; while [ ! -e go ]; do sleep 0.02; done; \
                      i=0; while [ $i -lt 30 ]; do i=$((i+1)); printf \"tick %05d\\n\" $i; sleep 0.03; done; exit 3";
        let expected = numbered_lines("tick", 1..=30);
        let mut recorder = env.record(&a.url, &owner.token, MACHINE, &[], script);
        let id = recorder.session_id(&a.url).await;
        let mut viewer = live(&b.url, &owner.token, id, Some(0)).await;
        let mut seen = LiveLog::default();
        while !matches!(seen.items.last(), Some(LiveItem::Event(LiveEvent::Live { .. }))) {
            seen.items.push(next_item(&mut viewer).await.expect("the replay"));
        }
        std::fs::write(env.path("go"), b"").unwrap();
        // Output arrives while the command still prints (~1 s), not only at the end.
        while !matches!(seen.items.last(), Some(LiveItem::Bytes(..))) {
            seen.items.push(next_item(&mut viewer).await.expect("live output"));
        }
        assert!(recorder.running(), "the first output reached the other replica's viewer only after the end");
        let rest = read_live(viewer).await;
        seen.items.extend(rest.items);
        assert_eq!(recorder.finish().await.0, 3);
        assert_bytes_eq(&seen.bytes_from(0), &expected, "the viewer on the other replica");
        assert!(matches!(seen.exit(), LiveEvent::Exit { exit_code: Some(3), .. }), "{:?}", seen.exit());
        assert_eq!(rest.close.map(|c| c.0), Some(1000));
    })
    .await;
}

/// No server ever answers: the command runs all the same, and `cmdop` leaves with its exit code once the flush
/// timeout is over, saying how much was not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_cmdop_gives_up_after_the_flush_timeout() {
    let env = Env::new(TestStore::sqlite().await).await;
    let url = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let recorder = env.record(&url, "cmdop_nobody", MACHINE, &["--flush-timeout", "1"], "printf abc; exit 4");
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 4, "stderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(stderr.contains("server unreachable at"), "stderr:\n{stderr}");
    assert!(
        stderr.contains("gave up after 1s (--flush-timeout): 3 bytes of output were not stored"),
        "stderr:\n{stderr}"
    );
}

/// The one session a fresh database has.
async fn recorder_session(api: &Api) -> Uuid {
    let sessions = api.sessions().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    sessions[0].id
}

/// Test 4: a fleet limited to 64 KiB records a megabyte: the oldest output goes, the counts say so, and both
/// the transcript endpoint and a live viewer say where the kept output starts.
async fn the_ring_buffer_keeps_the_newest_output_and_says_what_it_dropped(t: TestStore) {
    const LIMIT: u64 = 64 * 1024;
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let said = env.admin(&["fleet", "set", FLEET, "--transcript-limit", "64KiB"]).await;
    assert!(said.contains(&format!("transcript limit {LIMIT} bytes")), "{said}");
    let server = env.start_server().await;
    let big = varied_bytes(1 << 20, 4);
    std::fs::write(env.path("big.bin"), &big).unwrap();

    let script = "stty -opost; while [ ! -e go ]; do sleep 0.02; done; cat big.bin";
    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &[], script);
    let id = recorder.session_id(&server.url).await;
    // A viewer follows while the ring buffer drops output: what it gets must be true bytes at true offsets,
    // with gaps (if it ever falls behind what is kept) for the rest.
    let watching = live(&server.url, &owner.token, id, Some(0)).await;
    std::fs::write(env.path("go"), b"").unwrap();
    let (code, stderr) = recorder.finish().await;
    let watched = read_live(watching).await;
    for (_, _, reason) in watched.check_against(0, &big) {
        assert_eq!(reason, GapReason::Truncated);
    }
    assert!(matches!(watched.exit(), LiveEvent::Exit { exit_code: Some(0), .. }));
    assert_eq!(code, 0, "stderr:\n{stderr}");

    let api = Api::new(&server.url, &owner.token);
    let s = api.ended(id).await;
    let info = &s.transcript;
    assert_eq!(info.total_bytes, big.len() as u64);
    assert!(info.truncated_bytes > 0, "{info:?}");
    assert!(info.retained_bytes > 0 && info.retained_bytes <= LIMIT + RECORD_BYTES, "{info:?}");
    assert_eq!(info.retained_bytes + info.truncated_bytes, info.total_bytes, "{info:?}");
    assert!(info.gaps.is_empty(), "ring buffer truncation is not a declared gap: {:?}", info.gaps);

    let transcript = api.transcript(id).await;
    let start = transcript.start_offset;
    assert_eq!(
        (start, transcript.truncated_bytes, transcript.total_bytes),
        (info.truncated_bytes, info.truncated_bytes, info.total_bytes)
    );
    assert_bytes_eq(&transcript.bytes, &big[start as usize..], "the retained suffix");

    // From 0: hello, then a `truncated` gap of exactly what was dropped, then the kept output, then the exit.
    let log = read_live(live(&server.url, &owner.token, id, Some(0)).await).await;
    match &log.items[..2] {
        [LiveItem::Event(LiveEvent::Hello { from: 0, total_bytes, .. }), LiveItem::Event(gap)] => {
            assert_eq!(*total_bytes, big.len() as u64);
            assert_eq!(*gap, LiveEvent::Gap { at_offset: 0, bytes_lost: start, reason: GapReason::Truncated });
        }
        other => panic!("expected hello then a truncated gap, got {other:?}"),
    }
    assert_bytes_eq(&log.bytes_from(0), &big[start as usize..], "the live replay from 0");
    assert!(
        matches!(log.exit(), LiveEvent::Exit { exit_code: Some(0), total_bytes, .. } if *total_bytes == big.len() as u64)
    );
    assert_eq!(log.close.as_ref().map(|c| c.0), Some(1000));

    // From inside the dropped part: the gap covers just the rest of it.
    let log = read_live(live(&server.url, &owner.token, id, Some(10)).await).await;
    let gap = log.events().into_iter().find(|e| matches!(e, LiveEvent::Gap { .. })).cloned();
    assert_eq!(gap, Some(LiveEvent::Gap { at_offset: 10, bytes_lost: start - 10, reason: GapReason::Truncated }));
    assert_bytes_eq(&log.bytes_from(10), &big[start as usize..], "the live replay from 10");
    // From within the kept part: no gap at all.
    let from = start + 100;
    let log = read_live(live(&server.url, &owner.token, id, Some(from)).await).await;
    assert!(!log.events().iter().any(|e| matches!(e, LiveEvent::Gap { .. })), "{:?}", log.events());
    assert_bytes_eq(&log.bytes_from(from), &big[from as usize..], "the live replay from the kept part");
}

/// Test 5: viewers follow a session as it streams, each from where it asked; viewers that try to send input
/// are thrown out with 1008 and nothing they sent reaches the command (the PTY echoes input: any byte that
/// arrived would be in the transcript).
async fn live_viewers_follow_the_session_and_cannot_type_into_it(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let server = env.start_server().await;
    let api = Api::new(&server.url, &owner.token);
    let script = "stty -opost; printf \"hello viewers\\n\"; i=0; while [ $i -lt 5 ]; do i=$((i+1)); printf \"tick %05d\\n\" $i; done; \
                  while [ ! -e go ]; do sleep 0.02; done; \
                  while [ $i -lt 45 ]; do i=$((i+1)); printf \"tick %05d\\n\" $i; sleep 0.05; done; exit 5";
    let head = [b"hello viewers\n".as_slice(), &numbered_lines("tick", 1..=5)].concat();
    let expected = [head.as_slice(), &numbered_lines("tick", 6..=45)].concat();
    const FROM: u64 = 20;

    let mut recorder = env.record(&server.url, &owner.token, MACHINE, &[], script);
    let id = recorder.session_id(&server.url).await;
    eventually("the first lines to be stored", WAIT, async || {
        let (s, _) = api.session(id).await;
        (s.transcript.total_bytes == head.len() as u64).then_some(())
    })
    .await;

    let a = live(&server.url, &owner.token, id, None).await;
    let b = live(&server.url, &owner.token, id, Some(0)).await;
    let c = live(&server.url, &owner.token, id, Some(FROM)).await;
    // From an offset not yet printed: it gets the output from there once it comes.
    let ahead = head.len() as u64 + 8 * 3;
    let e = live(&server.url, &owner.token, id, Some(ahead)).await;
    // One that pings, then jumps back with `resume`.
    let mut f = live(&server.url, &owner.token, id, Some(0)).await;
    let mut replayed = LiveLog::default();
    while !matches!(replayed.items.last(), Some(LiveItem::Event(LiveEvent::Live { .. }))) {
        replayed.items.push(next_item(&mut f).await.expect("the replay before `live`"));
    }
    assert_bytes_eq(&replayed.bytes_from(0), &head, "the replay before `live`");
    f.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    f.send(Message::text(r#"{"type":"resume","from":5}"#)).await.unwrap();

    // Input from viewers: a binary frame, and a made-up `input` event.
    let binary = live(&server.url, &owner.token, id, None).await;
    let close = violate(binary, Message::binary(b"ls\n".to_vec())).await;
    assert_eq!(close.map(|c| c.0), Some(CLOSE_POLICY_VIOLATION), "a binary frame from a viewer");
    let text = live(&server.url, &owner.token, id, None).await;
    let close = violate(text, Message::text(r#"{"type":"input","data":"ls\n"}"#)).await;
    assert_eq!(close.map(|c| c.0), Some(CLOSE_POLICY_VIOLATION), "an input event from a viewer");
    assert!(recorder.running(), "the command was still running when the viewers tried to type");

    std::fs::write(env.path("go"), b"").unwrap();
    let (a, b, c, e, f) = tokio::join!(read_live(a), read_live(b), read_live(c), read_live(e), read_live(f));
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 5, "stderr:\n{stderr}");

    let transcript = api.transcript(id).await;
    assert_bytes_eq(&transcript.bytes, &expected, "the transcript (nothing a viewer sent may appear)");
    let from_a = a.bytes_from(0);
    assert_bytes_eq(&from_a, &expected, "viewer A");
    assert_bytes_eq(&b.bytes_from(0), &from_a, "viewer B, compared with A");
    assert_bytes_eq(&c.bytes_from(FROM), &expected[FROM as usize..], "the viewer from 20");
    assert_bytes_eq(&e.bytes_from(ahead), &expected[ahead as usize..], "the viewer from ahead of the output");
    assert!(f.events().contains(&&LiveEvent::Pong), "a ping is answered: {:?}", f.events());
    assert_bytes_eq(&f.bytes_from(5), &expected[5..], "the viewer after its resume from 5");
    for (name, log, from) in [("A", &a, 0), ("B", &b, 0), ("C", &c, FROM), ("E", &e, ahead)] {
        assert!(
            matches!(log.items.first(), Some(LiveItem::Event(LiveEvent::Hello { from: f, .. })) if *f == from),
            "viewer {name} starts with hello from {from}: {:?}",
            log.items.first()
        );
        let exit = log.exit();
        assert!(
            matches!(exit, LiveEvent::Exit { exit_code: Some(5), end_reason: Some(EndReason::Exited), total_bytes, .. }
                if *total_bytes == expected.len() as u64),
            "viewer {name}: {exit:?}"
        );
        assert_eq!(log.close.as_ref().map(|c| c.0), Some(1000), "viewer {name} closes normally");
        assert!(log.events().iter().any(|e| matches!(e, LiveEvent::Live { .. })), "viewer {name} reached the tail");
        let saw_recorder = log.events().iter().any(|e| match e {
            LiveEvent::Clients { clients } => {
                clients.iter().any(|c| c.kind == ClientKind::Cli && c.name == CLIENT_NAME)
            }
            _ => false,
        });
        assert!(saw_recorder, "viewer {name} was told the recorder is attached: {:?}", log.events());
    }

    // After the end: a replay from the store alone.
    let d = read_live(live(&server.url, &owner.token, id, Some(FROM)).await).await;
    assert_bytes_eq(&d.bytes_from(FROM), &expected[FROM as usize..], "a viewer from 20 after the end");
    assert!(matches!(d.exit(), LiveEvent::Exit { exit_code: Some(5), .. }));

    // Every viewer that came while the session ran was an attached browser client, and is detached now.
    let (s, _) = api.session(id).await;
    let browsers: Vec<_> = s.clients.iter().filter(|c| c.kind == ClientKind::Browser).collect();
    assert_eq!(browsers.len(), 7, "A, B, C, E, F and the two thrown out: {:?}", s.clients);
    assert!(s.clients.iter().all(|c| c.detached_at.is_some()), "{:?}", s.clients);
}

/// Several recorders at once go through the server's one group-committing writer: each session gets exactly
/// its own bytes.
async fn concurrent_recorders_each_get_exactly_their_own_output(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let server = env.start_server().await;
    let api = Api::new(&server.url, &owner.token);
    let outputs: Vec<Vec<u8>> = (0..3).map(|i| varied_bytes(512 * 1024 + i * 1000, 10 + i as u64)).collect();
    let mut recorders = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        std::fs::write(env.path(&format!("out{i}.bin")), output).unwrap();
        // The last one is killed by a signal: 128 + 9.
        let end = if i == 2 { "kill -9 $$".to_string() } else { format!("exit {i}") };
        let script = format!("stty -opost; while [ ! -e go ]; do sleep 0.02; done; cat out{i}.bin; {end}");
        let mut recorder = env.record(&server.url, &owner.token, MACHINE, &[], &script);
        let id = recorder.session_id(&server.url).await;
        recorders.push((id, recorder));
    }
    std::fs::write(env.path("go"), b"").unwrap();
    for (i, (id, recorder)) in recorders.into_iter().enumerate() {
        let expected_code = if i == 2 { 137 } else { i as i32 };
        let (code, stderr) = recorder.finish().await;
        assert_eq!(code, expected_code, "stderr:\n{stderr}");
        let s = api.ended(id).await;
        assert_eq!((s.exit_code, s.end_reason), (Some(expected_code), Some(EndReason::Exited)));
        assert_eq!(s.transcript.total_bytes, outputs[i].len() as u64);
        assert_bytes_eq(&api.transcript(id).await.bytes, &outputs[i], &format!("session {i}"));
    }
}

/// Not headless, in a terminal: the terminal goes raw, keys reach the command, its output is mirrored byte
/// for byte, a resize reaches the command and the recording, and the terminal is restored at the end.
async fn an_interactive_recording_passes_keys_mirrors_output_and_records_resizes(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let server = env.start_server().await;
    let api = Api::new(&server.url, &owner.token);
    let script = "stty -opost; printf \"ready\\n\"; read line; printf \"got %s\\n\" \"$line\"; \
                  while [ ! -e go ]; do sleep 0.02; done; printf \"size %s\\n\" \"$(stty size)\"; exit 2";
    let mut terminal = env.record_interactively(&server.url, &owner.token, script, 100, 30);
    terminal.wait_for("ready\n").await;
    assert!(!terminal.cooked(), "cmdop puts its terminal in raw mode");
    terminal.type_keys(b"hello\r");
    terminal.wait_for("got hello\n").await;
    terminal.resize(120, 40);
    let id = eventually("the session", WAIT, async || api.sessions().await.first().map(|s| s.id)).await;
    let before_resize: &[u8] = b"ready\nhello\ngot hello\n";
    // Once the resize is recorded (and so handled by cmdop), the command may look at its size.
    let mut viewer = live(&server.url, &owner.token, id, Some(0)).await;
    while !matches!(next_item(&mut viewer).await, Ok(LiveItem::Event(LiveEvent::Resize { cols: 120, .. }))) {}
    drop(viewer);
    std::fs::write(env.path("go"), b"").unwrap();
    assert_eq!(terminal.finish().await, 2);
    assert!(terminal.cooked(), "cmdop restores its terminal");

    // The PTY echoed the typed line (that is what a terminal shows): "hello\n" between the two outputs.
    let expected = [before_resize, b"size 40 120\n"].concat();
    assert_bytes_eq(&api.transcript(id).await.bytes, &expected, "the transcript");
    let s = api.ended(id).await;
    assert_eq!((s.exit_code, s.cols, s.rows), (Some(2), 100, 30), "the size it started with");
    // Mirrored unchanged: the terminal shows the transcript, and cmdop's notices ("cmdop: ...\r\n", whenever
    // they happen).
    let mut screen = String::from_utf8_lossy(&terminal.screen()).into_owned();
    let mut notices = Vec::new();
    while let Some(at) = screen.find("cmdop: ") {
        let end = at + screen[at..].find("\r\n").expect("a notice ends its line") + 2;
        notices.push(screen[at..end].to_string());
        screen.replace_range(at..end, "");
    }
    assert_eq!(notices, [format!("cmdop: recording {}/sessions/{id}\r\n", server.url)]);
    assert_bytes_eq(screen.as_bytes(), &expected, "what the terminal showed");

    let log = read_live(live(&server.url, &owner.token, id, Some(0)).await).await;
    let resizes: Vec<_> = log.events().into_iter().filter(|e| matches!(e, LiveEvent::Resize { .. })).cloned().collect();
    assert_eq!(resizes, [LiveEvent::Resize { offset: before_resize.len() as u64, cols: 120, rows: 40 }]);
    // Viewers starting at or after the resize learn the size in effect where they start, once.
    for from in [before_resize.len() as u64, before_resize.len() as u64 + 2] {
        let log = read_live(live(&server.url, &owner.token, id, Some(from)).await).await;
        let resizes: Vec<_> =
            log.events().into_iter().filter(|e| matches!(e, LiveEvent::Resize { .. })).cloned().collect();
        assert_eq!(resizes, [LiveEvent::Resize { offset: from, cols: 120, rows: 40 }], "from {from}");
        assert_bytes_eq(&log.bytes_from(from), &expected[from as usize..], &format!("a viewer from {from}"));
    }
}

/// Test 6: a plain member without a grant for the machine (set up with the admin CLI): the recording is
/// refused with a message naming the machine, the command runs anyway, and no session exists.
async fn a_token_without_a_grant_cannot_record_but_the_command_runs(t: TestStore) {
    let env = Env::new(t).await;
    for args in [
        &["fleet", "create", "globex"][..],
        &["member", "add", "boss@globex.io", "--bot"],
        &["member", "add", "intern@globex.io", "--bot"],
        &["member", "join", "boss@globex.io", "globex", "--role", "owner"],
        &["member", "join", "intern@globex.io", "globex", "--role", "member"],
        &["machine", "add", "globex", "db-1"],
        &["machine", "add", "globex", "web-2"],
        &["grant", "intern@globex.io", "globex", "web-2"],
    ] {
        env.admin(args).await;
    }
    let token_of = async |email: &str| {
        let out = env.admin(&["token", "create", email, "--name", "e2e"]).await;
        assert!(out.contains("shown once"), "{out}");
        out.lines().last().unwrap().trim().to_string()
    };
    let intern = token_of("intern@globex.io").await;
    let boss = token_of("boss@globex.io").await;
    let server = env.start_server().await;

    let recorder = env.record(&server.url, &intern, "db-1", &[], "echo ran > ran.txt; exit 4");
    let (code, stderr) = recorder.finish().await;
    assert_eq!(code, 4, "cmdop exits with the command's code; stderr:\n{stderr}");
    assert_eq!(std::fs::read_to_string(env.path("ran.txt")).unwrap(), "ran\n", "the command ran");
    assert!(stderr.contains("refused the recording"), "stderr:\n{stderr}");
    assert!(stderr.contains("\"db-1\""), "the error names the machine; stderr:\n{stderr}");
    assert!(!stderr.contains("cmdop: recording"), "stderr:\n{stderr}");

    // The same token may record on the machine it was granted (so the refusal was about the grant).
    let mut recorder = env.record(&server.url, &intern, "web-2", &[], "exit 0");
    let granted = recorder.session_id(&server.url).await;
    assert_eq!(recorder.finish().await.0, 0);

    let sessions = Api::new(&server.url, &boss).sessions().await;
    assert!(sessions.iter().all(|s| s.machine != "db-1"), "no session on db-1: {sessions:?}");
    assert_eq!(sessions.iter().map(|s| s.id).collect::<Vec<_>>(), [granted]);

    // The owner records on db-1; the member sees nothing of it: the API answers as if it did not exist.
    let mut recorder = env.record(&server.url, &boss, "db-1", &[], "echo secret; exit 0");
    let hidden = recorder.session_id(&server.url).await;
    assert_eq!(recorder.finish().await.0, 0);
    let intern_api = Api::new(&server.url, &intern);
    assert_eq!(intern_api.sessions().await.iter().map(|s| s.id).collect::<Vec<_>>(), [granted]);
    for path in [format!("/api/v1/sessions/{hidden}"), format!("/api/v1/sessions/{hidden}/transcript")] {
        assert_eq!(intern_api.status(&path).await, 404, "{path}");
    }
    assert_eq!(live_refused(&server.url, &intern, hidden).await, 404, "the live view of an invisible session");
}

/// Test 7: `cmdop session list --json` and `cmdop session attach ID --json` against the real server.
async fn session_list_and_attach_show_recorded_sessions(t: TestStore) {
    let env = Env::new(t).await;
    let owner = env.owner().await;
    let server = env.start_server().await;

    let mut done =
        env.record(&server.url, &owner.token, MACHINE, &[], "stty -opost; printf \"hello from e2e\\n\"; exit 2");
    let ended = done.session_id(&server.url).await;
    assert_eq!(done.finish().await.0, 2);
    let mut running =
        env.record(&server.url, &owner.token, MACHINE, &[], "while [ ! -e go ]; do sleep 0.02; done; exit 0");
    let active = running.session_id(&server.url).await;

    let cmdop_json = async |args: &[&str]| -> serde_json::Value {
        let mut cmd = env.cmdop();
        cmd.args(args).args(["--server", &server.url, "--json"]).env("CMDOP_TOKEN", &owner.token);
        let out = within(&format!("cmdop {args:?}"), WAIT, cmd.output()).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cmdop {args:?}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("cmdop {args:?} printed no JSON ({e}):\n{stdout}"))
    };

    let all: Vec<Session> = serde_json::from_value(cmdop_json(&["session", "list"]).await).unwrap();
    assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), [active, ended], "newest first");
    let (a, e) = (&all[0], &all[1]);
    assert_eq!((a.state, a.exit_code), (SessionState::Active, None));
    assert_eq!((e.state, e.exit_code, e.transcript.total_bytes), (SessionState::Ended, Some(2), 15));
    assert_eq!((e.machine.as_str(), e.user.as_str()), (MACHINE, owner.email.as_str()));

    let only_active: Vec<Session> = serde_json::from_value(cmdop_json(&["session", "list", "--active"]).await).unwrap();
    assert_eq!(only_active.iter().map(|s| s.id).collect::<Vec<_>>(), [active]);

    let raw = cmdop_json(&["session", "attach", &ended.to_string()]).await;
    let s: Session = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(
        (s.id, s.state, s.end_reason, s.exit_code),
        (ended, SessionState::Ended, Some(EndReason::Exited), Some(2))
    );
    assert_eq!((s.transcript.total_bytes, s.transcript.retained_bytes), (15, 15));
    assert_eq!(s.command, displayed("stty -opost; printf \"hello from e2e\\n\"; exit 2"));
    assert!(s.clients.iter().any(|c| c.kind == ClientKind::Cli && c.name == CLIENT_NAME), "{:?}", s.clients);
    assert_eq!(raw["transcript"]["total_bytes"], 15);
    let transcript = Api::new(&server.url, &owner.token).transcript(ended).await;
    assert_eq!(transcript.bytes, b"hello from e2e\n");

    let missing = Uuid::now_v7();
    let mut cmd = env.cmdop();
    cmd.args(["session", "attach", &missing.to_string(), "--json", "--server", &server.url])
        .env("CMDOP_TOKEN", &owner.token);
    let out = within("cmdop session attach of a missing id", WAIT, cmd.output()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));

    std::fs::write(env.path("go"), b"").unwrap();
    assert_eq!(running.finish().await.0, 0);
}
