//! Sites as data: `GET/POST /api/v1/sites`, `PATCH/DELETE /api/v1/sites/{site}`.
//!
//! A change is stored in ClickHouse (the durable copy, with an entry in the record of
//! changes), then the new list of managed sites is announced in Redis, where every process's
//! refresher picks it up within a second; this process takes it at once. Sites of the
//! configuration file are listed with `"source": "configuration"` and cannot be changed here.
//! A configuration token for all sites acts as an owner (it may create and delete sites); one
//! limited to sites acts as an admin of those (it may edit them).

use std::sync::Arc;

use axum::{
    extract::State as AxumState,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tally_core::{
    SiteId,
    directory::{Site, Source},
    settings::SiteSettings,
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{ErrorBody, Json, Path, Query},
    stats::SitePath,
};

/// A site, as the admin API shows it.
#[derive(Serialize, ToSchema)]
pub(crate) struct SiteBody {
    id: String,
    /// Shown in the pages instead of the id (empty: the id).
    name: String,
    domains: Vec<String>,
    /// IANA time zone of the site's days.
    timezone: String,
    public_counters: bool,
    /// `configuration` (read-only here) or `managed`.
    #[schema(value_type = String, example = "managed")]
    source: Source,
    /// All-time views, live, imported baselines included.
    total_views: u64,
    /// All-time visits, live, imported baselines included.
    total_visits: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SitesBody {
    sites: Vec<SiteBody>,
}

impl State {
    async fn site_body(&self, site: &Site) -> Result<SiteBody, ApiError> {
        let c = self.store.counters(site.id(), None, i64::MAX).await?;
        let s = &site.settings;
        Ok(SiteBody {
            id: s.id.to_string(),
            name: s.name.clone(),
            domains: s.domains.clone(),
            timezone: s.timezone.name().to_owned(),
            public_counters: s.public_counters,
            source: site.source,
            total_views: c.views,
            total_visits: c.visits,
        })
    }

    /// Stores `site` as created or edited (`action`), records who did it, and announces the
    /// new list.
    async fn save(&self, admin: &Admin, action: &str, site: &SiteSettings) -> Result<(), ApiError> {
        self.db.save_site(site).await?;
        let detail = format!(
            "domains {}, time zone {}, public counters {}",
            site.domains.join(" "),
            site.timezone.name(),
            site.public_counters
        );
        self.db
            .audit(&admin.0.actor(), action, site.id.as_str(), &detail)
            .await?;
        self.announce().await
    }

    /// Stores nothing itself: re-reads the managed sites from ClickHouse, announces them in
    /// Redis for the other processes, and serves them here at once.
    async fn announce(&self) -> Result<(), ApiError> {
        let managed = self.db.managed_sites().await?;
        let json = serde_json::to_string(&managed)
            .map_err(|e| ApiError::Internal(format!("cannot encode the sites: {e}")))?;
        self.store.announce_sites(&json).await?;
        self.directory.set_managed(managed);
        Ok(())
    }
}

/// The sites this token may read, with their all-time totals.
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = SitesBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute (`Retry-After: 60`)", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
) -> Result<Json<SitesBody>, ApiError> {
    let mut sites = Vec::new();
    for site in state.directory.sites().iter() {
        if admin.0.allows(site.id()) {
            sites.push(state.site_body(site).await?);
        }
    }
    Ok(Json(SitesBody { sites }))
}

/// A new site.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSite {
    /// Used in the embed snippet and the API: 1–64 of a-z, 0-9, `-` and `_`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    id: String,
    #[serde(default)]
    name: String,
    /// Hosts allowed to send events (their subdomains too): lower-case, no scheme or port.
    #[schema(min_items = 1)]
    domains: Vec<String>,
    /// IANA time zone of the site's days (default `UTC`).
    #[serde(default = "utc")]
    timezone: String,
    /// Whether the public counters answer for it (default true).
    #[serde(default = "yes")]
    public_counters: bool,
}

fn utc() -> String {
    "UTC".into()
}

fn yes() -> bool {
    true
}

/// The checked name, domains and time zone of a site; errors name the field.
fn checked(
    name: String,
    domains: Vec<String>,
    timezone: &str,
) -> Result<(String, Vec<String>, chrono_tz::Tz), ApiError> {
    let name = name.trim().to_owned();
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "`name` must be at most {MAX_NAME} characters, without control characters"
        )));
    }
    if domains.is_empty() || domains.len() > MAX_DOMAINS {
        return Err(ApiError::BadRequest(format!(
            "`domains` must list 1 to {MAX_DOMAINS} hosts allowed to send events"
        )));
    }
    if let Some(d) = domains
        .iter()
        .find(|d| !tally_core::site::valid_domain(d) || d.len() > 253)
    {
        return Err(ApiError::BadRequest(format!(
            "`domains`: `{d}` is not a lower-case host name (no scheme, port or path)"
        )));
    }
    let tz = timezone.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "`timezone`: `{timezone}` is not an IANA time zone such as Asia/Ho_Chi_Minh"
        ))
    })?;
    Ok((name, domains, tz))
}

/// Longest site name, and most domains of a site.
const MAX_NAME: usize = 100;
const MAX_DOMAINS: usize = 50;

