//! The recording side of the store, on SQLite and PostgreSQL: group-commit appends (idempotent resends, conflicts,
//! all-or-nothing batches), declared gaps, resizes, the ring buffer, bounded transcript pages and `pieces()`,
//! recorder-lost sessions, recordable machines, detaching clients by member, and chat threads.
//!
//! Expectations come from the tests' own data (and, for the ring buffer, a small model of it), not from the
//! implementation.

use std::collections::{BTreeSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use cmdop_protocol::{ChatThreadRef, ClientKind, EndReason, GapInfo, GapReason, SessionState, TranscriptInfo};
use cmdop_store::testing::{TestStore, new_session};
use cmdop_store::*;
use uuid::Uuid;

cmdop_store::for_each_backend!(
    // append_batch
    batch_binary_bytes_round_trip,
    batch_resend_with_other_chunking_is_a_no_op,
    batch_disagreeing_resend_conflicts_and_changes_nothing,
    batch_hole_conflicts_and_changes_nothing,
    batch_several_sessions_in_order,
    batch_failure_rolls_back_every_session,
    // gaps
    gap_at_the_end_advances_the_transcript,
    gap_resend_is_a_no_op_and_other_gaps_conflict,
    gap_before_the_first_byte,
    // resizes
    resizes_are_stored_and_read_from_an_offset,
    resizes_after_a_gap_are_read,
    // ring buffer
    ring_buffer_drops_the_oldest_whole_chunks,
    ring_buffer_follows_the_fleets_limit_as_it_changes,
    // deleting
    deleting_a_session_deletes_its_transcript,
    // pages
    pages_concatenate_to_the_whole_transcript,
    // recorder lost
    lost_recorders_end_their_sessions,
    reopen_lost_session_makes_it_active_again,
    recording_state_reports_the_session,
    // recordable machines
    recordable_machine_follows_roles_and_grants,
    recordable_machine_in_two_fleets_needs_the_fleet,
    // clients
    detach_client_by_member_only_detaches_their_own,
    session_head_is_the_session_without_its_clients_and_as_visible,
    // chat
    chat_thread_needs_fleet_membership,
    chat_messages_come_back_in_order_with_authors,
    chat_thread_is_visible_to_a_share_of_its_session,
);

// ------------------------------------------------------------------------------------------------------------
// helpers

/// A fleet "acme" with machine "web-1" and its owner.
struct Fx {
    fleet: Fleet,
    machine: Machine,
    owner: Member,
}

impl Fx {
    fn viewer(&self) -> Viewer {
        Viewer::Member(self.owner.id)
    }
}

async fn fixture(t: &TestStore) -> Fx {
    let fleet = t.store.create_fleet("acme").await.unwrap();
    let machine = t.store.create_machine(fleet.id, "web-1").await.unwrap();
    let owner = member_in(t, "owner@example.com", &fleet, Role::Owner).await;
    Fx { fleet, machine, owner }
}

async fn member(t: &TestStore, email: &str, name: &str) -> Member {
    let new = NewMember { email: email.into(), display_name: name.into(), password_hash: None, is_bot: false };
    t.store.create_member(new).await.unwrap()
}

async fn member_in(t: &TestStore, email: &str, fleet: &Fleet, role: Role) -> Member {
    let m = member(t, email, "").await;
    t.store.add_fleet_member(fleet.id, m.id, role).await.unwrap();
    m
}

/// A session on the fixture's machine, started by its owner.
async fn start(t: &TestStore, fx: &Fx) -> Uuid {
    t.store.create_session(new_session(&fx.machine, &fx.owner)).await.unwrap()
}

fn out(offset: u64, bytes: &[u8]) -> TranscriptWrite {
    TranscriptWrite::Output(OutputChunk { offset, t_ms: offset * 2, bytes: bytes.to_vec() })
}

fn gap(at_offset: u64, bytes_lost: u64) -> TranscriptWrite {
    TranscriptWrite::Gap { at_offset, bytes_lost }
}

fn resize(offset: u64, cols: u16, rows: u16) -> TranscriptWrite {
    TranscriptWrite::Resize { offset, t_ms: offset * 2, cols, rows }
}

fn resize_at(offset: u64, cols: u16, rows: u16) -> ResizeAt {
    ResizeAt { offset, cols, rows }
}

fn offline(at_offset: u64, bytes_lost: u64) -> Gap {
    Gap { at_offset, bytes_lost, reason: GapReason::RecorderOffline }
}

/// `data` as output written from `offset` on, cut into chunks whose sizes cycle through `sizes`.
fn outputs(offset: u64, data: &[u8], sizes: &[usize]) -> Vec<TranscriptWrite> {
    let mut writes = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let n = (*size).min(data.len() - at);
        writes.push(out(offset + at as u64, &data[at..at + n]));
        at += n;
    }
    writes
}

/// Deterministic pseudo-random bytes (xorshift).
fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Every byte value, invalid UTF-8, terminal escapes and NULs.
fn binary_bytes() -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).rev().collect();
    data.extend_from_slice(&[0xC3, 0x28, 0xA0, 0xA1, 0xE2, 0x28, 0xA1, 0xED, 0xA0, 0x80, 0xFF, 0xFE, 0xE2, 0x82]);
    data.extend_from_slice("\x1b[1;31mérreur ✗ 失败\x1b[0m\r\n\0\0".as_bytes());
    data.extend(pseudo_random(5_000, 7));
    assert!(std::str::from_utf8(&data).is_err());
    data
}

async fn info(t: &TestStore, viewer: &Viewer, id: Uuid) -> TranscriptInfo {
    t.store.session(viewer, id).await.unwrap().transcript
}

async fn read_all(t: &TestStore, viewer: &Viewer, id: Uuid) -> TranscriptSlice {
    t.store.read_transcript(viewer, id, 0).await.unwrap()
}

/// The session holds exactly `want` from offset 0, without gaps or truncation.
async fn check_stored(t: &TestStore, viewer: &Viewer, id: Uuid, want: &[u8]) {
    let len = want.len() as u64;
    let i = info(t, viewer, id).await;
    assert_eq!((i.total_bytes, i.retained_bytes, i.truncated_bytes), (len, len, 0), "counters of {id}");
    assert!(i.gaps.is_empty(), "gaps of {id}: {:?}", i.gaps);
    let tr = read_all(t, viewer, id).await;
    assert_eq!((tr.start_offset, tr.total_bytes), (0, len));
    assert!(
        tr.bytes == want,
        "bytes of {id}: {:?}, want {:?}",
        String::from_utf8_lossy(&tr.bytes),
        String::from_utf8_lossy(want)
    );
}

/// An owned [`TranscriptPiece`], for comparing pieces gathered from several slices.
#[derive(Clone, PartialEq, Eq)]
enum Piece {
    Bytes { offset: u64, bytes: Vec<u8> },
    Gap { at_offset: u64, bytes_lost: u64, reason: GapReason },
    Resize(ResizeAt),
}

/// Byte runs as offset, length and a checksum: failures stay readable.
impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Piece::Bytes { offset, bytes } => {
                let fnv = bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193));
                write!(f, "Bytes@{offset}[{} bytes, fnv {fnv:08x}]", bytes.len())
            }
            Piece::Gap { at_offset, bytes_lost, reason } => write!(f, "Gap@{at_offset}[{bytes_lost} {reason:?}]"),
            Piece::Resize(r) => write!(f, "Resize@{}[{}x{}]", r.offset, r.cols, r.rows),
        }
    }
}

/// Owned pieces with adjacent byte runs merged, so that pieces read page by page compare with one read's.
fn merged<'a>(pieces: impl IntoIterator<Item = TranscriptPiece<'a>>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for p in pieces {
        match p {
            TranscriptPiece::Bytes { offset, bytes } => match out.last_mut() {
                Some(Piece::Bytes { offset: o, bytes: b }) if *o + b.len() as u64 == offset => {
                    b.extend_from_slice(bytes)
                }
                _ => out.push(Piece::Bytes { offset, bytes: bytes.to_vec() }),
            },
            TranscriptPiece::Gap { at_offset, bytes_lost, reason } => {
                out.push(Piece::Gap { at_offset, bytes_lost, reason })
            }
            TranscriptPiece::Resize(r) => out.push(Piece::Resize(r)),
        }
    }
    out
}

