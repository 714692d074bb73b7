//! Date ranges of the statistics API: whole days in a site's time zone, `to` inclusive,
//! turned into a half-open UTC range for the queries; and the site's local hours, the key of
//! the hourly rollups.
//!
//! A local hour is named by its first instant (Unix seconds). In a whole-hour zone that is a
//! UTC hour; in Asia/Kolkata (+05:30) it starts at half past a UTC hour, in Asia/Kathmandu
//! (+05:45) at a quarter to. A day is the local hours between two local midnights: 24 of
//! them, 23 on the day clocks go forward, 25 on the day they go back.

use chrono::{DateTime, Days, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The first instant (Unix seconds) of the local hour in `tz` that holds `ts`.
pub fn local_hour_start(ts: i64, tz: Tz) -> i64 {
    let offset = match tz.timestamp_opt(ts, 0) {
        chrono::LocalResult::Single(t) => i64::from(t.offset().fix().local_minus_utc()),
        _ => 0,
    };
    ts - (ts + offset).rem_euclid(3600)
}

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

    /// Every local hour of the range, by its first instant, in order.
    pub fn hours(&self) -> Vec<DateTime<Tz>> {
        let (start, end) = (i64::from(self.start_utc()), i64::from(self.end_utc()));
        // Every zone's offset is a whole number of quarter hours, so stepping by 15 minutes
        // meets every local hour, whatever the day's length.
        let mut hours: Vec<i64> = (start..end)
            .step_by(900)
            .map(|t| local_hour_start(t, self.tz))
            .collect();
        hours.dedup();
        hours
            .into_iter()
            .map(|h| {
                self.tz
                    .timestamp_opt(h, 0)
                    .single()
                    .expect("a UTC instant is one local time")
            })
            .collect()
    }

    /// The first instant of `day` in the range's time zone.
    pub fn day_start(&self, day: NaiveDate) -> DateTime<Tz> {
        start_of(day, self.tz)
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
        assert_eq!(
            r.day_start(r.from).to_rfc3339(),
            "2021-07-05T00:00:00+07:00"
        );
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

    fn hours_of(zone: &str, day: &str) -> Vec<String> {
        let tz: Tz = zone.parse().unwrap();
        let r = DayRange::parse(Some(day), Some(day), tz, now(), 31).unwrap();
        r.hours().into_iter().map(|h| h.to_rfc3339()).collect()
    }

    #[test]
    fn a_day_has_the_local_hours_of_its_zone() {
        let kolkata = hours_of("Asia/Kolkata", "2026-03-10");
        assert_eq!(kolkata.len(), 24);
        assert_eq!(kolkata[0], "2026-03-10T00:00:00+05:30");
        assert_eq!(kolkata[23], "2026-03-10T23:00:00+05:30");
        let kathmandu = hours_of("Asia/Kathmandu", "2026-03-10");
        assert_eq!(kathmandu.len(), 24);
        assert_eq!(kathmandu[5], "2026-03-10T05:00:00+05:45");
        // Clocks go forward: 02:00 does not exist; back: 02:00 comes twice.
        let spring = hours_of("America/New_York", "2026-03-08");
        assert_eq!(spring.len(), 23);
        assert_eq!(
            spring[1..3],
            ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"]
        );
        let autumn = hours_of("Europe/Berlin", "2026-10-25");
        assert_eq!(autumn.len(), 25);
        assert_eq!(
            autumn[2..4],
            ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
        );
        // Adelaide (+10:30 in summer) goes back to +09:30 on the first Sunday of April.
        let adelaide = hours_of("Australia/Adelaide", "2026-04-05");
        assert_eq!(adelaide.len(), 25);
        assert_eq!(adelaide[0], "2026-04-05T00:00:00+10:30");
    }

    #[test]
    fn an_instant_belongs_to_the_local_hour_around_it() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            local_hour_start(at("2026-03-10T09:10:00Z"), kolkata),
            at("2026-03-10T08:30:00Z")
        );
        assert_eq!(
            local_hour_start(at("2026-03-10T09:40:00Z"), kolkata),
            at("2026-03-10T09:30:00Z")
        );
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            local_hour_start(at("2026-03-10T00:00:00Z"), kathmandu),
            at("2026-03-09T23:15:00Z")
        );
        assert_eq!(
            local_hour_start(at("2026-03-10T09:59:59Z"), Tz::UTC),
            at("2026-03-10T09:00:00Z")
        );
    }

    #[test]
    fn days_across_a_dst_change_have_their_real_length() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let r = DayRange::parse(Some("2021-03-28"), Some("2021-03-28"), tz, now(), 31).unwrap();
        assert_eq!(r.end_utc() - r.start_utc(), 23 * 3600);
    }
}
