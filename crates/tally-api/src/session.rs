//! Admin page sessions. `POST /admin/login` with a valid token creates a random 128-bit
//! session id and sends it as an `HttpOnly; SameSite=Strict` cookie — `Secure` and named
//! `__Host-tally_session` when Tally is reached over https (`server.public_url`, or a trusted
//! proxy's `X-Forwarded-Proto`). Redis (so any api instance knows it) holds the session under
//! the SHA-256 of its id, never the id, so nothing read from Redis or its files signs anyone
//! in; its value is a fingerprint of the token (never the token) and the sign-in time. A
//! session slides by `admin.session_ttl` while used and ends `admin.session_max_age` after
//! sign-in however active; removing a token from the config ends its sessions.
//!
//! Sign-in and sign-out accept only same-origin requests, so another site cannot sign a
//! visitor in (to a token of its choosing) or out.

use std::net::SocketAddr;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use tally_core::{SiteId, settings::AdminToken};

use crate::{
    ApiError, State,
    principal::{Principal, Role},
};

/// Name of the session cookie over plain http.
const COOKIE: &str = "tally_session";
/// The cookie of a shared dashboard's session, apart from the admin session (someone signed
/// in who opens a shared link keeps their own session).
const SHARE_COOKIE: &str = "tally_share";
const SECURE_SHARE_COOKIE: &str = "__Host-tally_share";
/// Name of the session cookie over https: the `__Host-` prefix makes browsers keep it only
/// when it is `Secure`, for the whole host, set by the host itself.
const SECURE_COOKIE: &str = "__Host-tally_session";

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fingerprint of a token: enough to find it again, useless to sign in with.
pub(crate) fn fingerprint(token: &AdminToken) -> String {
    sha256_hex(token.secret().as_bytes())[..32].to_owned()
}

/// What Redis knows a session by: the SHA-256 of its id.
pub(crate) fn storage_key(id: &str) -> String {
    sha256_hex(id.as_bytes())
}

