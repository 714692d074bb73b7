//! Statistics queries. They read the rollups (`migrations/0002_rollups.sql`,
//! `0004_visit_rollup.sql`, `0005_daily_rollups.sql`, `0007_local_hours.sql`), never the raw
//! table, and run with `max_execution_time` (stats_query). A range is whole days in the
//! site's time zone: the daily rollups are read by local date, the hourly ones (keyed by the
//! first instant of a local hour) by the range's UTC bounds, which are local midnights and so
//! local hour starts. Every value is bound.
//!
//! Figures that cannot contradict each other: unique visitors are an estimate, so a figure
//! could show more visitors than visits or views; every result is clamped to the exact bound
//! it has (visitors ≤ visits ≤ views for a site, visitors ≤ views for a page or a dimension)
//! here, so the API, the admin pages and exports all show the same clamped figures.

use chrono_tz::Tz;
use serde::Deserialize;

use crate::{Db, Result};

/// A site and whole days in its time zone: `first_day..=last_day`, which is the half-open
/// UTC range `[start, end)` in seconds since the epoch.
#[derive(Debug, Clone)]
pub struct Range {
    pub site: String,
    pub start: u32,
    pub end: u32,
    /// `YYYY-MM-DD`, local.
    pub first_day: String,
    /// `YYYY-MM-DD`, local, inclusive.
    pub last_day: String,
    /// The site's time zone.
    pub tz: Tz,
}

impl Range {
    /// The range of `days` for `site`.
    pub fn new(site: &str, days: &tally_core::dates::DayRange) -> Self {
        Self {
            site: site.to_owned(),
            start: days.start_utc(),
            end: days.end_utc(),
            first_day: days.from.format("%Y-%m-%d").to_string(),
            last_day: days.to.format("%Y-%m-%d").to_string(),
            tz: days.tz,
        }
    }
}

/// The headline figures of a range.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub views: u64,
    pub visits: u64,
    pub visitors: u64,
    /// Share of visits (started in the range) with exactly one page view, 0..=1. A visit
    /// whose second page view falls after the range counts as a bounce.
    pub bounce_rate: f64,
    /// Mean time from a visit's first to its last event (pings included), in seconds.
    pub avg_visit_seconds: f64,
    pub bots_filtered: u64,
    /// Page views not counted because they repeated the visitor's last within
    /// `tracking.repeat_view_window` (reloads).
    pub repeats_not_counted: u64,
    /// Pixel hits with neither Referer nor Origin: accepted, not counted (nothing shows
    /// they came from a page of the site).
    pub unverified_not_counted: u64,
}

/// One bucket of a time series. `bucket` is the local hour's first instant (Unix seconds) for
/// hourly series and the local date (`YYYY-MM-DD`) for daily ones.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub struct Bucket {
    pub bucket: String,
    pub views: u64,
    pub visits: u64,
    pub visitors: u64,
}

/// A page and its figures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row, serde::Serialize)]
pub struct PageRow {
    pub page: String,
    pub path: String,
    pub title: String,
    pub views: u64,
    pub visitors: u64,
}

/// A value of a dimension (referrer host, browser, OS, device class, country) and its figures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row, serde::Serialize)]
pub struct NameRow {
    pub name: String,
    pub views: u64,
    pub visitors: u64,
}

/// The breakdowns: the first five are also kept in `dimension_daily` (the rollup that
/// answers ranges whose raw events are gone); every one is read from `events`
/// ([`Db::breakdown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Referrer,
    Browser,
    Os,
    Device,
    Country,
    Region,
    City,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    /// Screen size class of the viewport width (`explore::SCREEN`).
    Screen,
    Language,
}

impl Dimension {
    /// The name of the dimension in `dimension_daily`, for those it holds.
    pub fn rollup_name(self) -> Option<&'static str> {
        Some(match self {
            Self::Referrer => "referrer",
            Self::Browser => "browser",
            Self::Os => "os",
            Self::Device => "device",
            Self::Country => "country",
            _ => return None,
        })
    }
}

/// Hourly or daily buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

