//! The admin statistics pages (`/admin`): server-rendered HTML (askama templates, which
//! escape everything by default — titles, paths and referrers come from visitors), one small
//! script for live updates, one stylesheet; every asset is served from here.

mod chart;
mod i18n;
mod places;

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
use tally_clickhouse::{
    explore::{CountRow, EventsBy, Field, Filters},
    stats::{Dimension, Interval, NameRow, Range},
};
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
    /// `previous_period` or `previous_year`; empty: none.
    compare: Option<String>,
    /// The filters (`referrer=…`, see `explore::Field::param`); other keys are ignored.
    #[serde(flatten)]
    rest: std::collections::HashMap<String, String>,
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
    /// The page filtered by this row.
    href: String,
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
    /// The section's id: `table-{key}`.
    key: &'a str,
    title: &'a str,
    head: &'a str,
    /// The heads of the two number columns (the second may be empty: no column).
    cols: (&'a str, &'a str),
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
    /// (key, label, link keeping the filters and comparison).
    ranges: Vec<(&'static str, &'static str, String)>,
    range_label: String,
    /// `previous_period`, `previous_year` or empty.
    compare: String,
    /// The compared days, when comparing.
    compare_label: Option<String>,
    /// The filters, kept by the range and comparison forms as hidden fields.
    kept: Vec<(String, String)>,
    /// The filters as chips: (field's name, value shown, parameter, link without it).
    chips: Vec<(&'static str, String, &'static str, String)>,
    /// The export of every table of the view.
    export_href: String,
    from: String,
    to: String,
    /// (label, value, change, its direction: up, down, flat or empty).
    cards: Vec<(&'static str, String, String, &'static str)>,
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

/// A link to the site page keeping its range (or going to the named `range`), comparison and
/// filters, with `field` set to `value` or removed.
fn page_href(
    q: &PageQuery,
    filters: &Filters,
    range: Option<&str>,
    field: Option<(Field, Option<&str>)>,
) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(r) = range.or(q.range.as_deref()) {
        pairs.push(("range", r));
        if r == "custom" {
            pairs.push(("from", q.from.as_deref().unwrap_or_default()));
            pairs.push(("to", q.to.as_deref().unwrap_or_default()));
        }
    }
    if let Some(c) = q.compare.as_deref().filter(|c| !c.is_empty()) {
        pairs.push(("compare", c));
    }
    let mut f = filters.clone();
    if let Some((field, value)) = field {
        match value {
            Some(v) => f.set(field, v),
            None => f.remove(field),
        }
    }
    for (field, value) in f.iter() {
        pairs.push((field.param(), value));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("?{query}")
}

/// The filters of the page's query (values past the API's limit are left out).
fn page_filters(q: &PageQuery) -> Filters {
    let mut f = Filters::default();
    for field in Field::ALL {
        if let Some(v) = q.rest.get(field.param()).filter(|v| v.len() <= 2048) {
            f.set(field, v.clone());
        }
    }
    f
}

/// A table row of `name` (shown as `shown`), linking to the page filtered by it.
fn row(
    link: &dyn Fn(&str) -> String,
    lang: Lang,
    (name, shown, detail): (&str, String, String),
    (first, second): (u64, u64),
    max: u64,
) -> TableRow {
    TableRow {
        href: link(name),
        name: shown,
        detail,
        views: lang.number(first),
        visitors: lang.number(second),
        share: first * 100 / max.max(1),
    }
}

/// What a breakdown's stored value is called on the page.
fn shown_name(t: &Labels, lang: Lang, dim: Dimension, name: &str) -> String {
    let named = |names: &[&'static str], keys: &[&str]| {
        keys.iter()
            .position(|k| *k == name)
            .map_or(t.unknown.to_owned(), |i| names[i].to_owned())
    };
    match dim {
        _ if name.is_empty() => match dim {
            Dimension::Referrer => t.direct.to_owned(),
            _ => t.unknown.to_owned(),
        },
        Dimension::Device => named(&t.devices_named, &["desktop", "mobile", "tablet"]),
        Dimension::Screen => named(&t.screens_named, &["phone", "tablet", "laptop", "desktop"]),
        Dimension::Region | Dimension::City if lang == Lang::Vi => {
            places::vietnamese(name).map_or_else(|| name.to_owned(), str::to_owned)
        }
        _ => name.to_owned(),
    }
}

