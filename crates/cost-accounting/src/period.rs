//! Budget periods in UTC: day, month, total.

use policy_engine::Period;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// A hashable copy of [`Period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum PeriodKey {
    Day,
    Month,
    Total,
}

impl From<Period> for PeriodKey {
    fn from(p: Period) -> Self {
        match p {
            Period::Day => PeriodKey::Day,
            Period::Month => PeriodKey::Month,
            Period::Total => PeriodKey::Total,
        }
    }
}

impl PeriodKey {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PeriodKey::Day => "day",
            PeriodKey::Month => "month",
            PeriodKey::Total => "total",
        }
    }

    /// Start of the period containing `ts_ms` (Unix ms, UTC); `i64::MIN` for `Total`.
    pub(crate) fn start_ms(self, ts_ms: i64) -> i64 {
        const DAY_MS: i64 = 86_400_000;
        match self {
            PeriodKey::Total => i64::MIN,
            PeriodKey::Day => ts_ms.div_euclid(DAY_MS) * DAY_MS,
            PeriodKey::Month => {
                let day_start = ts_ms.div_euclid(DAY_MS) * DAY_MS;
                match OffsetDateTime::from_unix_timestamp(ts_ms.div_euclid(1000)) {
                    Ok(t) => day_start - i64::from(t.day() - 1) * DAY_MS,
                    Err(_) => day_start,
                }
            }
        }
    }

    /// When the period starting at `start_ms` ends (Unix ms); `None` for `Total`.
    pub(crate) fn reset_ms(self, start_ms: i64) -> Option<i64> {
        match self {
            PeriodKey::Total => None,
            PeriodKey::Day => Some(start_ms + 86_400_000),
            PeriodKey::Month => {
                let t = OffsetDateTime::from_unix_timestamp(start_ms.div_euclid(1000)).ok()?;
                let (year, month) = match t.month() {
                    Month::December => (t.year() + 1, Month::January),
                    m => (t.year(), m.next()),
                };
                let next = Date::from_calendar_date(year, month, 1).ok()?;
                Some(next.midnight().assume_utc().unix_timestamp() * 1000)
            }
        }
    }
}

/// RFC 3339 of a Unix-ms instant (`1970-01-01T00:00:00Z` form, UTC).
pub(crate) fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        let t = OffsetDateTime::parse(s, &Rfc3339).unwrap();
        t.unix_timestamp() * 1000
    }

    #[test]
    fn day_and_month_periods_in_utc() {
        let t = ms("2025-03-17T15:04:05Z") + 123;
        assert_eq!(PeriodKey::Day.start_ms(t), ms("2025-03-17T00:00:00Z"));
        assert_eq!(
            PeriodKey::Day.reset_ms(PeriodKey::Day.start_ms(t)),
            Some(ms("2025-03-18T00:00:00Z"))
        );
        assert_eq!(PeriodKey::Month.start_ms(t), ms("2025-03-01T00:00:00Z"));
        assert_eq!(
            PeriodKey::Month.reset_ms(ms("2025-12-01T00:00:00Z")),
            Some(ms("2026-01-01T00:00:00Z"))
        );
        assert_eq!(PeriodKey::Total.reset_ms(0), None);
        assert_eq!(rfc3339(ms("2025-03-18T00:00:00Z")), "2025-03-18T00:00:00Z");
    }
}
