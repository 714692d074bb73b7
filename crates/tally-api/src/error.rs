//! The api's error responses: `{"code", "message"}`; 5xx log the cause, answer generically.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no such site")]
    UnknownSite,
    #[error("no such resource")]
    NotFound,
    #[error("an admin token is required (Authorization: Bearer …)")]
    Unauthorized,
    #[error("this token may not read this site")]
    Forbidden,
    #[error("too many wrong admin tokens from this address; try again in a minute")]
    TooManyAttempts,
    #[error("sign-in and sign-out are accepted from Tally's own pages only")]
    CrossSite,
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Redis(#[from] tally_redis::Error),
    /// A store failed for a batch of requests (the message is the store's).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    ClickHouse(#[from] tally_clickhouse::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            Self::UnknownSite => (StatusCode::NOT_FOUND, "unknown_site", self.to_string()),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", self.to_string()),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden", self.to_string()),
            Self::CrossSite => (StatusCode::FORBIDDEN, "cross_site", self.to_string()),
            Self::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                self.to_string(),
            ),
            Self::Internal(_) => {
                error!(message = "request failed", error = %self);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong".to_owned(),
                )
            }
            Self::Redis(_) | Self::ClickHouse(_) | Self::Unavailable(_) => {
                error!(message = "request failed", error = %self);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backing store is unavailable; try again later".to_owned(),
                )
            }
        };
        let mut response =
            (status, Json(json!({"code": code, "message": message}))).into_response();
        if matches!(self, Self::TooManyAttempts) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response
    }
}
