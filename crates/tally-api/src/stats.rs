//! The admin statistics API: `/api/v1/sites` and `/api/v1/sites/{site}/stats/*`. Figures
//! come from ClickHouse's rollups (realtime: from Redis); ranges are days in the site's
//! time zone. Every answer is a typed body whose schema the OpenAPI document derives, with
//! the handler's `#[utoipa::path]` (see `openapi`).

use std::sync::Arc;

use axum::{
    Json,
    extract::State as AxumState,
    http::header,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tally_clickhouse::{
    explore::{Engagement, Field, Filters},
    stats::{Bucket, Dimension, Interval, NameRow, Range},
};
use tally_core::{SiteId, dates::DayRange};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{AdminErrors, Path, Query},
};

/// Most rows one list request may ask for.
pub(crate) const MAX_LIMIT: u32 = 1000;
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

impl RowsQuery {
    /// The `limit` as given.
    pub(crate) fn limit(&self) -> Option<&str> {
        self.limit.as_deref()
    }
}

pub(crate) fn number(
    value: Option<&str>,
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
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
pub(crate) trait Days {
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
pub(crate) fn range(
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

/// The filters of a statistics view: each one a value of a breakdown (`referrer=google.com`),
/// combined with AND. An empty value is the breakdown's empty row (`referrer=` is direct
/// traffic). Filtered views read raw events, so their range must lie within
/// `retention.raw_days`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FilterQuery {
    /// Page views of this page (its key).
    page: Option<String>,
    /// Visits that started on this page.
    entry_page: Option<String>,
    /// Page views from this referrer host (empty: direct).
    referrer: Option<String>,
    utm_source: Option<String>,
    utm_medium: Option<String>,
    utm_campaign: Option<String>,
    /// Two-letter country code.
    country: Option<String>,
    /// Region (province) name, as `stats/regions` lists it.
    region: Option<String>,
    /// City name, as `stats/cities` lists it.
    city: Option<String>,
    browser: Option<String>,
    os: Option<String>,
    /// desktop, mobile, tablet or unknown.
    device: Option<String>,
    /// Screen class: phone, tablet, laptop or desktop.
    screen: Option<String>,
    /// Browser language (`ll` or `ll-RR`).
    language: Option<String>,
}

/// Longest filter value accepted (the longest stored value: a URL).
const MAX_FILTER: usize = 2048;

impl FilterQuery {
    pub(crate) fn filters(&self) -> Result<Filters, ApiError> {
        let mut f = Filters::default();
        for field in Field::ALL {
            let value = match field {
                Field::Page => &self.page,
                Field::EntryPage => &self.entry_page,
                Field::Referrer => &self.referrer,
                Field::UtmSource => &self.utm_source,
                Field::UtmMedium => &self.utm_medium,
                Field::UtmCampaign => &self.utm_campaign,
                Field::Country => &self.country,
                Field::Region => &self.region,
                Field::City => &self.city,
                Field::Browser => &self.browser,
                Field::Os => &self.os,
                Field::Device => &self.device,
                Field::Screen => &self.screen,
                Field::Language => &self.language,
            };
            if let Some(v) = value {
                if v.len() > MAX_FILTER {
                    return Err(ApiError::BadRequest(format!(
                        "`{}` is longer than {MAX_FILTER} bytes",
                        field.param()
                    )));
                }
                f.set(field, v.clone());
            }
        }
        Ok(f)
    }
}

/// The range to compare with.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CompareQuery {
    /// Also the same figures for the days just before (`previous_period`, as many days) or
    /// the same days a year earlier (`previous_year`).
    #[param(value_type = Option<CompareName>, inline)]
    compare: Option<String>,
}

/// The ranges a view can be compared with.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // only read by the OpenAPI document
pub(crate) enum CompareName {
    PreviousPeriod,
    PreviousYear,
}

impl CompareQuery {
    /// The compared days of `days`, if asked for.
    fn range(&self, days: &DayRange) -> Result<Option<DayRange>, ApiError> {
        compared_days(self.compare.as_deref(), days)
    }
}

/// The days `compare` (`previous_period`, `previous_year`) compares `days` with.
pub(crate) fn compared_days(
    compare: Option<&str>,
    days: &DayRange,
) -> Result<Option<DayRange>, ApiError> {
    let shifted = match compare {
        None => return Ok(None),
        Some("previous_period") => {
            let len = (days.to - days.from).num_days() as u64 + 1;
            days.from
                .checked_sub_days(chrono::Days::new(1))
                .and_then(|to| Some((to.checked_sub_days(chrono::Days::new(len - 1))?, to)))
        }
        Some("previous_year") => days
            .from
            .checked_sub_months(chrono::Months::new(12))
            .zip(days.to.checked_sub_months(chrono::Months::new(12))),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`compare` must be previous_period or previous_year".into(),
            ));
        }
    };
    let (from, to) = shifted
        .ok_or_else(|| ApiError::BadRequest("`compare` reaches before the calendar".into()))?;
    Ok(Some(DayRange {
        from,
        to,
        tz: days.tz,
    }))
}

