//! Public counters, read live from Redis (batched with concurrent requests, see `live`): a
//! view accepted by the beacon shows here at once, without waiting for the worker.

use std::sync::Arc;

use axum::{
    Json,
    extract::{RawQuery, State as AxumState},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tally_core::{
    SiteId,
    page::{normalize_page_id, normalize_path, split_url},
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    error::{Path, PublicErrors},
    stats::SitePath,
};

/// Most pages one `/views` request may ask for.
pub(crate) const MAX_PAGES: usize = 100;

/// The public site, or 404 for unknown sites and sites without public counters (the same
/// answer, so the endpoint does not reveal which private sites exist).
fn public_site(state: &State, site: &str) -> Result<SiteId, ApiError> {
    let site = state.directory.find(site).ok_or(ApiError::UnknownSite)?;
    if !site.settings.public_counters {
        return Err(ApiError::UnknownSite);
    }
    Ok(site.id().clone())
}

/// `name=` values of a raw query string, percent-decoded (`+` as a space).
fn query_values(query: Option<&str>, name: &str) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some(value) = pair
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
        else {
            continue;
        };
        let value = value.replace('+', " ");
        let decoded = percent_encoding::percent_decode_str(&value)
            .decode_utf8()
            .map_err(|_| ApiError::BadRequest(format!("`{name}` is not valid UTF-8")))?;
        out.push(decoded.into_owned());
    }
    Ok(out)
}

/// `page=` values of a raw query string: page keys, normalised as the beacon keeps an
/// explicit page id.
fn pages(query: Option<&str>) -> Result<Vec<String>, ApiError> {
    query_values(query, "page")?
        .iter()
        .map(|p| normalize_page_id(p).ok_or_else(|| ApiError::BadRequest("`page` is empty".into())))
        .collect()
}

/// The page key of a page's address, made exactly as the beacon makes it from an event's
/// `url`: the tracker asks with `url=` and never has to copy the server's normalisation
/// (percent-decoding that keeps a literal `%` as `%25`, lossy UTF-8, length limit).
fn page_of_url(url: &str) -> Result<String, ApiError> {
    let parts = split_url(url)
        .ok_or_else(|| ApiError::BadRequest("`url` is not an absolute http(s) URL".into()))?;
    Ok(normalize_path(parts.path))
}

/// A public answer, cacheable for five seconds (any origin reads it: the CORS layer of
/// `Api::router`).
fn public<T: Serialize>(body: T) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=5"),
    );
    response
}

/// A site's live counters and, when asked, one page's.
#[derive(Serialize, ToSchema)]
pub(crate) struct CountersBody {
    site: String,
    /// The page key asked for (with `page` or `url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    /// The page's all-time views.
    #[serde(skip_serializing_if = "Option::is_none")]
    page_views: Option<u64>,
    /// Readers of the page online now.
    #[serde(skip_serializing_if = "Option::is_none")]
    page_online: Option<u64>,
    /// Visitors of the site online now.
    online: u64,
    /// The site's all-time views, imported baselines included.
    total_views: u64,
    /// The site's all-time visits, imported baselines included.
    total_visits: u64,
}

/// The page of a counters request (at most one of the two).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // the handler reads the raw query; this documents it
pub(crate) struct CountersQuery {
    /// Page key.
    #[param(min_length = 1)]
    page: Option<String>,
    /// Instead of `page`: a page's absolute http(s) address; its page key is made as the
    /// beacon makes it from an event's `url`.
    #[param(min_length = 1)]
    url: Option<String>,
}

