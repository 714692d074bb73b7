//! Public counters, read live from Redis (batched with concurrent requests, see `live`): a
//! view accepted by the beacon shows here at once, without waiting for the worker.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, RawQuery, State as AxumState},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tally_core::{SiteId, page::normalize_page_id, settings::SiteSettings};

use crate::{ApiError, State};

/// Most pages one `/views` request may ask for.
pub(crate) const MAX_PAGES: usize = 100;

/// The public site, or 404 for unknown sites and sites without public counters (the same
/// answer, so the endpoint does not reveal which private sites exist).
fn public_site<'a>(state: &'a State, site: &str) -> Result<(SiteId, &'a SiteSettings), ApiError> {
    let id = SiteId::parse(site).map_err(|_| ApiError::UnknownSite)?;
    let settings = state.sites.get(&id).ok_or(ApiError::UnknownSite)?;
    if !settings.public_counters {
        return Err(ApiError::UnknownSite);
    }
    Ok((id, settings))
}

/// `page=` values of a raw query string, percent-decoded.
fn pages(query: Option<&str>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some(value) = pair.strip_prefix("page=") else {
            continue;
        };
        let value = value.replace('+', " ");
        let decoded = percent_encoding::percent_decode_str(&value)
            .decode_utf8()
            .map_err(|_| ApiError::BadRequest("`page` is not valid UTF-8".into()))?;
        let page = normalize_page_id(&decoded)
            .ok_or_else(|| ApiError::BadRequest("`page` is empty".into()))?;
        out.push(page);
    }
    Ok(out)
}

fn public<T: Serialize>(body: T) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=5"),
    );
    response
}

#[derive(Serialize)]
struct CountersBody {
    site: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_views: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_online: Option<u64>,
    online: u64,
    total_views: u64,
    total_visits: u64,
}

/// `GET /api/v1/sites/{site}/counters?page=P`
pub(crate) async fn counters(
    AxumState(state): AxumState<Arc<State>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (id, _) = public_site(&state, &site)?;
    let mut pages = pages(query.as_deref())?;
    if pages.len() > 1 {
        return Err(ApiError::BadRequest("give at most one `page`".into()));
    }
    let page = pages.pop();
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

#[derive(Serialize)]
struct ViewsBody {
    site: String,
    views: serde_json::Map<String, serde_json::Value>,
}

/// `GET /api/v1/sites/{site}/views?page=A&page=B` (at most 100 pages)
pub(crate) async fn views(
    AxumState(state): AxumState<Arc<State>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (id, _) = public_site(&state, &site)?;
    let pages = pages(query.as_deref())?;
    if pages.is_empty() || pages.len() > MAX_PAGES {
        return Err(ApiError::BadRequest(format!(
            "give 1 to {MAX_PAGES} `page` values"
        )));
    }
    let counts = state.store.page_views(&id, &pages).await?;
    let views = pages
        .into_iter()
        .zip(counts)
        .map(|(p, n)| (p, serde_json::Value::from(n)))
        .collect();
    Ok(public(ViewsBody {
        site: id.to_string(),
        views,
    }))
}
