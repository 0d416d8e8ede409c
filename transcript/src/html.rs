//! Rows as HTML. Everything a program printed is escaped: transcript text can never become markup.
//!
//! Classes (styled by the page's CSS): `r` a text row (`r w` when it wraps onto the next), `gap` a gap marker;
//! inside rows `fg-N`/`bg-N` for the 16 themable colors, `fg-bg`/`bg-fg` for inverse video on default colors,
//! `b` bold, `f` faint, `i` italic, `u` underline, `s` strikethrough, `k` blink. Other colors are inline styles.

use crate::document::{GapRow, Row, TextRow, gap_words};
use crate::style::{Color, Style};

/// Appends one row. `data-o` is the byte offset the row stands for (`#offset=N` links find rows by it).
pub fn push_row(out: &mut String, row: &Row) {
    match row {
        Row::Text(r) => {
            open_row(out, r);
            for span in &r.spans {
                let styled = open_span(out, &span.style);
                escape_into(out, &span.text);
                if styled {
                    out.push_str("</span>");
                }
            }
            out.push_str("</div>");
        }
        Row::Gap(g) => push_gap(out, g),
    }
}

/// A text row with find matches marked: `marks` are (first char, end char, is the current match). A match that
/// crosses styles is marked in each span it covers.
pub fn push_row_marked(out: &mut String, row: &TextRow, marks: &[(usize, usize, bool)]) {
    open_row(out, row);
    let mark_at = |p: usize| marks.iter().find(|m| m.0 <= p && p < m.1).map(|m| m.2);
    let mut at = 0usize;
    for span in &row.spans {
        let styled = open_span(out, &span.style);
        let chars: Vec<char> = span.text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let state = mark_at(at + i);
            let run = (i..chars.len()).take_while(|k| mark_at(at + k) == state).count();
            let text: String = chars[i..i + run].iter().collect();
            match state {
                Some(current) => {
                    out.push_str(if current { "<mark class=\"cur\">" } else { "<mark>" });
                    escape_into(out, &text);
                    out.push_str("</mark>");
                }
                None => escape_into(out, &text),
            }
            i += run;
        }
        at += chars.len();
        if styled {
            out.push_str("</span>");
        }
    }
    out.push_str("</div>");
}

fn open_row(out: &mut String, row: &TextRow) {
    out.push_str(if row.wrapped { "<div class=\"r w\" data-o=\"" } else { "<div class=\"r\" data-o=\"" });
    out.push_str(&row.offset.to_string());
    out.push_str("\">");
}

/// Opens a `<span>` for a style that draws anything; says whether it did (plain text needs none).
fn open_span(out: &mut String, style: &Style) -> bool {
    if style.is_plain() {
        return false;
    }
    let (class, inline) = css(style);
    out.push_str("<span");
    if !class.is_empty() {
        out.push_str(" class=\"");
        out.push_str(&class);
        out.push('"');
    }
    if !inline.is_empty() {
        out.push_str(" style=\"");
        out.push_str(&inline);
        out.push('"');
    }
    out.push('>');
    true
}

/// All rows, in order.
pub fn rows<'a>(rows: impl IntoIterator<Item = &'a Row>) -> String {
    let mut out = String::new();
    for row in rows {
        push_row(&mut out, row);
    }
    out
}

/// What a gap marker says: the exact byte count, a readable size and the cause.
pub fn gap_label(g: &GapRow) -> String {
    let exact = group_thousands(g.bytes);
    let unit = if g.bytes == 1 { "byte" } else { "bytes" };
    if g.bytes >= 1024 {
        format!("{exact} {unit} ({}) {}", human_size(g.bytes), gap_words(g.reason))
    } else {
        format!("{exact} {unit} {}", gap_words(g.reason))
    }
}

fn push_gap(out: &mut String, g: &GapRow) {
    out.push_str("<div class=\"gap\" role=\"note\" data-o=\"");
    out.push_str(&g.at_offset.to_string());
    out.push_str("\" data-bytes=\"");
    out.push_str(&g.bytes.to_string());
    out.push_str("\"><span>");
    escape_into(out, &gap_label(g));
    out.push_str("</span></div>");
}

/// Classes and inline style for a style. Inverse swaps foreground and background, defaults included.
pub fn css(style: &Style) -> (String, String) {
    let mut class: Vec<String> = Vec::new();
    let mut inline = String::new();
    let (fg, bg) = if style.inverse { (style.bg, style.fg) } else { (style.fg, style.bg) };
    match fg {
        Some(c) => color(&mut class, &mut inline, "fg", "color", c),
        None if style.inverse => class.push("fg-bg".into()),
        None => {}
    }
    match bg {
        Some(c) => color(&mut class, &mut inline, "bg", "background-color", c),
        None if style.inverse => class.push("bg-fg".into()),
        None => {}
    }
    for (on, name) in [
        (style.bold, "b"),
        (style.faint, "f"),
        (style.italic, "i"),
        (style.underline, "u"),
        (style.strikethrough, "s"),
        (style.blink, "k"),
    ] {
        if on {
            class.push(name.into());
        }
    }
    (class.join(" "), inline)
}

fn color(class: &mut Vec<String>, inline: &mut String, prefix: &str, property: &str, c: Color) {
    match (c, c.css()) {
        (Color::Indexed(n), None) => class.push(format!("{prefix}-{n}")),
        (_, Some(value)) => {
            inline.push_str(property);
            inline.push(':');
            inline.push_str(&value);
            inline.push(';');
        }
        (Color::Rgb(..), None) => {}
    }
}

/// Rows per history block of [`panel_markup`].
pub const BLOCK_ROWS: usize = 256;

/// A transcript panel: `<div class="hist">` holds finished rows in blocks of [`BLOCK_ROWS`]
/// (`content-visibility: auto` lets the browser skip laying out blocks that are off screen, so a long transcript
/// stays cheap while every row stays findable and selectable), then `<div class="screen">` holds the terminal's
/// current screen. The server's first paint and the browser's live rendering both write it.
pub fn panel_markup<'a>(history: impl IntoIterator<Item = &'a Row>, screen: &[Row]) -> String {
    let mut out = String::from("<div class=\"hist\">");
    let mut in_block = 0;
    for row in history {
        if in_block == 0 {
            out.push_str("<div class=\"blk\">");
        }
        push_row(&mut out, row);
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
        push_row(&mut out, row);
    }
    out.push_str("</div>");
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_into(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // C0/C1 controls never reach a cell, but a NUL in the DOM is never wanted.
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// 1234567 -> "1,234,567".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Binary units with one decimal: "1.5 MiB". Integer arithmetic: formatting an `f64` would bring ~14 KB of float
/// printing into the browser's bundle.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut divisor: u128 = 1;
    while u128::from(n) >= divisor * 1024 && unit < UNITS.len() - 1 {
        divisor *= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    // Tenths, rounded half up; what rounds up to 1024 of a unit is shown as 1.0 of the next.
    let mut tenths = (u128::from(n) * 10 + divisor / 2) / divisor;
    if tenths >= 10240 && unit < UNITS.len() - 1 {
        divisor *= 1024;
        unit += 1;
        tenths = (u128::from(n) * 10 + divisor / 2) / divisor;
    }
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn human_size_uses_binary_units_with_one_rounded_decimal() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1587), "1.5 KiB"); // 1.5498
        assert_eq!(human_size(1588), "1.6 KiB"); // 1.5508
        assert_eq!(human_size(8 * 1024 * 1024), "8.0 MiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(5 * (1 << 40)), "5.0 TiB");
        assert_eq!(human_size(u64::MAX), "16777216.0 TiB");
    }
}
