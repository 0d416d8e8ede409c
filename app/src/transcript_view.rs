//! The transcript panel: the terminal of a stored transcript for the server's first paint. Its markup (history
//! blocks, then the screen) is `cmdop_transcript::html::panel_markup`, which the browser's live rendering writes
//! too.

pub use cmdop_transcript::html::{BLOCK_ROWS, panel_markup as markup};

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
