//! Row types of the `events` table.

use chrono_tz::Tz;
use serde::Serialize;
use tally_core::Event;

/// One row of `events`, in the column order of the table (RowBinary is positional).
#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct EventRow {
    pub event_id: String,
    pub site: String,
    /// `Enum8` value, see `EventKind::code`.
    pub kind: i8,
    /// Seconds since the epoch (`DateTime`).
    pub ts: u32,
    pub ts_ms: u16,
    pub page: String,
    pub path: String,
    pub title: String,
    pub referrer_host: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub browser: String,
    pub os: String,
    pub device: String,
    pub country: String,
    pub visitor: u64,
    pub session: u64,
    pub new_visit: u8,
    pub tab: String,
    pub width: u16,
    pub visit_seq: u16,
    pub gap_ms: u32,
    /// The event's date in its site's time zone (`Date`: days since 1970-01-01), the key
    /// of the daily rollups.
    pub day: u16,
    /// The first instant of the event's hour in its site's time zone (`DateTime`, seconds),
    /// the key of the hourly rollups.
    pub hour: u32,
}

impl EventRow {
    /// The row of `event`, read from `partition`'s stream under `stream_id` (the event's
    /// key: `StreamEntry::key` in tally-redis); `tz` is the time zone of the event's site.
    pub fn new(partition: u16, stream_id: &str, event: Event, tz: Tz) -> Self {
        let ts_ms = event.ts_ms.max(0);
        let hour = tally_core::dates::local_hour_start(ts_ms / 1000, tz);
        Self {
            day: local_day(ts_ms, tz),
            hour: u32::try_from(hour.max(0)).unwrap_or(u32::MAX),
            event_id: event_id(partition, stream_id),
            site: event.site,
            kind: event.kind.code(),
            ts: u32::try_from(ts_ms / 1000).unwrap_or(u32::MAX),
            ts_ms: (ts_ms % 1000) as u16,
            page: event.page,
            path: event.path,
            title: event.title,
            referrer_host: event.referrer_host,
            utm_source: event.utm_source,
            utm_medium: event.utm_medium,
            utm_campaign: event.utm_campaign,
            browser: event.browser,
            os: event.os,
            device: event.device,
            country: event.country,
            visitor: event.visitor,
            session: event.session,
            new_visit: u8::from(event.new_visit),
            tab: event.tab,
            width: event.width,
            visit_seq: event.visit_seq,
            gap_ms: event.gap_ms,
        }
    }
}

/// The date of `ts_ms` in `tz` as days since 1970-01-01 (ClickHouse `Date`).
fn local_day(ts_ms: i64, tz: Tz) -> u16 {
    let Some(utc) = chrono::DateTime::from_timestamp_millis(ts_ms) else {
        return 0;
    };
    let days = utc
        .with_timezone(&tz)
        .date_naive()
        .signed_duration_since(chrono::NaiveDate::default())
        .num_days();
    u16::try_from(days.max(0)).unwrap_or(u16::MAX)
}

/// The `event_id` of the event named `key` in `partition`'s stream (its entry's stream id,
/// and its place in the entry's batch: `ms-seq-i`). Stream ids are unique only within one
/// stream, so the partition is part of the id.
pub fn event_id(partition: u16, stream_id: &str) -> String {
    format!("{partition}-{stream_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_day_is_the_date_in_the_sites_zone() {
        // 2026-11-25T18:30:00Z is already 26 November in Ho Chi Minh City (UTC+7).
        let ts = 1_795_631_400_000;
        let utc = local_day(ts, chrono_tz::UTC);
        let hcm = local_day(ts, chrono_tz::Asia::Ho_Chi_Minh);
        assert_eq!(hcm, utc + 1);
        assert_eq!(
            chrono::NaiveDate::default() + chrono::Days::new(u64::from(utc)),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
        );
        assert_eq!(local_day(0, chrono_tz::UTC), 0);
    }
}
