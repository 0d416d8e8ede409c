//! `tail-server-parts LOG_FILE [COLS ROWS] [REPEAT]`: what `session_page` does with a stored transcript, step by
//! step, timed: feed the bytes (in the store's 64 KiB chunks) into a `Document`, take its rows, write the markup
//! of the last SNAPSHOT_ROWS rows (`cmdop_transcript::html::panel_markup`, as the page does). Also the costs of the
//! alternatives: a smaller snapshot, feeding only the tail of the transcript, and drawing every row (what the
//! browser does after its replay).
use std::time::{Duration, Instant};

use cmdop_transcript::html::panel_markup as markup;
use cmdop_transcript::Document;

// The snapshot size this tool was written for; the page now sends 500 rows (app/src/api.rs), one of the
// alternatives timed below.
const SNAPSHOT_ROWS: usize = 5_000;
const CHUNK: usize = 65_536; // what the recorder's frames come to in the store

fn feed(bytes: &[u8], from: usize, cols: u16, rows: u16) -> Document {
    let mut doc = Document::new(cols, rows, from as u64);
    let mut offset = from;
    for chunk in bytes[from..].chunks(CHUNK) {
        doc.feed(offset as u64, chunk);
        offset += chunk.len();
    }
    doc
}

/// Markup of the last `keep` rows, as `api::server::snapshot` does it.
fn snapshot(doc: &Document, keep: usize) -> String {
    let rows = doc.rows();
    let (history, screen) = rows.parts();
    let omitted = rows.len().saturating_sub(keep);
    let shown_history = history.iter().skip(omitted);
    let shown_screen = &screen[omitted.saturating_sub(history.len())..];
    markup(shown_history, shown_screen)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: tail-server-parts LOG_FILE [COLS ROWS] [REPEAT]");
    let cols: u16 = args.get(2).map_or(120, |s| s.parse().unwrap());
    let rows: u16 = args.get(3).map_or(40, |s| s.parse().unwrap());
    let repeat: usize = args.get(4).map_or(5, |s| s.parse().unwrap());
    let bytes = std::fs::read(path).expect("read the log");
    println!("transcript: {} bytes, terminal {cols}x{rows}, median of {repeat} runs", bytes.len());
    println!();
    println!("| step | ms (median) | output |");
    println!("|---|---|---|");

    let mut t_feed = vec![];
    let mut t_rows = vec![];
    let mut t_snap = vec![];
    let mut t_all = vec![];
    let (mut n_rows, mut snap_len, mut all_len) = (0, 0, 0);
    for _ in 0..repeat {
        let t = Instant::now();
        let doc = feed(&bytes, 0, cols, rows);
        t_feed.push(t.elapsed());
        let t = Instant::now();
        n_rows = doc.rows().len();
        t_rows.push(t.elapsed());
        let t = Instant::now();
        snap_len = snapshot(&doc, SNAPSHOT_ROWS).len();
        t_snap.push(t.elapsed());
        let t = Instant::now();
        all_len = snapshot(&doc, usize::MAX).len();
        t_all.push(t.elapsed());
    }
    let mb = bytes.len() as f64 / 1e6;
    println!("| feed all {} bytes into a Document (avt) | {:.1} | {n_rows} rows ({:.0} MB/s) |", bytes.len(), median(t_feed.clone()), mb / (median(t_feed) / 1000.0));
    println!("| doc.rows() (history + screen) | {:.1} | |", median(t_rows));
    println!("| markup of the last {SNAPSHOT_ROWS} rows (the snapshot) | {:.1} | {snap_len} bytes of HTML |", median(t_snap));
    println!("| markup of all rows (what the browser draws after its replay) | {:.1} | {all_len} bytes of HTML |", median(t_all));
    for keep in [2_000usize, 1_000, 500, 200] {
        let doc = feed(&bytes, 0, cols, rows);
        let mut t_k = vec![];
        let mut len = 0;
        for _ in 0..repeat {
            let t = Instant::now();
            len = snapshot(&doc, keep).len();
            t_k.push(t.elapsed());
        }
        println!("| markup of the last {keep} rows | {:.2} | {len} bytes of HTML |", median(t_k));
    }
    // Feeding only the tail: enough bytes for the snapshot's rows, starting after a line end.
    for tail in [2 << 20, 1 << 20, 512 << 10, 128 << 10] {
        if tail >= bytes.len() {
            continue;
        }
        let mut from = bytes.len() - tail;
        while from < bytes.len() && bytes[from - 1] != b'\n' {
            from += 1;
        }
        let mut t_t = vec![];
        let mut got = 0;
        for _ in 0..repeat {
            let t = Instant::now();
            let doc = feed(&bytes, from, cols, rows);
            got = doc.rows().len();
            let s = snapshot(&doc, SNAPSHOT_ROWS.min(got));
            std::hint::black_box(s);
            t_t.push(t.elapsed());
        }
        println!("| feed only the last {} KiB + markup of its rows | {:.1} | {got} rows |", tail >> 10, median(t_t));
    }
}
