//! The admin statistics API: `/api/v1/sites` and `/api/v1/sites/{site}/stats/*`. Figures
//! come from ClickHouse's rollups (realtime: from Redis); ranges are days in the site's
//! time zone. Every answer is a typed body whose schema the OpenAPI document derives, with
//! the handler's `#[utoipa::path]` (see `openapi`).

use std::sync::Arc;

use axum::{Json, extract::State as AxumState};
use serde::{Deserialize, Serialize};
use tally_clickhouse::stats::{Bucket, Dimension, Interval, NameRow, PageRow, Range};
use tally_core::{SiteId, dates::DayRange};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{AdminErrors, Path, Query},
};

/// Most rows one list request may ask for.
const MAX_LIMIT: u32 = 1000;
/// Most rows a request may skip (the largest 32-bit integer, as the document says).
const MAX_OFFSET: u32 = i32::MAX as u32;

/// The site of a request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct SitePath {
    /// Site id.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    #[allow(dead_code)] // read by axum's Path extractor as a plain String
    site: String,
}

/// A range of days in the site's time zone. Parameters are read as text and checked by the
/// handlers, so a bad value is answered 400 with a message naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeQuery {
    /// First day (YYYY-MM-DD) in the site's time zone; default today.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day, inclusive; default today. At most `admin.max_range_days` after `from`.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
}

/// A range and a bucket size.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SeriesQuery {
    /// First day (YYYY-MM-DD) in the site's time zone; default today.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day, inclusive; default today. At most `admin.max_range_days` after `from`.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
    /// Bucket size (default `day`).
    #[param(value_type = Option<IntervalName>, inline)]
    interval: Option<String>,
}

/// The bucket sizes of a time series.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // only read by the OpenAPI document
pub(crate) enum IntervalName {
    Hour,
    Day,
}

/// A range and a page of pages.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PagesQuery {
    /// First day (YYYY-MM-DD) in the site's time zone; default today.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day, inclusive; default today. At most `admin.max_range_days` after `from`.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
    /// Rows to return (default 20).
    #[param(value_type = Option<u32>, maximum = 1000)]
    limit: Option<String>,
    /// Rows to skip (default 0).
    #[param(value_type = Option<u32>, maximum = 2147483647)]
    offset: Option<String>,
}

/// A range and a number of rows.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RowsQuery {
    /// First day (YYYY-MM-DD) in the site's time zone; default today.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day, inclusive; default today. At most `admin.max_range_days` after `from`.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
    /// Rows to return (default 20).
    #[param(value_type = Option<u32>, maximum = 1000)]
    limit: Option<String>,
}

fn number(value: Option<&str>, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "`{name}` must be a whole number from 0 to {max}"
            ))),
        },
    }
}

/// The parameters of a range of days (`from`, `to`).
trait Days {
    fn days(&self) -> (Option<&str>, Option<&str>);
}

macro_rules! days {
    ($($query:ty),*) => {$(
        impl Days for $query {
            fn days(&self) -> (Option<&str>, Option<&str>) {
                (self.from.as_deref(), self.to.as_deref())
            }
        }
    )*};
}

days!(RangeQuery, SeriesQuery, PagesQuery, RowsQuery);

