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

/// Builds the terminal of a stored transcript (all of it that is retained), as a viewer replaying from 0 would.
#[cfg(feature = "ssr")]
pub fn document_from_slice(
    session: &cmdop_protocol::Session,
    slice: &cmdop_store::TranscriptSlice,
) -> cmdop_transcript::Document {
    use cmdop_store::TranscriptPiece;
    let (cols, rows) = slice.size_before.map_or((session.cols, session.rows), |r| (r.cols, r.rows));
    let mut doc = cmdop_transcript::Document::new(cols, rows, 0);
    for piece in slice.pieces(0) {
        match piece {
            TranscriptPiece::Bytes { offset, bytes } => doc.feed(offset, bytes),
            TranscriptPiece::Gap { at_offset, bytes_lost, reason } => doc.gap(at_offset, bytes_lost, reason),
            TranscriptPiece::Resize(r) => doc.resize(r.cols, r.rows),
        }
    }
    doc
}
