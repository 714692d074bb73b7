//! The beacon's error responses: `{"code": "...", "message": "..."}`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// A refused tracking request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Malformed(String),
    UnknownSite,
    OriginNotAllowed,
    TooLarge,
    RateLimited,
    Unavailable,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::UnknownSite => StatusCode::NOT_FOUND,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable snake_case code clients match on; also the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownSite => "unknown_site",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Malformed(why) => why.clone(),
            Self::UnknownSite => "no such site is tracked here".into(),
            Self::OriginNotAllowed => "the page's host is not among the site's domains".into(),
            Self::TooLarge => "the body is larger than 4 KiB".into(),
            Self::RateLimited => "too many requests from this address".into(),
            Self::Unavailable => "the event store is unavailable; try again later".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code(), "message": self.message()});
        (self.status(), Json(body)).into_response()
    }
}