/// The offset after the last thing `slice.pieces(from)` covers: where a reader continues.
fn pieces_end(slice: &TranscriptSlice, from: u64) -> u64 {
    slice
        .pieces(from)
        .iter()
        .map(|p| match p {
            TranscriptPiece::Bytes { offset, bytes } => offset + bytes.len() as u64,
            TranscriptPiece::Gap { at_offset, bytes_lost, .. } => at_offset + bytes_lost,
            TranscriptPiece::Resize(r) => r.offset,
        })
        .max()
        .unwrap_or(slice.start_offset)
        .max(slice.start_offset)
}

/// The concatenation of the slice's byte pieces.
fn piece_bytes(slice: &TranscriptSlice, from: u64) -> Vec<u8> {
    let mut all = Vec::new();
    for p in slice.pieces(from) {
        if let TranscriptPiece::Bytes { bytes, .. } = p {
            all.extend_from_slice(bytes);
        }
    }
    all
}

// ------------------------------------------------------------------------------------------------------------
// append_batch

async fn batch_binary_bytes_round_trip(t: TestStore) {
    let fx = fixture(&t).await;
    let (a, b) = (start(&t, &fx).await, start(&t, &fx).await);
    let data_a = binary_bytes();
    let data_b: Vec<u8> = data_a.iter().rev().map(|x| x ^ 0xA5).collect();
    let writes_a = outputs(0, &data_a, &[1, 7, 256, 1000, 3]);
    let writes_b = outputs(0, &data_b, &[500, 2, 64]);

    // Both sessions in every batch, three writes each, until both are done.
    let (mut ia, mut ib) = (writes_a.chunks(3), writes_b.chunks(3));
    let (mut end_a, mut end_b) = (0u64, 0u64);
    loop {
        let mut batch = Vec::new();
        if let Some(w) = ia.next() {
            end_a += w.iter().map(|w| w.len() as u64).sum::<u64>();
            batch.push((a, w.to_vec()));
        }
        if let Some(w) = ib.next() {
            end_b += w.iter().map(|w| w.len() as u64).sum::<u64>();
            batch.push((b, w.to_vec()));
        }
        if batch.is_empty() {
            break;
        }
        let outcomes = t.store.append_batch(&batch).await.unwrap();
        let want: Vec<u64> = batch.iter().map(|(id, _)| if *id == a { end_a } else { end_b }).collect();
        assert_eq!(outcomes.iter().map(|o| o.total_bytes).collect::<Vec<_>>(), want);
        assert!(outcomes.iter().all(|o| o.retained_from == 0 && o.truncated_bytes == 0), "{outcomes:?}");
    }
    check_stored(&t, &fx.viewer(), a, &data_a).await;
    check_stored(&t, &fx.viewer(), b, &data_b).await;
}

async fn batch_resend_with_other_chunking_is_a_no_op(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    let data = b"hello, world\r\n\x00\xff\xfe\xc3\x28 and more".to_vec();
    let len = data.len() as u64;
    assert_eq!(t.store.append(id, outputs(0, &data, &[5, 4, 100])).await.unwrap().total_bytes, len);

    // The same bytes cut differently, whole or in part, alone or in one batch: accepted, nothing stored twice.
    for sizes in [&[1usize][..], &[3, 2], &[data.len()], &[7, 100], &[2, 9, 1]] {
        let outcome = t.store.append(id, outputs(0, &data, sizes)).await.unwrap();
        assert_eq!(outcome, AppendOutcome { total_bytes: len, retained_from: 0, truncated_bytes: 0 }, "{sizes:?}");
    }
    assert_eq!(t.store.append(id, vec![out(3, &data[3..9])]).await.unwrap().total_bytes, len);
    assert_eq!(t.store.append(id, vec![out(6, &data[6..]), out(0, &data[..10])]).await.unwrap().total_bytes, len);
    check_stored(&t, &v, id, &data).await;

    // A resend that runs past the end: only what is new is added.
    let mut more = data[data.len() - 4..].to_vec();
    more.extend_from_slice(b"$ ls\r\n");
    let total = t.store.append(id, vec![out(len - 4, &more)]).await.unwrap().total_bytes;
    let mut want = data.clone();
    want.extend_from_slice(b"$ ls\r\n");
    assert_eq!(total, want.len() as u64);
    check_stored(&t, &v, id, &want).await;
}

async fn batch_disagreeing_resend_conflicts_and_changes_nothing(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    t.store.append(id, vec![out(0, b"hello "), out(6, b"world")]).await.unwrap();

    let bad: Vec<Vec<TranscriptWrite>> = vec![
        vec![out(0, b"hellO")],
        vec![out(4, b"O W")],
        vec![out(10, b"D")],
        // Disagrees with the stored bytes, then runs past the end.
        vec![out(6, b"WORLD!!")],
        // New output first, the disagreeing resend after it.
        vec![out(11, b"!"), out(0, b"jello")],
        vec![out(0, b"hello world"), out(11, b"!"), out(5, b"_")],
    ];
    for writes in bad {
        assert_err!(t.store.append(id, writes.clone()).await, StoreError::Conflict(_), "{writes:?}");
        check_stored(&t, &v, id, b"hello world").await;
    }
    assert_eq!(t.store.append(id, vec![out(11, b"!")]).await.unwrap().total_bytes, 12);
    check_stored(&t, &v, id, b"hello world!").await;
}

async fn batch_hole_conflicts_and_changes_nothing(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    assert_err!(t.store.append(id, vec![out(1, b"x")]).await, StoreError::Conflict(_));
    check_stored(&t, &v, id, b"").await;

    t.store.append(id, vec![out(0, b"abc")]).await.unwrap();
    for writes in [vec![out(4, b"x")], vec![out(3, b"de"), out(6, b"g")], vec![out(3, b"d"), resize(9, 80, 24)]] {
        assert_err!(t.store.append(id, writes.clone()).await, StoreError::Conflict(_), "{writes:?}");
        check_stored(&t, &v, id, b"abc").await;
        assert!(read_all(&t, &v, id).await.resizes.is_empty());
    }
}

async fn batch_several_sessions_in_order(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let (a, b, c) = (start(&t, &fx).await, start(&t, &fx).await, start(&t, &fx).await);
    let batch = vec![
        (b, vec![out(0, b"bee")]),
        (a, vec![out(0, b"a")]),
        (c, vec![]),
        // The same session twice: the second part continues the first.
        (b, vec![out(2, b"e!"), gap(4, 2)]),
    ];
    let outcomes = t.store.append_batch(&batch).await.unwrap();
    let totals: Vec<u64> = outcomes.iter().map(|o| o.total_bytes).collect();
    assert_eq!(totals, [3, 1, 0, 6]);
    check_stored(&t, &v, a, b"a").await;
    check_stored(&t, &v, c, b"").await;
    let tr = read_all(&t, &v, b).await;
    assert_eq!((tr.bytes.as_slice(), tr.total_bytes, tr.gaps.as_slice()), (&b"bee!"[..], 6, &[offline(4, 2)][..]));
    assert!(t.store.append_batch(&[]).await.unwrap().is_empty());
}

async fn batch_failure_rolls_back_every_session(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let t0 = t.clock.now();
    let (a, b) = (start(&t, &fx).await, start(&t, &fx).await);
    t.store.append_batch(&[(a, vec![out(0, b"a0")]), (b, vec![out(0, b"b0")])]).await.unwrap();
    t.clock.advance(Duration::seconds(60));

    let good_a = vec![out(2, b"a1"), gap(4, 3), resize(7, 100, 50)];
    let failing: Vec<Vec<(Uuid, Vec<TranscriptWrite>)>> = vec![
        vec![(a, good_a.clone()), (b, vec![out(5, b"hole")])],
        vec![(a, good_a.clone()), (b, vec![out(0, b"XX")])],
        vec![(a, good_a.clone()), (b, vec![gap(2, 0)])],
        vec![(b, vec![out(2, b"b1"), resize(4, 0, 24)]), (a, good_a.clone())],
        vec![(a, good_a.clone()), (Uuid::now_v7(), vec![out(0, b"x")])],
    ];
    for batch in failing {
        assert!(t.store.append_batch(&batch).await.is_err(), "{batch:?} was accepted");
        check_stored(&t, &v, a, b"a0").await;
        check_stored(&t, &v, b, b"b0").await;
        assert!(read_all(&t, &v, a).await.resizes.is_empty() && read_all(&t, &v, b).await.resizes.is_empty());
    }
    // Nor did the failed batches count as hearing from the recorders.
    let lost: BTreeSet<Uuid> =
        t.store.end_lost_sessions(t0 + Duration::seconds(30)).await.unwrap().into_iter().collect();
    assert_eq!(lost, BTreeSet::from([a, b]));
}

