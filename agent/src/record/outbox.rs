//! The local outbox: everything the command printed that the server has not acknowledged yet.
//!
//! Pure data structure (no I/O, no clock): the PTY reader pushes output and resizes, the uplink asks for the next
//! frame to send after its cursor and releases what the server acknowledged. Offsets number every byte the
//! command printed, including bytes dropped here on overflow, so gaps are derived from offsets and are exact.

use std::collections::VecDeque;

/// Reads arriving within this many milliseconds of the previous one join its record.
pub const COALESCE_WINDOW_MS: u64 = 10;

/// A record stops growing at this size (a new read then starts a new record).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `bytes` printed at `offset`; `t_ms` is when the first of them arrived, `last_ms` when the last did.
    Output { offset: u64, t_ms: u64, last_ms: u64, bytes: Vec<u8> },
    /// `seq` orders resizes so the uplink can tell which ones at the same offset it already sent.
    Resize { seq: u64, offset: u64, t_ms: u64, cols: u16, rows: u16 },
}

impl Entry {
    /// Offset just after the entry (a resize takes no room). Entries are kept in order of this.
    fn end(&self) -> u64 {
        match self {
            Entry::Output { offset, bytes, .. } => offset + bytes.len() as u64,
            Entry::Resize { offset, .. } => *offset,
        }
    }
}

/// How the command ended, recorded once after its last output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    pub offset: u64,
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// What the uplink should do next on its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Bytes `[at_offset, at_offset + bytes_lost)` are gone from the outbox; tell the server.
    Gap {
        at_offset: u64,
        bytes_lost: u64,
    },
    Output {
        offset: u64,
        t_ms: u64,
        bytes: Vec<u8>,
    },
    Resize {
        seq: u64,
        offset: u64,
        t_ms: u64,
        cols: u16,
        rows: u16,
    },
    Exit(ExitRecord),
    /// The newest record may still grow; ask again at this time (ms) or when something new arrives.
    WaitUntil(u64),
    /// Nothing to send until something new arrives.
    Idle,
}

/// The uplink's position on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The offset the server expects next on this connection.
    pub sent_end: u64,
    /// Highest resize `seq` sent on this connection.
    resize_seq: u64,
    exit_sent: bool,
}

impl Cursor {
    /// A fresh connection whose server has stored everything before `acked`.
    pub fn new(acked: u64) -> Self {
        Cursor { sent_end: acked, resize_seq: 0, exit_sent: false }
    }

    /// Records that `next` was sent.
    pub fn advance(&mut self, next: &Next) {
        match next {
            Next::Gap { at_offset, bytes_lost } => self.sent_end = at_offset + bytes_lost,
            Next::Output { offset, bytes, .. } => self.sent_end = offset + bytes.len() as u64,
            Next::Resize { seq, .. } => self.resize_seq = *seq,
            Next::Exit(_) => self.exit_sent = true,
            Next::WaitUntil(_) | Next::Idle => {}
        }
    }

    pub fn exit_sent(&self) -> bool {
        self.exit_sent
    }
}

#[derive(Debug)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    /// Output bytes held (resizes are not counted).
    held: usize,
    capacity: usize,
    /// Offset after the last byte the command printed.
    total: u64,
    /// Everything before this is stored by the server.
    acked: u64,
    /// Bytes dropped on overflow, in all.
    dropped: u64,
    next_resize_seq: u64,
    exit: Option<ExitRecord>,
}

impl Outbox {
    /// An outbox holding at most `capacity` bytes of output (at least 1).
    pub fn new(capacity: usize) -> Self {
        Outbox {
            entries: VecDeque::new(),
            held: 0,
            capacity: capacity.max(1),
            total: 0,
            acked: 0,
            dropped: 0,
            next_resize_seq: 1,
            exit: None,
        }
    }

    /// Offset after the last byte the command printed.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Output bytes still held, i.e. not yet acknowledged by the server (and not dropped).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Bytes dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    #[cfg(test)]
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Bytes the command printed that the server has not stored (held ones and dropped ones).
    pub fn unstored(&self) -> u64 {
        self.total - self.acked
    }