/// The breakdowns of the site page: (title, dimension, rows shown, the API's report).
fn breakdown_tables(t: &Labels) -> [(&'static str, Dimension, u32, &'static str); 12] {
    [
        (t.referrers, Dimension::Referrer, 10, "referrers"),
        (t.utm_sources, Dimension::UtmSource, 8, "utm-sources"),
        (t.utm_mediums, Dimension::UtmMedium, 8, "utm-mediums"),
        (t.utm_campaigns, Dimension::UtmCampaign, 8, "utm-campaigns"),
        (t.countries, Dimension::Country, 10, "countries"),
        (t.regions, Dimension::Region, 10, "regions"),
        (t.cities, Dimension::City, 10, "cities"),
        (t.browsers, Dimension::Browser, 8, "browsers"),
        (t.os, Dimension::Os, 8, "os"),
        (t.devices, Dimension::Device, 5, "devices"),
        (t.screens, Dimension::Screen, 5, "screens"),
        (t.languages, Dimension::Language, 8, "languages"),
    ]
}

/// What the site page shows, read from ClickHouse and Redis at once.
struct SiteData {
    summary: tally_clickhouse::stats::Summary,
    /// The compared range's summary, when comparing.
    compared: Option<tally_clickhouse::stats::Summary>,
    series: Vec<tally_clickhouse::stats::Bucket>,
    compared_series: Option<Vec<tally_clickhouse::stats::Bucket>>,
    pages: Vec<crate::stats::PageBody>,
    /// Entry and exit pages (empty when the raw events of the range are gone).
    entries: Vec<crate::stats::EntryBody>,
    exits: Vec<crate::stats::ExitBody>,
    /// In the order of [`breakdown_tables`].
    breakdowns: Vec<Vec<NameRow>>,
    /// Goals and custom events (empty when the raw events of the range are gone).
    conversions: Option<crate::goals::ConversionsBody>,
    /// Custom events by target (downloads, outbound links) and by name.
    downloads: Vec<CountRow>,
    outbound: Vec<CountRow>,
    custom: Vec<CountRow>,
    live: tally_redis::Realtime,
}

/// Reads everything the site page shows for `range` (and `compared`) and `filters`, the
/// queries in parallel.
async fn load(
    state: &State,
    id: &SiteId,
    (days, range): (&DayRange, &Range),
    compared: Option<(&DayRange, &Range)>,
    filters: &Filters,
    interval: Interval,
) -> Result<SiteData, ApiError> {
    let t = Lang::En.t();
    let now = state.clock.now_ms();
    let window = state.settings.tracking.online_window.as_millis() as i64;
    let raw = crate::stats::raw_kept(state, days);
    let breakdowns =
        futures_util::future::try_join_all(breakdown_tables(t).map(|(_, dim, n, _)| async move {
            if !raw && dim.rollup_name().is_none() {
                return Ok(Vec::new());
            }
            crate::stats::breakdown_of(state, days, range, filters, dim, n).await
        }));
    let (
        summary,
        compared_summary,
        series,
        compared_series,
        pages,
        (entries, exits),
        breakdowns,
        (conversions, downloads, outbound, custom),
        live,
    ) = tokio::try_join!(
        crate::stats::summary_of(state, range, filters),
        async {
            match compared {
                Some((_, r)) => crate::stats::summary_of(state, r, filters).await.map(Some),
                None => Ok(None),
            }
        },
        crate::stats::series_of(state, range, filters, interval),
        async {
            match compared {
                Some((_, r)) => crate::stats::series_of(state, r, filters, interval)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        },
        crate::stats::pages_of(state, days, range, filters, 20, 0),
        async {
            if !raw {
                return Ok((Vec::new(), Vec::new()));
            }
            tokio::try_join!(
                crate::stats::entry_pages_of(state, days, range, filters, 10),
                crate::stats::exit_pages_of(state, days, range, filters, 10)
            )
        },
        breakdowns,
        async {
            if !raw {
                return Ok((None, Vec::new(), Vec::new(), Vec::new()));
            }
            let goals = state.db.goals(id.as_str()).await?;
            let events = |by| async move {
                Ok::<_, ApiError>(state.db.custom_events(range, filters, by, 10).await?)
            };
            let (conversions, downloads, outbound, custom) = tokio::try_join!(
                crate::goals::conversions_of(state, range, filters, goals),
                events(EventsBy::Target("download")),
                events(EventsBy::Target("outbound")),
                events(EventsBy::Name),
            )?;
            Ok((Some(conversions), downloads, outbound, custom))
        },
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
        compared: compared_summary,
        series,
        compared_series,
        pages,
        entries,
        exits,
        breakdowns,
        conversions,
        downloads,
        outbound,
        custom,
        live,
    })
}