// ------------------------------------------------------------------------------------------------------------
// gaps

async fn gap_at_the_end_advances_the_transcript(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    t.store.append(id, vec![out(0, b"abc")]).await.unwrap();
    let o = t.store.append(id, vec![gap(3, 5)]).await.unwrap();
    assert_eq!(o, AppendOutcome { total_bytes: 8, retained_from: 0, truncated_bytes: 0 });

    // A trailing gap is part of the transcript already.
    let tr = read_all(&t, &v, id).await;
    assert_eq!((tr.bytes.as_slice(), tr.total_bytes, tr.gaps.as_slice()), (&b"abc"[..], 8, &[offline(3, 5)][..]));
    let want = [
        TranscriptPiece::Bytes { offset: 0, bytes: b"abc" },
        TranscriptPiece::Gap { at_offset: 3, bytes_lost: 5, reason: GapReason::RecorderOffline },
    ];
    assert_eq!(tr.pieces(0), want);

    assert_eq!(t.store.append(id, vec![out(8, b"xyz")]).await.unwrap().total_bytes, 11);
    let i = info(&t, &v, id).await;
    assert_eq!((i.total_bytes, i.retained_bytes, i.truncated_bytes), (11, 6, 0));
    assert_eq!(i.gaps, [GapInfo { at_offset: 3, bytes_lost: 5, reason: GapReason::RecorderOffline }]);
    let tr = read_all(&t, &v, id).await;
    assert_eq!((tr.start_offset, tr.bytes.as_slice(), tr.total_bytes), (0, &b"abcxyz"[..], 11));
    assert_eq!(tr.gaps, [offline(3, 5)]);
    let want = [
        TranscriptPiece::Bytes { offset: 0, bytes: b"abc" },
        TranscriptPiece::Gap { at_offset: 3, bytes_lost: 5, reason: GapReason::RecorderOffline },
        TranscriptPiece::Bytes { offset: 8, bytes: b"xyz" },
    ];
    assert_eq!(tr.pieces(0), want);

    // From inside the gap: the slice starts after it, and pieces() says what is missing up to there.
    let tr = t.store.read_transcript(&v, id, 5).await.unwrap();
    assert_eq!((tr.start_offset, tr.bytes.as_slice()), (8, &b"xyz"[..]));
    let want = [
        TranscriptPiece::Gap { at_offset: 5, bytes_lost: 3, reason: GapReason::RecorderOffline },
        TranscriptPiece::Bytes { offset: 8, bytes: b"xyz" },
    ];
    assert_eq!(tr.pieces(5), want);
}

async fn gap_resend_is_a_no_op_and_other_gaps_conflict(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    let batch = vec![out(0, b"abc"), gap(3, 5), out(8, b"xyz")];
    assert_eq!(t.store.append(id, batch.clone()).await.unwrap().total_bytes, 11);
    let before = info(&t, &v, id).await;

    // The gap again, alone or with the whole batch it came in.
    assert_eq!(t.store.append(id, vec![gap(3, 5)]).await.unwrap().total_bytes, 11);
    assert_eq!(t.store.append(id, batch).await.unwrap().total_bytes, 11);
    assert_eq!(info(&t, &v, id).await, before);

    // Gaps that are neither at the end nor stored; a gap past the end leaves a hole.
    for g in [gap(3, 4), gap(3, 6), gap(5, 1), gap(0, 3), gap(9, 2), gap(12, 1)] {
        assert_err!(t.store.append(id, vec![g.clone()]).await, StoreError::Conflict(_), "{g:?}");
    }
    for g in [gap(11, 0), gap(3, 0), gap(20, 0)] {
        assert_err!(
            t.store.append(id, vec![g.clone()]).await,
            StoreError::Invalid { field: "bytes_lost", .. },
            "{g:?}"
        );
    }
    assert_eq!(info(&t, &v, id).await, before);
    assert_eq!(read_all(&t, &v, id).await.bytes, b"abcxyz");
}

async fn gap_before_the_first_byte(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    let o = t.store.append(id, vec![gap(0, 10), out(10, b"late")]).await.unwrap();
    assert_eq!(o, AppendOutcome { total_bytes: 14, retained_from: 10, truncated_bytes: 0 });
    let tr = read_all(&t, &v, id).await;
    assert_eq!((tr.start_offset, tr.bytes.as_slice(), tr.truncated_bytes), (10, &b"late"[..], 0));
    // Lost, not truncated.
    let want = [
        TranscriptPiece::Gap { at_offset: 0, bytes_lost: 10, reason: GapReason::RecorderOffline },
        TranscriptPiece::Bytes { offset: 10, bytes: b"late" },
    ];
    assert_eq!(tr.pieces(0), want);
}

// ------------------------------------------------------------------------------------------------------------
// resizes

async fn resizes_are_stored_and_read_from_an_offset(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    let batch = vec![resize(0, 100, 30), out(0, b"01234"), resize(5, 120, 40), out(5, b"56789"), resize(10, 80, 24)];
    assert_eq!(t.store.append(id, batch.clone()).await.unwrap().total_bytes, 10);
    let (r0, r5, r10) = (resize_at(0, 100, 30), resize_at(5, 120, 40), resize_at(10, 80, 24));
    assert_eq!(read_all(&t, &v, id).await.resizes, [r0, r5, r10]);

    // From an offset: the resizes at or after it.
    for (from, want) in [(3, vec![r5, r10]), (5, vec![r5, r10]), (6, vec![r10]), (10, vec![r10]), (11, vec![])] {
        let tr = t.store.read_transcript(&v, id, from).await.unwrap();
        assert_eq!(tr.resizes, want, "from {from}");
    }

    // Resends are no-ops.
    assert_eq!(t.store.append(id, batch).await.unwrap().total_bytes, 10);
    assert_eq!(t.store.append(id, vec![resize(5, 120, 40)]).await.unwrap().total_bytes, 10);
    assert_eq!(read_all(&t, &v, id).await.resizes, [r0, r5, r10]);

    // Past the end, or before the output that would reach it: Conflict. A zero size: Invalid.
    assert_err!(t.store.append(id, vec![resize(11, 90, 30)]).await, StoreError::Conflict(_));
    assert_err!(t.store.append(id, vec![resize(12, 90, 30), out(10, b"ab")]).await, StoreError::Conflict(_));
    assert_err!(t.store.append(id, vec![resize(3, 0, 30)]).await, StoreError::Invalid { field: "size", .. });
    assert_err!(t.store.append(id, vec![resize(3, 90, 0)]).await, StoreError::Invalid { field: "size", .. });
    check_stored(&t, &v, id, b"0123456789").await;
    assert_eq!(read_all(&t, &v, id).await.resizes, [r0, r5, r10]);

    // After the output that reaches it, in the same batch: fine.
    assert_eq!(t.store.append(id, vec![out(10, b"ab"), resize(12, 90, 30)]).await.unwrap().total_bytes, 12);
    let tr = read_all(&t, &v, id).await;
    assert_eq!(tr.resizes, [r0, r5, r10, resize_at(12, 90, 30)]);
    let want = [
        TranscriptPiece::Resize(r0),
        TranscriptPiece::Bytes { offset: 0, bytes: b"01234" },
        TranscriptPiece::Resize(r5),
        TranscriptPiece::Bytes { offset: 5, bytes: b"56789" },
        TranscriptPiece::Resize(r10),
        TranscriptPiece::Bytes { offset: 10, bytes: b"ab" },
        TranscriptPiece::Resize(resize_at(12, 90, 30)),
    ];
    assert_eq!(tr.pieces(0), want);
}

