//! Human-readable numbers. Pure functions of their input, so the server and the browser render the same text
//! (anything else would be a hydration mismatch).

use chrono::{DateTime, Utc};

/// `1h 02m`, `3m 07s`, `12.4s`, `850ms`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", s, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `512 B`, `1.5 KiB`, `8.0 MiB` (the transcript's gap markers say sizes the same way).
pub fn bytes(n: u64) -> String {
    cmdop_transcript::html::human_size(n)
}

/// `2026-11-24 17:39:02 UTC`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // From the fields, not a chrono format string: the format machinery costs ~10 KB of WASM.
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration_ms(0), "0ms");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_460), "12.4s");
        assert_eq!(duration_ms(187_000), "3m 07s");
        assert_eq!(duration_ms(3_720_000), "1h 02m");
    }

    #[test]
    fn timestamps_are_utc_to_the_second() {
        use chrono::TimeZone;
        let t = Utc.with_ymd_and_hms(2026, 1, 5, 7, 3, 9).unwrap() + chrono::TimeDelta::milliseconds(999);
        assert_eq!(timestamp(t), "2026-01-05 07:03:09 UTC");
    }

    #[test]
    fn byte_counts_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(8 * 1024 * 1024), "8.0 MiB");
    }
}
