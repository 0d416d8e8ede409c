//! The sessions list's filters as they travel in a query string: one parser for `GET /api/v1/sessions` and the
//! `/sessions` page, so that a page's URL and the API call it stands for mean the same thing.
//!
//! `?fleet=<name>&machine=<name>&user=<email>&state=active|ended&range=1h|1d|1w|custom&since=&until=&limit=&cursor=`
//! Empty values mean "not set" (a GET form sends its empty inputs). Times are RFC 3339, or the browser's
//! `datetime-local` form (`2026-11-25T14:30`), read as UTC.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::SessionState;

/// Page size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest `limit` accepted.
pub const MAX_PAGE_SIZE: u32 = 200;

/// A named time window ending now, or a custom one (`since`/`until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeRange {
    LastHour,
    LastDay,
    LastWeek,
    Custom,
}

impl TimeRange {
    pub const ALL: [TimeRange; 4] = [TimeRange::LastHour, TimeRange::LastDay, TimeRange::LastWeek, TimeRange::Custom];

    pub fn as_str(self) -> &'static str {
        match self {
            TimeRange::LastHour => "1h",
            TimeRange::LastDay => "1d",
            TimeRange::LastWeek => "1w",
            TimeRange::Custom => "custom",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TimeRange::LastHour => "Last hour",
            TimeRange::LastDay => "Last day",
            TimeRange::LastWeek => "Last week",
            TimeRange::Custom => "Custom",
        }
    }

    /// How far back a named window reaches (`None` for custom).
    pub fn span(self) -> Option<TimeDelta> {
        match self {
            TimeRange::LastHour => Some(TimeDelta::hours(1)),
            TimeRange::LastDay => Some(TimeDelta::days(1)),
            TimeRange::LastWeek => Some(TimeDelta::weeks(1)),
            TimeRange::Custom => None,
        }
    }

    fn parse(v: &str) -> Option<Self> {
        TimeRange::ALL.into_iter().find(|r| r.as_str() == v)
    }
}

/// Which parameter was wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterError {
    pub field: String,
    pub message: String,
}

impl FilterError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FilterError { field: field.to_string(), message: message.into() }
    }
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FilterError {}

/// Filters of the sessions list, by name. All combine (AND); `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    /// Fleet name.
    pub fleet: Option<String>,
    /// Machine name.
    pub machine: Option<String>,
    /// The starting member's email.
    pub user: Option<String>,
    pub state: Option<SessionState>,
    pub range: Option<TimeRange>,
    /// Started at or after (custom range).
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub since: Option<DateTime<Utc>>,
    /// Started before (custom range).
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl SessionFilter {
    /// Parses a query string (without the `?`; percent-encoded as browsers send it).
    pub fn from_query(query: &str) -> Result<Self, FilterError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        Self::from_pairs(form_urlencoded::parse(query.as_bytes()))
    }

    /// Parses decoded `(name, value)` pairs. Unknown or repeated names are errors: a misspelt filter must not
    /// silently show everything.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, FilterError> {
        let mut f = SessionFilter::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref().trim());
            if seen.iter().any(|s| s == name) {
                return Err(FilterError::new(name, "given more than once"));
            }
            seen.push(name.to_string());
            if value.is_empty() {
                continue;
            }
            match name {
                "fleet" => f.fleet = Some(value.to_string()),
                "machine" => f.machine = Some(value.to_string()),
                "user" => f.user = Some(value.to_string()),
                "state" => {
                    f.state = Some(match value {
                        "active" => SessionState::Active,
                        "ended" => SessionState::Ended,
                        _ => return Err(FilterError::new("state", format!("{value:?} is not one of active, ended"))),
                    })
                }
                "range" => {
                    f.range = Some(TimeRange::parse(value).ok_or_else(|| {
                        FilterError::new("range", format!("{value:?} is not one of 1h, 1d, 1w, custom"))
                    })?)
                }
                "since" => f.since = Some(parse_time("since", value)?),
                "until" => f.until = Some(parse_time("until", value)?),
                "limit" => {
                    f.limit = Some(value.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(
                        || FilterError::new("limit", format!("must be a whole number from 1 to {MAX_PAGE_SIZE}")),
                    )?)
                }
                "cursor" => f.cursor = Some(value.to_string()),
                _ => {
                    return Err(FilterError::new(
                        name,
                        "unknown parameter (known: fleet, machine, user, state, range, since, until, limit, cursor)",
                    ));
                }
            }
        }
        f.check()?;
        Ok(f)
    }

    fn check(&mut self) -> Result<(), FilterError> {
        let custom = self.since.is_some() || self.until.is_some();
        match self.range {
            Some(r) if r != TimeRange::Custom && custom => {
                let field = if self.since.is_some() { "since" } else { "until" };
                return Err(FilterError::new(field, format!("only with range=custom (range is {})", r.as_str())));
            }
            None if custom => self.range = Some(TimeRange::Custom),
            _ => {}
        }
        match (self.since, self.until) {
            (Some(since), Some(until)) if since >= until => Err(FilterError::new("until", "must be later than since")),
            _ => Ok(()),
        }
    }

    /// The started-at window at `now`: `[since, until)`.
    pub fn window(&self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match self.range.and_then(TimeRange::span) {
            Some(span) => (Some(now - span), None),
            None => (self.since, self.until),
        }
    }

    /// The query string (without `?`) that parses back to this filter; empty when nothing is set.
    pub fn to_query(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let opt = |v: &Option<String>| v.clone();
        for (name, value) in [
            ("fleet", opt(&self.fleet)),
            ("machine", opt(&self.machine)),
            ("user", opt(&self.user)),
            ("state", self.state.map(|s| s.as_str().to_string())),
            // A custom range is implied by since/until.
            ("range", self.range.filter(|r| *r != TimeRange::Custom).map(|r| r.as_str().to_string())),
            ("since", self.since.map(format_time)),
            ("until", self.until.map(format_time)),
            ("limit", self.limit.map(|n| n.to_string())),
            ("cursor", opt(&self.cursor)),
        ] {
            if let Some(v) = value {
                out.append_pair(name, &v);
            }
        }
        out.finish()
    }
}