#[derive(Deserialize, clickhouse::Row)]
struct Totals {
    views: u64,
    visits: u64,
    visitors: u64,
}

#[derive(Deserialize, clickhouse::Row)]
struct Visits {
    started: u64,
    continued: u64,
    gap_ms: u64,
}

/// Browser and OS names of the classifier used before (woothee) and how they are shown now.
/// Device classes kept their names; iPads counted as mobile then and stay so.
pub(crate) const EARLIER_NAMES: &[(&str, &str)] = &[
    ("Mac OSX", "macOS"),
    ("iPhone", "iOS"),
    ("iPod", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows 11", "Windows"),
    ("Windows 10", "Windows"),
    ("Windows 8.1", "Windows"),
    ("Windows 8", "Windows"),
    ("Windows 7", "Windows"),
    ("Windows Vista", "Windows"),
    ("Windows XP", "Windows"),
    ("Windows Phone OS", "Windows Phone"),
    ("UNKNOWN", ""),
];

/// Hourly rollups: the range's UTC bounds.
const RANGE: &str = "site = ? AND hour >= toDateTime(?, 'UTC') AND hour < toDateTime(?, 'UTC')";
/// Daily rollups: the range's local days.
const DAYS: &str = "site = ? AND day >= toDate(?) AND day <= toDate(?)";

impl Db {
    /// Views, visits, unique visitors, bounce rate, average visit and filtered bots.
    pub async fn summary(&self, r: &Range) -> Result<Summary> {
        let totals = self
            .stats_query(&format!(
                "SELECT sumMerge(views) AS views, sumMerge(visits) AS visits, \
                 uniqCombinedMerge(visitors) AS visitors FROM site_daily WHERE {DAYS}"
            ))
            .bind(&r.site)
            .bind(&r.first_day)
            .bind(&r.last_day)
            .fetch_one::<Totals>();
        // Bounces and visit lengths are sums over events (see migration 4): a visit that
        // reaches a second page view is no bounce; its length is the sum of its gaps.
        let visits = self
            .stats_query(&format!(
                "SELECT sumMerge(started) AS started, sumMerge(continued) AS continued, \
                 sumMerge(gap_ms) AS gap_ms FROM visit_hourly WHERE {RANGE}"
            ))
            .bind(&r.site)
            .bind(r.start)
            .bind(r.end)
            .fetch_one::<Visits>();
        let hits = |table: &str| {
            self.stats_query(&format!("SELECT sumMerge(hits) FROM {table} WHERE {RANGE}"))
                .bind(&r.site)
                .bind(r.start)
                .bind(r.end)
                .fetch_one::<u64>()
        };
        let (totals, visits, bots, repeats, unverified) = tokio::try_join!(
            totals,
            visits,
            hits("bots_hourly"),
            hits("repeat_hourly"),
            hits("unverified_hourly")
        )?;
        let (views, visits_started, visitors) =
            clamp_site(totals.views, totals.visits, totals.visitors);
        let per_visit = |x: f64| {
            if visits.started == 0 {
                0.0
            } else {
                x / visits.started as f64
            }
        };
        let bounces = visits.started.saturating_sub(visits.continued);
        Ok(Summary {
            views,
            visits: visits_started,
            visitors,
            bounce_rate: per_visit(bounces as f64),
            avg_visit_seconds: per_visit(visits.gap_ms as f64 / 1000.0),
            bots_filtered: bots,
            repeats_not_counted: repeats,
            unverified_not_counted: unverified,
        })
    }

    /// Views, visits and unique visitors per hour or per local day; buckets without views
    /// are absent (the caller fills them).
    pub async fn timeseries(&self, r: &Range, interval: Interval) -> Result<Vec<Bucket>> {
        let (bucket, table, range) = match interval {
            Interval::Hour => ("toString(toUnixTimestamp(hour))", "site_hourly", RANGE),
            Interval::Day => ("toString(day)", "site_daily", DAYS),
        };
        let q = self
            .stats_query(&format!(
                "SELECT {bucket} AS bucket, sumMerge(views) AS views, sumMerge(visits) AS visits, \
                 uniqCombinedMerge(visitors) AS visitors FROM {table} WHERE {range} \
                 GROUP BY bucket ORDER BY bucket"
            ))
            .bind(&r.site);
        let q = match interval {
            Interval::Hour => q.bind(r.start).bind(r.end),
            Interval::Day => q.bind(&r.first_day).bind(&r.last_day),
        };
        let buckets: Vec<Bucket> = q.fetch_all().await?;
        Ok(finish_series(buckets, interval, r.tz))
    }

    /// Crawler hits and unverified pixel hits of the range (site-wide: they keep no page).
    pub(crate) async fn uncounted_hits(&self, r: &Range) -> Result<(u64, u64)> {
        let hits = |table: &str| {
            self.stats_query(&format!("SELECT sumMerge(hits) FROM {table} WHERE {RANGE}"))
                .bind(&r.site)
                .bind(r.start)
                .bind(r.end)
                .fetch_one::<u64>()
        };
        Ok(tokio::try_join!(
            hits("bots_hourly"),
            hits("unverified_hourly")
        )?)
    }

    /// Pages by views (then page key), `limit` rows from `offset`.
    ///
    /// Two steps: the page list is ranked by views alone (small sum states), and only the
    /// pages kept get their unique-visitor states and titles merged — over a month of a busy
    /// site that is a few dozen pages instead of hundreds of thousands.
    pub async fn top_pages(&self, r: &Range, limit: u32, offset: u32) -> Result<Vec<PageRow>> {
        let mut rows: Vec<PageRow> = self
            .stats_query(&format!(
                "SELECT page, anyLastMerge(path) AS path, anyLastMerge(title) AS title, \
                 sumMerge(views) AS views, uniqCombinedMerge(visitors) AS visitors \
                 FROM page_days WHERE {DAYS} AND page IN ( \
                     SELECT page FROM page_days WHERE {DAYS} GROUP BY page \
                     ORDER BY sumMerge(views) DESC, page ASC LIMIT ?, ?) \
                 GROUP BY page ORDER BY views DESC, page ASC"
            ))
            .bind(&r.site)
            .bind(&r.first_day)
            .bind(&r.last_day)
            .bind(&r.site)
            .bind(&r.first_day)
            .bind(&r.last_day)
            .bind(offset)
            .bind(limit)
            .fetch_all()
            .await?;
        for p in &mut rows {
            p.visitors = p.visitors.min(p.views);
        }
        Ok(rows)
    }

    /// Values of `dim` by views (then name), at most `limit`, from the daily rollup: for
    /// ranges whose raw events are gone (`retention.raw_days`); empty for the dimensions it
    /// does not hold.
    pub async fn dimension(&self, r: &Range, dim: Dimension, limit: u32) -> Result<Vec<NameRow>> {
        let Some(dim_name) = dim.rollup_name() else {
            return Ok(Vec::new());
        };
        // Names stored before the classification moved to uap-core are shown (and merged)
        // under today's names.
        let (old, new): (Vec<&str>, Vec<&str>) = EARLIER_NAMES.iter().copied().unzip();
        let mut rows: Vec<NameRow> = self
            .stats_query(&format!(
                "SELECT transform(name, ?, ?, name) AS shown, sumMerge(views) AS views, \
                 uniqCombinedMerge(visitors) AS visitors \
                 FROM dimension_daily WHERE dim = ? AND {DAYS} GROUP BY shown \
                 ORDER BY views DESC, shown ASC LIMIT ?"
            ))
            .bind(old)
            .bind(new)
            .bind(dim_name)
            .bind(&r.site)
            .bind(&r.first_day)
            .bind(&r.last_day)
            .bind(limit)
            .fetch_all()
            .await?;
        for row in &mut rows {
            row.visitors = row.visitors.min(row.views);
        }
        Ok(rows)
    }

    /// All-time page views per page of `site`, from the rollups (for rebuilding counters).
    pub async fn page_view_totals(&self, site: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .stats_query("SELECT page, sumMerge(views) FROM page_days WHERE site = ? GROUP BY page")
            .bind(site)
            .fetch_all()
            .await?)
    }

    /// All-time custom events per name and target of `site`, from the rollup (for rebuilding
    /// the live download counts).
    pub async fn event_totals(&self, site: &str) -> Result<Vec<(String, String, u64)>> {
        Ok(self
            .stats_query(
                "SELECT name, target, sumMerge(events) FROM event_days WHERE site = ? \
                 GROUP BY name, target",
            )
            .bind(site)
            .fetch_all()
            .await?)
    }

    /// All-time views, visits and bot hits of `site`, from the rollups.
    pub async fn site_totals(&self, site: &str) -> Result<(u64, u64, u64)> {
        let totals = self
            .stats_query(
                "SELECT sumMerge(views) AS views, sumMerge(visits) AS visits, \
                 toUInt64(0) AS visitors FROM site_hourly WHERE site = ?",
            )
            .bind(site)
            .fetch_one::<Totals>();
        let bots = self
            .stats_query("SELECT sumMerge(hits) FROM bots_hourly WHERE site = ?")
            .bind(site)
            .fetch_one::<u64>();
        let (totals, bots) = tokio::try_join!(totals, bots)?;
        Ok((totals.views, totals.visits, bots))
    }
}

