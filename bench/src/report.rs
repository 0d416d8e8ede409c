//! Markdown output: tables and number formats.

use std::time::Duration;

/// A markdown table.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn to_markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.headers);
        out.push_str(&line(&self.headers.iter().map(|_| "---".to_string()).collect::<Vec<_>>()));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

pub fn kib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / 1024.0)
}

/// CPU seconds and the share of one core over `wall`.
pub fn cpu(cpu: Duration, wall: Duration) -> String {
    let pct = if wall.is_zero() { 0.0 } else { 100.0 * cpu.as_secs_f64() / wall.as_secs_f64() };
    format!("{:.2} s ({pct:.0}%)", cpu.as_secs_f64())
}

pub fn yes_no(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_as_markdown() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.to_markdown(), "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
        assert_eq!(cpu(Duration::from_secs(1), Duration::from_secs(2)), "1.00 s (50%)");
        assert_eq!(ms(1500), "1.5");
    }
}