async fn resizes_after_a_gap_are_read(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    let writes = vec![out(0, b"abc"), gap(3, 5), resize(8, 70, 20), out(8, b"xyz"), resize(10, 60, 20)];
    assert_eq!(t.store.append(id, writes).await.unwrap().total_bytes, 11);
    // And one after a trailing gap.
    assert_eq!(t.store.append(id, vec![gap(11, 4), resize(15, 50, 10)]).await.unwrap().total_bytes, 15);

    let tr = read_all(&t, &v, id).await;
    let (r8, r10, r15) = (resize_at(8, 70, 20), resize_at(10, 60, 20), resize_at(15, 50, 10));
    assert_eq!(tr.resizes, [r8, r10, r15], "every resize of the transcript, wherever the gaps are");
    let want = [
        TranscriptPiece::Bytes { offset: 0, bytes: b"abc" },
        TranscriptPiece::Gap { at_offset: 3, bytes_lost: 5, reason: GapReason::RecorderOffline },
        TranscriptPiece::Resize(r8),
        TranscriptPiece::Bytes { offset: 8, bytes: b"xy" },
        TranscriptPiece::Resize(r10),
        TranscriptPiece::Bytes { offset: 10, bytes: b"z" },
        TranscriptPiece::Gap { at_offset: 11, bytes_lost: 4, reason: GapReason::RecorderOffline },
        TranscriptPiece::Resize(r15),
    ];
    assert_eq!(tr.pieces(0), want);
    assert_eq!(t.store.read_transcript(&v, id, 9).await.unwrap().resizes, [r10, r15]);
}

// ------------------------------------------------------------------------------------------------------------
// ring buffer

const LIMIT: u64 = DEFAULT_TRANSCRIPT_LIMIT_BYTES as u64;

/// What the ring buffer should hold: the chunks written, in order; after each append the oldest whole chunks go
/// until the rest fits the limit. (Fresh writes only: each output write is one stored chunk.)
#[derive(Debug, Default)]
struct Ring {
    chunks: VecDeque<(u64, u64)>,
    total: u64,
    truncated: u64,
}

impl Ring {
    fn append(&mut self, writes: &[TranscriptWrite]) {
        for w in writes {
            match w {
                TranscriptWrite::Output(c) => {
                    self.chunks.push_back((c.offset, c.bytes.len() as u64));
                    self.total = c.offset + c.bytes.len() as u64;
                }
                TranscriptWrite::Gap { at_offset, bytes_lost } => self.total = at_offset + bytes_lost,
                TranscriptWrite::Resize { .. } => {}
            }
        }
        while self.retained() > LIMIT {
            let (_, len) = self.chunks.pop_front().expect("over the limit with no chunks");
            self.truncated += len;
        }
    }

    fn retained(&self) -> u64 {
        self.chunks.iter().map(|c| c.1).sum()
    }

    fn retained_from(&self) -> u64 {
        self.chunks.front().map(|c| c.0).unwrap_or(self.total)
    }

    fn outcome(&self) -> AppendOutcome {
        AppendOutcome { total_bytes: self.total, retained_from: self.retained_from(), truncated_bytes: self.truncated }
    }
}

async fn ring_buffer_drops_the_oldest_whole_chunks(t: TestStore) {
    let fx = fixture(&t).await;
    assert_eq!(fx.fleet.transcript_limit_bytes, DEFAULT_TRANSCRIPT_LIMIT_BYTES, "the test assumes the default");
    let v = fx.viewer();
    let (plain, gappy) = (start(&t, &fx).await, start(&t, &fx).await);
    let sizes = [65_536, 40_000, 70_001, 1, 65_536, 12_345];
    let data = pseudo_random(LIMIT as usize + 700_000, 42);

    // `plain`: just output. `gappy`: two chunks, 1000 bytes lost, a resize, then the rest.
    let plain_writes = outputs(0, &data, &sizes);
    let (head, tail) = (&data[..105_536], &data[105_536..]);
    let mut gappy_writes = outputs(0, head, &sizes);
    let tail_at = head.len() as u64 + 1000;
    gappy_writes.push(gap(head.len() as u64, 1000));
    gappy_writes.push(resize(tail_at, 132, 43));
    gappy_writes.extend(outputs(tail_at, tail, &sizes));

    // Both sessions in each batch, eight writes each; every outcome as the model says.
    let (mut ring_plain, mut ring_gappy) = (Ring::default(), Ring::default());
    let (plain_batches, gappy_batches): (Vec<_>, Vec<_>) =
        (plain_writes.chunks(8).collect(), gappy_writes.chunks(8).collect());
    for i in 0..plain_batches.len().max(gappy_batches.len()) {
        let (p, g) = (plain_batches.get(i).copied().unwrap_or(&[]), gappy_batches.get(i).copied().unwrap_or(&[]));
        let outcomes = t.store.append_batch(&[(plain, p.to_vec()), (gappy, g.to_vec())]).await.unwrap();
        ring_plain.append(p);
        ring_gappy.append(g);
        assert_eq!(outcomes, [ring_plain.outcome(), ring_gappy.outcome()]);
    }
    assert!(ring_plain.truncated > 0 && ring_gappy.truncated > 0, "the test must overflow the ring buffer");
    assert!(ring_gappy.retained_from() > tail_at + 65_536, "the gap must be in the truncated part");

    for (id, ring, lost) in [(plain, &ring_plain, 0), (gappy, &ring_gappy, 1000)] {
        let i = info(&t, &v, id).await;
        assert_eq!((i.total_bytes, i.retained_bytes, i.truncated_bytes), (ring.total, ring.retained(), ring.truncated));
        assert!(i.retained_bytes <= LIMIT);
        assert_eq!(i.total_bytes, i.retained_bytes + i.truncated_bytes + lost);

        // Read from 0: what is retained, starting at the first retained offset; the data's suffix.
        let start = ring.retained_from();
        let tr = read_all(&t, &v, id).await;
        assert_eq!((tr.start_offset, tr.total_bytes, tr.truncated_bytes), (start, ring.total, ring.truncated));
        let suffix = &data[(start - lost) as usize..];
        assert!(tr.bytes == suffix, "retained bytes of {id} differ ({} bytes, want {})", tr.bytes.len(), suffix.len());
        assert!(piece_bytes(&tr, 0) == tr.bytes);

        // From an offset that was truncated: the same.
        let tr10 = t.store.read_transcript(&v, id, 10).await.unwrap();
        assert_eq!((tr10.start_offset, tr10.bytes.len()), (start, tr.bytes.len()));
        // From inside the retained part: exact.
        let mid = start + 100_001;
        let trm = t.store.read_transcript(&v, id, mid).await.unwrap();
        assert_eq!(trm.start_offset, mid);
        assert!(trm.bytes == data[(mid - lost) as usize..]);
    }

    // pieces(0): first the truncated stretch, then bytes.
    let tr = read_all(&t, &v, plain).await;
    let start = ring_plain.retained_from();
    let pieces = tr.pieces(0);
    assert_eq!(pieces[0], TranscriptPiece::Gap { at_offset: 0, bytes_lost: start, reason: GapReason::Truncated });
    assert!(matches!(pieces[1], TranscriptPiece::Bytes { offset, .. } if offset == start), "{:?}", pieces[1]);
    assert!(pieces[1..].iter().all(|p| matches!(p, TranscriptPiece::Bytes { .. })));

    // With the declared gap inside the truncated stretch: truncated, lost, truncated, each counted exactly.
    let tr = read_all(&t, &v, gappy).await;
    let start = ring_gappy.retained_from();
    let pieces = tr.pieces(0);
    let head_len = head.len() as u64;
    let want = [
        TranscriptPiece::Gap { at_offset: 0, bytes_lost: head_len, reason: GapReason::Truncated },
        TranscriptPiece::Gap { at_offset: head_len, bytes_lost: 1000, reason: GapReason::RecorderOffline },
        TranscriptPiece::Gap { at_offset: tail_at, bytes_lost: start - tail_at, reason: GapReason::Truncated },
    ];
    assert_eq!(pieces[..3], want);
    assert!(matches!(pieces[3], TranscriptPiece::Bytes { offset, .. } if offset == start), "{:?}", pieces[3]);
    assert_eq!(head_len + (start - tail_at), ring_gappy.truncated, "truncated pieces add up to truncated_bytes");
    assert_eq!(tr.gaps, [offline(head_len, 1000)], "declared gaps stay, even when truncated");

    // Resending truncated output is accepted and changes nothing; retained output is still compared.
    let before = info(&t, &v, plain).await;
    let o = t.store.append(plain, plain_writes[..3].to_vec()).await.unwrap();
    assert_eq!(o, ring_plain.outcome());
    assert_eq!(info(&t, &v, plain).await, before);
    let last = ring_plain.total - 1;
    let flipped = [data[last as usize] ^ 1];
    assert_err!(t.store.append(plain, vec![out(last, &flipped)]).await, StoreError::Conflict(_));
    assert_eq!(info(&t, &v, plain).await, before);
}

