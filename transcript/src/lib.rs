//! Terminal rendering of recorded sessions.
//!
//! A [`Document`] takes the transcript as it is stored (output bytes at offsets, gaps, resizes) and keeps what a
//! terminal would show: rows that scrolled off (or were frozen before a gap) plus the live screen. Each text row
//! remembers the byte offset where it began, so `#offset=N` links can find it. [`html`] turns rows into escaped
//! HTML that the server sends for the first paint and the browser uses afterwards, so both look the same.

mod decode;
mod document;
pub mod html;
mod style;

pub use decode::Utf8Decoder;
pub use document::{DEFAULT_MAX_ROWS, Document, GapRow, Row, Rows, TextRow};
pub use style::{Color, Span, Style};
