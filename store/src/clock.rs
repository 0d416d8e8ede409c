use chrono::{DateTime, TimeZone, Utc};
use std::sync::Mutex;

/// Where the store and the services get "now" from, so that tests can move time (TTLs, durations, retention).
pub trait Clock: Send + Sync + 'static {
    /// The current time, truncated to whole milliseconds (the precision both backends store).
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_ms(Utc::now())
    }
}

/// A clock that stands still until told to move; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(truncate_ms(start)))
    }

    /// A fixed, readable starting point.
    pub fn at_epoch_2026() -> Self {
        Self::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap();
        *now = truncate_ms(*now + by);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap() = truncate_ms(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

pub(crate) fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).expect("in range")
}

/// The first whole millisecond at or after `t`.
pub(crate) fn ceil_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    let down = truncate_ms(t);
    if down == t { t } else { down + chrono::Duration::milliseconds(1) }
}