/// The fleet's limit is read as it is at each write, also while a session goes on writing (PostgreSQL keeps where a
/// session stands from one commit to the next): lowered, the next write trims to it; raised, nothing more goes.
async fn ring_buffer_follows_the_fleets_limit_as_it_changes(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    let data = pseudo_random(103_000, 9);
    // Ten chunks of 10,000 bytes, each its own commit, under the default 8 MiB.
    for w in outputs(0, &data[..100_000], &[10_000]) {
        t.store.append(id, vec![w]).await.unwrap();
    }
    assert_eq!(info(&t, &v, id).await.truncated_bytes, 0);

    // 64 KiB: with the next 1,000 bytes 101,000 are held, and the oldest four chunks must go (61,000 left).
    t.store.set_transcript_limit(fx.fleet.id, 65_536).await.unwrap();
    let o = t.store.append(id, vec![out(100_000, &data[100_000..101_000])]).await.unwrap();
    assert_eq!(o, AppendOutcome { total_bytes: 101_000, retained_from: 40_000, truncated_bytes: 40_000 });
    let i = info(&t, &v, id).await;
    assert_eq!((i.retained_bytes, i.truncated_bytes), (61_000, 40_000));
    let tr = read_all(&t, &v, id).await;
    assert_eq!(tr.start_offset, 40_000);
    assert!(tr.bytes == data[40_000..101_000], "the retained bytes are the newest");

    // Back to 8 MiB: the next writes keep everything.
    t.store.set_transcript_limit(fx.fleet.id, DEFAULT_TRANSCRIPT_LIMIT_BYTES).await.unwrap();
    for w in outputs(101_000, &data[101_000..], &[1_000]) {
        t.store.append(id, vec![w]).await.unwrap();
    }
    let i = info(&t, &v, id).await;
    assert_eq!((i.total_bytes, i.retained_bytes, i.truncated_bytes), (103_000, 63_000, 40_000));
    assert!(read_all(&t, &v, id).await.bytes == data[40_000..]);
}

// ------------------------------------------------------------------------------------------------------------
// deleting

/// A session deleted by SQL (as retention will delete them): its chunks go with it, on PostgreSQL by a trigger (the
/// chunks have no foreign key there, migration 0006), and another session's chunks stay.
async fn deleting_a_session_deletes_its_transcript(t: TestStore) {
    use sqlx::Connection;
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let (gone, kept) = (start(&t, &fx).await, start(&t, &fx).await);
    for id in [gone, kept] {
        t.store.append(id, outputs(0, &pseudo_random(30_000, 3), &[10_000])).await.unwrap();
        t.store.append(id, vec![gap(30_000, 5), resize(30_005, 100, 30)]).await.unwrap();
    }
    let counts = "SELECT (SELECT COUNT(*) FROM transcript_chunks WHERE session_id = $1) \
                  + (SELECT COUNT(*) FROM transcript_gaps WHERE session_id = $1) \
                  + (SELECT COUNT(*) FROM transcript_resizes WHERE session_id = $1)";
    macro_rules! delete_and_count {
        ($conn:expr) => {{
            let mut conn = $conn;
            sqlx::query("DELETE FROM sessions WHERE id = $1").bind(gone).execute(&mut conn).await.unwrap();
            let mut left = Vec::new();
            for id in [gone, kept] {
                left.push(sqlx::query_scalar::<_, i64>(counts).bind(id).fetch_one(&mut conn).await.unwrap());
            }
            left
        }};
    }
    let left = match t.store.backend() {
        Backend::Postgres => delete_and_count!(sqlx::PgConnection::connect(&t.url).await.unwrap()),
        Backend::Sqlite => {
            delete_and_count!(sqlx::SqliteConnection::connect(&format!("sqlite://{}", t.url)).await.unwrap())
        }
    };
    assert_eq!(left, [0, 3 + 1 + 1], "rows left of the deleted session and of the other");
    assert_err!(t.store.session(&v, gone).await, StoreError::NotFound(_));
    assert!(read_all(&t, &v, kept).await.bytes == pseudo_random(30_000, 3));
}

// ------------------------------------------------------------------------------------------------------------
// pages

async fn pages_concatenate_to_the_whole_transcript(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let id = start(&t, &fx).await;
    let sizes = [1usize, 17, 300, 64, 999, 2, 40];
    let (one, two) = (pseudo_random(3_000, 3), pseudo_random(2_500, 5));
    let mut writes = vec![resize(0, 80, 24)];
    writes.extend(outputs(0, &one, &sizes));
    // Resizes at a chunk boundary and inside a chunk, lost bytes, a resize where output resumes, and at the end.
    writes.insert(4, resize(18, 100, 30));
    writes.insert(7, resize(100, 110, 30));
    let two_at = one.len() as u64 + 50;
    writes.extend([gap(one.len() as u64, 50), resize(two_at, 120, 30)]);
    writes.extend(outputs(two_at, &two, &sizes));
    let total = two_at + two.len() as u64;
    writes.push(resize(total, 90, 30));
    let chunk_count = writes.iter().filter(|w| matches!(w, TranscriptWrite::Output(_))).count();
    assert_eq!(t.store.append(id, writes).await.unwrap().total_bytes, total);

    let full = read_all(&t, &v, id).await;
    assert!(!full.more);
    assert_eq!(full.resizes.len(), 5);
    let want = merged(full.pieces(0));

    for max in [0usize, 1, 10, 100, 1000, 4096, usize::MAX] {
        let (mut from, mut got, mut pages) = (0u64, Vec::new(), 0usize);
        loop {
            pages += 1;
            assert!(pages <= 10_000, "paging with max_bytes {max} does not end");
            let page = t.store.read_transcript_page(&v, id, from, max).await.unwrap();
            assert!(!page.bytes.is_empty() || !page.more, "max {max}, from {from}: an empty page with more");
            assert!(page.bytes.len() <= max.max(1).saturating_add(998), "max {max}: {} bytes", page.bytes.len());
            got.extend(merged(page.pieces(from)));
            let end = pieces_end(&page, from);
            if !page.more {
                assert_eq!(end, total, "max {max}: the last page ends the transcript");
                break;
            }
            assert!(end > from, "max {max}: a page from {from} does not advance");
            from = end;
        }
        assert_eq!(merged(got.iter().map(as_piece)), want, "max {max}: pages differ from one read");
        if max <= 1 {
            assert_eq!(pages, chunk_count, "max {max}: one whole chunk per page");
        }
        if max == usize::MAX {
            assert_eq!(pages, 1);
        }
    }
}

/// A borrowed view of an owned piece (to merge pieces gathered from several pages).
fn as_piece(p: &Piece) -> TranscriptPiece<'_> {
    match p {
        Piece::Bytes { offset, bytes } => TranscriptPiece::Bytes { offset: *offset, bytes },
        Piece::Gap { at_offset, bytes_lost, reason } => {
            TranscriptPiece::Gap { at_offset: *at_offset, bytes_lost: *bytes_lost, reason: *reason }
        }
        Piece::Resize(r) => TranscriptPiece::Resize(*r),
    }
}

// ------------------------------------------------------------------------------------------------------------
// recorder lost

async fn attach(t: &TestStore, id: Uuid, kind: ClientKind, name: &str, member: Option<&Member>) -> Uuid {
    let client = NewClient { kind, name: name.into(), member_id: member.map(|m| m.id) };
    t.store.attach_client(id, client).await.unwrap()
}

