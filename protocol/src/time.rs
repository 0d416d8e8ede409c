//! Timestamps on the wire: RFC 3339, written by chrono as always (`2026-11-25T04:19:30.491215Z`), read by a small
//! parser of that one format. chrono's own reader is a general format parser that costs the browser's bundle about
//! 20 KB; the pages read hundreds of timestamps and never another format.
//!
//! Use on fields: `#[serde(with = "crate::time::rfc3339")]`, or `rfc3339_opt` for an `Option`.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// Reads `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`T` may be `t` or a space, `Z` may be `z`, as RFC 3339
/// allows). A leap second (`:60`) is read as chrono represents it. `None` when the text is not such a time.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, mut second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut at = 19;
    let mut nanos = 0u32;
    if sep(at, b".") {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            // Digits past nanoseconds are read and dropped.
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        let read = at - start;
        if read == 0 {
            return None;
        }
        nanos *= 10u32.pow(9u32.saturating_sub(read as u32));
    }
    let offset_seconds = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && sep(at + 3, b":") => {
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    if second == 60 {
        second = 59;
        nanos += 1_000_000_000;
    }
    let local = NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    Some(local.checked_sub_signed(TimeDelta::seconds(offset_seconds))?.and_utc())
}

struct Rfc3339Visitor;

impl serde::de::Visitor<'_> for Rfc3339Visitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an RFC 3339 date and time, like 2026-11-25T04:19:30Z")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_rfc3339(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
    }
}

/// `#[serde(with = "crate::time::rfc3339")]` for a `DateTime<Utc>`.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(super::Rfc3339Visitor)
    }
}

/// `#[serde(default, with = "crate::time::rfc3339_opt")]` for an `Option<DateTime<Utc>>` (null or absent: `None`).
pub mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::rfc3339")] DateTime<Utc>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;
    use chrono::{DateTime, TimeZone, Utc};

    /// What chrono's own reader makes of `s`.
    fn chrono_reads(s: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn reads_what_chrono_writes_back_to_the_same_instant() {
        let times = [
            Utc.with_ymd_and_hms(2026, 11, 25, 4, 19, 30).unwrap(),
            Utc.timestamp_millis_opt(1_764_044_370_491).unwrap(),
            Utc.timestamp_nanos(1_764_044_370_491_215_123),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap(),
        ];
        for t in times {
            let json = serde_json::to_string(&t).unwrap();
            let text: String = serde_json::from_str(&json).unwrap();
            assert_eq!(parse_rfc3339(&text), Some(t), "{text}");
        }
    }

    #[test]
    fn agrees_with_chrono_on_offsets_fractions_and_spellings() {
        for s in [
            "2026-11-25T05:19:30+01:00",
            "2026-11-24T20:19:30.5-08:00",
            "2026-11-25t04:19:30z",
            "2026-11-25 04:19:30Z",
            "2026-11-25T04:19:30.123456789Z",
            "2026-11-25T04:19:30.1234567891Z",
            "2026-12-31T23:59:60Z",
            "2026-11-25T00:30:00+23:59",
        ] {
            assert!(chrono_reads(s).is_some(), "chrono reads {s}");
            assert_eq!(parse_rfc3339(s), chrono_reads(s), "{s}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_rfc_3339_time() {
        for s in [
            "",
            "2026-11-25",
            "2026-11-25T04:19:30",
            "2026-11-25T04:19Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T04:19:30.Z",
            "2026-11-25T04:19:30Zjunk",
            "2026-11-25T04:19:30+0100",
            "2026-11-25T04:19:30+24:00",
            "2026/11/25T04:19:30Z",
            "+2026-11-25T04:19:30Z",
            "2026-11-25T04:19:3aZ",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn serde_fields_read_times_and_refuse_junk_naming_the_expectation() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Row {
            #[serde(with = "super::rfc3339")]
            at: DateTime<Utc>,
            #[serde(default, with = "super::rfc3339_opt")]
            until: Option<DateTime<Utc>>,
        }
        let at = Utc.timestamp_millis_opt(1_764_044_370_491).unwrap();
        let row = Row { at, until: None };
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(json, r#"{"at":"2025-11-25T04:19:30.491Z","until":null}"#);
        assert_eq!(serde_json::from_str::<Row>(&json).unwrap(), row);
        assert_eq!(serde_json::from_str::<Row>(r#"{"at":"2025-11-25T04:19:30.491Z"}"#).unwrap(), row);
        let both = Row { at, until: Some(at) };
        assert_eq!(serde_json::from_str::<Row>(&serde_json::to_string(&both).unwrap()).unwrap(), both);
        let err = serde_json::from_str::<Row>(r#"{"at":"yesterday"}"#).unwrap_err().to_string();
        assert!(err.contains("an RFC 3339 date and time"), "{err}");
    }
}