/// RFC 3339 in UTC, to the second, or to the millisecond when the time has a fraction (list times are whole
/// milliseconds). Written from the fields: chrono's format machinery would cost the browser's bundle ~10 KB.
pub fn format_time(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let (date, ms) = (t.date_naive(), t.timestamp_subsec_millis());
    let fraction = if ms == 0 { String::new() } else { format!(".{ms:03}") };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
        date.year(),
        date.month(),
        date.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_time(field: &str, v: &str) -> Result<DateTime<Utc>, FilterError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(FilterError::new(
        field,
        format!("{v:?} is not a time (RFC 3339, e.g. 2026-11-25T14:30:00Z, or YYYY-MM-DDTHH:MM in UTC)"),
    ))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_filter_survives_its_own_query_string() {
        let f = SessionFilter {
            fleet: Some("ops & dev".into()),
            machine: Some("web-1".into()),
            user: Some("ann+ops@example.com".into()),
            state: Some(SessionState::Ended),
            range: Some(TimeRange::Custom),
            since: Some(Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()),
            until: Some(Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap()),
            limit: Some(20),
            cursor: Some("abc_-".into()),
        };
        let q = f.to_query();
        assert!(q.contains("user=ann%2Bops%40example.com"), "{q}");
        assert_eq!(SessionFilter::from_query(&q).unwrap(), f);
        assert_eq!(SessionFilter::from_query(&format!("?{q}")).unwrap(), f);
        assert_eq!(SessionFilter::default().to_query(), "");
        let t = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(format_time(t), "2026-03-04T05:06:07Z");
        assert_eq!(format_time(t + TimeDelta::milliseconds(42)), "2026-03-04T05:06:07.042Z");
    }

    #[test]
    fn empty_values_are_unset_and_browser_times_are_utc() {
        let f = SessionFilter::from_query("fleet=&machine=web-2&user=&range=&since=2026-11-25T14%3A30&until=").unwrap();
        assert_eq!(f.machine.as_deref(), Some("web-2"));
        assert_eq!((f.fleet, f.user, f.until), (None, None, None));
        assert_eq!(f.since, Some(Utc.with_ymd_and_hms(2026, 11, 25, 14, 30, 0).unwrap()));
        assert_eq!(f.range, Some(TimeRange::Custom), "since alone means a custom range");
    }

    #[test]
    fn named_ranges_end_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let f = SessionFilter::from_query("range=1d").unwrap();
        assert_eq!(f.window(now), (Some(now - TimeDelta::days(1)), None));
        let f = SessionFilter::from_query("range=1w").unwrap();
        assert_eq!(f.window(now).0, Some(now - TimeDelta::weeks(1)));
        assert_eq!(SessionFilter::from_query("range=1h").unwrap().window(now).0, Some(now - TimeDelta::hours(1)));
        assert_eq!(SessionFilter::default().window(now), (None, None));
    }

    #[test]
    fn bad_input_names_its_field() {
        let field = |q: &str| SessionFilter::from_query(q).unwrap_err().field;
        assert_eq!(field("state=running"), "state");
        assert_eq!(field("range=2h"), "range");
        assert_eq!(field("since=yesterday"), "since");
        assert_eq!(field("limit=0"), "limit");
        assert_eq!(field("limit=201"), "limit");
        assert_eq!(field("machin=web-1"), "machin");
        assert_eq!(field("machine=a&machine=b"), "machine");
        assert_eq!(field("range=1h&since=2026-11-01"), "since");
        assert_eq!(field("since=2026-11-02&until=2026-11-01"), "until");
        let e = SessionFilter::from_query("state=running").unwrap_err();
        assert_eq!(e.to_string(), "state: \"running\" is not one of active, ended");
    }
}
