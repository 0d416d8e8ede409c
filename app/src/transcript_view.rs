//! The transcript panel: markup shared by the server's first paint and the browser's live rendering, and the
//! component around it (find, follow, jump to live).
//!
//! Markup: `<div class="hist">` holds finished rows in blocks of [`BLOCK_ROWS`] (`content-visibility: auto` lets
//! the browser skip laying out blocks that are off screen, so a long transcript stays cheap while every row
//! stays findable and selectable), then `<div class="screen">` holds the terminal's current screen.

use cmdop_transcript::{Row, html};

/// Rows per history block.
pub const BLOCK_ROWS: usize = 256;

/// History blocks then the screen.
pub fn markup<'a>(history: impl IntoIterator<Item = &'a Row>, screen: &[Row]) -> String {
    let mut out = String::from("<div class=\"hist\">");
    let mut in_block = 0;
    for row in history {
        if in_block == 0 {
            out.push_str("<div class=\"blk\">");
        }
        html::push_row(&mut out, row);
        in_block += 1;
        if in_block == BLOCK_ROWS {
            out.push_str("</div>");
            in_block = 0;
        }
    }
    if in_block > 0 {
        out.push_str("</div>");
    }
    out.push_str("</div><div class=\"screen\">");
    for row in screen {
        html::push_row(&mut out, row);
    }
    out.push_str("</div>");
    out
}

/// Builds the terminal of a stored transcript read from offset `slice_from`, as a viewer replaying from there
/// would. When that is not the beginning, the terminal starts after the first line break at or after it, so
/// that it never begins inside an escape sequence or a UTF-8 character.
#[cfg(feature = "ssr")]
pub fn document_from_slice(
    session: &cmdop_protocol::Session,
    slice: &cmdop_store::TranscriptSlice,
    slice_from: u64,
) -> cmdop_transcript::Document {
    use cmdop_store::TranscriptPiece;
    let (cols, rows) = slice.size_before.map_or((session.cols, session.rows), |r| (r.cols, r.rows));
    let pieces = slice.pieces(slice_from);
    let start = if slice_from == 0 {
        0
    } else {
        pieces
            .iter()
            .find_map(|p| match p {
                TranscriptPiece::Bytes { offset, bytes } => {
                    bytes.iter().position(|b| *b == b'\n').map(|at| offset + at as u64 + 1)
                }
                _ => None,
            })
            .unwrap_or(slice_from)
    };
    // Bytes, gaps and resizes before `start` are skipped by the document itself.
    let mut doc = cmdop_transcript::Document::new(cols, rows, start);
    for piece in pieces {
        match piece {
            TranscriptPiece::Bytes { offset, bytes } => doc.feed(offset, bytes),
            TranscriptPiece::Gap { at_offset, bytes_lost, reason } => doc.gap(at_offset, bytes_lost, reason),
            TranscriptPiece::Resize(r) => doc.resize(r.cols, r.rows),
        }
    }
    doc
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use cmdop_store::TranscriptSlice;

    use super::document_from_slice;
    use crate::testing::session;

    fn slice(start: u64, bytes: &[u8]) -> TranscriptSlice {
        TranscriptSlice {
            start_offset: start,
            bytes: bytes.to_vec(),
            total_bytes: start + bytes.len() as u64,
            truncated_bytes: 0,
            gaps: Vec::new(),
            resizes: Vec::new(),
            more: false,
            size_before: None,
        }
    }

    #[test]
    fn a_tail_snapshot_starts_after_the_first_line_break_past_the_cut() {
        // Read from offset 100, in the middle of a colored line: the half line (and its half escape) is skipped.
        let tail = b"m half line\x1b[0m\r\nwhole line\r\n\x1b[31mred\x1b[0m\r\n";
        let doc = document_from_slice(&session(100 + tail.len() as u64), &slice(100, tail), 100);
        assert_eq!(doc.start_offset(), 100 + 17);
        let text = doc.plain_text();
        assert!(text.starts_with("whole line\nred"), "{text:?}");
        assert!(!text.contains("half"), "{text:?}");
        // From the beginning nothing is skipped.
        let doc = document_from_slice(&session(tail.len() as u64), &slice(0, tail), 0);
        assert!(doc.plain_text().starts_with("m half line"), "{:?}", doc.plain_text());
    }
}
