//! Admin authentication: a bearer token from `admin.tokens` (compared in constant time), or
//! the session cookie of a signed-in admin page.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use tally_core::{SiteId, settings::AdminToken};

use crate::{ApiError, State};

/// The admin token a request is authorised by.
pub(crate) struct Admin(pub(crate) AdminToken);

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
        if !state.sites.contains_key(&id) {
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
            let secret = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(ApiError::Unauthorized)?;
            return find_token(&state.settings.admin.tokens, secret.trim())
                .cloned()
                .map(Admin)
                .ok_or(ApiError::Unauthorized);
        }
        if let Some(token) = crate::session::from_cookie(state, &parts.headers).await? {
            return Ok(Admin(token));
        }
        Err(ApiError::Unauthorized)
    }
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
}
