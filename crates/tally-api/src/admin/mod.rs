//! The admin statistics pages (`/admin`): server-rendered HTML (askama templates, which
//! escape everything by default — titles, paths and referrers come from visitors), one small
//! script for live updates, one stylesheet; every asset is served from here.

mod chart;
mod i18n;

use std::sync::Arc;

use askama::Template;
use std::net::SocketAddr;

use axum::{
    Form,
    extract::{ConnectInfo, Path, Query, State as AxumState},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use chrono::{Datelike, Days};
use serde::Deserialize;
use tally_clickhouse::stats::{Dimension, Interval, NameRow, Range};
use tally_core::{SiteId, dates::DayRange};

use crate::{ApiError, State, auth::find_token, principal::Principal, session};
use i18n::{Labels, Lang};

/// How often the site page refreshes the live figures.
const POLL_MS: u64 = 5000;
const LANG_COOKIE: &str = "tally_lang";

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    lang: Option<String>,
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The page language: `?lang=` (remembered in a cookie), else the cookie, else the
/// browser's preference, else English.
fn language(query: &PageQuery, headers: &HeaderMap) -> (Lang, bool) {
    if let Some(lang) = query.lang.as_deref().and_then(Lang::parse) {
        return (lang, true);
    }
    if let Some(lang) = session::cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
        return (lang, false);
    }
    let prefers_vi = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("vi"));
    (if prefers_vi { Lang::Vi } else { Lang::En }, false)
}