    /// Appends output read at `t_ms`. Returns false (and ignores it) once the exit is recorded.
    pub fn push(&mut self, bytes: &[u8], t_ms: u64) -> bool {
        if self.exit.is_some() {
            return false;
        }
        if bytes.is_empty() {
            return true;
        }
        let offset = self.total;
        self.total += bytes.len() as u64;
        // A read bigger than the whole outbox keeps only its newest bytes.
        let skip = bytes.len().saturating_sub(self.capacity);
        let kept = &bytes[skip..];
        self.dropped += skip as u64;
        let kept_offset = offset + skip as u64;
        self.make_room(kept.len(), kept_offset);

        if let Some(Entry::Output { last_ms, bytes: record, offset: rec_offset, .. }) = self.entries.back_mut() {
            let contiguous = *rec_offset + record.len() as u64 == kept_offset;
            let recent = t_ms.saturating_sub(*last_ms) < COALESCE_WINDOW_MS;
            if contiguous && recent && record.len() + kept.len() <= MAX_RECORD_BYTES {
                record.extend_from_slice(kept);
                *last_ms = t_ms;
                self.held += kept.len();
                return true;
            }
        }
        self.entries.push_back(Entry::Output { offset: kept_offset, t_ms, last_ms: t_ms, bytes: kept.to_vec() });
        self.held += kept.len();
        true
    }

    /// Records that the terminal became `cols` x `rows` at the current offset.
    pub fn push_resize(&mut self, cols: u16, rows: u16, t_ms: u64) {
        if self.exit.is_some() {
            return;
        }
        let seq = self.next_resize_seq;
        self.next_resize_seq += 1;
        let resize = Entry::Resize { seq, offset: self.total, t_ms, cols, rows };
        // Dragging a window edge sends a burst of sizes with no output between them: only the last one matters.
        match self.entries.back_mut() {
            Some(last @ Entry::Resize { .. }) if last.end() == self.total => *last = resize,
            _ => self.entries.push_back(resize),
        }
    }

    /// Records the exit after the last output; later output is ignored.
    pub fn finish(&mut self, code: Option<i32>, signal: Option<i32>) -> ExitRecord {
        *self.exit.get_or_insert(ExitRecord { offset: self.total, code, signal })
    }

    /// The server stored everything before `offset`: forget it.
    pub fn release(&mut self, offset: u64) {
        self.acked = self.acked.max(offset.min(self.total));
        while let Some(front) = self.entries.front_mut() {
            match front {
                Entry::Output { offset: start, bytes, .. } => {
                    let end = *start + bytes.len() as u64;
                    if end <= offset {
                        self.held -= bytes.len();
                        self.entries.pop_front();
                    } else {
                        if *start < offset {
                            let cut = (offset - *start) as usize;
                            bytes.drain(..cut);
                            *start = offset;
                            self.held -= cut;
                        }
                        break;
                    }
                }
                // A resize exactly at the acked offset may not be stored yet: keep it (a resend is harmless).
                Entry::Resize { offset: at, .. } if *at < offset => {
                    self.entries.pop_front();
                }
                Entry::Resize { .. } => break,
            }
        }
    }

    /// Drops the oldest output so that `need` more bytes fit, then resizes that lie before the first byte kept.
    fn make_room(&mut self, need: usize, incoming_offset: u64) {
        while self.held + need > self.capacity {
            let excess = self.held + need - self.capacity;
            let Some(index) = self.entries.iter().position(|e| matches!(e, Entry::Output { .. })) else { break };
            let Entry::Output { offset, bytes, .. } = &mut self.entries[index] else { unreachable!() };
            if bytes.len() <= excess {
                self.held -= bytes.len();
                self.dropped += bytes.len() as u64;
                self.entries.remove(index);
            } else {
                bytes.drain(..excess);
                *offset += excess as u64;
                self.held -= excess;
                self.dropped += excess as u64;
            }
        }
        let first_kept = self
            .entries
            .iter()
            .find_map(|e| match e {
                Entry::Output { offset, .. } => Some(*offset),
                Entry::Resize { .. } => None,
            })
            .unwrap_or(incoming_offset);
        while matches!(self.entries.front(), Some(Entry::Resize { offset, .. }) if *offset < first_kept) {
            self.entries.pop_front();
        }
    }