/// How a list is answered.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FormatQuery {
    /// `json` (default) or `csv`: UTF-8 with a byte-order mark and a header row, cells that
    /// a spreadsheet would run as a formula prefixed with `'`.
    #[param(value_type = Option<FormatName>, inline)]
    format: Option<String>,
}

/// The formats of a list.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // only read by the OpenAPI document
pub(crate) enum FormatName {
    Json,
    Csv,
}

impl FormatQuery {
    pub(crate) fn csv(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::BadRequest("`format` must be json or csv".into())),
        }
    }
}

/// A body that is also a table, for `format=csv`.
pub(crate) trait Tabular {
    fn header(&self) -> &'static [&'static str];
    fn rows(&self) -> Vec<Vec<String>>;
}

/// `body` as JSON, or as CSV named `{site}-{report}-{from}-{to}.csv`.
pub(crate) fn answer<T: Serialize + Tabular>(
    body: T,
    csv: bool,
    site: &SiteId,
    report: &str,
    days: &DayRange,
) -> Result<Response, ApiError> {
    if !csv {
        return Ok(Json(body).into_response());
    }
    let text = crate::csv::table(body.header(), &body.rows())?;
    let name = format!("{site}-{report}-{}-{}.csv", days.from, days.to);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        text,
    )
        .into_response())
}

/// Whether the raw events of `days` are still kept (`retention.raw_days`, counted from
/// today in the site's zone; whole months are dropped only once all their days are older).
pub(crate) fn raw_kept(state: &State, days: &DayRange) -> bool {
    let keep = state.settings.retention.raw_days;
    if keep == 0 {
        return true;
    }
    let today = state.clock.now().with_timezone(&days.tz).date_naive();
    today
        .checked_sub_days(chrono::Days::new(u64::from(keep)))
        .is_none_or(|oldest| days.from >= oldest)
}

/// A 400 for a view that needs raw events of days no longer kept.
pub(crate) fn raw_gone(state: &State, what: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "`from`: {what} read raw events, which are kept for the last {} days \
         (retention.raw_days)",
        state.settings.retention.raw_days
    ))
}

/// The headline figures of a range.
#[derive(Serialize, ToSchema)]
pub(crate) struct SummaryBody {
    #[serde(flatten)]
    figures: FiguresBody,
    /// The same figures for the compared range (`compare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    compare: Option<ComparedBody>,
}

/// The headline figures.
#[derive(Serialize, ToSchema)]
pub(crate) struct FiguresBody {
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
    /// Crawler hits filtered out (the site's, whatever the filters: they keep no page).
    bots_filtered: u64,
    /// Reloads within `tracking.repeat_view_window`, not counted as views.
    repeats_not_counted: u64,
    /// Pixel hits with neither Referer nor Origin, not counted (the site's).
    unverified_not_counted: u64,
}

