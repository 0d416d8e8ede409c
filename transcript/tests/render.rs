//! What a reader of a recorded session sees: rows as a terminal would draw them.

use cmdop_protocol::GapReason;
use cmdop_transcript::{Color, Document, Row, TextRow, html};

fn doc(bytes: &[u8]) -> Document {
    let mut d = Document::new(80, 24, 0);
    d.feed(0, bytes);
    d
}

fn texts(d: &Document) -> Vec<String> {
    d.all_rows()
        .iter()
        .map(|r| match r {
            Row::Text(t) => t.text(),
            Row::Gap(g) => format!("<gap {} at {}>", g.bytes, g.at_offset),
        })
        .collect()
}

fn text_rows(d: &Document) -> Vec<TextRow> {
    d.all_rows()
        .into_iter()
        .filter_map(|r| match r {
            Row::Text(t) => Some(t),
            Row::Gap(_) => None,
        })
        .collect()
}

#[test]
fn carriage_return_overwrites_and_erase_erases() {
    let d = doc(b"progress  10%\rprogress 100%\r\nabcdef\x1b[3D\x1b[K!\r\n");
    assert_eq!(texts(&d), ["progress 100%", "abc!", ""]);
}

#[test]
fn sgr_colors_become_styles_and_classes() {
    let d = doc(b"\x1b[31mred\x1b[0m \x1b[1;38;5;208mamber\x1b[0m \x1b[48;2;1;2;3mrgb\x1b[0m \x1b[7minv\x1b[0m");
    let row = &text_rows(&d)[0];
    let red = row.spans.iter().find(|s| s.text == "red").expect("red span");
    assert_eq!(red.style.fg, Some(Color::Indexed(1)));
    let html = html::rows(&d.all_rows());
    assert!(html.contains(r#"<span class="fg-1">red</span>"#), "{html}");
    assert!(html.contains(r#"<span class="b" style="color:#ff8700;">amber</span>"#), "{html}");
    assert!(html.contains(r#"style="background-color:#010203;">rgb</span>"#), "{html}");
    assert!(html.contains(r#"<span class="fg-bg bg-fg">inv</span>"#), "{html}");
}

#[test]
fn printed_markup_stays_text() {
    let d = doc(b"<script>alert('x')</script> & <img src=x onerror=alert(1)>\r\n");
    let html = html::rows(&d.all_rows());
    assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img"), "{html}");
}

#[test]
fn rows_scroll_into_history_in_order_with_their_offsets() {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for i in 0..100 {
        starts.push(bytes.len() as u64);
        bytes.extend_from_slice(format!("line {i}\r\n").as_bytes());
    }
    // Whatever the chunking, the same rows and offsets.
    for chunk in [1, 3, 7, 64, bytes.len()] {
        let mut d = Document::new(80, 24, 0);
        let mut at = 0u64;
        for c in bytes.chunks(chunk) {
            d.feed(at, c);
            at += c.len() as u64;
        }
        let rows = text_rows(&d);
        let lines: Vec<String> = rows.iter().map(TextRow::text).collect();
        let expected: Vec<String> = (0..100).map(|i| format!("line {i}")).chain([String::new()]).collect();
        assert_eq!(lines, expected, "chunk {chunk}");
        let offsets: Vec<u64> = rows.iter().take(100).map(|r| r.offset).collect();
        assert_eq!(offsets, starts, "chunk {chunk}");
        assert_eq!(d.end_offset(), bytes.len() as u64);
    }
}

#[test]
fn a_gap_stands_between_what_came_before_and_after() {
    let mut d = Document::new(80, 24, 0);
    d.feed(0, b"before\r\n");
    d.gap(8, 1000, GapReason::RecorderOffline);
    d.feed(1008, b"after");
    assert_eq!(texts(&d), ["before", "", "<gap 1000 at 8>", "after"]);
    let html = html::rows(&d.all_rows());
    assert!(html.contains("1,000 bytes lost while the recorder was offline"), "{html}");
    assert_eq!(d.end_offset(), 1013);
}

#[test]
fn output_past_the_end_is_a_gap_and_resent_output_is_skipped() {
    let mut d = Document::new(80, 24, 0);
    d.feed(0, b"abc");
    d.feed(0, b"abcdef");
    d.feed(10, b"X");
    assert_eq!(texts(&d), ["abcdef", "<gap 4 at 6>", "X"]);
}

#[test]
fn the_alternate_screen_shows_while_active_and_goes_when_left() {
    let mut d = Document::new(20, 5, 0);
    d.feed(0, b"shell$ vim\r\n\x1b[?1049h\x1b[HEDITING");
    assert_eq!(texts(&d)[0], "EDITING");
    let end = d.end_offset();
    d.feed(end, b"\x1b[?1049lshell$ ");
    assert_eq!(texts(&d), ["shell$ vim", "shell$"]);
}

#[test]
fn wide_and_invalid_characters() {
    let d = doc("世界 ok\r\n".as_bytes());
    assert_eq!(texts(&d)[0], "世界 ok");
    let d = doc(b"a\xffb\r\n");
    assert_eq!(texts(&d)[0], "a\u{FFFD}b");
}

#[test]
fn plain_text_joins_wrapped_rows() {
    let mut d = Document::new(10, 5, 0);
    d.feed(0, b"0123456789abcde\r\nnext\r\n");
    assert_eq!(texts(&d)[..2], ["0123456789", "abcde"]);
    assert_eq!(d.plain_text(), "0123456789abcde\nnext\n\n");
}

#[test]
fn history_is_bounded_and_counts_what_it_dropped() {
    let mut d = Document::new(80, 5, 0).with_max_rows(10);
    let bytes: Vec<u8> = (0..50).flat_map(|i| format!("{i}\r\n").into_bytes()).collect();
    d.feed(0, &bytes);
    assert_eq!(d.history().len(), 10);
    assert_eq!(d.dropped_rows(), 50 - 4 - 10);
    assert_eq!(text_rows(&d)[0].text(), "36");
}

#[test]
fn find_marks_cross_styles_and_stay_escaped() {
    let d = doc(b"a<b \x1b[31mred\x1b[0mdy\r\n");
    let row = &text_rows(&d)[0];
    let mut out = String::new();
    // "a<b reddy": mark "<b" (current) and "reddy" (crossing from red into plain).
    html::push_row_marked(&mut out, row, &[(1, 3, true), (4, 9, false)]);
    assert_eq!(
        out,
        r#"<div class="r" data-o="0">a<mark class="cur">&lt;b</mark> <span class="fg-1"><mark>red</mark></span><mark>dy</mark></div>"#
    );
}
