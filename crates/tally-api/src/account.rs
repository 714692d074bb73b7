//! A person's own account: personal API tokens (`GET/POST /api/v1/tokens`,
//! `DELETE /api/v1/tokens/{id}`), password change and signing out everywhere
//! (`POST /api/v1/account/password`, `POST /api/v1/account/sign-out-everywhere`). Only a
//! person signed in to the admin pages may use these — not a token (a read-only token must
//! not mint a writing one) nor a shared link.
//!
//! A token is `tly_` and 40 hex digits (160 random bits), shown once and stored as its
//! SHA-256. It acts for its person with at most the person's rights: read-only makes it a
//! viewer; limited to sites, it reaches only those (an owner's limited token acts as an
//! admin of them). Removing the person, or revoking the token, stops it at once.

use std::sync::Arc;

use axum::{
    extract::State as AxumState,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tally_clickhouse::ApiToken;
use tally_core::SiteId;
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{ErrorBody, Json, Path},
    principal::{Principal, Role},
};

/// What every personal token starts with.
pub(crate) const TOKEN_PREFIX: &str = "tly_";

/// The principal a personal token acts as, if `secret` is a live token of a current person.
pub(crate) async fn principal_of_token(
    state: &State,
    secret: &str,
) -> Result<Option<Principal>, ApiError> {
    if !secret.starts_with(TOKEN_PREFIX) || secret.len() != TOKEN_PREFIX.len() + 40 {
        return Ok(None);
    }
    let Some(token) = state
        .db
        .api_token_by_hash(&crate::session::storage_key(secret))
        .await?
    else {
        return Ok(None);
    };
    let Some(person) = state.db.person(&token.person).await? else {
        return Ok(None);
    };
    let Some(mut role) = Role::parse(&person.role) else {
        return Ok(None);
    };
    let parse = |list: &[String]| -> Vec<SiteId> {
        list.iter().filter_map(|s| SiteId::parse(s).ok()).collect()
    };
    let mut sites = parse(&person.sites);
    if !token.sites.is_empty() {
        let limited = parse(&token.sites);
        sites = if role == Role::Owner {
            role = Role::Admin;
            limited
        } else {
            sites.into_iter().filter(|s| limited.contains(s)).collect()
        };
    }
    if token.read_only != 0 {
        if role == Role::Owner {
            // An owner's sites are all of them: a viewer of every site now served.
            sites = state
                .directory
                .sites()
                .iter()
                .map(|s| s.id().clone())
                .collect();
        }
        role = Role::Viewer;
    }
    Ok(Some(Principal::Person {
        name: person.name,
        role,
        sites,
        via_token: true,
    }))
}

/// A personal token, as listed (the token itself is not kept).
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenBody {
    id: String,
    label: String,
    /// Empty: every site of the person.
    sites: Vec<String>,
    read_only: bool,
    /// Seconds since the epoch.
    created_at: u32,
}

impl From<ApiToken> for TokenBody {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id,
            label: t.label,
            sites: t.sites,
            read_only: t.read_only != 0,
            created_at: t.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TokensBody {
    tokens: Vec<TokenBody>,
}

/// The signed-in person's personal tokens.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = TokensBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a person signed in to the admin pages", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
) -> Result<Json<TokensBody>, ApiError> {
    let name = admin.0.signed_in_person()?;
    let tokens = state.db.api_tokens(name).await?;
    Ok(Json(TokensBody {
        tokens: tokens.into_iter().map(TokenBody::from).collect(),
    }))
}

/// A new personal token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    /// What it is for (1–100 characters).
    label: String,
    /// Only these of the person's sites (default: all of them).
    #[serde(default)]
    sites: Vec<String>,
    /// Only reads (default false).
    #[serde(default)]
    read_only: bool,
}

/// A token made: shown once.
#[derive(Serialize, ToSchema)]
pub(crate) struct MadeTokenBody {
    id: String,
    /// The token: `Authorization: Bearer …`. It is not shown again.
    token: String,
    label: String,
    sites: Vec<String>,
    read_only: bool,
}

