//! Statistics queries. They read the rollups (`migrations/0002_rollups.sql`,
//! `0004_visit_rollup.sql`, `0005_daily_rollups.sql`), never the raw table, and run with
//! `max_execution_time` (stats_query). A range is whole days in the site's time zone: the
//! daily rollups are read by local date, the hourly ones by the range's UTC bounds. Every
//! value is bound.

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
}

/// One bucket of a time series. `bucket` is the hour's start (Unix seconds) for hourly
/// series and the local date (`YYYY-MM-DD`) for daily ones.
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

/// The dimensions kept in `dimension_daily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Referrer,
    Browser,
    Os,
    Device,
    Country,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referrer => "referrer",
            Self::Browser => "browser",
            Self::Os => "os",
            Self::Device => "device",
            Self::Country => "country",
        }
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
        let bots = self
            .stats_query(&format!(
                "SELECT sumMerge(hits) FROM bots_hourly WHERE {RANGE}"
            ))
            .bind(&r.site)
            .bind(r.start)
            .bind(r.end)
            .fetch_one::<u64>();
        let (totals, visits, bots) = tokio::try_join!(totals, visits, bots)?;
        let per_visit = |x: f64| {
            if visits.started == 0 {
                0.0
            } else {
                x / visits.started as f64
            }
        };
        let bounces = visits.started.saturating_sub(visits.continued);
        Ok(Summary {
            views: totals.views,
            visits: totals.visits,
            visitors: totals.visitors,
            bounce_rate: per_visit(bounces as f64),
            avg_visit_seconds: per_visit(visits.gap_ms as f64 / 1000.0),
            bots_filtered: bots,
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
        Ok(q.fetch_all().await?)
    }

    /// Pages by views (then page key), `limit` rows from `offset`.
    ///
    /// Two steps: the page list is ranked by views alone (small sum states), and only the
    /// pages kept get their unique-visitor states and titles merged — over a month of a busy
    /// site that is a few dozen pages instead of hundreds of thousands.
    pub async fn top_pages(&self, r: &Range, limit: u32, offset: u32) -> Result<Vec<PageRow>> {
        Ok(self
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
            .await?)
    }

    /// Values of `dim` by views (then name), at most `limit`.
    pub async fn dimension(&self, r: &Range, dim: Dimension, limit: u32) -> Result<Vec<NameRow>> {
        Ok(self
            .stats_query(&format!(
                "SELECT name, sumMerge(views) AS views, uniqCombinedMerge(visitors) AS visitors \
                 FROM dimension_daily WHERE dim = ? AND {DAYS} GROUP BY name \
                 ORDER BY views DESC, name ASC LIMIT ?"
            ))
            .bind(dim.as_str())
            .bind(&r.site)
            .bind(&r.first_day)
            .bind(&r.last_day)
            .bind(limit)
            .fetch_all()
            .await?)
    }

    /// All-time page views per page of `site`, from the rollups (for rebuilding counters).
    pub async fn page_view_totals(&self, site: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .stats_query("SELECT page, sumMerge(views) FROM page_days WHERE site = ? GROUP BY page")
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