/// An HTML response with the admin pages' security headers (and the language cookie).
fn html(status: StatusCode, body: String, lang: Lang, remember: bool) -> Response {
    let mut r = (status, Html(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if remember {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/admin; Max-Age=31536000; SameSite=Lax",
            lang.code()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

fn render(t: &impl Template) -> Result<String, ApiError> {
    t.render()
        .map_err(|e| ApiError::Internal(format!("template: {e}")))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    /// Shows the owners' links.
    owner: bool,
    error: Option<&'a str>,
}

struct SiteCard {
    id: String,
    /// The name shown (the id when it has none).
    name: String,
    /// Declared in the configuration file.
    configured: bool,
    /// This principal may open its settings.
    editable: bool,
    views_today: String,
    online: String,
}

#[derive(Template)]
#[template(path = "sites.html")]
struct SitesPage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    sites: Vec<SiteCard>,
    /// May add sites.
    owner: bool,
}

struct TableRow {
    name: String,
    detail: String,
    views: String,
    visitors: String,
    share: u64,
}

#[derive(Template)]
#[template(path = "table.html")]
struct Table<'a> {
    t: &'a Labels,
    title: &'a str,
    head: &'a str,
    rows: Vec<TableRow>,
}

#[derive(Template)]
#[template(path = "site.html")]
struct SitePage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    /// Shows the owners' links.
    owner: bool,
    site: String,
    timezone: String,
    poll_ms: u64,
    online: String,
    range: &'a str,
    ranges: Vec<(&'static str, &'static str)>,
    range_label: String,
    from: String,
    to: String,
    cards: Vec<(&'static str, String)>,
    chart: String,
    reading: Vec<(String, String, String)>,
    /// Set when the site holds `tracking.max_pages` pages live.
    page_cap: Option<String>,
    tables: Vec<String>,
}

fn lang_href(lang: Lang) -> String {
    let other = if lang == Lang::Vi { "en" } else { "vi" };
    format!("?lang={other}")
}

async fn signed_in(state: &State, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    session::from_cookie(state, headers).await
}

fn login_page(
    lang: Lang,
    remember: bool,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, ApiError> {
    let page = LoginPage {
        t: lang.t(),
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: false,
        owner: false,
        error,
    };
    Ok(html(status, render(&page)?, lang, remember))
}

/// `GET /admin`: the sign-in form, or the sites this token may see with today's views and
/// who is online.
pub(crate) async fn index(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, remember) = language(&q, &headers);
    let Some(token) = signed_in(&state, &headers).await? else {
        return login_page(lang, remember, StatusCode::OK, None);
    };
    let now = state.clock.now();
    let mut sites = Vec::new();
    let directory = state.directory.sites();
    for entry in directory.iter().filter(|s| token.allows(s.id())) {
        let site = &entry.settings;
        let today = DayRange::parse(None, None, site.timezone, now, 1)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let range = Range::new(site.id.as_str(), &today);
        let since =
            now.timestamp_millis() - state.settings.tracking.online_window.as_millis() as i64;
        let (summary, live) = tokio::try_join!(
            async { state.db.summary(&range).await.map_err(ApiError::from) },
            async {
                state
                    .store
                    .counters(&site.id, None, since)
                    .await
                    .map_err(ApiError::from)
            },
        )?;
        sites.push(SiteCard {
            id: site.id.to_string(),
            name: entry.display_name().to_owned(),
            configured: entry.source == tally_core::directory::Source::Configuration,
            editable: token.may_edit(&site.id),
            views_today: lang.number(summary.views),
            online: lang.number(live.online),
        });
    }
    let page = SitesPage {
        t: lang.t(),
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: true,
        sites,
        owner: token.owner_only("").is_ok(),
    };
    Ok(html(StatusCode::OK, render(&page)?, lang, remember))
}

/// Whether a form that checks a password (sign-in, a shared link's password) may be tried:
/// an error for a request from another site; false when this address has used up its tries
/// for the minute.
fn password_form_allowed(
    state: &State,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    if !session::same_origin(state, headers) {
        return Err(ApiError::CrossSite);
    }
    Ok(state
        .logins
        .check_key(&crate::auth::client_ip(state, peer, headers))
        .is_ok())
}

/// The sign-in form: a person's name and password, or an admin token.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

/// `POST /admin/login`: a valid token starts a session (cookie) and goes to `/admin`; a wrong
/// one shows the form again with the reason.
pub(crate) async fn login(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let (lang, _) = language(&PageQuery::default(), &headers);
    if !password_form_allowed(&state, peer, &headers)? {
        return login_page(
            lang,
            false,
            StatusCode::TOO_MANY_REQUESTS,
            Some(lang.t().too_many),
        );
    }
    let id = if form.name.trim().is_empty() {
        let Some(token) = find_token(&state.settings.admin.tokens, form.token.trim()) else {
            return login_page(
                lang,
                false,
                StatusCode::UNAUTHORIZED,
                Some(lang.t().wrong_token),
            );
        };
        session::start(&state, token).await?
    } else {
        let name = form.name.trim();
        let person = state.db.person(name).await?;
        // The same work and answer for an unknown name as for a wrong password.
        let hash = person
            .as_ref()
            .map_or(String::new(), |p| p.password_hash.clone());
        let matches = crate::people::password_matches(form.password, hash).await;
        let Some(person) = person.filter(|_| matches) else {
            return login_page(
                lang,
                false,
                StatusCode::UNAUTHORIZED,
                Some(lang.t().wrong_password),
            );
        };
        person_session(&state, &person).await?
    };
    Ok(signed_in_redirect(&state, peer, &headers, &id))
}

/// Starts a session for a stored person.
async fn person_session(
    state: &State,
    person: &tally_clickhouse::Person,
) -> Result<String, ApiError> {
    let role = crate::principal::Role::parse(&person.role)
        .ok_or_else(|| ApiError::Internal(format!("person {} has no valid role", person.name)))?;
    let sites: Vec<SiteId> = person
        .sites
        .iter()
        .filter_map(|s| SiteId::parse(s).ok())
        .collect();
    session::start_person(state, &person.name, role, &sites).await
}

/// The redirect to `/admin` that sets the cookie of session `id`.
fn signed_in_redirect(state: &State, peer: SocketAddr, headers: &HeaderMap, id: &str) -> Response {
    let cookie = session::start_cookie(
        id,
        session::over_https(state, peer, headers),
        state.settings.admin.session_ttl,
    );
    let mut r = Redirect::to("/admin").into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    /// Shows the owners' links.
    owner: bool,
    valid: bool,
    name: String,
    error: Option<&'a str>,
}

/// The person a pending, unexpired invitation `secret` is for.
async fn invited(
    state: &State,
    secret: &str,
) -> Result<Option<tally_clickhouse::Person>, ApiError> {
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let now = u32::try_from(state.clock.now().timestamp()).unwrap_or(u32::MAX);
    Ok(state
        .db
        .person_invited(&crate::people::invite_hash(secret))
        .await?
        .filter(|p| p.invite_expires > now))
}

fn invite_response(
    lang: Lang,
    status: StatusCode,
    person: Option<&tally_clickhouse::Person>,
    error: Option<&str>,
) -> Result<Response, ApiError> {
    let page = InvitePage {
        t: lang.t(),
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: false,
        owner: false,
        valid: person.is_some(),
        name: person.map(|p| p.name.clone()).unwrap_or_default(),
        error,
    };
    let status = if person.is_some() {
        status
    } else {
        StatusCode::NOT_FOUND
    };
    Ok(html(status, render(&page)?, lang, false))
}

/// `GET /admin/invite/{secret}`: the form to set one's password.
pub(crate) async fn invite_page(
    AxumState(state): AxumState<Arc<State>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, _) = language(&q, &headers);
    let person = invited(&state, &secret).await?;
    invite_response(lang, StatusCode::OK, person.as_ref(), None)
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    password: String,
}

/// `POST /admin/invite/{secret}`: sets the password, uses the invitation up and signs in.
pub(crate) async fn accept_invite(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ApiError> {
    let (lang, _) = language(&PageQuery::default(), &headers);
    if !session::same_origin(&state, &headers) {
        return Err(ApiError::CrossSite);
    }
    let Some(mut person) = invited(&state, &secret).await? else {
        return invite_response(lang, StatusCode::NOT_FOUND, None, None);
    };
    if form.password.chars().count() < crate::people::MIN_PASSWORD {
        return invite_response(
            lang,
            StatusCode::BAD_REQUEST,
            Some(&person),
            Some(lang.t().password_short),
        );
    }
    person.password_hash = crate::people::hash_password(form.password).await?;
    person.invite_hash = String::new();
    person.invite_expires = 0;
    state.db.save_person(&person).await?;
    state
        .db
        .audit(&person.name, "person.joined", &person.name, "password set")
        .await?;
    let id = person_session(&state, &person).await?;
    Ok(signed_in_redirect(&state, peer, &headers, &id))
}

/// `POST /admin/logout`: ends the session (same-origin requests only).
pub(crate) async fn logout(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !session::same_origin(&state, &headers) {
        return Err(ApiError::CrossSite);
    }
    if let Some(id) = session::cookie_value(&headers) {
        state
            .store
            .session_delete(&session::storage_key(id))
            .await?;
    }
    let mut r = Redirect::to("/admin").into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    for cookie in session::end_cookies() {
        r.headers_mut()
            .append(header::SET_COOKIE, HeaderValue::from_static(cookie));
    }
    Ok(r)
}

/// The day range of `?range=today|yesterday|7d|30d|custom&from&to`, in the site's zone.
fn page_range(
    q: &PageQuery,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
    max_days: u32,
) -> (String, Result<DayRange, String>) {
    let today = now.with_timezone(&tz).date_naive();
    let back = |n: u64| {
        today
            .checked_sub_days(Days::new(n))
            .unwrap_or(today)
            .to_string()
    };
    let key = q.range.clone().unwrap_or_else(|| "today".into());
    let (from, to) = match key.as_str() {
        "yesterday" => (back(1), back(1)),
        "7d" => (back(6), today.to_string()),
        "30d" => (back(29), today.to_string()),
        "custom" => (
            q.from.clone().unwrap_or_default(),
            q.to.clone().unwrap_or_default(),
        ),
        _ => (today.to_string(), today.to_string()),
    };
    let key = match key.as_str() {
        "yesterday" | "7d" | "30d" | "custom" => key,
        _ => "today".into(),
    };
    let range =
        DayRange::parse(Some(&from), Some(&to), tz, now, max_days).map_err(|e| e.to_string());
    (key, range)
}

fn rows(lang: Lang, rows: Vec<NameRow>, empty_name: &str) -> Vec<TableRow> {
    let max = rows.iter().map(|r| r.views).max().unwrap_or(0).max(1);
    rows.into_iter()
        .map(|r| TableRow {
            name: if r.name.is_empty() {
                empty_name.to_owned()
            } else {
                r.name
            },
            detail: String::new(),
            views: lang.number(r.views),
            visitors: lang.number(r.visitors),
            share: r.views * 100 / max,
        })
        .collect()
}

/// Device classes in the page's language; "unknown" (and anything else) as unknown.
fn named_devices(t: &Labels, rows: Vec<NameRow>) -> Vec<NameRow> {
    rows.into_iter()
        .map(|mut r| {
            r.name = match r.name.as_str() {
                "desktop" => t.devices_named[0].to_owned(),
                "mobile" => t.devices_named[1].to_owned(),
                "tablet" => t.devices_named[2].to_owned(),
                _ => String::new(),
            };
            r
        })
        .collect()
}

/// What the site page shows, read from ClickHouse and Redis at once.
struct SiteData {
    summary: tally_clickhouse::stats::Summary,
    series: Vec<tally_clickhouse::stats::Bucket>,
    pages: Vec<tally_clickhouse::stats::PageRow>,
    /// Referrers, browsers, OS, devices, countries.
    dimensions: [Vec<NameRow>; 5],
    live: tally_redis::Realtime,
}

/// Reads everything the site page shows for `range`, the queries in parallel.
async fn load(
    state: &State,
    id: &SiteId,
    range: &Range,
    interval: Interval,
) -> Result<SiteData, ApiError> {
    let db = &state.db;
    let dimension = |d: Dimension, n: u32| async move {
        db.dimension(range, d, n).await.map_err(ApiError::from)
    };
    let now = state.clock.now_ms();
    let window = state.settings.tracking.online_window.as_millis() as i64;
    let (summary, series, pages, referrers, browsers, os, devices, countries, live) = tokio::try_join!(
        async { db.summary(range).await.map_err(ApiError::from) },
        async { db.timeseries(range, interval).await.map_err(ApiError::from) },
        async { db.top_pages(range, 20, 0).await.map_err(ApiError::from) },
        dimension(Dimension::Referrer, 10),
        dimension(Dimension::Browser, 8),
        dimension(Dimension::Os, 8),
        dimension(Dimension::Device, 5),
        dimension(Dimension::Country, 10),
        async {
            state
                .store
                .realtime(id, now, window, 30, 10)
                .await
                .map_err(ApiError::from)
        },
    )?;
    Ok(SiteData {
        summary,
        series,
        pages,
        dimensions: [referrers, browsers, os, devices, countries],
        live,
    })
}

/// The chart of `series` over `days`: one bar per local hour or day, labelled in `lang`.
fn chart_of(
    days: &DayRange,
    interval: Interval,
    series: &[tally_clickhouse::stats::Bucket],
    lang: Lang,
) -> String {
    let t = lang.t();
    let bars: Vec<chart::Bar> = crate::stats::series(days, interval, series)
        .into_iter()
        .map(|p| {
            let label = match (interval, lang) {
                (Interval::Hour, _) => p.start.format("%H:00").to_string(),
                (Interval::Day, Lang::En) => p.start.format("%b %-d").to_string(),
                (Interval::Day, Lang::Vi) => {
                    format!("{:02}/{:02}", p.start.day(), p.start.month())
                }
            };
            chart::Bar {
                tooltip: format!(
                    "{label}: {} {}, {} {}",
                    lang.number(p.views),
                    t.views,
                    lang.number(p.visitors),
                    t.visitors
                ),
                label,
                views: p.views,
                visitors: p.visitors,
            }
        })
        .collect();
    chart::svg(&bars, |n| lang.number(n), t.views, t.visitors)
}

/// The tables of the site page: top pages, then the dimensions.
fn tables(
    lang: Lang,
    pages: Vec<tally_clickhouse::stats::PageRow>,
    dimensions: [Vec<NameRow>; 5],
) -> Result<Vec<String>, ApiError> {
    let t = lang.t();
    let max = pages.iter().map(|p| p.views).max().unwrap_or(0).max(1);
    let page_rows: Vec<TableRow> = pages
        .into_iter()
        .map(|p| TableRow {
            name: if p.title.is_empty() {
                p.page.clone()
            } else {
                p.title
            },
            detail: p.page,
            views: lang.number(p.views),
            visitors: lang.number(p.visitors),
            share: p.views * 100 / max,
        })
        .collect();
    let table = |title: &str, head: &str, rows: Vec<TableRow>| {
        render(&Table {
            t,
            title,
            head,
            rows,
        })
    };
    let [referrers, browsers, os, devices, countries] = dimensions;
    Ok(vec![
        table(t.top_pages, t.page, page_rows)?,
        table(t.referrers, t.referrers, rows(lang, referrers, t.direct))?,
        table(t.browsers, t.browsers, rows(lang, browsers, t.unknown))?,
        table(t.os, t.os, rows(lang, os, t.unknown))?,
        table(
            t.devices,
            t.devices,
            rows(lang, named_devices(t, devices), t.unknown),
        )?,
        table(t.countries, t.countries, rows(lang, countries, t.unknown))?,
    ])
}

/// The summary cards.
fn cards(lang: Lang, s: &tally_clickhouse::stats::Summary) -> Vec<(&'static str, String)> {
    let t = lang.t();
    vec![
        (t.views, lang.number(s.views)),
        (t.visits, lang.number(s.visits)),
        (t.visitors, lang.number(s.visitors)),
        (t.bounce_rate, lang.percent(s.bounce_rate)),
        (t.avg_visit, lang.duration(s.avg_visit_seconds)),
        (t.bots_filtered, lang.number(s.bots_filtered)),
        (t.repeats_not_counted, lang.number(s.repeats_not_counted)),
        (
            t.unverified_not_counted,
            lang.number(s.unverified_not_counted),
        ),
    ]
}

/// "Being read now": (name, page, readers), the pages past the cap as "(other pages)".
fn reading(lang: Lang, pages: Vec<(String, String, u64)>) -> Vec<(String, String, String)> {
    let t = lang.t();
    pages
        .into_iter()
        .map(|(page, title, n)| {
            let name = if page.is_empty() {
                t.other_pages.to_owned()
            } else if title.is_empty() {
                page.clone()
            } else {
                title
            };
            (name, page, lang.number(n))
        })
        .collect()
}

/// `GET /admin/sites/{site}`: everything about one site for a range.
pub(crate) async fn site(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Path(site): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, remember) = language(&q, &headers);
    let Some(token) = signed_in(&state, &headers).await? else {
        return Ok(Redirect::to("/admin").into_response());
    };
    let id = SiteId::parse(&site).map_err(|_| ApiError::UnknownSite)?;
    if !token.allows(&id) {
        return Err(ApiError::Forbidden);
    }
    let owner = token.owner_only("").is_ok();
    let page = site_page(&state, &id, &q, lang, true, owner).await?;
    Ok(html(StatusCode::OK, page, lang, remember))
}

/// The statistics page of site `id`, for someone signed in or for a shared link's visitor.
async fn site_page(
    state: &State,
    id: &SiteId,
    q: &PageQuery,
    lang: Lang,
    signed_in: bool,
    owner: bool,
) -> Result<String, ApiError> {
    let site = state.directory.get(id).ok_or(ApiError::UnknownSite)?;
    let settings = &site.settings;
    let tz = settings.timezone;
    let t = lang.t();
    let (key, days) = page_range(
        q,
        tz,
        state.clock.now(),
        state.settings.admin.max_range_days,
    );
    let days = days.map_err(ApiError::BadRequest)?;
    let range = Range::new(id.as_str(), &days);
    let interval = if days.from == days.to {
        Interval::Hour
    } else {
        Interval::Day
    };
    let data = load(state, id, &range, interval).await?;
    let range_label = if days.from == days.to {
        lang.date(days.from)
    } else {
        format!("{} – {}", lang.date(days.from), lang.date(days.to))
    };
    let cap = u64::from(state.settings.tracking.max_pages);
    let page = SitePage {
        t,
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in,
        owner,
        site: id.to_string(),
        timezone: tz.name().to_owned(),
        poll_ms: POLL_MS,
        online: lang.number(data.live.online),
        range: &key,
        ranges: vec![
            ("today", t.today),
            ("yesterday", t.yesterday),
            ("7d", t.last_7),
            ("30d", t.last_30),
        ],
        range_label,
        from: days.from.to_string(),
        to: days.to.to_string(),
        cards: cards(lang, &data.summary),
        chart: chart_of(&days, interval, &data.series, lang),
        page_cap: at_page_cap(&state.settings.tracking, data.live.live_pages)
            .then(|| t.page_cap_reached.replace("{n}", &lang.number(cap))),
        reading: reading(lang, data.live.pages),
        tables: tables(lang, data.pages, data.dimensions)?,
    };
    render(&page)
}

struct ShareRow {
    id: String,
    by: String,
    at: String,
    password: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    /// Shows the owners' links.
    owner: bool,
    id: String,
    name: String,
    site_name: String,
    domains: String,
    timezone: String,
    public_counters: bool,
    configured: bool,
    deletable: bool,
    snippet: String,
    shares: Vec<ShareRow>,
}

/// `GET /admin/sites/{site}/settings`: the embed snippet, the site's settings (managed
/// sites), its shared links and its deletion — for owners and the site's admins.
pub(crate) async fn site_settings(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(site): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, remember) = language(&q, &headers);
    let Some(who) = signed_in(&state, &headers).await? else {
        return Ok(Redirect::to("/admin").into_response());
    };
    let id = SiteId::parse(&site).map_err(|_| ApiError::UnknownSite)?;
    let site = state.directory.get(&id).ok_or(ApiError::UnknownSite)?;
    if !who.may_edit(&id) {
        return Err(ApiError::Forbidden);
    }
    let configured = site.source == tally_core::directory::Source::Configuration;
    let base = crate::people::base_url(
        &state,
        &headers,
        session::over_https(&state, peer, &headers),
    );
    let shares = state
        .db
        .shares(id.as_str())
        .await?
        .into_iter()
        .map(|s| ShareRow {
            at: chrono::DateTime::from_timestamp(i64::from(s.created_at), 0)
                .map(|t| lang.date(t.with_timezone(&site.settings.timezone).date_naive()))
                .unwrap_or_default(),
            password: !s.password_hash.is_empty(),
            id: s.id,
            by: s.created_by,
        })
        .collect();
    let page = SettingsPage {
        t: lang.t(),
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: true,
        owner: who.owner_only("").is_ok(),
        id: id.to_string(),
        name: site.display_name().to_owned(),
        site_name: site.settings.name.clone(),
        domains: site.settings.domains.join(" "),
        timezone: site.settings.timezone.name().to_owned(),
        public_counters: site.settings.public_counters,
        configured,
        deletable: !configured && who.owner_only("").is_ok(),
        snippet: format!("<script defer src=\"{base}/t.js\" data-site=\"{id}\"></script>"),
        shares,
    };
    Ok(html(StatusCode::OK, render(&page)?, lang, remember))
}