async fn session_head_is_the_session_without_its_clients_and_as_visible(t: TestStore) {
    let fx = fixture(&t).await;
    let id = start(&t, &fx).await;
    attach(&t, id, ClientKind::Cli, "cmdop record", Some(&fx.owner)).await;
    attach(&t, id, ClientKind::Browser, "Owner", Some(&fx.owner)).await;
    t.store.append(id, vec![out(0, b"before"), gap(6, 10), out(16, b"after")]).await.unwrap();

    let full = t.store.session(&fx.viewer(), id).await.unwrap();
    let head = t.store.session_head(&fx.viewer(), id).await.unwrap();
    assert_eq!(full.clients.len(), 2);
    assert!(head.clients.is_empty(), "{:?}", head.clients);
    assert_eq!(head.transcript, full.transcript, "length and gaps as the full read has them");
    assert_eq!((head.id, head.state, head.machine.clone()), (full.id, full.state, full.machine.clone()));

    // Whoever may not see the session gets NotFound from both, as for a missing one.
    let outsider = member(&t, "outsider@example.com", "Outsider").await;
    let other = Viewer::Member(outsider.id);
    assert_err!(t.store.session(&other, id).await, StoreError::NotFound(_));
    assert_err!(t.store.session_head(&other, id).await, StoreError::NotFound(_));
    assert_err!(t.store.session_head(&fx.viewer(), Uuid::now_v7()).await, StoreError::NotFound(_));
}

fn exited(code: i32) -> SessionEnd {
    SessionEnd { exit_code: Some(code), exit_signal: None, reason: EndReason::Exited, ended_at: None }
}

async fn lost(t: &TestStore, silent_since: DateTime<Utc>) -> BTreeSet<Uuid> {
    t.store.end_lost_sessions(silent_since).await.unwrap().into_iter().collect()
}

async fn lost_recorders_end_their_sessions(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let t0 = t.clock.now();
    let (quiet, touched, written, done) =
        (start(&t, &fx).await, start(&t, &fx).await, start(&t, &fx).await, start(&t, &fx).await);
    let c1 = attach(&t, quiet, ClientKind::Desktop, "laptop", Some(&fx.owner)).await;
    let c2 = attach(&t, quiet, ClientKind::Cli, "cmdop attach", None).await;
    let c_touched = attach(&t, touched, ClientKind::Cli, "cmdop attach", None).await;

    t.clock.advance(Duration::seconds(60));
    let t60 = t.clock.now();
    t.store.end_session(done, exited(0)).await.unwrap();
    // An ended session among those touched stays as it ended.
    t.store.touch_sessions(&[touched, done]).await.unwrap();
    t.store.append(written, vec![out(0, b"x")]).await.unwrap();
    t.clock.advance(Duration::seconds(60));

    assert_eq!(lost(&t, t0 + Duration::seconds(30)).await, BTreeSet::from([quiet]));
    let s = t.store.session(&v, quiet).await.unwrap();
    assert_eq!(
        (s.state, s.end_reason, s.exit_code, s.ended_at),
        (SessionState::Ended, Some(EndReason::RecorderLost), None, Some(t0))
    );
    assert_eq!(s.duration_ms, 0, "ended when last heard from");
    for c in &s.clients {
        assert!([c1, c2].contains(&c.id));
        assert_eq!(c.detached_at, Some(t0), "client {}", c.name);
    }
    let rs = t.store.recording_state(quiet).await.unwrap();
    assert_eq!(
        (rs.state, rs.end_reason, rs.exit_code, rs.exit_signal),
        (SessionState::Ended, Some(EndReason::RecorderLost), None, None)
    );

    // Heard from since: still active, clients attached. Exited: as it was.
    for id in [touched, written] {
        let s = t.store.session(&v, id).await.unwrap();
        assert_eq!((s.state, s.ended_at, s.end_reason), (SessionState::Active, None, None), "{id}");
    }
    assert_eq!(t.store.session(&v, touched).await.unwrap().clients[0].detached_at, None);
    let s = t.store.session(&v, done).await.unwrap();
    assert_eq!((s.state, s.end_reason, s.exit_code), (SessionState::Ended, Some(EndReason::Exited), Some(0)));
    assert_eq!(s.ended_at, Some(t60));

    // Once is enough; heard from exactly at `silent_since` is heard from since.
    assert!(lost(&t, t0 + Duration::seconds(30)).await.is_empty());
    assert!(lost(&t, t60).await.is_empty());
    assert_eq!(lost(&t, t60 + Duration::milliseconds(1)).await, BTreeSet::from([touched, written]));
    let s = t.store.session(&v, touched).await.unwrap();
    assert_eq!((s.ended_at, s.end_reason), (Some(t60), Some(EndReason::RecorderLost)));
    assert_eq!(s.clients.iter().map(|c| (c.id, c.detached_at)).collect::<Vec<_>>(), [(c_touched, Some(t60))]);
}

async fn reopen_lost_session_makes_it_active_again(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let t0 = t.clock.now();
    let (id, done) = (start(&t, &fx).await, start(&t, &fx).await);
    t.store.append(id, vec![out(0, b"before ")]).await.unwrap();
    t.clock.advance(Duration::minutes(10));
    assert_eq!(lost(&t, t0 + Duration::seconds(1)).await, BTreeSet::from([id, done]));

    t.store.reopen_lost_session(id).await.unwrap();
    let s = t.store.session(&v, id).await.unwrap();
    assert_eq!((s.state, s.ended_at, s.end_reason, s.exit_code), (SessionState::Active, None, None, None));
    let rs = t.store.recording_state(id).await.unwrap();
    assert_eq!((rs.state, rs.end_reason, rs.total_bytes), (SessionState::Active, None, 7));
    // Reopening counts as hearing from the recorder, and the transcript goes on.
    assert!(lost(&t, t.clock.now() - Duration::seconds(1)).await.is_empty());
    assert_eq!(t.store.append(id, vec![out(7, b"after")]).await.unwrap().total_bytes, 12);
    assert_err!(t.store.reopen_lost_session(id).await, StoreError::Conflict(_), "an active session");

    // A session that exited stays ended.
    t.store.reopen_lost_session(done).await.unwrap();
    t.store.end_session(done, exited(3)).await.unwrap();
    assert_err!(t.store.reopen_lost_session(done).await, StoreError::Conflict(_), "an exited session");
    let s = t.store.session(&v, done).await.unwrap();
    assert_eq!((s.state, s.end_reason, s.exit_code), (SessionState::Ended, Some(EndReason::Exited), Some(3)));
    assert!(t.store.reopen_lost_session(Uuid::now_v7()).await.is_err());
}

async fn recording_state_reports_the_session(t: TestStore) {
    let fx = fixture(&t).await;
    let alice = member_in(&t, "alice@example.com", &fx.fleet, Role::Member).await;
    t.store.grant_machine(fx.machine.id, alice.id).await.unwrap();
    let started_at = t.clock.now() - Duration::minutes(5);
    let id = t
        .store
        .create_session(NewSession { started_at: Some(started_at), ..new_session(&fx.machine, &alice) })
        .await
        .unwrap();
    let mut want = RecordingState {
        session_id: id,
        fleet_id: fx.fleet.id,
        machine_id: fx.machine.id,
        started_by: alice.id,
        started_at,
        state: SessionState::Active,
        end_reason: None,
        exit_code: None,
        exit_signal: None,
        total_bytes: 0,
    };
    assert_eq!(t.store.recording_state(id).await.unwrap(), want);

    t.store.append(id, vec![out(0, b"abc"), gap(3, 7)]).await.unwrap();
    want.total_bytes = 10;
    assert_eq!(t.store.recording_state(id).await.unwrap(), want);

    let end = SessionEnd { exit_code: None, exit_signal: Some(9), reason: EndReason::Exited, ended_at: None };
    t.store.end_session(id, end).await.unwrap();
    want = RecordingState {
        state: SessionState::Ended,
        end_reason: Some(EndReason::Exited),
        exit_signal: Some(9),
        ..want
    };
    assert_eq!(t.store.recording_state(id).await.unwrap(), want);
    assert_err!(t.store.recording_state(Uuid::now_v7()).await, StoreError::NotFound(_));
}

// ------------------------------------------------------------------------------------------------------------
// recordable machines