/// The chart of `series` over `days`: one bar per local hour or day, labelled in `lang`;
/// with the compared range's views as a dashed line.
fn chart_of(
    days: &DayRange,
    interval: Interval,
    series: &[tally_clickhouse::stats::Bucket],
    compared: Option<(&DayRange, &[tally_clickhouse::stats::Bucket])>,
    lang: Lang,
) -> String {
    let t = lang.t();
    let mut before = compared
        .map(|(d, s)| crate::stats::series(d, interval, s))
        .unwrap_or_default()
        .into_iter();
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
            let then = before.next();
            let mut tooltip = format!(
                "{label}: {} {}, {} {}",
                lang.number(p.views),
                t.views,
                lang.number(p.visitors),
                t.visitors
            );
            if let Some(b) = &then {
                tooltip.push_str(&format!(" ({} {} {})", t.vs, lang.number(b.views), t.views));
            }
            chart::Bar {
                tooltip,
                label,
                views: p.views,
                visitors: p.visitors,
                compared: then.map(|b| b.views),
            }
        })
        .collect();
    chart::svg(&bars, |n| lang.number(n), t.views, t.visitors)
}

/// The tables of the site page: top, entry and exit pages, then the breakdowns; every row
/// links to the page filtered by it.
fn tables(
    lang: Lang,
    q: &PageQuery,
    filters: &Filters,
    data: &SiteData,
) -> Result<Vec<String>, ApiError> {
    let t = lang.t();
    let table = |key: &str, title: &str, head: &str, cols: (&str, &str), rows: Vec<TableRow>| {
        render(&Table {
            t,
            key,
            title,
            head,
            cols,
            rows,
        })
    };
    let link = |field: Field| move |v: &str| page_href(q, filters, None, Some((field, Some(v))));
    let title_of = |title: &str, page: &str| {
        if title.is_empty() {
            page.to_owned()
        } else {
            title.to_owned()
        }
    };
    // The rows of one table: (stored value, shown name, detail, figures); each bar's length
    // is its first figure against the table's largest.
    let rows = |field: Field, items: Vec<(&str, String, String, (u64, u64))>| -> Vec<TableRow> {
        let max = items.iter().map(|i| i.3.0).max().unwrap_or(0);
        items
            .into_iter()
            .map(|(value, shown, detail, figures)| {
                row(&link(field), lang, (value, shown, detail), figures, max)
            })
            .collect()
    };
    let page = |page: &str, title: &str| (title_of(title, page), page.to_owned());
    let pages = rows(
        Field::Page,
        data.pages
            .iter()
            .map(|p| {
                let (shown, detail) = page(&p.page, &p.title);
                (p.page.as_str(), shown, detail, (p.views, p.visitors))
            })
            .collect(),
    );
    let entries = rows(
        Field::EntryPage,
        data.entries
            .iter()
            .map(|p| {
                let (shown, detail) = page(&p.page, &p.title);
                (p.page.as_str(), shown, detail, (p.visits, p.visitors))
            })
            .collect(),
    );
    let exits = rows(
        Field::Page,
        data.exits
            .iter()
            .map(|p| {
                let (shown, detail) = page(&p.page, &p.title);
                (p.page.as_str(), shown, detail, (p.exits, 0))
            })
            .collect(),
    )
    .into_iter()
    .map(|mut r| {
        r.visitors = String::new();
        r
    })
    .collect();
    let mut out = vec![
        table("pages", t.top_pages, t.page, (t.views, t.visitors), pages)?,
        table(
            "entry-pages",
            t.entry_pages,
            t.page,
            (t.entries, t.visitors),
            entries,
        )?,
        table("exit-pages", t.exit_pages, t.page, (t.exits, ""), exits)?,
    ];
    if let Some(c) = &data.conversions {
        let max = c.goals.iter().map(|g| g.visitors).max().unwrap_or(0);
        let goals = c
            .goals
            .iter()
            .map(|g| TableRow {
                href: String::new(),
                name: g.name.clone(),
                detail: {
                    let word = if g.conversions == 1 {
                        t.conversion
                    } else {
                        t.conversions
                    };
                    let n = format!("{} {word}", lang.number(g.conversions));
                    // What reaches it, unless the name says so already.
                    if g.what == g.name {
                        n
                    } else {
                        format!("{} · {n}", g.what)
                    }
                },
                views: lang.number(g.visitors),
                visitors: lang.percent(g.conversion_rate),
                share: g.visitors * 100 / max.max(1),
            })
            .collect();
        out.push(table(
            "goals",
            t.goals,
            t.goal,
            (t.visitors, t.conversion_rate),
            goals,
        )?);
    }
    // Custom events have no filter of their own: their rows link nowhere.
    let counted = |found: &[CountRow]| -> Vec<TableRow> {
        let max = found.iter().map(|r| r.events).max().unwrap_or(0);
        found
            .iter()
            .map(|r| {
                row(
                    &|_| String::new(),
                    lang,
                    (&r.value, r.value.clone(), String::new()),
                    (r.events, r.visitors),
                    max,
                )
            })
            .collect()
    };
    let cols = (t.events_count, t.visitors);
    out.push(table(
        "downloads",
        t.top_downloads,
        t.file,
        cols,
        counted(&data.downloads),
    )?);
    out.push(table(
        "outbound",
        t.outbound_links,
        t.link,
        cols,
        counted(&data.outbound),
    )?);
    out.push(table(
        "events",
        t.custom_events,
        t.event,
        cols,
        counted(&data.custom),
    )?);
    for ((title, dim, _, key), found) in breakdown_tables(t).iter().zip(&data.breakdowns) {
        let rows = rows(
            Field::of(*dim),
            found
                .iter()
                .map(|r| {
                    let shown = shown_name(t, lang, *dim, &r.name);
                    (r.name.as_str(), shown, String::new(), (r.views, r.visitors))
                })
                .collect(),
        );
        out.push(table(key, title, title, (t.views, t.visitors), rows)?);
    }
    Ok(out)
}

