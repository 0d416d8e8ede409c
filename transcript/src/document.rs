//! A transcript as a terminal shows it: finished rows plus the live screen.

use std::collections::VecDeque;

use avt::{Line, Observation, Observer, ScreenKind, Terminal};
use cmdop_protocol::GapReason;

use crate::decode::Utf8Decoder;
use crate::style::{Span, Style};

/// Finished rows kept in memory before the oldest are dropped (a million one-character lines fit in an 8 MiB
/// ring buffer; the page would not show them usefully, and the plain-text download has them all).
pub const DEFAULT_MAX_ROWS: usize = 250_000;

/// One terminal row of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRow {
    pub spans: Vec<Span>,
    /// Byte offset in the transcript where this row's output began.
    pub offset: u64,
    /// The row continues on the next one (the program's line was longer than the terminal).
    pub wrapped: bool,
}

impl TextRow {
    pub fn text(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }
}

/// Where transcript bytes are missing: lost while the recorder was offline, or dropped by the ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapRow {
    pub at_offset: u64,
    pub bytes: u64,
    pub reason: GapReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Text(TextRow),
    Gap(GapRow),
}

impl Row {
    /// The byte offset the row stands for.
    pub fn offset(&self) -> u64 {
        match self {
            Row::Text(r) => r.offset,
            Row::Gap(g) => g.at_offset,
        }
    }
}

/// The rendering state of one session's transcript.
pub struct Document {
    cols: usize,
    rows: usize,
    term: Terminal,
    decoder: Utf8Decoder,
    /// Rows that left the screen (scrolled off, or frozen before a gap), oldest first.
    history: VecDeque<Row>,
    max_rows: usize,
    /// Rows dropped from the front of `history` to stay within `max_rows`.
    dropped_rows: u64,
    /// Where each primary-screen row's output began, top row first (rows the cursor has not reached have none).
    row_offsets: VecDeque<u64>,
    /// Where the transcript this document shows starts, and where its next byte goes.
    start: u64,
    end: u64,
    /// Bumped by every change, so renderers can tell whether to draw again.
    revision: u64,
    text: String,
}

impl Document {
    /// An empty document for a `cols`×`rows` terminal whose transcript starts at `start_offset` (after a ring
    /// buffer dropped what came before, `start_offset` is where the retained bytes begin).
    pub fn new(cols: u16, rows: u16, start_offset: u64) -> Self {
        let (cols, rows) = (usize::from(cols.max(1)), usize::from(rows.max(1)));
        Document {
            cols,
            rows,
            term: fresh_terminal(cols, rows),
            decoder: Utf8Decoder::default(),
            history: VecDeque::new(),
            max_rows: DEFAULT_MAX_ROWS,
            dropped_rows: 0,
            row_offsets: VecDeque::from([start_offset]),
            start: start_offset,
            end: start_offset,
            revision: 0,
            text: String::new(),
        }
    }

    pub fn with_max_rows(mut self, max_rows: usize) -> Self {
        self.max_rows = max_rows.max(1);
        self
    }

    /// Where the next byte of output is expected.
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    pub fn start_offset(&self) -> u64 {
        self.start
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn size(&self) -> (u16, u16) {
        (self.cols as u16, self.rows as u16)
    }

    /// Finished rows, oldest first.
    pub fn history(&self) -> &VecDeque<Row> {
        &self.history
    }

    /// How many of the oldest rows were let go to bound memory.
    pub fn dropped_rows(&self) -> u64 {
        self.dropped_rows
    }

    /// Output at `offset`. Bytes before the document's end were seen already and are skipped; output after it
    /// (which a well-formed transcript declares as a gap first) is taken as a gap of unknown cause.
    pub fn feed(&mut self, offset: u64, bytes: &[u8]) {
        let skip = self.end.saturating_sub(offset);
        if skip >= bytes.len() as u64 {
            return;
        }
        if offset > self.end {
            self.gap(self.end, offset - self.end, GapReason::RecorderOffline);
        }
        let bytes = &bytes[skip as usize..];
        self.revision += 1;
        // Fed one line at a time, so that each row learns where its output began.
        for segment in bytes.split_inclusive(|b| *b == b'\n') {
            let mut text = std::mem::take(&mut self.text);
            text.clear();
            self.decoder.decode_into(segment, &mut text);
            let segment_start = self.end;
            let mut collector =
                Evicted { history: &mut self.history, row_offsets: &mut self.row_offsets, fallback: segment_start };
            self.term.feed_with(text.as_str(), &mut collector);
            self.text = text;
            self.end += segment.len() as u64;
            self.note_cursor();
            self.bound_history();
        }
    }

    /// A gap: `bytes` bytes at `at_offset` are missing. What the screen showed is frozen into history, the marker
    /// follows, and a fresh terminal goes on (its state after the missing bytes is unknown).
    pub fn gap(&mut self, at_offset: u64, bytes: u64, reason: GapReason) {
        if bytes == 0 || at_offset < self.end && at_offset + bytes <= self.end {
            return;
        }
        self.revision += 1;
        let at_offset = at_offset.max(self.end);
        let mut text = String::new();
        self.decoder.flush_into(&mut text);
        if !text.is_empty() {
            self.term.feed(text.as_str());
        }
        let frozen = self.screen_rows();
        self.history.extend(frozen);
        self.history.push_back(Row::Gap(GapRow { at_offset, bytes, reason }));
        self.bound_history();
        self.end = at_offset + bytes;
        self.term = fresh_terminal(self.cols, self.rows);
        self.row_offsets = VecDeque::from([self.end]);
    }

    /// The terminal was resized at the current end.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let (cols, rows) = (usize::from(cols.max(1)), usize::from(rows.max(1)));
        if (cols, rows) == (self.cols, self.rows) {
            return;
        }
        self.revision += 1;
        self.cols = cols;
        self.rows = rows;
        let mut collector =
            Evicted { history: &mut self.history, row_offsets: &mut self.row_offsets, fallback: self.end };
        self.term.resize_with(cols, rows, &mut collector);
        self.row_offsets.truncate(rows);
        self.bound_history();
    }