/// The site (checked against the token) and its validated day range.
fn range(
    state: &State,
    admin: &Admin,
    site: &str,
    q: &impl Days,
) -> Result<(SiteId, DayRange, Range), ApiError> {
    let id = admin.site(state, site)?;
    let tz = state.directory.timezone_of(id.as_str());
    let (from, to) = q.days();
    // The admin pages' forms send empty fields for "today"; the API takes a date or nothing.
    for (name, value) in [("from", from), ("to", to)] {
        if value == Some("") {
            return Err(ApiError::BadRequest(format!(
                "`{name}` must be a date (YYYY-MM-DD)"
            )));
        }
    }
    let days = DayRange::parse(
        from,
        to,
        tz,
        state.clock.now(),
        state.settings.admin.max_range_days,
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let r = Range::new(id.as_str(), &days);
    Ok((id, days, r))
}

/// The headline figures of a range.
#[derive(Serialize, ToSchema)]
pub(crate) struct SummaryBody {
    views: u64,
    visits: u64,
    /// Unique visitors (approximate: HyperLogLog-like sketches).
    visitors: u64,
    /// Share of visits with exactly one page view.
    #[schema(minimum = 0, maximum = 1)]
    bounce_rate: f64,
    /// Mean time from a visit's first to its last event.
    #[schema(minimum = 0)]
    avg_visit_seconds: f64,
    /// Crawler hits filtered out.
    bots_filtered: u64,
    /// Reloads within `tracking.repeat_view_window`, not counted as views.
    repeats_not_counted: u64,
    /// Pixel hits with neither Referer nor Origin, not counted.
    unverified_not_counted: u64,
}

/// Views, visits, unique visitors, bounce rate, average visit, filtered bots.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/summary",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RangeQuery),
    responses((status = 200, description = "OK", body = SummaryBody), AdminErrors),
)]
pub(crate) async fn summary(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<SummaryBody>, ApiError> {
    let (_, _, r) = range(&state, &admin, &site, &q)?;
    let s = state.db.summary(&r).await?;
    Ok(Json(SummaryBody {
        views: s.views,
        visits: s.visits,
        visitors: s.visitors,
        bounce_rate: (s.bounce_rate * 10_000.0).round() / 10_000.0,
        avg_visit_seconds: s.avg_visit_seconds.round(),
        bots_filtered: s.bots_filtered,
        repeats_not_counted: s.repeats_not_counted,
        unverified_not_counted: s.unverified_not_counted,
    }))
}

/// One hour or day of a series.
#[derive(Serialize, ToSchema)]
pub(crate) struct PointBody {
    /// The bucket's first instant, with the site's UTC offset.
    #[schema(format = DateTime)]
    t: String,
    views: u64,
    visits: u64,
    visitors: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TimeseriesBody {
    points: Vec<PointBody>,
}

/// Views, visits and unique visitors per hour or day: every bucket of the range, zeros
/// included, `t` in the site's time zone.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/timeseries",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, SeriesQuery),
    responses((status = 200, description = "OK", body = TimeseriesBody), AdminErrors),
)]
pub(crate) async fn timeseries(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<TimeseriesBody>, ApiError> {
    let (_, days, r) = range(&state, &admin, &site, &q)?;
    let interval = match q.interval.as_deref() {
        None | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`interval` must be hour or day".into(),
            ));
        }
    };
    let rows = state.db.timeseries(&r, interval).await?;
    let points = series(&days, interval, &rows)
        .into_iter()
        .map(|p| PointBody {
            t: p.start.to_rfc3339(),
            views: p.views,
            visits: p.visits,
            visitors: p.visitors,
        })
        .collect();
    Ok(Json(TimeseriesBody { points }))
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

/// A page and its figures.
#[derive(Serialize, ToSchema)]
pub(crate) struct PageBody {
    /// The page key (its path, or the id the site gave it).
    page: String,
    path: String,
    title: String,
    views: u64,
    visitors: u64,
}