impl From<tally_clickhouse::stats::Summary> for FiguresBody {
    fn from(s: tally_clickhouse::stats::Summary) -> Self {
        Self {
            views: s.views,
            visits: s.visits,
            visitors: s.visitors,
            bounce_rate: (s.bounce_rate * 10_000.0).round() / 10_000.0,
            avg_visit_seconds: s.avg_visit_seconds.round(),
            bots_filtered: s.bots_filtered,
            repeats_not_counted: s.repeats_not_counted,
            unverified_not_counted: s.unverified_not_counted,
        }
    }
}

/// The figures of the compared range.
#[derive(Serialize, ToSchema)]
pub(crate) struct ComparedBody {
    /// First day of the compared range.
    #[schema(format = Date)]
    from: String,
    /// Last day of the compared range.
    #[schema(format = Date)]
    to: String,
    #[serde(flatten)]
    figures: FiguresBody,
}

/// The summary of `r` (rollups) or of its views matching `f` (raw events).
pub(crate) async fn summary_of(
    state: &State,
    r: &Range,
    f: &Filters,
) -> Result<tally_clickhouse::stats::Summary, ApiError> {
    Ok(if f.is_empty() {
        state.db.summary(r).await?
    } else {
        state.db.summary_filtered(r, f).await?
    })
}

/// Views, visits, unique visitors, bounce rate, average visit, filtered bots; with filters,
/// of the matching page views and the visits that hold one; with `compare`, also for the
/// compared range.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/summary",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RangeQuery, FilterQuery, CompareQuery),
    responses((status = 200, description = "OK", body = SummaryBody), AdminErrors),
)]
pub(crate) async fn summary(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
    Query(fq): Query<FilterQuery>,
    Query(cq): Query<CompareQuery>,
) -> Result<Json<SummaryBody>, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let other = cq.range(&days)?;
    if !f.is_empty()
        && (!raw_kept(&state, &days) || other.as_ref().is_some_and(|o| !raw_kept(&state, o)))
    {
        return Err(raw_gone(&state, "filters"));
    }
    let compared = other.as_ref().map(|o| Range::new(id.as_str(), o));
    let (now, before) = tokio::try_join!(summary_of(&state, &r, &f), async {
        match &compared {
            Some(c) => summary_of(&state, c, &f).await.map(Some),
            None => Ok(None),
        }
    })?;
    Ok(Json(SummaryBody {
        figures: now.into(),
        compare: other.zip(before).map(|(o, s)| ComparedBody {
            from: o.from.to_string(),
            to: o.to.to_string(),
            figures: s.into(),
        }),
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
    /// The compared range's bucket at the same position (`compare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    compare: Option<ComparedPointBody>,
}

/// A bucket of the compared range.
#[derive(Serialize, ToSchema)]
pub(crate) struct ComparedPointBody {
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

impl Tabular for TimeseriesBody {
    fn header(&self) -> &'static [&'static str] {
        if self.points.iter().any(|p| p.compare.is_some()) {
            &[
                "t",
                "views",
                "visits",
                "visitors",
                "compared_t",
                "compared_views",
                "compared_visits",
                "compared_visitors",
            ]
        } else {
            &["t", "views", "visits", "visitors"]
        }
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.points
            .iter()
            .map(|p| {
                let mut row = vec![
                    p.t.clone(),
                    p.views.to_string(),
                    p.visits.to_string(),
                    p.visitors.to_string(),
                ];
                if let Some(c) = &p.compare {
                    row.extend([
                        c.t.clone(),
                        c.views.to_string(),
                        c.visits.to_string(),
                        c.visitors.to_string(),
                    ]);
                }
                row
            })
            .collect()
    }
}

/// The buckets of `r` (rollups) or of its views matching `f` (raw events).
pub(crate) async fn series_of(
    state: &State,
    r: &Range,
    f: &Filters,
    interval: Interval,
) -> Result<Vec<Bucket>, ApiError> {
    Ok(if f.is_empty() {
        state.db.timeseries(r, interval).await?
    } else {
        state.db.timeseries_filtered(r, f, interval).await?
    })
}

/// Views, visits and unique visitors per hour or day: every bucket of the range, zeros
/// included, `t` in the site's time zone; with `compare`, each point also holds the compared
/// range's bucket at the same position.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/timeseries",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, SeriesQuery, FilterQuery, CompareQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (TimeseriesBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn timeseries(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<SeriesQuery>,
    Query(fq): Query<FilterQuery>,
    Query(cq): Query<CompareQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let other = cq.range(&days)?;
    let csv = format.csv()?;
    let interval = match q.interval.as_deref() {
        None | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`interval` must be hour or day".into(),
            ));
        }
    };
    if !f.is_empty()
        && (!raw_kept(&state, &days) || other.as_ref().is_some_and(|o| !raw_kept(&state, o)))
    {
        return Err(raw_gone(&state, "filters"));
    }
    let compared = other.as_ref().map(|o| Range::new(id.as_str(), o));
    let (rows, before) = tokio::try_join!(series_of(&state, &r, &f, interval), async {
        match &compared {
            Some(c) => series_of(&state, c, &f, interval).await.map(Some),
            None => Ok(None),
        }
    })?;
    let body = TimeseriesBody::new(
        (&days, &rows),
        other.as_ref().zip(before.as_deref()),
        interval,
    );
    answer(body, csv, &id, "timeseries", &days)
}