async fn recordable_machine_follows_roles_and_grants(t: TestStore) {
    let fx = fixture(&t).await;
    let db = t.store.create_machine(fx.fleet.id, "db-1").await.unwrap();
    let admin = member_in(&t, "admin@example.com", &fx.fleet, Role::Admin).await;
    let alice = member_in(&t, "alice@example.com", &fx.fleet, Role::Member).await;
    t.store.grant_machine(fx.machine.id, alice.id).await.unwrap();
    let zeta = t.store.create_fleet("zeta").await.unwrap();
    t.store.create_machine(zeta.id, "z-1").await.unwrap();
    let stranger = member_in(&t, "stranger@example.com", &zeta, Role::Owner).await;
    let loner = member(&t, "loner@example.com", "").await;

    for m in [&fx.owner, &admin] {
        for (name, fleet) in [("web-1", None), ("web-1", Some("acme")), (" db-1 ", None), ("db-1", Some("acme"))] {
            let got = t.store.recordable_machine(m.id, name, fleet).await.unwrap();
            let want = if name.contains("web") { &fx.machine } else { &db };
            assert_eq!(&got, want, "{} on {name:?} in {fleet:?}", m.email);
        }
    }
    for fleet in [None, Some("acme")] {
        assert_eq!(t.store.recordable_machine(alice.id, "web-1", fleet).await.unwrap(), fx.machine);
        match t.store.recordable_machine(alice.id, "db-1", fleet).await {
            Err(StoreError::Forbidden(msg)) => assert!(msg.contains("db-1"), "{msg}"),
            other => panic!("a member on a machine not granted: {other:?}"),
        }
    }
    // Unknown machines, machines of fleets one is not in, fleets that do not have it: NotFound.
    let not_found = [
        (&fx.owner, "nope", None),
        (&alice, "nope", None),
        (&fx.owner, "web-1", Some("zeta")),
        (&fx.owner, "z-1", None),
        (&stranger, "web-1", None),
        (&stranger, "web-1", Some("acme")),
        (&stranger, "web-1", Some("zeta")),
        (&loner, "web-1", None),
    ];
    for (m, name, fleet) in not_found {
        assert_err!(
            t.store.recordable_machine(m.id, name, fleet).await,
            StoreError::NotFound(_),
            "{} {name} {fleet:?}",
            m.email
        );
    }
    assert_err!(
        t.store.recordable_machine(fx.owner.id, "  ", None).await,
        StoreError::Invalid { field: "machine", .. }
    );
}

async fn recordable_machine_in_two_fleets_needs_the_fleet(t: TestStore) {
    let a = t.store.create_fleet("a").await.unwrap();
    let b = t.store.create_fleet("b").await.unwrap();
    let web_a = t.store.create_machine(a.id, "web-1").await.unwrap();
    let web_b = t.store.create_machine(b.id, "web-1").await.unwrap();
    let alice = member_in(&t, "alice@example.com", &a, Role::Owner).await;
    t.store.add_fleet_member(b.id, alice.id, Role::Member).await.unwrap();
    let bob = member_in(&t, "bob@example.com", &b, Role::Member).await;
    t.store.grant_machine(web_b.id, bob.id).await.unwrap();

    match t.store.recordable_machine(alice.id, "web-1", None).await {
        Err(StoreError::Invalid { field: "fleet", message }) => assert!(message.contains("web-1"), "{message}"),
        other => panic!("a machine name in two of the member's fleets: {other:?}"),
    }
    assert_eq!(t.store.recordable_machine(alice.id, "web-1", Some("a")).await.unwrap(), web_a);
    assert_err!(t.store.recordable_machine(alice.id, "web-1", Some("b")).await, StoreError::Forbidden(_));
    t.store.grant_machine(web_b.id, alice.id).await.unwrap();
    assert_eq!(t.store.recordable_machine(alice.id, "web-1", Some("b")).await.unwrap(), web_b);
    // Only one of bob's fleets has it.
    assert_eq!(t.store.recordable_machine(bob.id, "web-1", None).await.unwrap(), web_b);
}

// ------------------------------------------------------------------------------------------------------------
// clients

async fn detach_client_by_member_only_detaches_their_own(t: TestStore) {
    let fx = fixture(&t).await;
    let v = fx.viewer();
    let alice = member_in(&t, "alice@example.com", &fx.fleet, Role::Member).await;
    t.store.grant_machine(fx.machine.id, alice.id).await.unwrap();
    let id = start(&t, &fx).await;
    let mine = attach(&t, id, ClientKind::Desktop, "alice's laptop", Some(&alice)).await;
    let anon = attach(&t, id, ClientKind::Cli, "cmdop attach", None).await;
    let detached = |s: &cmdop_protocol::Session, c: Uuid| s.clients.iter().find(|x| x.id == c).unwrap().detached_at;

    // Someone else, even the fleet's owner, does not find alice's client; nobody's client is nobody's to detach.
    assert_err!(t.store.detach_client(id, mine, Some(fx.owner.id)).await, StoreError::NotFound(_));
    assert_err!(t.store.detach_client(id, anon, Some(alice.id)).await, StoreError::NotFound(_));
    let s = t.store.session(&v, id).await.unwrap();
    assert_eq!((detached(&s, mine), detached(&s, anon)), (None, None));

    t.clock.advance(Duration::seconds(3));
    let at = t.clock.now();
    t.store.detach_client(id, mine, Some(alice.id)).await.unwrap();
    assert_eq!(detached(&t.store.session(&v, id).await.unwrap(), mine), Some(at));
    assert_err!(t.store.detach_client(id, mine, Some(alice.id)).await, StoreError::NotFound(_), "twice");
    t.store.detach_client(id, anon, None).await.unwrap();
    assert_eq!(detached(&t.store.session(&v, id).await.unwrap(), anon), Some(at));
}

// ------------------------------------------------------------------------------------------------------------
// chat

async fn chat_thread_needs_fleet_membership(t: TestStore) {
    let fx = fixture(&t).await;
    let alice = member_in(&t, "alice@example.com", &fx.fleet, Role::Member).await;
    let zeta = t.store.create_fleet("zeta").await.unwrap();
    let stranger = member_in(&t, "stranger@example.com", &zeta, Role::Owner).await;

    let th = t.store.create_chat_thread(alice.id, fx.fleet.id, "  Deploy of v2 ").await.unwrap();
    assert_eq!((th.fleet.as_str(), th.fleet_id, th.title.as_str()), ("acme", fx.fleet.id, "Deploy of v2"));
    assert_eq!((th.created_by.as_str(), th.created_at), ("alice@example.com", t.clock.now()));
    assert!(th.messages.is_empty());

    assert_err!(t.store.create_chat_thread(stranger.id, fx.fleet.id, "x").await, StoreError::NotFound(_));
    assert_err!(t.store.create_chat_thread(fx.owner.id, Uuid::now_v7(), "x").await, StoreError::NotFound(_));
    for bad in [String::new(), "  \n ".into(), "x".repeat(201)] {
        assert_err!(
            t.store.create_chat_thread(fx.owner.id, fx.fleet.id, &bad).await,
            StoreError::Invalid { field: "title", .. }
        );
    }
    assert_eq!(
        t.store.create_chat_thread(fx.owner.id, fx.fleet.id, &"é".repeat(200)).await.unwrap().title.chars().count(),
        200
    );

    // Fleet members see it (any role, no grants needed); others do not.
    for m in [&fx.owner, &alice] {
        assert_eq!(t.store.chat_thread(&Viewer::Member(m.id), th.id).await.unwrap(), th, "{}", m.email);
    }
    assert_err!(t.store.chat_thread(&Viewer::Member(stranger.id), th.id).await, StoreError::NotFound(_));
    assert_err!(t.store.chat_thread(&fx.viewer(), Uuid::now_v7()).await, StoreError::NotFound(_));
}

async fn chat_messages_come_back_in_order_with_authors(t: TestStore) {
    let fx = fixture(&t).await;
    let alice = member(&t, "alice@example.com", "Alice Liddell").await;
    t.store.add_fleet_member(fx.fleet.id, alice.id, Role::Member).await.unwrap();
    let zeta = t.store.create_fleet("zeta").await.unwrap();
    let stranger = member_in(&t, "stranger@example.com", &zeta, Role::Owner).await;
    let th = t.store.create_chat_thread(fx.owner.id, fx.fleet.id, "incident").await.unwrap();

    // Two in the same millisecond, then one later.
    let m1 = t.store.post_chat_message(alice.id, th.id, "first").await.unwrap();
    let m2 = t.store.post_chat_message(fx.owner.id, th.id, "second").await.unwrap();
    t.clock.advance(Duration::seconds(1));
    let m3 = t.store.post_chat_message(alice.id, th.id, "third\nwith ünïcode ✓").await.unwrap();
    assert_eq!(
        (m1.author.as_str(), m1.author_name.as_str(), m1.body.as_str()),
        ("alice@example.com", "Alice Liddell", "first")
    );
    assert_eq!((m2.author.as_str(), m2.author_name.as_str()), ("owner@example.com", "owner"));
    assert_eq!(m3.created_at, t.clock.now());

    // Refused: not a member, empty, too long, no such thread.
    assert_err!(t.store.post_chat_message(stranger.id, th.id, "hi").await, StoreError::NotFound(_));
    for bad in [String::new(), " \n\t".into(), "x".repeat(64 * 1024 + 1)] {
        assert_err!(t.store.post_chat_message(alice.id, th.id, &bad).await, StoreError::Invalid { field: "body", .. });
    }
    assert_err!(t.store.post_chat_message(alice.id, Uuid::now_v7(), "hi").await, StoreError::NotFound(_));

    let read = t.store.chat_thread(&Viewer::Member(alice.id), th.id).await.unwrap();
    assert_eq!(read.messages, [m1, m2, m3]);
}