/// A new random session id (128 bits).
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether the request reached Tally over https: `server.public_url` says so, or a trusted
/// proxy does in `X-Forwarded-Proto`.
pub(crate) fn over_https(state: &State, peer: SocketAddr, headers: &HeaderMap) -> bool {
    if state.settings.server.public_url.starts_with("https://") {
        return true;
    }
    // Only a trusted proxy is believed, as for X-Forwarded-For.
    state.client.is_trusted(peer.ip().to_canonical())
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that starts session `id`.
pub(crate) fn start_cookie(id: &str, secure: bool, ttl: std::time::Duration) -> String {
    let name = if secure { SECURE_COOKIE } else { COOKIE };
    let flags = if secure { "; Secure" } else { "" };
    format!(
        "{name}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{flags}",
        ttl.as_secs()
    )
}

/// The `Set-Cookie` values that end a session, under either name.
pub(crate) fn end_cookies() -> [&'static str; 2] {
    [
        "tally_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        "__Host-tally_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure",
    ]
}

/// The session cookie's value, if the request carries one.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SECURE_COOKIE)
        .or_else(|| cookie(headers, COOKIE))
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The shared-dashboard session cookie's value, if the request carries one.
pub(crate) fn share_cookie_value(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SECURE_SHARE_COOKIE)
        .or_else(|| cookie(headers, SHARE_COOKIE))
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that starts shared-dashboard session `id`.
pub(crate) fn start_share_cookie(id: &str, secure: bool, ttl: std::time::Duration) -> String {
    start_cookie(id, secure, ttl).replacen(
        if secure { SECURE_COOKIE } else { COOKIE },
        if secure {
            SECURE_SHARE_COOKIE
        } else {
            SHARE_COOKIE
        },
        1,
    )
}

/// The value of cookie `name` in the request's Cookie headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a sign-in or sign-out request comes from Tally's own pages. Browsers say where a
/// request comes from in `Sec-Fetch-Site` (current ones) or `Origin` (every POST); a request
/// with neither is not a browser's cross-site request and passes.
pub(crate) fn same_origin(state: &State, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let public = state.settings.server.public_url.trim_end_matches('/');
    if !public.is_empty() {
        return origin.eq_ignore_ascii_case(public);
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Who the request's valid session is for, if it has one: the admin session, else a shared
/// dashboard's.
pub(crate) async fn from_cookie(
    state: &State,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    if let Some(id) = cookie_value(headers)
        && let Some(principal) = from_session(state, id).await?
    {
        return Ok(Some(principal));
    }
    match share_cookie_value(headers) {
        Some(id) => from_session(state, id).await,
        None => Ok(None),
    }
}

/// Who session `id` is for, if it is valid.
async fn from_session(state: &State, id: &str) -> Result<Option<Principal>, ApiError> {
    let key = storage_key(id);
    let Some(value) = state
        .store
        .session_touch(&key, state.settings.admin.session_ttl)
        .await?
    else {
        return Ok(None);
    };
    let Some((who, since)) = Stored::parse(&value) else {
        // A session of an earlier version: not kept.
        state.store.session_delete(&key).await?;
        return Ok(None);
    };
    let max_age = state.settings.admin.session_max_age.as_secs() as i64;
    if state.clock.now().timestamp() - since > max_age {
        state.store.session_delete(&key).await?;
        return Ok(None);
    }
    Ok(match who {
        Stored::Token(print) => state
            .settings
            .admin
            .tokens
            .iter()
            .find(|t| fingerprint(t) == print)
            .cloned()
            .map(Principal::Token),
        Stored::Person { name, role, sites } => Some(Principal::Person {
            name,
            role,
            sites,
            via_token: false,
        }),
        Stored::Share { id, site } => Some(Principal::Share { id, site }),
    })
}

/// What a session's value holds, besides its sign-in time: `T FINGERPRINT SINCE` for a
/// configuration token (`FINGERPRINT SINCE` in earlier versions), `P NAME ROLE SITES SINCE`
/// for a person (sites joined by `,`, `-` for none). A person's role and sites are copied at
/// sign-in; changing them, or removing the person, ends their sessions.
enum Stored {
    Token(String),
    Person {
        name: String,
        role: Role,
        sites: Vec<SiteId>,
    },
    Share {
        id: String,
        site: SiteId,
    },
}

impl Stored {
    fn parse(value: &str) -> Option<(Self, i64)> {
        let parts: Vec<&str> = value.split(' ').collect();
        match parts.as_slice() {
            [print, since] | ["T", print, since] => {
                Some((Self::Token((*print).to_owned()), since.parse().ok()?))
            }
            ["S", id, site, since] => Some((
                Self::Share {
                    id: (*id).to_owned(),
                    site: SiteId::parse(site).ok()?,
                },
                since.parse().ok()?,
            )),
            ["P", name, role, sites, since] => Some((
                Self::Person {
                    name: (*name).to_owned(),
                    role: Role::parse(role)?,
                    sites: match *sites {
                        "-" => Vec::new(),
                        list => list
                            .split(',')
                            .map(SiteId::parse)
                            .collect::<Result<_, _>>()
                            .ok()?,
                    },
                },
                since.parse().ok()?,
            )),
            _ => None,
        }
    }
}

/// Starts a session for `token`: stores it and returns the new id.
pub(crate) async fn start(state: &State, token: &AdminToken) -> Result<String, ApiError> {
    let id = new_id();
    let value = format!("T {} {}", fingerprint(token), state.clock.now().timestamp());
    state
        .store
        .session_put(&storage_key(&id), &value, state.settings.admin.session_ttl)
        .await?;
    Ok(id)
}

/// Starts a session for whoever opened shared dashboard `share` of `site`; revoking the
/// share ends it. Returns the new id.
pub(crate) async fn start_share(
    state: &State,
    share: &str,
    site: &SiteId,
) -> Result<String, ApiError> {
    let value = format!("S {share} {site} {}", state.clock.now().timestamp());
    start_owned(state, &value, &format!("share:{share}")).await
}

/// Starts a session for person `name` with `role` on `sites`; removing the person (or
/// changing their password, or signing out everywhere) ends it. Returns the new id.
pub(crate) async fn start_person(
    state: &State,
    name: &str,
    role: Role,
    sites: &[SiteId],
) -> Result<String, ApiError> {
    let sites = match sites {
        [] => "-".to_owned(),
        list => list
            .iter()
            .map(SiteId::as_str)
            .collect::<Vec<_>>()
            .join(","),
    };
    let value = format!(
        "P {name} {} {sites} {}",
        role.as_str(),
        state.clock.now().timestamp()
    );
    start_owned(state, &value, &format!("person:{name}")).await
}

/// Stores a new session holding `value`, listed among the sessions of `owner` so that they
/// can all be ended at once; returns its id.
async fn start_owned(state: &State, value: &str, owner: &str) -> Result<String, ApiError> {
    let id = new_id();
    let key = storage_key(&id);
    state
        .store
        .session_put(&key, value, state.settings.admin.session_ttl)
        .await?;
    state
        .store
        .owned_session_add(owner, &key, state.settings.admin.session_max_age)
        .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_never_holds_what_the_cookie_holds() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        let key = storage_key(&id);
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&id));
        let token = AdminToken::All("a-token-long-enough-to-be-used".into());
        assert!(!fingerprint(&token).contains("long-enough"));
    }

    #[test]
    fn the_secure_cookie_is_host_bound() {
        let c = start_cookie("ab", true, std::time::Duration::from_secs(60));
        assert!(c.starts_with("__Host-tally_session=ab; Path=/;") && c.ends_with("; Secure"));
        let c = start_cookie("ab", false, std::time::Duration::from_secs(60));
        assert!(c.starts_with("tally_session=ab;") && !c.contains("Secure"));
    }
}
