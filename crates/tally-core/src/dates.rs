//! Date ranges of the statistics API: whole days in a site's time zone, `to` inclusive,
//! turned into a half-open UTC range for the queries.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A validated range of days in a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub tz: Tz,
}

/// Why a range was refused; the message names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("`{0}` must be a date written YYYY-MM-DD")]
    BadDate(&'static str),
    #[error("`from` is after `to`")]
    Reversed,
    #[error("the range is longer than {0} days")]
    TooLong(u32),
}

/// Local midnight starting `day` (the first instant of the day, even across DST changes).
fn start_of(day: NaiveDate, tz: Tz) -> DateTime<Tz> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .expect("a local time within an hour of midnight exists")
}

impl DayRange {
    /// Parses `from`/`to` (`YYYY-MM-DD`, both default to today in `tz`).
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        tz: Tz,
        now: DateTime<Utc>,
        max_days: u32,
    ) -> Result<Self, RangeError> {
        let today = now.with_timezone(&tz).date_naive();
        let parse = |v: Option<&str>, name| match v {
            None | Some("") => Ok(today),
            Some(v) => {
                NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| RangeError::BadDate(name))
            }
        };
        let from = parse(from, "from")?;
        let to = parse(to, "to")?;
        if from > to {
            return Err(RangeError::Reversed);
        }
        if (to - from).num_days() + 1 > i64::from(max_days) {
            return Err(RangeError::TooLong(max_days));
        }
        Ok(Self { from, to, tz })
    }

    /// First instant of `from`, Unix seconds (clamped to 0).
    pub fn start_utc(&self) -> u32 {
        start_of(self.from, self.tz)
            .timestamp()
            .clamp(0, i64::from(u32::MAX)) as u32
    }

    /// First instant after `to`, Unix seconds.
    pub fn end_utc(&self) -> u32 {
        let next = self.to.checked_add_days(Days::new(1)).unwrap_or(self.to);
        start_of(next, self.tz)
            .timestamp()
            .clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| *d <= self.to)
    }

    /// The start of `day` in the range's time zone, as RFC 3339 with offset.
    pub fn day_start_rfc3339(&self, day: NaiveDate) -> String {
        start_of(day, self.tz).to_rfc3339()
    }

    /// Unix second `ts` in the range's time zone, as RFC 3339 with offset.
    pub fn rfc3339(&self, ts: i64) -> String {
        self.tz
            .timestamp_opt(ts, 0)
            .single()
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2021, 7, 5, 20, 0, 0).unwrap()
    }

    #[test]
    fn ranges_are_whole_local_days() {
        let tz: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        let r = DayRange::parse(Some("2021-07-05"), Some("2021-07-06"), tz, now(), 31).unwrap();
        // 2021-07-05T00:00+07:00 = 2021-07-04T17:00Z
        assert_eq!(
            r.start_utc(),
            Utc.with_ymd_and_hms(2021, 7, 4, 17, 0, 0)
                .unwrap()
                .timestamp() as u32
        );
        assert_eq!(r.end_utc() - r.start_utc(), 2 * 86_400);
        assert_eq!(r.day_start_rfc3339(r.from), "2021-07-05T00:00:00+07:00");
        assert_eq!(r.days().count(), 2);
        // Defaults: today in the zone (20:00Z is already the 6th in UTC+7).
        let today = DayRange::parse(None, None, tz, now(), 31).unwrap();
        assert_eq!(today.from.to_string(), "2021-07-06");
    }

    #[test]
    fn bad_ranges_are_refused() {
        let tz = Tz::UTC;
        assert_eq!(
            DayRange::parse(Some("2021-13-01"), None, tz, now(), 31),
            Err(RangeError::BadDate("from"))
        );
        assert_eq!(
            DayRange::parse(None, Some("5 July"), tz, now(), 31),
            Err(RangeError::BadDate("to"))
        );
        assert_eq!(
            DayRange::parse(Some("2021-07-06"), Some("2021-07-05"), tz, now(), 31),
            Err(RangeError::Reversed)
        );
        assert_eq!(
            DayRange::parse(Some("2021-01-01"), Some("2021-07-05"), tz, now(), 31),
            Err(RangeError::TooLong(31))
        );
    }

    #[test]
    fn days_across_a_dst_change_have_their_real_length() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let r = DayRange::parse(Some("2021-03-28"), Some("2021-03-28"), tz, now(), 31).unwrap();
        assert_eq!(r.end_utc() - r.start_utc(), 23 * 3600);
    }
}