    /// The next frame to send on a connection at `cursor`, at time `now_ms`, with output payloads of at most
    /// `max_frame` bytes. Output before `cursor.sent_end` is skipped (a record straddling it is sliced); anything
    /// that starts after it is preceded by a gap of exactly the missing bytes.
    pub fn next(&self, cursor: &Cursor, now_ms: u64, max_frame: usize) -> Next {
        let sent_end = cursor.sent_end;
        let gap_to = |start: u64| Next::Gap { at_offset: sent_end, bytes_lost: start - sent_end };
        let first = self.entries.partition_point(|e| e.end() < sent_end);
        let last_index = self.entries.len().saturating_sub(1);
        for (index, entry) in self.entries.iter().enumerate().skip(first) {
            match entry {
                Entry::Output { offset, t_ms, last_ms, bytes } => {
                    let end = offset + bytes.len() as u64;
                    if end <= sent_end {
                        continue;
                    }
                    if *offset > sent_end {
                        return gap_to(*offset);
                    }
                    // The newest record may still grow: wait for it unless it is full or the command ended.
                    let open = index == last_index && self.exit.is_none() && bytes.len() < MAX_RECORD_BYTES;
                    let sealed_at = last_ms + COALESCE_WINDOW_MS;
                    if open && now_ms < sealed_at {
                        return Next::WaitUntil(sealed_at);
                    }
                    let from = (sent_end - offset) as usize;
                    let to = bytes.len().min(from + max_frame.max(1));
                    return Next::Output { offset: sent_end, t_ms: *t_ms, bytes: bytes[from..to].to_vec() };
                }
                Entry::Resize { seq, offset, t_ms, cols, rows } => {
                    if *offset < sent_end || *seq <= cursor.resize_seq {
                        continue;
                    }
                    if *offset > sent_end {
                        return gap_to(*offset);
                    }
                    return Next::Resize { seq: *seq, offset: *offset, t_ms: *t_ms, cols: *cols, rows: *rows };
                }
            }
        }
        match self.exit {
            Some(exit) if !cursor.exit_sent => {
                if exit.offset > sent_end {
                    gap_to(exit.offset)
                } else {
                    Next::Exit(exit)
                }
            }
            _ => Next::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 1 << 20;

    /// Sends everything the outbox offers from `cursor` (time far ahead so nothing waits).
    fn drain(outbox: &Outbox, cursor: &mut Cursor, max_frame: usize) -> Vec<Next> {
        let mut sent = Vec::new();
        loop {
            let next = outbox.next(cursor, u64::MAX / 2, max_frame);
            if matches!(next, Next::Idle | Next::WaitUntil(_)) {
                return sent;
            }
            cursor.advance(&next);
            sent.push(next);
        }
    }

    fn output(offset: u64, t_ms: u64, bytes: &[u8]) -> Next {
        Next::Output { offset, t_ms, bytes: bytes.to_vec() }
    }

    #[test]
    fn output_and_resizes_come_out_in_offset_order() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"abc", 0);
        ob.push_resize(100, 40, 20);
        ob.push(b"def", 50);
        ob.finish(Some(0), None);
        let mut cursor = Cursor::new(0);
        let sent = drain(&ob, &mut cursor, BIG);
        assert_eq!(
            sent,
            vec![
                output(0, 0, b"abc"),
                Next::Resize { seq: 1, offset: 3, t_ms: 20, cols: 100, rows: 40 },
                output(3, 50, b"def"),
                Next::Exit(ExitRecord { offset: 6, code: Some(0), signal: None }),
            ]
        );
        assert_eq!(ob.next(&cursor, 1000, BIG), Next::Idle);
    }