impl From<PageRow> for PageBody {
    fn from(r: PageRow) -> Self {
        Self {
            page: r.page,
            path: r.path,
            title: r.title,
            views: r.views,
            visitors: r.visitors,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PagesBody {
    pages: Vec<PageBody>,
}

/// Top pages by views.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/pages",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, PagesQuery),
    responses((status = 200, description = "OK", body = PagesBody), AdminErrors),
)]
pub(crate) async fn pages(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<PagesQuery>,
) -> Result<Json<PagesBody>, ApiError> {
    let (_, _, r) = range(&state, &admin, &site, &q)?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let offset = number(q.offset.as_deref(), "offset", 0, MAX_OFFSET)?;
    let rows = state.db.top_pages(&r, limit, offset).await?;
    Ok(Json(PagesBody {
        pages: rows.into_iter().map(PageBody::from).collect(),
    }))
}

/// A value of a breakdown and its figures.
#[derive(Serialize, ToSchema)]
pub(crate) struct RowBody {
    /// The referrer host, browser, operating system, device class or country code.
    name: String,
    views: u64,
    visitors: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RowsBody {
    rows: Vec<RowBody>,
}

/// The top values of `dim` in the range.
async fn breakdown(
    state: Arc<State>,
    admin: Admin,
    site: String,
    q: RowsQuery,
    dim: Dimension,
) -> Result<Json<RowsBody>, ApiError> {
    let (_, _, r) = range(&state, &admin, &site, &q)?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let rows = state.db.dimension(&r, dim, limit).await?;
    Ok(Json(RowsBody {
        rows: rows
            .into_iter()
            .map(
                |NameRow {
                     name,
                     views,
                     visitors,
                 }| RowBody {
                    name,
                    views,
                    visitors,
                },
            )
            .collect(),
    }))
}

/// One handler per breakdown, so each is an operation of its own in the document.
macro_rules! breakdowns {
    ($($name:ident: $dim:expr, $what:literal;)*) => {$(
        #[doc = concat!("Top ", $what, " by views.")]
        #[utoipa::path(
            get,
            path = concat!("/api/v1/sites/{site}/stats/", stringify!($name)),
            tag = "admin",
            security(("bearer" = [])),
            params(SitePath, RowsQuery),
            responses((status = 200, description = "OK", body = RowsBody), AdminErrors),
        )]
        pub(crate) async fn $name(
            AxumState(state): AxumState<Arc<State>>,
            admin: Admin,
            Path(site): Path<String>,
            Query(q): Query<RowsQuery>,
        ) -> Result<Json<RowsBody>, ApiError> {
            breakdown(state, admin, site, q, $dim).await
        }
    )*};
}

breakdowns! {
    referrers: Dimension::Referrer, "referrer hosts";
    browsers: Dimension::Browser, "browsers";
    os: Dimension::Os, "operating systems";
    devices: Dimension::Device, "device classes";
    countries: Dimension::Country, "countries";
}

/// A page being read now.
#[derive(Serialize, ToSchema)]
pub(crate) struct LivePageBody {
    page: String,
    title: String,
    /// Readers online on it.
    online: u64,
    /// The row of the pages past `tracking.max_pages` (page `""`).
    other: bool,
}

/// Views of one minute.
#[derive(Serialize, ToSchema)]
pub(crate) struct MinuteBody {
    #[schema(format = DateTime)]
    t: String,
    views: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RealtimeBody {
    /// Visitors online now.
    online: u64,
    /// The 50 pages with most readers among the 200 with the latest events.
    pages: Vec<LivePageBody>,
    /// The last 30 minutes.
    views_per_minute: Vec<MinuteBody>,
    /// Pages the site holds live.
    live_pages: u64,
    /// `tracking.max_pages`.
    max_pages: u32,
}

/// Live from Redis: online now, pages being read, views per minute over the last 30
/// minutes, and how many pages the site holds live against its cap.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/realtime",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath),
    responses((status = 200, description = "OK", body = RealtimeBody), AdminErrors),
)]
pub(crate) async fn realtime(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
) -> Result<Json<RealtimeBody>, ApiError> {
    let id = admin.site(&state, &site)?;
    let tz = state.directory.timezone_of(id.as_str());
    let now = state.clock.now_ms();
    let window = state.settings.tracking.online_window.as_millis() as i64;
    let rt = state.store.realtime(&id, now, window, 30, 50).await?;
    let pages = rt
        .pages
        .into_iter()
        .map(|(page, title, online)| LivePageBody {
            // The pages past tracking.max_pages are read live as one, under the key "".
            other: page.is_empty(),
            page,
            title,
            online,
        })
        .collect();
    let views_per_minute = rt
        .views_per_minute
        .into_iter()
        .map(|(minute, views)| MinuteBody {
            t: chrono::TimeZone::timestamp_opt(&tz, minute * 60, 0)
                .single()
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            views,
        })
        .collect();
    Ok(Json(RealtimeBody {
        online: rt.online,
        pages,
        views_per_minute,
        live_pages: rt.live_pages,
        max_pages: state.settings.tracking.max_pages,
    }))
}
