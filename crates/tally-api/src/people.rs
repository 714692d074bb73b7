//! People: `GET/POST /api/v1/users`, `DELETE /api/v1/users/{name}` (owners only), the
//! one-time invitation links, and passwords.
//!
//! An owner invites a person by name, role and sites; the answer holds a one-time link
//! (`/admin/invite/SECRET`, valid [`INVITE_DAYS`] days) to hand over — no email needed. The
//! person opens it and sets a password, which signs them in. Stored: the password as
//! argon2id (PHC), the invitation as the SHA-256 of its secret; neither secret is ever
//! stored, logged or announced. Removing a person ends their sessions at once.

use std::sync::Arc;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use axum::{
    extract::State as AxumState,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tally_clickhouse::Person;
use tally_core::SiteId;
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{ErrorBody, Json, Path},
    principal::Role,
};

/// How long an invitation link works.
pub(crate) const INVITE_DAYS: i64 = 7;
/// Shortest password accepted.
pub(crate) const MIN_PASSWORD: usize = 10;

/// The argon2id hash (PHC string) of `password`, made off the async threads.
pub(crate) async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("cannot hash a password: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Whether `password` matches the stored `hash` (false for no hash: an unknown name, or an
/// invited person who has not set a password yet — checked against a stand-in hash, so the
/// answer takes as long and says nothing of which it was).
pub(crate) async fn password_matches(password: String, hash: String) -> bool {
    static STAND_IN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        Argon2::default()
            .hash_password(format!("{:x}", rand::random::<u128>()).as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    tokio::task::spawn_blocking(move || {
        let known = !hash.is_empty();
        let hash = if known { hash } else { STAND_IN.clone() };
        let matches = PasswordHash::new(&hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// The SHA-256 (hex) of an invitation's secret: what is stored.
pub(crate) fn invite_hash(secret: &str) -> String {
    crate::session::storage_key(secret)
}

/// A new invitation: its secret (for the link) and the person's stored fields.
pub(crate) fn new_invite(now: chrono::DateTime<chrono::Utc>) -> (String, String, u32) {
    let secret = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let expires = now + chrono::Duration::days(INVITE_DAYS);
    let hash = invite_hash(&secret);
    (
        secret,
        hash,
        u32::try_from(expires.timestamp()).unwrap_or(u32::MAX),
    )
}

/// Whether `name` can be a login name: 1–64 of a-z, 0-9, `.`, `_` and `-`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// The address this Tally is reached at: `server.public_url`, else the request's host.
pub(crate) fn base_url(state: &State, headers: &HeaderMap, https: bool) -> String {
    let public = state.settings.server.public_url.trim_end_matches('/');
    if !public.is_empty() {
        return public.to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// A person, as the API shows them.
#[derive(Serialize, ToSchema)]
pub(crate) struct PersonBody {
    name: String,
    role: Role,
    /// The sites of an admin or viewer (empty for an owner: all).
    sites: Vec<String>,
    /// Invited, the password not set yet.
    invited: bool,
}

impl From<&Person> for PersonBody {
    fn from(p: &Person) -> Self {
        Self {
            name: p.name.clone(),
            role: Role::parse(&p.role).unwrap_or(Role::Viewer),
            sites: p.sites.clone(),
            invited: p.password_hash.is_empty(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PeopleBody {
    users: Vec<PersonBody>,
}

/// Everyone with an account (owners only).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = PeopleBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Only an owner may see people", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
) -> Result<Json<PeopleBody>, ApiError> {
    admin.0.owner_only("see people")?;
    let people = state.db.people().await?;
    Ok(Json(PeopleBody {
        users: people.iter().map(PersonBody::from).collect(),
    }))
}

/// Someone to invite.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPerson {
    /// Login name: 1–64 of a-z, 0-9, `.`, `_` and `-`.
    #[schema(pattern = "^[a-z0-9._-]{1,64}$")]
    name: String,
    role: Role,
    /// The sites of an admin or viewer (at least one); none for an owner.
    #[serde(default)]
    sites: Vec<String>,
}

/// An invitation made.
#[derive(Serialize, ToSchema)]
pub(crate) struct InvitedBody {
    name: String,
    role: Role,
    sites: Vec<String>,
    /// The one-time link that lets the person set a password: shown once, hand it over.
    invite_url: String,
}

/// Checks a role and its sites; errors name the field.
pub(crate) fn checked_sites(
    state: &State,
    role: Role,
    sites: &[String],
) -> Result<Vec<String>, ApiError> {
    if role == Role::Owner {
        if !sites.is_empty() {
            return Err(ApiError::BadRequest(
                "`sites`: an owner has every site; give none".into(),
            ));
        }
        return Ok(Vec::new());
    }
    if sites.is_empty() {
        return Err(ApiError::BadRequest(
            "`sites`: an admin or viewer needs at least one site".into(),
        ));
    }
    let mut out = Vec::new();
    for site in sites {
        let known = SiteId::parse(site)
            .ok()
            .and_then(|id| state.directory.get(&id));
        if known.is_none() {
            return Err(ApiError::BadRequest(format!("`sites`: no site `{site}`")));
        }
        if !out.contains(site) {
            out.push(site.clone());
        }
    }
    Ok(out)
}

/// Invites a person: the answer holds their one-time link (owners only).
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "admin",
    security(("bearer" = [])),
    request_body = NewPerson,
    responses(
        (status = 201, description = "Invited", body = InvitedBody),
        (status = 400, description = "A field is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Only an owner may invite people", body = ErrorBody),
        (status = 409, description = "Someone has this name", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn invite(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    headers: HeaderMap,
    Json(new): Json<NewPerson>,
) -> Result<Response, ApiError> {
    admin.0.owner_only("invite people")?;
    if !valid_name(&new.name) {
        return Err(ApiError::BadRequest(
            "`name` must be 1 to 64 of a-z, 0-9, `.`, `_` and `-`".into(),
        ));
    }
    let sites = checked_sites(&state, new.role, &new.sites)?;
    if state.db.person(&new.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "someone is called `{}`",
            new.name
        )));
    }
    let (secret, invite_hash, invite_expires) = new_invite(state.clock.now());
    let person = Person {
        name: new.name.clone(),
        role: new.role.as_str().to_owned(),
        sites: sites.clone(),
        password_hash: String::new(),
        invite_hash,
        invite_expires,
    };
    state.db.save_person(&person).await?;
    let detail = format!("role {}, sites {}", new.role.as_str(), sites.join(" "));
    state
        .db
        .audit(&admin.0.actor(), "person.invited", &new.name, &detail)
        .await?;
    let https = state.settings.server.public_url.starts_with("https://");
    let body = InvitedBody {
        invite_url: format!(
            "{}/admin/invite/{secret}",
            base_url(&state, &headers, https)
        ),
        name: new.name,
        role: new.role,
        sites,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The person of a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NamePath {
    /// Login name.
    #[allow(dead_code)] // read by axum's Path extractor as a plain String
    name: String,
}

/// Removes a person: their sessions end at once (owners only).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}",
    tag = "admin",
    security(("bearer" = [])),
    params(NamePath),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Only an owner may remove people", body = ErrorBody),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 409, description = "One cannot remove oneself", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "Redis or ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn remove(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin.0.owner_only("remove people")?;
    if admin.0.actor() == name {
        return Err(ApiError::Conflict(
            "one cannot remove oneself: another owner can".into(),
        ));
    }
    if state.db.person(&name).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    state.db.delete_person(&name).await?;
    state
        .store
        .owned_sessions_end(&format!("person:{name}"))
        .await?;
    state
        .db
        .audit(&admin.0.actor(), "person.removed", &name, "sessions ended")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a person from the command line (`tally user add`): with `password`, ready to sign
/// in; without, invited — the answer is the invitation's secret, for the link
/// `/admin/invite/SECRET`.
pub async fn add_person(
    db: &tally_clickhouse::Db,
    name: &str,
    role: &str,
    sites: Vec<String>,
    password: Option<String>,
) -> Result<Option<String>, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::BadRequest(
            "the name must be 1 to 64 of a-z, 0-9, `.`, `_` and `-`".into(),
        ));
    }
    let role = Role::parse(role)
        .ok_or_else(|| ApiError::BadRequest("the role must be owner, admin or viewer".into()))?;
    if (role == Role::Owner) != sites.is_empty() {
        return Err(ApiError::BadRequest(
            "an owner has every site (give no --site); an admin or viewer needs --site".into(),
        ));
    }
    if db.person(name).await?.is_some() {
        return Err(ApiError::Conflict(format!("someone is called `{name}`")));
    }
    let mut person = Person {
        name: name.into(),
        role: role.as_str().into(),
        sites,
        password_hash: String::new(),
        invite_hash: String::new(),
        invite_expires: 0,
    };
    let secret = match password {
        Some(password) if password.chars().count() < MIN_PASSWORD => {
            return Err(ApiError::BadRequest(format!(
                "the password must be at least {MIN_PASSWORD} characters"
            )));
        }
        Some(password) => {
            person.password_hash = hash_password(password).await?;
            None
        }
        None => {
            let (secret, hash, expires) = new_invite(chrono::Utc::now());
            person.invite_hash = hash;
            person.invite_expires = expires;
            Some(secret)
        }
    };
    db.save_person(&person).await?;
    db.audit("command line", "person.added", name, role.as_str())
        .await?;
    Ok(secret)
}