async fn chat_thread_is_visible_to_a_share_of_its_session(t: TestStore) {
    let fx = fixture(&t).await;
    let th = t.store.create_chat_thread(fx.owner.id, fx.fleet.id, "incident").await.unwrap();
    let other = t.store.create_chat_thread(fx.owner.id, fx.fleet.id, "other").await.unwrap();
    t.store.post_chat_message(fx.owner.id, th.id, "look at this").await.unwrap();
    let linked = t
        .store
        .create_session(NewSession { chat_thread_id: Some(th.id), ..new_session(&fx.machine, &fx.owner) })
        .await
        .unwrap();
    let unlinked = start(&t, &fx).await;

    let shared = t.store.chat_thread(&Viewer::Share { session_id: linked }, th.id).await.unwrap();
    assert_eq!(shared, t.store.chat_thread(&fx.viewer(), th.id).await.unwrap());
    assert_eq!(shared.messages.len(), 1);
    for (session_id, thread) in [(unlinked, th.id), (Uuid::now_v7(), th.id), (linked, other.id)] {
        assert_err!(t.store.chat_thread(&Viewer::Share { session_id }, thread).await, StoreError::NotFound(_));
    }
    let s = t.store.session(&fx.viewer(), linked).await.unwrap();
    assert_eq!(s.chat_thread, Some(ChatThreadRef { id: th.id, title: "incident".into() }));
    assert_eq!(t.store.session(&fx.viewer(), unlinked).await.unwrap().chat_thread, None);
}

// ------------------------------------------------------------------------------------------------------------
// pieces(), on hand-made slices

fn slice(start_offset: u64, bytes: &[u8], total_bytes: u64, gaps: Vec<Gap>, resizes: Vec<ResizeAt>) -> TranscriptSlice {
    let lost: u64 = gaps.iter().filter(|g| g.at_offset < start_offset).map(|g| g.bytes_lost).sum();
    TranscriptSlice {
        start_offset,
        bytes: bytes.to_vec(),
        total_bytes,
        truncated_bytes: start_offset - lost,
        gaps,
        resizes,
        more: false,
        size_before: None,
    }
}

fn truncated(at_offset: u64, bytes_lost: u64) -> TranscriptPiece<'static> {
    TranscriptPiece::Gap { at_offset, bytes_lost, reason: GapReason::Truncated }
}

fn lost_piece(at_offset: u64, bytes_lost: u64) -> TranscriptPiece<'static> {
    TranscriptPiece::Gap { at_offset, bytes_lost, reason: GapReason::RecorderOffline }
}

#[test]
fn pieces_count_truncated_and_lost_bytes_separately() {
    // 0..30 truncated, 30..50 lost, 50..70 truncated, 70..80 lost, 80..100 truncated, bytes from 100.
    let s = slice(100, b"0123456789", 110, vec![offline(30, 20), offline(70, 10)], vec![]);
    let bytes = TranscriptPiece::Bytes { offset: 100, bytes: b"0123456789" };
    let want =
        [truncated(0, 30), lost_piece(30, 20), truncated(50, 20), lost_piece(70, 10), truncated(80, 20), bytes.clone()];
    assert_eq!(s.pieces(0), want);
    // From inside a lost stretch, and from inside a truncated one.
    assert_eq!(
        s.pieces(40),
        [lost_piece(40, 10), truncated(50, 20), lost_piece(70, 10), truncated(80, 20), bytes.clone()]
    );
    assert_eq!(s.pieces(85), [truncated(85, 15), bytes.clone()]);
    assert_eq!(s.pieces(100), [bytes]);
    let counted = |from| {
        s.pieces(from).iter().fold((0, 0), |(tr, lo), p| match p {
            TranscriptPiece::Gap { bytes_lost, reason: GapReason::Truncated, .. } => (tr + bytes_lost, lo),
            TranscriptPiece::Gap { bytes_lost, .. } => (tr, lo + bytes_lost),
            _ => (tr, lo),
        })
    };
    assert_eq!(counted(0), (s.truncated_bytes, 30));
}

#[test]
fn pieces_lost_stretch_right_before_the_retained_bytes() {
    // 0..40 truncated, 40..60 lost, bytes from 60: no empty truncated piece after the lost one.
    let s = slice(60, b"xy", 62, vec![offline(40, 20)], vec![]);
    assert_eq!(
        s.pieces(0),
        [truncated(0, 40), lost_piece(40, 20), TranscriptPiece::Bytes { offset: 60, bytes: b"xy" }]
    );
    // Only lost, nothing truncated.
    let s = slice(20, b"xy", 22, vec![offline(0, 20)], vec![]);
    assert_eq!(s.truncated_bytes, 0);
    assert_eq!(s.pieces(0), [lost_piece(0, 20), TranscriptPiece::Bytes { offset: 20, bytes: b"xy" }]);
}

#[test]
fn pieces_interleave_resizes_gaps_and_bytes() {
    // "abc" at 0..3, 5 bytes lost, "defghij" at 8..15, 2 bytes lost at the end.
    let r = |offset, cols| resize_at(offset, cols, 24);
    let resizes = vec![r(0, 80), r(2, 81), r(3, 82), r(8, 83), r(10, 84), r(15, 85), r(17, 86)];
    let s = slice(0, b"abcdefghij", 17, vec![offline(3, 5), offline(15, 2)], resizes);
    let b = |offset: u64, bytes: &'static [u8]| TranscriptPiece::Bytes { offset, bytes };
    let want = [
        TranscriptPiece::Resize(r(0, 80)),
        b(0, b"ab"),
        TranscriptPiece::Resize(r(2, 81)),
        b(2, b"c"),
        TranscriptPiece::Resize(r(3, 82)),
        lost_piece(3, 5),
        TranscriptPiece::Resize(r(8, 83)),
        b(8, b"de"),
        TranscriptPiece::Resize(r(10, 84)),
        b(10, b"fghij"),
        TranscriptPiece::Resize(r(15, 85)),
        lost_piece(15, 2),
        TranscriptPiece::Resize(r(17, 86)),
    ];
    let pieces = s.pieces(0);
    assert_eq!(pieces, want);

    // Every byte piece is where the data says; together they are `bytes`.
    let at = |o: u64| if o < 3 { b"abc"[o as usize] } else { b"defghij"[(o - 8) as usize] };
    for p in &pieces {
        if let TranscriptPiece::Bytes { offset, bytes } = p {
            for (i, x) in bytes.iter().enumerate() {
                assert_eq!(*x, at(offset + i as u64), "byte at {}", offset + i as u64);
            }
        }
    }
    assert_eq!(piece_bytes(&s, 0), s.bytes);
}

#[test]
fn pieces_of_a_truncated_slice_with_resizes() {
    // Bytes from 50 (all before truncated); resizes at 50 and 52 come with them.
    let s = slice(50, b"0123", 54, vec![], vec![resize_at(50, 90, 30), resize_at(52, 91, 30)]);
    let want = [
        truncated(0, 50),
        TranscriptPiece::Resize(resize_at(50, 90, 30)),
        TranscriptPiece::Bytes { offset: 50, bytes: b"01" },
        TranscriptPiece::Resize(resize_at(52, 91, 30)),
        TranscriptPiece::Bytes { offset: 52, bytes: b"23" },
    ];
    assert_eq!(s.pieces(0), want);
    assert_eq!(piece_bytes(&s, 0), s.bytes);
    // An empty slice at the end has no pieces.
    assert!(slice(54, b"", 54, vec![], vec![]).pieces(54).is_empty());
}