impl TimeseriesBody {
    /// Every bucket of `days` from `rows`, each with the bucket of the compared range at the
    /// same position, when there is one.
    pub(crate) fn new(
        (days, rows): (&DayRange, &[Bucket]),
        compared: Option<(&DayRange, &[Bucket])>,
        interval: Interval,
    ) -> Self {
        let mut before = compared
            .map(|(d, b)| series(d, interval, b))
            .unwrap_or_default()
            .into_iter();
        let points = series(days, interval, rows)
            .into_iter()
            .map(|p| PointBody {
                t: p.start.to_rfc3339(),
                views: p.views,
                visits: p.visits,
                visitors: p.visitors,
                compare: before.next().map(|c| ComparedPointBody {
                    t: c.start.to_rfc3339(),
                    views: c.views,
                    visits: c.visits,
                    visitors: c.visitors,
                }),
            })
            .collect();
        Self { points }
    }
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
    pub(crate) page: String,
    pub(crate) path: String,
    pub(crate) title: String,
    pub(crate) views: u64,
    pub(crate) visitors: u64,
    /// Mean time the page was visible per view, in seconds (null when its raw events are
    /// no longer kept).
    #[schema(minimum = 0)]
    pub(crate) avg_engaged_seconds: Option<f64>,
    /// Share of the visits that started on the page with no second page view (null when
    /// none started there, or its raw events are no longer kept).
    #[schema(minimum = 0, maximum = 1)]
    pub(crate) bounce_rate: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PagesBody {
    pub(crate) pages: Vec<PageBody>,
}

impl Tabular for PagesBody {
    fn header(&self) -> &'static [&'static str] {
        &[
            "page",
            "path",
            "title",
            "views",
            "visitors",
            "avg_engaged_seconds",
            "bounce_rate",
        ]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.pages
            .iter()
            .map(|p| {
                vec![
                    p.page.clone(),
                    p.path.clone(),
                    p.title.clone(),
                    p.views.to_string(),
                    p.visitors.to_string(),
                    optional(p.avg_engaged_seconds),
                    optional(p.bounce_rate),
                ]
            })
            .collect()
    }
}

