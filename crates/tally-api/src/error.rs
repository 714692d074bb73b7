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
    #[error(transparent)]
    Redis(#[from] tally_redis::Error),
    #[error(transparent)]
    ClickHouse(#[from] tally_clickhouse::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            Self::UnknownSite => (StatusCode::NOT_FOUND, "unknown_site", self.to_string()),
            Self::Redis(_) | Self::ClickHouse(_) => {
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
        response.headers_mut().insert(
            axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            axum::http::HeaderValue::from_static("*"),
        );
        response
    }
}