#[derive(Template)]
#[template(path = "share_password.html")]
struct SharePasswordPage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    /// Shows the owners' links.
    owner: bool,
    error: Option<&'a str>,
}

/// `GET /share/{secret}`: a shared site's statistics page, without an account. A link with a
/// password asks for it first; opening the page starts a session reading only that site
/// (the live figures' requests go by it), which revoking the link ends.
pub(crate) async fn shared_page(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, remember) = language(&q, &headers);
    let Some(share) = crate::shares::by_secret(&state, &secret).await? else {
        return Err(ApiError::NotFound);
    };
    let site = SiteId::parse(&share.site).map_err(|_| ApiError::NotFound)?;
    let current = session::from_cookie(&state, &headers).await?;
    let has_session = matches!(&current, Some(Principal::Share { id, .. }) if *id == share.id);
    if !share.password_hash.is_empty() && !has_session {
        return share_password_page(lang, StatusCode::OK, None);
    }
    let page = site_page(&state, &site, &q, lang, false, false).await?;
    let mut response = html(StatusCode::OK, page, lang, remember);
    if !has_session {
        let id = session::start_share(&state, &share.id, &site).await?;
        set_share_cookie(&state, peer, &headers, &id, &mut response);
    }
    Ok(response)
}

fn share_password_page(
    lang: Lang,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, ApiError> {
    let page = SharePasswordPage {
        t: lang.t(),
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: false,
        owner: false,
        error,
    };
    Ok(html(status, render(&page)?, lang, false))
}

fn set_share_cookie(
    state: &State,
    peer: SocketAddr,
    headers: &HeaderMap,
    id: &str,
    response: &mut Response,
) {
    let cookie = session::start_share_cookie(
        id,
        session::over_https(state, peer, headers),
        state.settings.admin.session_ttl,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `POST /share/{secret}`: the password of a shared link; right, it opens the page (sign-in
/// throttling applies).
pub(crate) async fn shared_password(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ApiError> {
    let (lang, _) = language(&PageQuery::default(), &headers);
    if !password_form_allowed(&state, peer, &headers)? {
        return share_password_page(lang, StatusCode::TOO_MANY_REQUESTS, Some(lang.t().too_many));
    }
    let Some(share) = crate::shares::by_secret(&state, &secret).await? else {
        return Err(ApiError::NotFound);
    };
    let site = SiteId::parse(&share.site).map_err(|_| ApiError::NotFound)?;
    if !crate::people::password_matches(form.password, share.password_hash.clone()).await {
        return share_password_page(
            lang,
            StatusCode::UNAUTHORIZED,
            Some(lang.t().wrong_share_password),
        );
    }
    let id = session::start_share(&state, &share.id, &site).await?;
    let mut response = Redirect::to(&format!("/share/{secret}")).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    set_share_cookie(&state, peer, &headers, &id, &mut response);
    Ok(response)
}

/// Whether a site with `live_pages` pages held live has reached `tracking.max_pages` (the
/// "other pages" row is one of them once there).
fn at_page_cap(tracking: &tally_core::settings::TrackingSettings, live_pages: u64) -> bool {
    tracking.max_pages > 0 && live_pages >= u64::from(tracking.max_pages)
}

/// `GET /admin/assets/{file}`: the stylesheet and the script, cacheable for an hour.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "admin.css" => (
            include_str!("../../assets/admin.css"),
            "text/css; charset=utf-8",
        ),
        "admin.js" => (
            include_str!("../../assets/admin.js"),
            "application/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

struct PersonRow {
    name: String,
    role: String,
    sites: String,
    invited: bool,
    /// The signed-in person (who cannot remove themselves).
    me: bool,
}

#[derive(Template)]
#[template(path = "people.html")]
struct PeoplePage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    owner: bool,
    people: Vec<PersonRow>,
    /// (id, name shown) of every site, for the invitation's choice.
    sites: Vec<(String, String)>,
}

/// The signed-in owner of a request to an owners' page; `Err` is the response to send
/// instead (the sign-in page, or 403).
async fn owner_of(
    state: &State,
    headers: &HeaderMap,
) -> Result<Result<Principal, Response>, ApiError> {
    let Some(who) = signed_in(state, headers).await? else {
        return Ok(Err(Redirect::to("/admin").into_response()));
    };
    match who.owner_only("manage people") {
        Ok(()) => Ok(Ok(who)),
        Err(e) => Ok(Err(e.into_response())),
    }
}

/// `GET /admin/people` (owners): everyone, the invitation form, removal.
pub(crate) async fn people_page(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, remember) = language(&q, &headers);
    let who = match owner_of(&state, &headers).await? {
        Ok(who) => who,
        Err(response) => return Ok(response),
    };
    let t = lang.t();
    let me = who.actor();
    let people = state
        .db
        .people()
        .await?
        .into_iter()
        .map(|p| PersonRow {
            me: p.name == me,
            role: match p.role.as_str() {
                "owner" => t.role_owner,
                "admin" => t.role_admin,
                _ => t.role_viewer,
            }
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned(),
            sites: if p.sites.is_empty() {
                t.all_sites_role.to_owned()
            } else {
                p.sites.join(", ")
            },
            invited: p.password_hash.is_empty(),
            name: p.name,
        })
        .collect();
    let sites = state
        .directory
        .sites()
        .iter()
        .map(|s| (s.id().to_string(), s.display_name().to_owned()))
        .collect();
    let page = PeoplePage {
        t,
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: true,
        owner: true,
        people,
        sites,
    };
    Ok(html(StatusCode::OK, render(&page)?, lang, remember))
}

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    owner: bool,
    /// (when, who, what, on what, detail)
    entries: Vec<(String, String, String, String, String)>,
}

/// `GET /admin/changes` (owners): the record of who changed what and when, newest first.
pub(crate) async fn changes_page(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, remember) = language(&q, &headers);
    if let Err(response) = owner_of(&state, &headers).await? {
        return Ok(response);
    }
    let entries = state
        .db
        .audit_log(500)
        .await?
        .into_iter()
        .map(|e| {
            let when = chrono::DateTime::from_timestamp(i64::from(e.at), 0)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            (when, e.actor, e.action, e.target, e.detail)
        })
        .collect();
    let page = ChangesPage {
        t: lang.t(),
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: true,
        owner: true,
        entries,
    };
    Ok(html(StatusCode::OK, render(&page)?, lang, remember))
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    t: &'a Labels,
    lang: &'a str,
    lang_href: String,
    signed_in: bool,
    owner: bool,
    /// Signed in as a person (not with a configuration token).
    person: bool,
    name: String,
    /// (id, label, read-only) of the person's tokens.
    tokens: Vec<(String, String, bool)>,
}

/// `GET /admin/account`: a signed-in person's tokens, password and sessions.
pub(crate) async fn account_page(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (lang, remember) = language(&q, &headers);
    let Some(who) = signed_in(&state, &headers).await? else {
        return Ok(Redirect::to("/admin").into_response());
    };
    let name = who.signed_in_person().ok().map(str::to_owned);
    let tokens = match &name {
        Some(name) => state
            .db
            .api_tokens(name)
            .await?
            .into_iter()
            .map(|t| (t.id, t.label, t.read_only != 0))
            .collect(),
        None => Vec::new(),
    };
    let page = AccountPage {
        t: lang.t(),
        lang: lang.code(),
        lang_href: lang_href(lang),
        signed_in: true,
        owner: who.owner_only("").is_ok(),
        person: name.is_some(),
        name: name.unwrap_or_default(),
        tokens,
    };
    Ok(html(StatusCode::OK, render(&page)?, lang, remember))
}