/// Makes a personal token (shown once).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "admin",
    security(("bearer" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "Made", body = MadeTokenBody),
        (status = 400, description = "A field is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a person signed in to the admin pages", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Json(new): Json<NewToken>,
) -> Result<Response, ApiError> {
    let name = admin.0.signed_in_person()?.to_owned();
    let label = new.label.trim().to_owned();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "`label` must be 1 to 100 characters, without control characters".into(),
        ));
    }
    for site in &new.sites {
        let allowed = SiteId::parse(site).is_ok_and(|id| admin.0.allows(&id));
        if !allowed {
            return Err(ApiError::BadRequest(format!(
                "`sites`: `{site}` is not one of your sites"
            )));
        }
    }
    let secret = format!(
        "{TOKEN_PREFIX}{:032x}{:08x}",
        rand::random::<u128>(),
        rand::random::<u32>()
    );
    let token = ApiToken {
        id: format!("{:016x}", rand::random::<u64>()),
        person: name.clone(),
        label,
        token_hash: crate::session::storage_key(&secret),
        sites: new.sites,
        read_only: u8::from(new.read_only),
        created_at: u32::try_from(state.clock.now().timestamp()).unwrap_or(u32::MAX),
    };
    state.db.save_api_token(&token).await?;
    state
        .db
        .audit(&name, "token.created", &token.id, &token.label)
        .await?;
    let body = MadeTokenBody {
        id: token.id,
        token: secret,
        label: token.label,
        sites: token.sites,
        read_only: token.read_only != 0,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A token of a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by axum's Path extractor as a plain String
pub(crate) struct TokenPath {
    /// The token's id.
    id: String,
}

/// Revokes one of the signed-in person's tokens: it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "admin",
    security(("bearer" = [])),
    params(TokenPath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a person signed in to the admin pages", body = ErrorBody),
        (status = 404, description = "No such token of yours", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn revoke(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = admin.0.signed_in_person()?.to_owned();
    let Some(token) = state
        .db
        .api_tokens(&name)
        .await?
        .into_iter()
        .find(|t| t.id == id)
    else {
        return Err(ApiError::NotFound);
    };
    state.db.revoke_api_token(&token).await?;
    state
        .db
        .audit(&name, "token.revoked", &token.id, &token.label)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current: String,
    /// At least 10 characters.
    new: String,
}

/// Changes the signed-in person's password; every session of theirs ends (sign in again).
#[utoipa::path(
    post,
    path = "/api/v1/account/password",
    tag = "admin",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; signed out everywhere"),
        (status = 400, description = "The new password is too short", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a person signed in, or the current password is wrong", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "Redis or ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn change_password(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Json(change): Json<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let name = admin.0.signed_in_person()?.to_owned();
    if change.new.chars().count() < crate::people::MIN_PASSWORD {
        return Err(ApiError::BadRequest(format!(
            "`new` must be at least {} characters",
            crate::people::MIN_PASSWORD
        )));
    }
    let mut person = state
        .db
        .person(&name)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if !crate::people::password_matches(change.current, person.password_hash.clone()).await {
        return Err(ApiError::NotAllowed(
            "`current` is not your password".into(),
        ));
    }
    person.password_hash = crate::people::hash_password(change.new).await?;
    state.db.save_person(&person).await?;
    state
        .store
        .owned_sessions_end(&format!("person:{name}"))
        .await?;
    state
        .db
        .audit(&name, "person.password_changed", &name, "sessions ended")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the signed-in person, this one included.
#[utoipa::path(
    post,
    path = "/api/v1/account/sign-out-everywhere",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out everywhere"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a person signed in to the admin pages", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn sign_out_everywhere(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
) -> Result<StatusCode, ApiError> {
    let name = admin.0.signed_in_person()?.to_owned();
    let ended = state
        .store
        .owned_sessions_end(&format!("person:{name}"))
        .await?;
    state
        .db
        .audit(
            &name,
            "person.signed_out_everywhere",
            &name,
            &format!("{ended} sessions"),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
