//! The admin statistics API: `/api/v1/sites` and `/api/v1/sites/{site}/stats/*`. Figures
//! come from ClickHouse's rollups (realtime: from Redis); ranges are days in the site's
//! time zone.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State as AxumState},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tally_clickhouse::stats::{Bucket, Dimension, Interval, Range};
use tally_core::{SiteId, dates::DayRange};

use crate::{ApiError, State, auth::Admin};

/// Most rows one list request may ask for.
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    interval: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn number(value: Option<&str>, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "`{name}` must be a whole number from 0 to {max}"
            ))),
        },
    }
}

/// The site (checked against the token) and its validated day range.
fn range(
    state: &State,
    admin: &Admin,
    site: &str,
    q: &RangeQuery,
) -> Result<(SiteId, DayRange, Range), ApiError> {
    let id = admin.site(state, site)?;
    let tz = state.sites[&id].timezone;
    let days = DayRange::parse(
        q.from.as_deref(),
        q.to.as_deref(),
        tz,
        state.clock.now(),
        state.settings.admin.max_range_days,
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let r = Range::new(id.as_str(), &days);
    Ok((id, days, r))
}

#[derive(Serialize)]
struct SiteBody {
    id: String,
    domains: Vec<String>,
    timezone: String,
    public_counters: bool,
    /// All-time views and visits, live, imported baselines included.
    total_views: u64,
    total_visits: u64,
}

/// `GET /api/v1/sites`: the sites this token may see, with their all-time totals.
pub(crate) async fn sites(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
) -> Result<Json<Value>, ApiError> {
    let mut sites = Vec::new();
    for s in state
        .settings
        .sites
        .iter()
        .filter(|s| admin.0.allows(&s.id))
    {
        let c = state.store.counters(&s.id, None, i64::MAX).await?;
        sites.push(SiteBody {
            id: s.id.to_string(),
            domains: s.domains.clone(),
            timezone: s.timezone.name().to_owned(),
            public_counters: s.public_counters,
            total_views: c.views,
            total_visits: c.visits,
        });
    }
    Ok(Json(json!({ "sites": sites })))
}

/// `GET …/stats/summary?from&to`
pub(crate) async fn summary(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, _, r) = range(&state, &admin, &site, &q)?;
    let s = state.db.summary(&r).await?;
    Ok(Json(json!({
        "views": s.views,
        "visits": s.visits,
        "visitors": s.visitors,
        "bounce_rate": (s.bounce_rate * 10_000.0).round() / 10_000.0,
        "avg_visit_seconds": s.avg_visit_seconds.round(),
        "bots_filtered": s.bots_filtered,
        "repeats_not_counted": s.repeats_not_counted,
        "unverified_not_counted": s.unverified_not_counted,
    })))
}

/// `GET …/stats/timeseries?from&to&interval=hour|day` — every bucket of the range, zeros
/// included, `t` in the site's time zone.
pub(crate) async fn timeseries(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, days, r) = range(&state, &admin, &site, &q)?;
    let interval = match q.interval.as_deref() {
        None | Some("") | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`interval` must be hour or day".into(),
            ));
        }
    };
    let rows = state.db.timeseries(&r, interval).await?;
    let points: Vec<Value> = series(&days, interval, &rows)
        .into_iter()
        .map(|p| {
            json!({
                "t": p.start.to_rfc3339(),
                "views": p.views,
                "visits": p.visits,
                "visitors": p.visitors,
            })
        })
        .collect();
    Ok(Json(json!({ "points": points })))
}

/// One point of a series: a local hour or day and its figures.
pub(crate) struct Point {
    /// The first instant of the hour or day, in the site's zone.
    pub(crate) start: chrono::DateTime<chrono_tz::Tz>,
    pub(crate) views: u64,
    pub(crate) visits: u64,
    pub(crate) visitors: u64,
}

/// Every bucket of `days` in order — each local hour (23 or 25 on the days clocks change) or
/// each day — with zeros where `rows` has nothing.
pub(crate) fn series(days: &DayRange, interval: Interval, rows: &[Bucket]) -> Vec<Point> {
    let found: std::collections::HashMap<&str, &Bucket> =
        rows.iter().map(|b| (b.bucket.as_str(), b)).collect();
    let point = |start: chrono::DateTime<chrono_tz::Tz>, key: &str| {
        let b = found.get(key);
        Point {
            start,
            views: b.map_or(0, |b| b.views),
            visits: b.map_or(0, |b| b.visits),
            visitors: b.map_or(0, |b| b.visitors),
        }
    };
    match interval {
        Interval::Day => days
            .days()
            .map(|d| point(days.day_start(d), &d.format("%Y-%m-%d").to_string()))
            .collect(),
        Interval::Hour => days
            .hours()
            .into_iter()
            .map(|h| point(h, &h.timestamp().to_string()))
            .collect(),
    }
}

/// `GET …/stats/pages?from&to&limit=20&offset=0`
pub(crate) async fn pages(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, _, r) = range(&state, &admin, &site, &q)?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let offset = number(q.offset.as_deref(), "offset", 0, u32::MAX)?;
    let rows = state.db.top_pages(&r, limit, offset).await?;
    Ok(Json(json!({ "pages": rows })))
}

/// `GET …/stats/{referrers|browsers|os|devices|countries}?from&to&limit`
pub(crate) async fn dimension(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path((site, dim)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let dim = match dim.as_str() {
        "referrers" => Dimension::Referrer,
        "browsers" => Dimension::Browser,
        "os" => Dimension::Os,
        "devices" => Dimension::Device,
        "countries" => Dimension::Country,
        _ => return Err(ApiError::NotFound),
    };
    let (_, _, r) = range(&state, &admin, &site, &q)?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let rows = state.db.dimension(&r, dim, limit).await?;
    Ok(Json(json!({ "rows": rows })))
}

/// `GET …/stats/realtime` — live from Redis: online now, pages being read, views per minute
/// over the last 30 minutes.
pub(crate) async fn realtime(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = admin.site(&state, &site)?;
    let tz = state.sites[&id].timezone;
    let now = state.clock.now_ms();
    let window = state.settings.tracking.online_window.as_millis() as i64;
    let rt = state.store.realtime(&id, now, window, 30, 50).await?;
    let pages: Vec<Value> = rt
        .pages
        .into_iter()
        .map(|(page, title, online)| {
            // The pages past tracking.max_pages are read live as one, under the key "".
            let other = page.is_empty();
            json!({"page": page, "title": title, "online": online, "other": other})
        })
        .collect();
    let per_minute: Vec<Value> = rt
        .views_per_minute
        .into_iter()
        .map(|(minute, views)| {
            let t = chrono::TimeZone::timestamp_opt(&tz, minute * 60, 0)
                .single()
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            json!({"t": t, "views": views})
        })
        .collect();
    Ok(Json(json!({
        "online": rt.online,
        "pages": pages,
        "views_per_minute": per_minute,
        "live_pages": rt.live_pages,
        "max_pages": state.settings.tracking.max_pages,
    })))
}
