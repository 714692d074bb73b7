//! Admin authentication: a bearer token from `admin.tokens` (compared in constant time) or a
//! person's personal token (looked up by its SHA-256), or the session cookie of a signed-in
//! admin page. Wrong bearer tokens are counted per client
//! network (an IPv4 address, an IPv6 /64): past [`MAX_FAILED_TOKENS`] in a minute, every
//! bearer request from there answers 429, the right token included, so tokens cannot be
//! guessed by trying.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, Method, header, request::Parts},
};
use tally_core::{SiteId, settings::AdminToken};

use crate::{ApiError, State, principal::Principal};

/// Wrong bearer tokens one client network may send in a minute.
pub(crate) const MAX_FAILED_TOKENS: u32 = 10;
const MINUTE: Duration = Duration::from_secs(60);
/// Networks remembered at most; past that, the oldest minute's entries go first.
const MAX_NETWORKS: usize = 100_000;

/// Wrong bearer tokens per client network in its current minute.
#[derive(Default)]
pub(crate) struct FailedTokens {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedTokens {
    /// Whether `network` has used up its wrong tokens for this minute.
    fn blocked(&self, network: IpAddr) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&network)
            .is_some_and(|(since, n)| since.elapsed() < MINUTE && *n >= MAX_FAILED_TOKENS)
    }

    /// Counts a wrong token from `network`.
    fn failed(&self, network: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_NETWORKS {
            seen.retain(|_, (since, _)| since.elapsed() < MINUTE);
        }
        let entry = seen.entry(network).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= MINUTE {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    /// Forgets networks whose minute is over (called every minute).
    pub(crate) fn forget_old(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, (since, _)| since.elapsed() < MINUTE);
    }
}

/// Who an admin request is authorised as: a bearer token, or a signed-in session.
pub(crate) struct Admin(pub(crate) Principal);

/// Compares without an early exit on the first differing byte, so response times do not
/// reveal how much of a guessed token was right.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The configured token equal to `secret`, if any (every token is compared).
pub(crate) fn find_token<'a>(tokens: &'a [AdminToken], secret: &str) -> Option<&'a AdminToken> {
    let mut found = None;
    for token in tokens {
        if same_secret(token.secret(), secret) {
            found = Some(token);
        }
    }
    found
}

impl Admin {
    /// 404 for unknown sites, 403 for sites this token may not see.
    pub(crate) fn site(&self, state: &State, site: &str) -> Result<SiteId, ApiError> {
        let id = SiteId::parse(site).map_err(|_| ApiError::UnknownSite)?;
        if state.directory.get(&id).is_none() {
            return Err(ApiError::UnknownSite);
        }
        if !self.0.allows(&id) {
            return Err(ApiError::Forbidden);
        }
        Ok(id)
    }
}

impl FromRequestParts<std::sync::Arc<State>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &std::sync::Arc<State>,
    ) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let network = client_network(state, parts);
            if network.is_some_and(|n| state.failed_tokens.blocked(n)) {
                return Err(ApiError::TooManyAttempts);
            }
            let secret = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or_default();
            let found = match find_token(&state.settings.admin.tokens, secret) {
                Some(token) => Some(Principal::Token(token.clone())),
                None => crate::account::principal_of_token(state, secret).await?,
            };
            return match found {
                Some(principal) => Ok(Admin(principal)),
                None => {
                    if let Some(network) = network {
                        state.failed_tokens.failed(network);
                    }
                    Err(ApiError::Unauthorized)
                }
            };
        }
        if let Some(principal) = crate::session::from_cookie(state, &parts.headers).await? {
            // A change made with a cookie must come from Tally's own pages: another site's
            // page cannot make a signed-in browser create, edit or delete anything (the
            // cookies are SameSite=Strict as well, and JSON bodies need a preflight).
            let reads = matches!(parts.method, Method::GET | Method::HEAD);
            if !reads && !crate::session::same_origin(state, &parts.headers) {
                return Err(ApiError::CrossSite);
            }
            return Ok(Admin(principal));
        }
        Err(ApiError::Unauthorized)
    }
}

/// The network of the request's client (behind trusted proxies), if the server gave the
/// peer address.
fn client_network(state: &State, parts: &Parts) -> Option<IpAddr> {
    let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(tally_core::client::network(client_ip(
        state,
        *peer,
        &parts.headers,
    )))
}

/// The client address of a request from `peer`: the peer, or behind a trusted proxy the
/// address it forwards.
pub(crate) fn client_ip(state: &State, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes());
    state.client.resolve(peer, forwarded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc12345", "abc12345"));
        assert!(!same_secret("abc12345", "abc1234"));
        assert!(!same_secret("abc12345", "abc12346"));
        assert!(!same_secret("", "x"));
        let tokens = vec![AdminToken::All("token-one-1".into())];
        assert!(find_token(&tokens, "token-one-1").is_some());
        assert!(find_token(&tokens, "token-one-2").is_none());
    }

    #[test]
    fn a_network_is_blocked_after_its_wrong_tokens_for_the_minute() {
        let failed = FailedTokens::default();
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..MAX_FAILED_TOKENS {
            assert!(!failed.blocked(a));
            failed.failed(a);
        }
        assert!(failed.blocked(a));
        assert!(!failed.blocked(b));
    }
}