/// A rate or duration as the JSON answer writes it (`20.0`, `0.3333`); empty for null.
fn optional(v: Option<f64>) -> String {
    v.map(fraction).unwrap_or_default()
}

fn fraction(v: f64) -> String {
    serde_json::Value::from(v).to_string()
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

/// How long a gap between a page's events may count as time on it: one heartbeat and a
/// quarter (timers drift; a longer gap held time hidden).
fn engaged_cap_ms(state: &State) -> u32 {
    let hb = state.settings.tracking.heartbeat.as_millis() as u64;
    u32::try_from(hb + hb / 4).unwrap_or(u32::MAX)
}

/// The top pages of `r` for `f` with their engagement.
pub(crate) async fn pages_of(
    state: &State,
    days: &DayRange,
    r: &Range,
    f: &Filters,
    limit: u32,
    offset: u32,
) -> Result<Vec<PageBody>, ApiError> {
    let raw = raw_kept(state, days);
    if !f.is_empty() && !raw {
        return Err(raw_gone(state, "filters"));
    }
    let rows = if f.is_empty() {
        state.db.top_pages(r, limit, offset).await?
    } else {
        state.db.pages_filtered(r, f, limit, offset).await?
    };
    let keys: Vec<String> = rows.iter().map(|p| p.page.clone()).collect();
    let engagement = if raw {
        state
            .db
            .engagement(r, f, &keys, engaged_cap_ms(state))
            .await?
    } else {
        Vec::new()
    };
    let found: std::collections::HashMap<&str, &Engagement> =
        engagement.iter().map(|e| (e.page.as_str(), e)).collect();
    Ok(rows
        .into_iter()
        .map(|p| {
            let e = found.get(p.page.as_str());
            PageBody {
                avg_engaged_seconds: raw.then(|| {
                    e.and_then(|e| rate(e.engaged_ms, e.views.max(1) * 1000))
                        .map_or(0.0, |s| (s * 10.0).round() / 10.0)
                }),
                bounce_rate: e.and_then(|e| rate(e.bounces, e.entries)),
                page: p.page,
                path: p.path,
                title: p.title,
                views: p.views,
                visitors: p.visitors,
            }
        })
        .collect())
}

/// Top pages by views, with engaged time and entry bounce rate.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/pages",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, PagesQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (PagesBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn pages(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<PagesQuery>,
    Query(fq): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let csv = format.csv()?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let offset = number(q.offset.as_deref(), "offset", 0, MAX_OFFSET)?;
    let pages = pages_of(&state, &days, &r, &f, limit, offset).await?;
    answer(PagesBody { pages }, csv, &id, "pages", &days)
}

/// A value of a breakdown and its figures.
#[derive(Serialize, ToSchema)]
pub(crate) struct RowBody {
    /// The referrer host, browser, operating system, device class, country code, region,
    /// city, UTM value, screen class or language; empty: none or unknown.
    name: String,
    views: u64,
    visitors: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RowsBody {
    rows: Vec<RowBody>,
}

impl Tabular for RowsBody {
    fn header(&self) -> &'static [&'static str] {
        &["name", "views", "visitors"]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| vec![r.name.clone(), r.views.to_string(), r.visitors.to_string()])
            .collect()
    }
}

/// The top values of `dim` for `f`: from raw events while they are kept, else (unfiltered)
/// from the daily rollup of the dimensions it holds.
pub(crate) async fn breakdown_of(
    state: &State,
    days: &DayRange,
    r: &Range,
    f: &Filters,
    dim: Dimension,
    limit: u32,
) -> Result<Vec<NameRow>, ApiError> {
    if raw_kept(state, days) {
        Ok(state.db.breakdown(r, f, dim, limit).await?)
    } else if f.is_empty() && dim.rollup_name().is_some() {
        Ok(state.db.dimension(r, dim, limit).await?)
    } else {
        Err(raw_gone(state, "filters and this breakdown"))
    }
}