/// Creates a site, served by every process within seconds (owners only).
#[utoipa::path(
    post,
    path = "/api/v1/sites",
    tag = "admin",
    security(("bearer" = [])),
    request_body = NewSite,
    responses(
        (status = 201, description = "Created", body = SiteBody),
        (status = 400, description = "A field is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Only an owner may create sites", body = ErrorBody),
        (status = 409, description = "A site with this id exists", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "Redis or ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Json(new): Json<NewSite>,
) -> Result<Response, ApiError> {
    admin.0.owner_only("create sites")?;
    let id = SiteId::parse(&new.id).map_err(|_| {
        ApiError::BadRequest("`id` must be 1 to 64 of a-z, 0-9, `-` and `_`".into())
    })?;
    let (name, domains, timezone) = checked(new.name, new.domains, &new.timezone)?;
    // The list every process serves, and the durable one (a site just created elsewhere).
    let stored = state.db.managed_sites().await?;
    if state.directory.get(&id).is_some() || stored.iter().any(|s| s.id == id) {
        return Err(ApiError::Conflict(format!("a site `{id}` exists")));
    }
    let settings = SiteSettings {
        id: id.clone(),
        name,
        domains,
        timezone,
        public_counters: new.public_counters,
    };
    state.save(&admin, "site.created", &settings).await?;
    let site = state
        .directory
        .get(&id)
        .ok_or_else(|| ApiError::Internal("a created site is not served".into()))?;
    let body = state.site_body(&site).await?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Changes to a site: the fields given replace the site's.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteChanges {
    name: Option<String>,
    #[schema(min_items = 1)]
    domains: Option<Vec<String>>,
    timezone: Option<String>,
    public_counters: Option<bool>,
}

/// The managed site `site` that this token may change.
fn changeable(state: &State, admin: &Admin, site: &str) -> Result<Arc<Site>, ApiError> {
    let id = admin.site(state, site)?;
    let site = state.directory.get(&id).ok_or(ApiError::UnknownSite)?;
    if !admin.0.may_edit(&id) {
        return Err(ApiError::NotAllowed(format!(
            "this account may read site `{id}` but not change it"
        )));
    }
    if site.source == Source::Configuration {
        return Err(ApiError::Conflict(format!(
            "site `{id}` is declared in the configuration file: change it there"
        )));
    }
    Ok(site)
}

/// Edits a managed site (owners, and admins of the site).
#[utoipa::path(
    patch,
    path = "/api/v1/sites/{site}",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath),
    request_body = SiteChanges,
    responses(
        (status = 200, description = "OK", body = SiteBody),
        (status = 400, description = "A field is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "The token may not change this site", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 409, description = "The site is declared in the configuration file", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "Redis or ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn edit(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Json(changes): Json<SiteChanges>,
) -> Result<Json<SiteBody>, ApiError> {
    let site = changeable(&state, &admin, &site)?;
    let old = &site.settings;
    let (name, domains, timezone) = checked(
        changes.name.unwrap_or_else(|| old.name.clone()),
        changes.domains.unwrap_or_else(|| old.domains.clone()),
        &changes
            .timezone
            .unwrap_or_else(|| old.timezone.name().to_owned()),
    )?;
    let settings = SiteSettings {
        id: old.id.clone(),
        name,
        domains,
        timezone,
        public_counters: changes.public_counters.unwrap_or(old.public_counters),
    };
    state.save(&admin, "site.edited", &settings).await?;
    let site = state.directory.get(&old.id).ok_or(ApiError::UnknownSite)?;
    Ok(Json(state.site_body(&site).await?))
}

/// What becomes of a deleted site's statistics.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// `keep`: its events and rollups stay in ClickHouse (a site created again with the same
    /// id shows them); `drop`: they are deleted from ClickHouse, and its live counters from
    /// Redis. Required: a deletion says what it does with the history.
    #[param(value_type = HistoryChoice, inline)]
    history: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // only read by the OpenAPI document
pub(crate) enum HistoryChoice {
    Keep,
    Drop,
}

/// Deletes a managed site: its events are refused at once everywhere (owners only).
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{site}",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, DeleteQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`history` is missing or not keep or drop", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Only an owner may delete sites", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 409, description = "The site is declared in the configuration file", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "Redis or ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let drop = match q.history.as_deref() {
        Some("keep") => false,
        Some("drop") => true,
        _ => {
            return Err(ApiError::BadRequest(
                "`history` must be keep or drop: say what becomes of the site's statistics".into(),
            ));
        }
    };
    let site = changeable(&state, &admin, &site)?;
    admin.0.owner_only("delete sites")?;
    let id = site.id().clone();
    state.db.delete_site(&id).await?;
    state.announce().await?;
    if drop {
        state.db.drop_site_history(id.as_str()).await?;
        state
            .store
            .forget_site(&id, id.partition(state.settings.redis.partitions))
            .await?;
    }
    let detail = if drop {
        "history dropped (ClickHouse rows, live counters)"
    } else {
        "history kept"
    };
    state
        .db
        .audit(&admin.0.actor(), "site.deleted", id.as_str(), detail)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
