//! Admin page sessions: `POST /admin/login` with a valid token creates a random session id,
//! stored in Redis (so any api instance knows it) with a sliding expiry, and sent as an
//! `HttpOnly; SameSite=Strict` cookie. The session holds a fingerprint of the token, never
//! the token itself; removing a token from the config ends its sessions.

use std::hash::Hasher;

use axum::http::{HeaderMap, header};
use siphasher::sip::SipHasher13;
use tally_core::settings::AdminToken;

use crate::{ApiError, State};

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "tally_session";

/// A fingerprint of a token: enough to find it again, useless to sign in with.
pub(crate) fn fingerprint(token: &AdminToken) -> String {
    let mut h = SipHasher13::new_with_keys(0x0074_616c_6c79, 0x0073_6573_7369_6f6e);
    h.write(token.secret().as_bytes());
    format!("{:016x}", h.finish())
}

/// A new random session id (128 bits).
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The session cookie's value, if the request carries one.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, COOKIE).filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
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

/// The token of the request's valid session, if any.
pub(crate) async fn from_cookie(
    state: &State,
    headers: &HeaderMap,
) -> Result<Option<AdminToken>, ApiError> {
    let Some(id) = cookie_value(headers) else {
        return Ok(None);
    };
    let Some(print) = state
        .store
        .session_touch(id, state.settings.admin.session_ttl)
        .await?
    else {
        return Ok(None);
    };
    Ok(state
        .settings
        .admin
        .tokens
        .iter()
        .find(|t| fingerprint(t) == print)
        .cloned())
}