/// The top values of `dim` in the range.
async fn breakdown(
    state: Arc<State>,
    admin: Admin,
    site: String,
    (q, fq, format): (RowsQuery, FilterQuery, FormatQuery),
    dim: Dimension,
    report: &str,
) -> Result<Response, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let csv = format.csv()?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let rows = breakdown_of(&state, &days, &r, &f, dim, limit).await?;
    answer(RowsBody::from(rows), csv, &id, report, &days)
}

impl From<Vec<NameRow>> for RowsBody {
    fn from(rows: Vec<NameRow>) -> Self {
        let rows = rows
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
            .collect();
        Self { rows }
    }
}

/// One handler per breakdown, so each is an operation of its own in the document.
macro_rules! breakdowns {
    ($($name:ident, $path:literal: $dim:expr, $what:literal;)*) => {$(
        #[doc = concat!("Top ", $what, " by views.")]
        #[utoipa::path(
            get,
            path = concat!("/api/v1/sites/{site}/stats/", $path),
            tag = "admin",
            security(("bearer" = [])),
            params(SitePath, RowsQuery, FilterQuery, FormatQuery),
            responses(
                (status = 200, description = "OK", content(
                    (RowsBody = "application/json"),
                    (String = "text/csv"),
                )),
                AdminErrors,
            ),
        )]
        pub(crate) async fn $name(
            AxumState(state): AxumState<Arc<State>>,
            admin: Admin,
            Path(site): Path<String>,
            Query(q): Query<RowsQuery>,
            Query(fq): Query<FilterQuery>,
            Query(format): Query<FormatQuery>,
        ) -> Result<Response, ApiError> {
            breakdown(state, admin, site, (q, fq, format), $dim, $path).await
        }
    )*};
}

breakdowns! {
    referrers, "referrers": Dimension::Referrer, "referrer hosts";
    browsers, "browsers": Dimension::Browser, "browsers";
    os, "os": Dimension::Os, "operating systems";
    devices, "devices": Dimension::Device, "device classes";
    countries, "countries": Dimension::Country, "countries";
    regions, "regions": Dimension::Region, "regions (provinces), from `geoip.database`";
    cities, "cities": Dimension::City, "cities, from `geoip.database`";
    utm_sources, "utm-sources": Dimension::UtmSource, "UTM sources (views without one left out)";
    utm_mediums, "utm-mediums": Dimension::UtmMedium, "UTM mediums (views without one left out)";
    utm_campaigns, "utm-campaigns": Dimension::UtmCampaign, "UTM campaigns (views without one left out)";
    screens, "screens": Dimension::Screen, "screen classes (phone < 576 px, tablet < 992, laptop < 1440, desktop)";
    languages, "languages": Dimension::Language, "browser languages";
}

/// A page where visits started.
#[derive(Serialize, ToSchema)]
pub(crate) struct EntryBody {
    pub(crate) page: String,
    pub(crate) title: String,
    /// Visits that started on the page.
    pub(crate) visits: u64,
    /// Unique visitors among them.
    pub(crate) visitors: u64,
    /// The page's views in the range (all of them, not only the first of a visit).
    pub(crate) views: u64,
    /// Share of those visits with no second page view.
    #[schema(minimum = 0, maximum = 1)]
    pub(crate) bounce_rate: f64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EntryPagesBody {
    pub(crate) pages: Vec<EntryBody>,
}

impl Tabular for EntryPagesBody {
    fn header(&self) -> &'static [&'static str] {
        &[
            "page",
            "title",
            "visits",
            "visitors",
            "views",
            "bounce_rate",
        ]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.pages
            .iter()
            .map(|p| {
                vec![
                    p.page.clone(),
                    p.title.clone(),
                    p.visits.to_string(),
                    p.visitors.to_string(),
                    p.views.to_string(),
                    fraction(p.bounce_rate),
                ]
            })
            .collect()
    }
}