    #[test]
    fn reads_close_in_time_coalesce_into_one_record() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"ab", 100);
        ob.push(b"cd", 105);
        ob.push(b"ef", 114); // 9 ms after the previous read: still the same record
        ob.push(b"gh", 130); // 16 ms later: a new record
        ob.finish(Some(0), None);
        let sent = drain(&ob, &mut Cursor::new(0), BIG);
        assert_eq!(sent[0], output(0, 100, b"abcdef"));
        assert_eq!(sent[1], output(6, 130, b"gh"));
    }

    #[test]
    fn records_stop_growing_at_the_record_limit() {
        let mut ob = Outbox::new(BIG);
        ob.push(&vec![1; MAX_RECORD_BYTES - 1], 0);
        ob.push(&[2, 2], 1);
        ob.finish(None, None);
        let sent = drain(&ob, &mut Cursor::new(0), BIG);
        assert_eq!(sent.len(), 3, "two records and the exit");
        assert_eq!(sent[1], output(MAX_RECORD_BYTES as u64 - 1, 1, &[2, 2]));
    }

    #[test]
    fn the_newest_record_waits_for_the_coalescing_window() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"ab", 100);
        let cursor = Cursor::new(0);
        assert_eq!(ob.next(&cursor, 104, BIG), Next::WaitUntil(110));
        assert_eq!(ob.next(&cursor, 110, BIG), output(0, 100, b"ab"));
        // A full record or the exit does not wait.
        ob.finish(Some(0), None);
        assert_eq!(ob.next(&cursor, 101, BIG), output(0, 100, b"ab"));
    }

    #[test]
    fn sends_split_at_the_frame_limit() {
        let mut ob = Outbox::new(BIG);
        let data: Vec<u8> = (0..10u8).collect();
        ob.push(&data, 0);
        ob.finish(Some(0), None);
        let sent = drain(&ob, &mut Cursor::new(0), 4);
        assert_eq!(sent[..3], [output(0, 0, &data[..4]), output(4, 0, &data[4..8]), output(8, 0, &data[8..])]);
    }

    #[test]
    fn overflow_drops_the_oldest_bytes() {
        let mut ob = Outbox::new(8);
        ob.push(b"abcd", 0);
        ob.push(b"efgh", 100);
        ob.push(b"ijk", 200); // drops "abc"
        assert_eq!((ob.held(), ob.dropped(), ob.total()), (8, 3, 11));
        let mut cursor = Cursor::new(0);
        let sent = drain(&ob, &mut cursor, BIG);
        assert_eq!(
            sent,
            vec![
                Next::Gap { at_offset: 0, bytes_lost: 3 },
                output(3, 0, b"d"),
                output(4, 100, b"efgh"),
                output(8, 200, b"ijk"),
            ]
        );
        // A read larger than the outbox keeps only its newest bytes.
        ob.push(b"0123456789", 300);
        assert_eq!((ob.held(), ob.dropped(), ob.total()), (8, 3 + 8 + 2, 21));
        let sent = drain(&ob, &mut cursor, BIG);
        assert_eq!(sent, vec![Next::Gap { at_offset: 11, bytes_lost: 2 }, output(13, 300, b"23456789")]);
    }

    #[test]
    fn overflow_drops_resizes_before_the_first_byte_kept() {
        let mut ob = Outbox::new(4);
        ob.push(b"ab", 0);
        ob.push_resize(10, 10, 1);
        ob.push(b"cd", 100);
        ob.push_resize(20, 20, 101);
        ob.push(b"efg", 200); // drops "abc": the first resize (at 2) goes too, the second (at 4) stays
        ob.finish(Some(1), None);
        let sent = drain(&ob, &mut Cursor::new(0), BIG);
        assert_eq!(
            sent,
            vec![
                Next::Gap { at_offset: 0, bytes_lost: 3 },
                output(3, 100, b"d"),
                Next::Resize { seq: 2, offset: 4, t_ms: 101, cols: 20, rows: 20 },
                output(4, 200, b"efg"),
                Next::Exit(ExitRecord { offset: 7, code: Some(1), signal: None }),
            ]
        );
    }

    #[test]
    fn gaps_are_derived_exactly_from_sent_end() {
        let mut ob = Outbox::new(4);
        ob.push(b"0123", 0);
        let mut cursor = Cursor::new(0);
        assert_eq!(drain(&ob, &mut cursor, BIG), vec![output(0, 0, b"0123")]);
        // The connection drops before any ack; meanwhile the outbox overflows.
        ob.push(b"4567", 100);
        ob.push(b"89", 200);
        // Resumed with the server having stored 2 bytes: 2..6 are gone, so exactly 4 bytes are lost.
        let mut cursor = Cursor::new(2);
        assert_eq!(
            drain(&ob, &mut cursor, BIG),
            vec![Next::Gap { at_offset: 2, bytes_lost: 4 }, output(6, 100, b"67"), output(8, 200, b"89")]
        );
        // Resumed with everything up to 7 stored: no gap, the straddling record is sliced.
        let mut cursor = Cursor::new(7);
        assert_eq!(drain(&ob, &mut cursor, BIG), vec![output(7, 100, b"7"), output(8, 200, b"89")]);
    }

    #[test]
    fn exit_after_dropped_bytes_is_preceded_by_a_gap() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"abc", 0);
        ob.release(3);
        ob.finish(None, Some(9));
        // A server that claims to have less than was acknowledged before gets the gap, not made-up bytes.
        assert_eq!(
            drain(&ob, &mut Cursor::new(1), BIG),
            vec![
                Next::Gap { at_offset: 1, bytes_lost: 2 },
                Next::Exit(ExitRecord { offset: 3, code: None, signal: Some(9) })
            ]
        );
    }

    #[test]
    fn release_on_ack_frees_whole_and_partial_records() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"abcd", 0);
        ob.push_resize(1, 1, 50);
        ob.push(b"efgh", 100);
        ob.push_resize(2, 2, 150);
        ob.release(6);
        assert_eq!((ob.held(), ob.acked()), (2, 6));
        // The resize at 4 went with the bytes before it; the one at 8 waits for its turn.
        assert_eq!(
            drain(&ob, &mut Cursor::new(6), BIG),
            vec![output(6, 100, b"gh"), Next::Resize { seq: 2, offset: 8, t_ms: 150, cols: 2, rows: 2 }]
        );
        ob.release(8);
        assert_eq!(ob.held(), 0);
        // The resize exactly at the acked offset is kept: the server may not have stored it yet.
        assert_eq!(
            drain(&ob, &mut Cursor::new(8), BIG),
            vec![Next::Resize { seq: 2, offset: 8, t_ms: 150, cols: 2, rows: 2 }]
        );
        // Acks are monotonic and cannot pass the end.
        ob.release(3);
        ob.release(1000);
        assert_eq!(ob.acked(), 8);
    }

    #[test]
    fn a_resize_is_sent_once_per_connection() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"ab", 0);
        ob.push_resize(3, 3, 1);
        let mut cursor = Cursor::new(0);
        assert_eq!(drain(&ob, &mut cursor, BIG).len(), 2);
        assert_eq!(drain(&ob, &mut cursor, BIG), vec![]);
        ob.push(b"c", 100);
        assert_eq!(drain(&ob, &mut cursor, BIG), vec![output(2, 100, b"c")]);
    }

    #[test]
    fn a_burst_of_resizes_without_output_between_keeps_the_last() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"ab", 0);
        ob.push_resize(3, 3, 1);
        ob.push_resize(4, 4, 2);
        ob.push(b"c", 100);
        ob.push_resize(5, 5, 101);
        let mut cursor = Cursor::new(0);
        assert_eq!(
            drain(&ob, &mut cursor, BIG),
            vec![
                output(0, 0, b"ab"),
                Next::Resize { seq: 2, offset: 2, t_ms: 2, cols: 4, rows: 4 },
                output(2, 100, b"c"),
                Next::Resize { seq: 3, offset: 3, t_ms: 101, cols: 5, rows: 5 },
            ]
        );
        // One that replaces a resize already sent is sent as well.
        ob.push_resize(6, 6, 102);
        assert_eq!(drain(&ob, &mut cursor, BIG), vec![Next::Resize { seq: 4, offset: 3, t_ms: 102, cols: 6, rows: 6 }]);
    }

    #[test]
    fn output_after_the_exit_is_ignored() {
        let mut ob = Outbox::new(BIG);
        ob.push(b"ab", 0);
        let exit = ob.finish(Some(3), None);
        assert!(!ob.push(b"late", 1));
        assert_eq!(exit, ExitRecord { offset: 2, code: Some(3), signal: None });
        assert_eq!(ob.finish(Some(4), None), exit, "the first exit stays");
        assert_eq!(ob.total(), 2);
    }
}
