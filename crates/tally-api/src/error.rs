//! The api's error responses: `{"code", "message"}` ([`ErrorBody`]); 5xx log the cause,
//! answer generically. [`PublicErrors`] and [`AdminErrors`] are the error responses the
//! OpenAPI document lists for the public and the admin endpoints.

use axum::{extract::FromRequestParts, http::request::Parts};
use axum::{
    extract::{FromRequest, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::error;
use utoipa::{IntoResponses, ToSchema};

/// What every error answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable, machine-readable code (`bad_request`, `unknown_site`, `unauthorized`…).
    pub(crate) code: &'static str,
    /// What went wrong, naming the parameter at fault.
    pub(crate) message: String,
}

/// The errors of the public counters.
#[derive(IntoResponses)]
#[allow(dead_code)] // only read by the OpenAPI document
pub(crate) enum PublicErrors {
    /// A parameter is invalid; the message names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Unknown site, or a site without public counters (the same answer).
    #[response(status = 404)]
    UnknownSite(ErrorBody),
    /// Redis is unavailable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The errors of the admin API.
#[derive(IntoResponses)]
#[allow(dead_code)] // only read by the OpenAPI document
pub(crate) enum AdminErrors {
    /// A parameter is invalid; the message names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or a wrong one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token may not read this site.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown site.
    #[response(status = 404)]
    UnknownSite(ErrorBody),
    /// Too many wrong tokens from this address in a minute (`Retry-After: 60`).
    #[response(status = 429)]
    TooManyAttempts(ErrorBody),
    /// Redis or ClickHouse is unavailable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

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
    /// The token may not do this; the message says why.
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many wrong admin tokens from this address; try again in a minute")]
    TooManyAttempts,
    #[error("sign-in, sign-out and changes are accepted from Tally's own pages only")]
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
            Self::NotAllowed(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
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
        let mut response = (status, axum::Json(ErrorBody { code, message })).into_response();
        if matches!(self, Self::TooManyAttempts) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response
    }
}

/// axum's `Query`, answering a query string it cannot read (a parameter given twice, a list
/// where one value goes) with the API's JSON error, which names the parameter.
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// axum's `Path`, answering a path segment it cannot read (not UTF-8 once decoded) with the
/// API's JSON error.
pub(crate) struct Path<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| Self(p))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// axum's `Json`: as a body it answers a body it cannot read (not JSON, not an object, a
/// missing or unknown field, a wrong type) with the API's JSON error, naming the field; as an
/// answer it is axum's. Every body the API takes is an object: serde would read a struct from
/// an array too (its fields by position), so anything else is refused first.
pub(crate) struct Json<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bad = |e: axum::extract::rejection::JsonRejection| ApiError::BadRequest(e.body_text());
        // The content type, the body limit and the JSON syntax, as axum checks them.
        let axum::Json(raw) =
            axum::Json::<Box<serde_json::value::RawValue>>::from_request(req, state)
                .await
                .map_err(bad)?;
        if !raw.get().trim_start().starts_with('{') {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".to_owned(),
            ));
        }
        axum::Json::<T>::from_bytes(raw.get().as_bytes())
            .map(|axum::Json(body)| Self(body))
            .map_err(bad)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
