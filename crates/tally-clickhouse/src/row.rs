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
    /// `ll` or `ll-RR` (migration 11).
    pub language: String,
    /// From `geoip.database` (migration 11).
    pub region: String,
    pub city: String,
    /// A custom event's name, target and properties (migration 13).
    pub name: String,
    pub target: String,
    pub prop_keys: Vec<String>,
    pub prop_values: Vec<String>,
}

impl EventRow {
    /// The row of `event`, read from `partition`'s stream under `event_key` (`ms-seq-i`:
    /// `tally_redis::wire::EventKey`); `tz` is the time zone of the event's site.
    pub fn new(partition: u16, event_key: &str, event: Event, tz: Tz) -> Self {
        let ts_ms = event.ts_ms.max(0);
        let hour = tally_core::dates::local_hour_start(ts_ms / 1000, tz);
        Self {
            day: local_day(ts_ms, tz),
            hour: u32::try_from(hour.max(0)).unwrap_or(u32::MAX),
            event_id: event_id(partition, event_key),
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
            language: event.language,
            region: event.region,
            city: event.city,
            name: event.name,
            target: event.target,
            prop_keys: event.props.iter().map(|(k, _)| k.clone()).collect(),
            prop_values: event.props.into_iter().map(|(_, v)| v).collect(),
        }
    }
}

impl EventRow {
    /// The event's key in its partition's stream: the `event_id` without the partition.
    pub fn event_key(&self) -> &str {
        self.event_id.split_once('-').map_or("", |(_, key)| key)
    }

    /// The event this row was made from, with its visit figures: what a dead letter keeps,
    /// so that it can be sent through the worker again.
    pub fn event(&self) -> Event {
        Event {
            kind: tally_core::EventKind::from_code(self.kind).unwrap_or(tally_core::EventKind::Bot),
            site: self.site.clone(),
            ts_ms: i64::from(self.ts) * 1000 + i64::from(self.ts_ms),
            page: self.page.clone(),
            path: self.path.clone(),
            title: self.title.clone(),
            referrer_host: self.referrer_host.clone(),
            utm_source: self.utm_source.clone(),
            utm_medium: self.utm_medium.clone(),
            utm_campaign: self.utm_campaign.clone(),
            browser: self.browser.clone(),
            os: self.os.clone(),
            device: self.device.clone(),
            country: self.country.clone(),
            visitor: self.visitor,
            session: self.session,
            new_visit: self.new_visit != 0,
            visit_seq: self.visit_seq,
            gap_ms: self.gap_ms,
            tab: self.tab.clone(),
            width: self.width,
            language: self.language.clone(),
            region: self.region.clone(),
            city: self.city.clone(),
            name: self.name.clone(),
            target: self.target.clone(),
            props: self
                .prop_keys
                .iter()
                .cloned()
                .zip(self.prop_values.iter().cloned())
                .collect(),
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
pub fn event_id(partition: u16, event_key: &str) -> String {
    format!("{partition}-{event_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_gives_back_its_event() {
        let event = Event {
            kind: tally_core::EventKind::Repeat,
            site: "news".into(),
            ts_ms: 1_795_631_400_123,
            page: "/a".into(),
            title: "A".into(),
            visitor: 7,
            session: 9,
            new_visit: true,
            visit_seq: 2,
            gap_ms: 1500,
            width: 1280,
            ..Event::empty()
        };
        let row = EventRow::new(3, "1-0-2", event.clone(), chrono_tz::Asia::Ho_Chi_Minh);
        assert_eq!(row.event(), event);
    }

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