    /// The rows of the screen as it stands (the alternate screen while a full-screen program runs), without the
    /// blank rows below the last written one.
    pub fn screen_rows(&self) -> Vec<Row> {
        let screen = self.term.screen();
        let alternate = self.term.active_screen_kind() == ScreenKind::Alternate;
        let cursor_row = if self.term.cursor().visible || !alternate { self.term.cursor().row } else { 0 };
        let lines: Vec<&Line> = screen.visible_lines().collect();
        let last_written = lines.iter().rposition(|l| !is_blank(l)).unwrap_or(0);
        let keep = if self.end == self.start && self.history.is_empty() { 0 } else { last_written.max(cursor_row) + 1 };
        lines
            .into_iter()
            .take(keep.min(self.rows))
            .enumerate()
            .map(|(i, line)| {
                let offset = if alternate { self.end } else { self.row_offsets.get(i).copied().unwrap_or(self.end) };
                Row::Text(text_row(line, offset))
            })
            .collect()
    }

    /// Every row, history then screen, without copying the history.
    pub fn rows(&self) -> Rows<'_> {
        Rows { history: &self.history, screen: self.screen_rows() }
    }

    /// Every row as an owned list (tests, small documents).
    pub fn all_rows(&self) -> Vec<Row> {
        self.rows().iter().cloned().collect()
    }

    /// The transcript as plain text: rows joined, wrapped rows continued, gaps as a bracketed note.
    pub fn plain_text(&self) -> String {
        let mut out = String::new();
        for row in self.rows().iter() {
            match row {
                Row::Text(r) => {
                    out.push_str(r.text().trim_end());
                    if !r.wrapped {
                        out.push('\n');
                    }
                }
                Row::Gap(g) => out.push_str(&format!("[{} bytes {}]\n", g.bytes, gap_words(g.reason))),
            }
        }
        out
    }

    /// Where the cursor is, the rows it reached begin at the current end.
    fn note_cursor(&mut self) {
        if self.term.active_screen_kind() != ScreenKind::Primary {
            return;
        }
        let row = self.term.cursor().row.min(self.rows - 1);
        while self.row_offsets.len() <= row {
            self.row_offsets.push_back(self.end);
        }
    }

    fn bound_history(&mut self) {
        while self.history.len() > self.max_rows {
            self.history.pop_front();
            self.dropped_rows += 1;
        }
    }
}

/// A view of every row: the document's history (borrowed) then its screen.
pub struct Rows<'a> {
    history: &'a VecDeque<Row>,
    screen: Vec<Row>,
}

impl<'a> Rows<'a> {
    pub fn len(&self) -> usize {
        self.history.len() + self.screen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Option<&Row> {
        self.history.get(index).or_else(|| self.screen.get(index - self.history.len()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Row> {
        self.history.iter().chain(self.screen.iter())
    }

    /// The history part, and the screen part.
    pub fn parts(&self) -> (&'a VecDeque<Row>, &[Row]) {
        (self.history, &self.screen)
    }
}

/// Words for a gap's cause, as the page and the text export say them.
pub fn gap_words(reason: GapReason) -> &'static str {
    match reason {
        GapReason::RecorderOffline => "lost while the recorder was offline",
        GapReason::Truncated => "dropped by the ring buffer",
    }
}

/// No scrollback in avt: rows that scroll off are evicted straight into the document's history.
fn fresh_terminal(cols: usize, rows: usize) -> Terminal {
    Terminal::new(cols, rows).expect("cols and rows are at least 1")
}

/// Catches the rows avt lets go.
struct Evicted<'a> {
    history: &'a mut VecDeque<Row>,
    row_offsets: &'a mut VecDeque<u64>,
    fallback: u64,
}

impl Observer for Evicted<'_> {
    type Output = ();

    fn evicted(&mut self, _context: &mut Observation<'_>, line: &Line) {
        let offset = self.row_offsets.pop_front().unwrap_or(self.fallback);
        self.history.push_back(Row::Text(text_row(line, offset)));
    }

    fn end(&mut self, _context: &mut Observation<'_>) {}
}

fn is_blank(line: &Line) -> bool {
    line.cells().iter().all(|c| c.char() == ' ' && c.pen().background().is_none() && !c.pen().is_inverse())
}

fn text_row(line: &Line, offset: u64) -> TextRow {
    let mut spans: Vec<Span> = line
        .chunks(|a, b| a.pen() != b.pen())
        .map(|cells| Span { text: cells.iter().map(|c| c.char()).collect(), style: Style::from(cells[0].pen()) })
        .collect();
    // Trailing blanks that draw nothing are not part of the row (they would only widen selections).
    while let Some(last) = spans.last_mut() {
        if last.style.bg.is_some() || last.style.inverse || last.style.underline || last.style.strikethrough {
            break;
        }
        let trimmed = last.text.trim_end_matches(' ').len();
        last.text.truncate(trimmed);
        if last.text.is_empty() {
            spans.pop();
        } else {
            break;
        }
    }
    TextRow { spans, offset, wrapped: line.is_wrapped() }
}
