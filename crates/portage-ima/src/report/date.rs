//! Calendar dates in UTC for reports (a certificate's expiry, a policy's
//! timestamp), without a time-zone database.

use std::time::SystemTime;

/// A moment in UTC: the civil date and the time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// `t` in UTC; times before 1970 too.
    pub(crate) fn of(t: SystemTime) -> UtcTime {
        let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        // Civil date from days since the epoch (Howard Hinnant's algorithm).
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let of_day = secs.rem_euclid(86_400);
        UtcTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u32,
            day: day as u32,
            hour: (of_day / 3600) as u32,
            minute: (of_day % 3600 / 60) as u32,
            second: (of_day % 60) as u32,
        }
    }

    /// `2026-11-28 UTC`
    pub(crate) fn date(&self) -> String {
        format!("{:04}-{:02}-{:02} UTC", self.year, self.month, self.day)
    }

    /// `2026-11-28T07:06:00Z` (RFC 3339)
    pub(crate) fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn calendar_dates_in_utc() {
        let at = |secs| UtcTime::of(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_976_846).rfc3339(), "2026-11-29T18:27:26Z");
        let before = UtcTime::of(SystemTime::UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before.rfc3339(), "1969-12-31T23:59:59Z");
    }
}