/// The entry pages of `r` for `f`.
pub(crate) async fn entry_pages_of(
    state: &State,
    days: &DayRange,
    r: &Range,
    f: &Filters,
    limit: u32,
) -> Result<Vec<EntryBody>, ApiError> {
    if !raw_kept(state, days) {
        return Err(raw_gone(state, "entry pages"));
    }
    let rows = state.db.entry_pages(r, f, limit).await?;
    let keys: Vec<String> = rows.iter().map(|p| p.page.clone()).collect();
    let views = state.db.page_views(r, &Filters::default(), &keys).await?;
    let views: std::collections::HashMap<&str, u64> =
        views.iter().map(|v| (v.page.as_str(), v.views)).collect();
    Ok(rows
        .into_iter()
        .map(|e| EntryBody {
            views: views.get(e.page.as_str()).copied().unwrap_or(0),
            bounce_rate: rate(e.bounces, e.entries).unwrap_or(0.0),
            page: e.page,
            title: e.title,
            visits: e.entries,
            visitors: e.visitors,
        })
        .collect())
}

/// Pages where visits started, by visits: with their views and bounce rate.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/entry-pages",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RowsQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (EntryPagesBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn entry_pages(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RowsQuery>,
    Query(fq): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let csv = format.csv()?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let pages = entry_pages_of(&state, &days, &r, &f, limit).await?;
    answer(EntryPagesBody { pages }, csv, &id, "entry-pages", &days)
}

/// A page where visits ended.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExitBody {
    pub(crate) page: String,
    pub(crate) title: String,
    /// Visits whose last page view in the range was on the page.
    pub(crate) exits: u64,
    /// The page's views in the range.
    pub(crate) views: u64,
    /// Exits per view.
    #[schema(minimum = 0, maximum = 1)]
    pub(crate) exit_rate: f64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExitPagesBody {
    pub(crate) pages: Vec<ExitBody>,
}

impl Tabular for ExitPagesBody {
    fn header(&self) -> &'static [&'static str] {
        &["page", "title", "exits", "views", "exit_rate"]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.pages
            .iter()
            .map(|p| {
                vec![
                    p.page.clone(),
                    p.title.clone(),
                    p.exits.to_string(),
                    p.views.to_string(),
                    fraction(p.exit_rate),
                ]
            })
            .collect()
    }
}

/// The exit pages of `r` for `f`.
pub(crate) async fn exit_pages_of(
    state: &State,
    days: &DayRange,
    r: &Range,
    f: &Filters,
    limit: u32,
) -> Result<Vec<ExitBody>, ApiError> {
    if !raw_kept(state, days) {
        return Err(raw_gone(state, "exit pages"));
    }
    let rows = state.db.exit_pages(r, f, limit).await?;
    let keys: Vec<String> = rows.iter().map(|p| p.page.clone()).collect();
    let views = state.db.page_views(r, &Filters::default(), &keys).await?;
    let views: std::collections::HashMap<&str, (&str, u64)> = views
        .iter()
        .map(|v| (v.page.as_str(), (v.title.as_str(), v.views)))
        .collect();
    Ok(rows
        .into_iter()
        .map(|e| {
            let (title, views) = views.get(e.page.as_str()).copied().unwrap_or(("", 0));
            ExitBody {
                title: title.to_owned(),
                exit_rate: rate(e.exits, views).unwrap_or(0.0).min(1.0),
                views,
                page: e.page,
                exits: e.exits,
            }
        })
        .collect())
}

/// Pages where visits ended, by exits: with their views and exit rate.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/exit-pages",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RowsQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (ExitPagesBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn exit_pages(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RowsQuery>,
    Query(fq): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let csv = format.csv()?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_LIMIT)?;
    let pages = exit_pages_of(&state, &days, &r, &f, limit).await?;
    answer(ExitPagesBody { pages }, csv, &id, "exit-pages", &days)
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