/// The change from `before` to `now` in whole percent ("+12%", "−5%"); empty without a
/// comparison, "—" when the compared figure is zero.
fn change(now: f64, before: Option<f64>) -> (String, &'static str) {
    match before {
        None => (String::new(), ""),
        Some(0.0) => ("—".to_owned(), "flat"),
        Some(b) => {
            let pct = ((now - b) / b * 100.0).round() as i64;
            match pct {
                0 => ("0%".to_owned(), "flat"),
                p if p > 0 => (format!("+{p}%"), "up"),
                p => (format!("−{}%", -p), "down"),
            }
        }
    }
}

/// The summary cards: (label, value, change against the compared range, its direction).
fn cards(
    lang: Lang,
    s: &tally_clickhouse::stats::Summary,
    before: Option<&tally_clickhouse::stats::Summary>,
) -> Vec<(&'static str, String, String, &'static str)> {
    let t = lang.t();
    let c = |now: f64, f: fn(&tally_clickhouse::stats::Summary) -> f64| change(now, before.map(f));
    let with = |label, value, (delta, dir): (String, &'static str)| (label, value, delta, dir);
    vec![
        with(
            t.views,
            lang.number(s.views),
            c(s.views as f64, |b| b.views as f64),
        ),
        with(
            t.visits,
            lang.number(s.visits),
            c(s.visits as f64, |b| b.visits as f64),
        ),
        with(
            t.visitors,
            lang.number(s.visitors),
            c(s.visitors as f64, |b| b.visitors as f64),
        ),
        // Fewer visits bouncing is the better way.
        with(t.bounce_rate, lang.percent(s.bounce_rate), {
            let (delta, dir) = c(s.bounce_rate, |b| b.bounce_rate);
            let dir = match dir {
                "up" => "up worse",
                "down" => "down better",
                d => d,
            };
            (delta, dir)
        }),
        with(
            t.avg_visit,
            lang.duration(s.avg_visit_seconds),
            c(s.avg_visit_seconds, |b| b.avg_visit_seconds),
        ),
        with(
            t.bots_filtered,
            lang.number(s.bots_filtered),
            (String::new(), ""),
        ),
        with(
            t.repeats_not_counted,
            lang.number(s.repeats_not_counted),
            (String::new(), ""),
        ),
        with(
            t.unverified_not_counted,
            lang.number(s.unverified_not_counted),
            (String::new(), ""),
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

/// The page's days, its compared days, and the hour-or-day bucket.
fn page_days(
    state: &State,
    q: &PageQuery,
    tz: chrono_tz::Tz,
) -> Result<(String, DayRange, Option<DayRange>, Interval), ApiError> {
    let (key, days) = page_range(
        q,
        tz,
        state.clock.now(),
        state.settings.admin.max_range_days,
    );
    let days = days.map_err(ApiError::BadRequest)?;
    let compared =
        crate::stats::compared_days(q.compare.as_deref().filter(|c| !c.is_empty()), &days)?;
    let interval = if days.from == days.to {
        Interval::Hour
    } else {
        Interval::Day
    };
    Ok((key, days, compared, interval))
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
    let tz = site.settings.timezone;
    let t = lang.t();
    let (key, days, compared, interval) = page_days(state, q, tz)?;
    let filters = page_filters(q);
    let range = Range::new(id.as_str(), &days);
    let compared_range = compared.as_ref().map(|d| Range::new(id.as_str(), d));
    let data = load(
        state,
        id,
        (&days, &range),
        compared.as_ref().zip(compared_range.as_ref()),
        &filters,
        interval,
    )
    .await?;
    let range_label = if days.from == days.to {
        lang.date(days.from)
    } else {
        format!("{} – {}", lang.date(days.from), lang.date(days.to))
    };
    let compare_label = compared.as_ref().map(|d| {
        if d.from == d.to {
            lang.date(d.from)
        } else {
            format!("{} – {}", lang.date(d.from), lang.date(d.to))
        }
    });
    let cap = u64::from(state.settings.tracking.max_pages);
    let chips = filters
        .iter()
        .map(|(field, value)| {
            let i = Field::ALL.iter().position(|f| *f == field).unwrap_or(0);
            let shown = match field {
                Field::Region | Field::City if lang == Lang::Vi => {
                    places::vietnamese(value).map_or_else(|| value.to_owned(), str::to_owned)
                }
                _ if value.is_empty() => t.unknown.to_owned(),
                _ => value.to_owned(),
            };
            (
                t.filter_names[i],
                shown,
                field.param(),
                page_href(q, &filters, None, Some((field, None))),
            )
        })
        .collect();
    let ranges = [
        ("today", t.today),
        ("yesterday", t.yesterday),
        ("7d", t.last_7),
        ("30d", t.last_30),
    ];
    let range_links = ranges
        .iter()
        .map(|(k, label)| (*k, *label, page_href(q, &filters, Some(k), None)))
        .collect();
    let export_href = format!(
        "/admin/sites/{id}/export{}",
        page_href(q, &filters, None, None)
    );
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
        ranges: range_links,
        range_label,
        compare: q.compare.clone().unwrap_or_default(),
        compare_label,
        kept: filters
            .iter()
            .map(|(f, v)| (f.param().to_owned(), v.to_owned()))
            .collect(),
        chips,
        export_href,
        from: days.from.to_string(),
        to: days.to.to_string(),
        cards: cards(lang, &data.summary, data.compared.as_ref()),
        chart: chart_of(
            &days,
            interval,
            &data.series,
            compared.as_ref().zip(data.compared_series.as_deref()),
            lang,
        ),
        page_cap: at_page_cap(&state.settings.tracking, data.live.live_pages)
            .then(|| t.page_cap_reached.replace("{n}", &lang.number(cap))),
        reading: reading(lang, data.live.pages.clone()),
        tables: tables(lang, q, &filters, &data)?,
    };
    render(&page)
}

/// `GET /admin/sites/{site}/export`: every table of the page's view (range, filters,
/// comparison) as CSV files in one zip, named after the API's reports.
pub(crate) async fn export(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Path(site): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let Some(token) = signed_in(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    let id = SiteId::parse(&site).map_err(|_| ApiError::UnknownSite)?;
    if !token.allows(&id) {
        return Err(ApiError::Forbidden);
    }
    let tz = state.directory.timezone_of(id.as_str());
    let (_, days, compared, interval) = page_days(&state, &q, tz)?;
    let filters = page_filters(&q);
    let range = Range::new(id.as_str(), &days);
    let compared_range = compared.as_ref().map(|d| Range::new(id.as_str(), d));
    let data = load(
        &state,
        &id,
        (&days, &range),
        compared.as_ref().zip(compared_range.as_ref()),
        &filters,
        interval,
    )
    .await?;
    let csv = |body: &dyn crate::stats::Tabular| crate::csv::table(body.header(), &body.rows());
    let series = crate::stats::TimeseriesBody::new(
        (&days, &data.series),
        compared.as_ref().zip(data.compared_series.as_deref()),
        interval,
    );
    let mut files = vec![
        ("timeseries".to_owned(), csv(&series)?),
        (
            "pages".to_owned(),
            csv(&crate::stats::PagesBody { pages: data.pages })?,
        ),
        (
            "entry-pages".to_owned(),
            csv(&crate::stats::EntryPagesBody {
                pages: data.entries,
            })?,
        ),
        (
            "exit-pages".to_owned(),
            csv(&crate::stats::ExitPagesBody { pages: data.exits })?,
        ),
    ];
    for ((_, _, _, key), rows) in breakdown_tables(Lang::En.t()).iter().zip(data.breakdowns) {
        files.push(((*key).to_owned(), csv(&crate::stats::RowsBody::from(rows))?));
    }
    if let Some(goals) = &data.conversions {
        files.push(("goals".to_owned(), csv(goals)?));
        // The targets reports of `download` and `outbound`, and the events by name.
        for (name, rows) in [
            ("downloads", data.downloads),
            ("outbound", data.outbound),
            ("events", data.custom),
        ] {
            files.push((
                name.to_owned(),
                csv(&crate::events::EventRowsBody::from(rows))?,
            ));
        }
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let fail = |e: &dyn std::fmt::Display| ApiError::Internal(format!("zip: {e}"));
    for (name, text) in files {
        zip.start_file(format!("{name}.csv"), options)
            .map_err(|e| fail(&e))?;
        std::io::Write::write_all(&mut zip, text.as_bytes()).map_err(|e| fail(&e))?;
    }
    let bytes = zip.finish().map_err(|e| fail(&e))?.into_inner();
    let name = format!("{id}-{}-{}.zip", days.from, days.to);
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
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
    /// (id, name, what reaches it when the name does not say it).
    goals: Vec<(String, String, String)>,
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
    let goals = state
        .db
        .goals(id.as_str())
        .await?
        .into_iter()
        .map(|g| {
            // What reaches it, unless the name says so already.
            let what = Some(g.describe()).filter(|w| *w != g.name);
            (g.id, g.name, what.unwrap_or_default())
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
        goals,
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
