//! Shared dashboards: a read-only link to one site's statistics page for people without an
//! account (`POST/GET /api/v1/sites/{site}/shares`, `DELETE …/shares/{id}`; the page is
//! `/share/{secret}`). Owners and the site's admins make and revoke them. The link's secret
//! (256 random bits) is shown once and stored only as its SHA-256; a link may also ask for
//! a password (argon2id). Opening it starts a session that reads that one site, as a viewer;
//! revoking the link ends those sessions at once.

use std::sync::Arc;

use axum::{
    extract::State as AxumState,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tally_clickhouse::Share;
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{ErrorBody, Json, Path},
    stats::SitePath,
};

/// The site of a request, which this principal may edit (shares are made by those who may).
fn editable_site(state: &State, admin: &Admin, site: &str) -> Result<tally_core::SiteId, ApiError> {
    let id = admin.site(state, site)?;
    if !admin.0.may_edit(&id) {
        return Err(ApiError::NotAllowed(format!(
            "only an owner or an admin of `{id}` may share it"
        )));
    }
    Ok(id)
}

/// A new shared link.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewShare {
    /// Also ask for this password (at least 10 characters) before showing the page.
    password: Option<String>,
}

/// A shared link made: its address, shown once.
#[derive(Serialize, ToSchema)]
pub(crate) struct SharedBody {
    id: String,
    /// The page's address: hand it over; it is not shown again.
    url: String,
    /// Whether the link asks for a password.
    password: bool,
}

/// Shares a site's statistics page by a link (owners and the site's admins).
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/shares",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath),
    request_body(content = NewShare, description = "Optional: `{\"password\": \"…\"}`"),
    responses(
        (status = 201, description = "Shared", body = SharedBody),
        (status = 400, description = "A field is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "The token may not share this site", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    headers: HeaderMap,
    Path(site): Path<String>,
    Json(new): Json<NewShare>,
) -> Result<Response, ApiError> {
    let id = editable_site(&state, &admin, &site)?;
    let password_hash = match new.password {
        Some(p) if p.chars().count() < crate::people::MIN_PASSWORD => {
            return Err(ApiError::BadRequest(format!(
                "`password` must be at least {} characters",
                crate::people::MIN_PASSWORD
            )));
        }
        Some(p) => crate::people::hash_password(p).await?,
        None => String::new(),
    };
    let secret = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let share = Share {
        id: format!("{:016x}", rand::random::<u64>()),
        site: id.to_string(),
        secret_hash: crate::session::storage_key(&secret),
        password_hash,
        created_by: admin.0.actor(),
        created_at: u32::try_from(state.clock.now().timestamp()).unwrap_or(u32::MAX),
    };
    state.db.save_share(&share).await?;
    state
        .db
        .audit(
            &admin.0.actor(),
            "share.created",
            id.as_str(),
            &format!("link {}", share.id),
        )
        .await?;
    let https = state.settings.server.public_url.starts_with("https://");
    let body = SharedBody {
        url: format!(
            "{}/share/{secret}",
            crate::people::base_url(&state, &headers, https)
        ),
        password: !share.password_hash.is_empty(),
        id: share.id,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A shared link, as listed (its address is not kept).
#[derive(Serialize, ToSchema)]
pub(crate) struct ShareBody {
    id: String,
    password: bool,
    created_by: String,
    /// Seconds since the epoch.
    created_at: u32,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SharesBody {
    shares: Vec<ShareBody>,
}

/// The site's shared links (owners and the site's admins).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/shares",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath),
    responses(
        (status = 200, description = "OK", body = SharesBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "The token may not share this site", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
) -> Result<Json<SharesBody>, ApiError> {
    let id = editable_site(&state, &admin, &site)?;
    let shares = state.db.shares(id.as_str()).await?;
    Ok(Json(SharesBody {
        shares: shares
            .into_iter()
            .map(|s| ShareBody {
                password: !s.password_hash.is_empty(),
                id: s.id,
                created_by: s.created_by,
                created_at: s.created_at,
            })
            .collect(),
    }))
}

/// A site and one of its shared links.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by axum's Path extractor as plain Strings
pub(crate) struct SharePath {
    /// Site id.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    site: String,
    /// The link's id.
    id: String,
}

/// Revokes a shared link: it stops working and its open pages lose access at once.
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{site}/shares/{id}",
    tag = "admin",
    security(("bearer" = [])),
    params(SharePath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "The token may not share this site", body = ErrorBody),
        (status = 404, description = "Unknown site or link", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "Redis or ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn revoke(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path((site, share)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = editable_site(&state, &admin, &site)?;
    let Some(found) = state
        .db
        .shares(id.as_str())
        .await?
        .into_iter()
        .find(|s| s.id == share)
    else {
        return Err(ApiError::NotFound);
    };
    state.db.revoke_share(&found).await?;
    state
        .store
        .owned_sessions_end(&format!("share:{}", found.id))
        .await?;
    state
        .db
        .audit(
            &admin.0.actor(),
            "share.revoked",
            id.as_str(),
            &format!("link {}", found.id),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The share whose link has `secret`, if it is valid.
pub(crate) async fn by_secret(state: &State, secret: &str) -> Result<Option<Share>, ApiError> {
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    Ok(state
        .db
        .share_by_secret(&crate::session::storage_key(secret))
        .await?)
}