/// Buckets as stored, moved onto local hours where needed and held to their bounds.
pub(crate) fn finish_series(mut buckets: Vec<Bucket>, interval: Interval, tz: Tz) -> Vec<Bucket> {
    if interval == Interval::Hour {
        buckets = onto_local_hours(buckets, tz);
    }
    for b in &mut buckets {
        (b.views, b.visits, b.visitors) = clamp_site(b.views, b.visits, b.visitors);
    }
    buckets
}

/// A site's views, visits and unique visitors with the estimate held to its exact bounds:
/// every visit starts with a counted page view, and within a local day every visitor with a
/// page view has a visit that started that day (visitor ids change at local midnight), so
/// visitors ≤ visits ≤ views.
fn clamp_site(views: u64, visits: u64, visitors: u64) -> (u64, u64, u64) {
    let visits = visits.min(views);
    (views, visits, visitors.min(visits))
}

/// Hourly buckets keyed by the local hour holding each stored hour. Rows written since
/// migration 7 are already keyed so; earlier rows of sites in zones that are not whole hours
/// from UTC sit on UTC hours and move to the local hour holding their start. A UTC hour and a
/// local hour are both 60 minutes, so no local hour receives two rows of one site.
fn onto_local_hours(buckets: Vec<Bucket>, tz: Tz) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for mut b in buckets {
        if let Ok(at) = b.bucket.parse::<i64>() {
            b.bucket = tally_core::dates::local_hour_start(at, tz).to_string();
        }
        match out.last_mut() {
            Some(last) if last.bucket == b.bucket => {
                last.views += b.views;
                last.visits += b.visits;
                last.visitors = last.visitors.max(b.visitors);
            }
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_never_exceed_their_exact_bounds() {
        assert_eq!(clamp_site(100, 60_105, 60_147), (100, 100, 100));
        assert_eq!(clamp_site(70_000, 60_105, 60_147), (70_000, 60_105, 60_105));
        assert_eq!(clamp_site(10, 4, 3), (10, 4, 3));
    }

    #[test]
    fn hours_stored_in_utc_move_to_the_local_hour_holding_them() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let b = |at: i64, views| Bucket {
            bucket: at.to_string(),
            views,
            visits: 1,
            visitors: 1,
        };
        // 1_773_104_400 = 2026-03-10T01:00:00Z (06:30 local): held by the 06:00 local hour,
        // which starts at 00:30Z. The next UTC hour is held by 07:00 local.
        let moved = onto_local_hours(vec![b(1_773_104_400, 3), b(1_773_108_000, 4)], kolkata);
        assert_eq!(
            moved
                .iter()
                .map(|m| (m.bucket.as_str(), m.views))
                .collect::<Vec<_>>(),
            [("1773102600", 3), ("1773106200", 4)]
        );
    }
}