/// Live public counters of a site and, with `page` or `url`, of one page.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/counters",
    tag = "public",
    params(SitePath, CountersQuery),
    responses((status = 200, description = "OK", body = CountersBody), PublicErrors),
)]
pub(crate) async fn counters(
    AxumState(state): AxumState<Arc<State>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = public_site(&state, &site)?;
    let mut pages = pages(query.as_deref())?;
    let urls = query_values(query.as_deref(), "url")?;
    let page = match (pages.len(), urls.as_slice()) {
        (0, []) => None,
        (1, []) => pages.pop(),
        (0, [url]) => Some(page_of_url(url)?),
        _ => {
            return Err(ApiError::BadRequest(
                "give at most one `page` or one `url`".into(),
            ));
        }
    };
    let c = state
        .live
        .counters(id.clone(), page.clone())
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(public(CountersBody {
        site: id.to_string(),
        page,
        page_views: c.page_views,
        page_online: c.page_online,
        online: c.online,
        total_views: c.views,
        total_visits: c.visits,
    }))
}

/// View counts of pages.
#[derive(Serialize, ToSchema)]
pub(crate) struct ViewsBody {
    site: String,
    /// Page key → all-time views (0 for a page never viewed).
    views: std::collections::BTreeMap<String, u64>,
}

/// The pages of a views request.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // the handler reads the raw query; this documents it
pub(crate) struct ViewsQuery {
    /// Page keys (repeat the parameter: `page=/a&page=/b`).
    #[param(min_items = 1, max_items = 100)]
    page: Vec<String>,
}

/// Live view counts of up to 100 pages.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/views",
    tag = "public",
    params(SitePath, ViewsQuery),
    responses((status = 200, description = "OK", body = ViewsBody), PublicErrors),
)]
pub(crate) async fn views(
    AxumState(state): AxumState<Arc<State>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = public_site(&state, &site)?;
    let pages = pages(query.as_deref())?;
    if pages.is_empty() || pages.len() > MAX_PAGES {
        return Err(ApiError::BadRequest(format!(
            "give 1 to {MAX_PAGES} `page` values"
        )));
    }
    let counts = state.store.page_views(&id, &pages).await?;
    let views = pages.into_iter().zip(counts).collect();
    Ok(public(ViewsBody {
        site: id.to_string(),
        views,
    }))
}

/// Live counts of a custom event per target.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventCountersBody {
    site: String,
    name: String,
    /// Target URL (as asked, without its fragment) → all-time events (0 for one never
    /// recorded), imported counts included.
    counts: std::collections::BTreeMap<String, u64>,
}

/// The event and targets of an event-counters request.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // the handler reads the raw query; this documents it
pub(crate) struct EventCountersQuery {
    /// The event's name, e.g. `download`.
    #[param(min_length = 1, max_length = 64)]
    name: String,
    /// Target URLs (repeat the parameter: `target=U1&target=U2`).
    #[param(min_items = 1, max_items = 100)]
    target: Vec<String>,
}

/// Live counts of a custom event (e.g. `download`) for up to 100 targets: the figure a
/// portal shows beside a document ("Lượt tải: 1.234").
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/event-counters",
    tag = "public",
    params(SitePath, EventCountersQuery),
    responses((status = 200, description = "OK", body = EventCountersBody), PublicErrors),
)]
pub(crate) async fn event_counters(
    AxumState(state): AxumState<Arc<State>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = public_site(&state, &site)?;
    let name = match query_values(query.as_deref(), "name")?.as_slice() {
        [name] if (1..=tally_core::event::MAX_NAME).contains(&name.trim().chars().count()) => {
            name.trim().to_owned()
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give one `name` of 1 to 64 characters".into(),
            ));
        }
    };
    let targets: Vec<String> = query_values(query.as_deref(), "target")?
        .into_iter()
        .map(|t| tally_core::event::target_key(&t).to_owned())
        .collect();
    if targets.is_empty() || targets.len() > MAX_PAGES {
        return Err(ApiError::BadRequest(format!(
            "give 1 to {MAX_PAGES} `target` values"
        )));
    }
    let counts = state.store.event_counts(&id, &name, &targets).await?;
    Ok(public(EventCountersBody {
        site: id.to_string(),
        name,
        counts: targets.into_iter().zip(counts).collect(),
    }))
}
