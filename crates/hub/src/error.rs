//! The one error type of the HTTP handlers and its JSON rendering.
//!
//! Every HTTP error leaves the hub as `{"message","code","details"?}` (docs/spec.md §7) built
//! from the contract's `ApiError`; the webhook's signature failures are the one
//! exception, answered with exactly `{"message":"forbidden"}` (docs/spec.md §5) so that a
//! prober learns nothing about why.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coven_contract::{ApiError, ErrorCode};

use crate::login::LoginFailure;

/// Why an HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Missing or invalid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// A webhook whose signature or timestamp failed (403 `{"message":"forbidden"}`).
    #[error("forbidden")]
    WebhookForbidden,
    /// Unknown resource (404).
    #[error("{0}")]
    NotFound(String),
    /// Over the rate limit (429 with `Retry-After`).
    #[error("too many requests")]
    RateLimited {
        /// When the caller may try again.
        retry_after: Duration,
    },
    /// Invalid input (400), optionally naming the field.
    #[error("{message}")]
    Validation {
        /// What is wrong.
        message: String,
        /// Which field, when known.
        field: Option<&'static str>,
    },
    /// A body over the limit (413).
    #[error("body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Discord or another dependency failed (502).
    #[error("{0}")]
    Upstream(String),
    /// A dependency that is not configured or not reachable right now (503);
    /// the message is ours and safe to show.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency is unreachable for a moment (503 with `Retry-After`): e.g.
    /// Redis is down, so an `Idempotency-Key` cannot be honoured across hubs.
    #[error("{message}")]
    TryLater {
        /// What is unavailable; ours and safe to show.
        message: String,
        /// When the caller may try again.
        retry_after: Duration,
    },
    /// A bug or an unavailable dependency on our side (500).
    #[error("{0}")]
    Internal(String),
    /// A browser login that failed: answered with an HTML page, not JSON.
    #[error("{0}")]
    Login(#[from] LoginFailure),
}

impl HubError {
    /// A validation error without a field.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::Validation {
            message: message.into(),
            field: None,
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::WebhookForbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) | Self::TryLater { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Login(failure) => failure.status(),
        }
    }

    fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) | Self::WebhookForbidden => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Validation { .. } | Self::PayloadTooLarge { .. } => ErrorCode::ValidationFailed,
            // A login failure is rendered as a page; the code is never sent.
            Self::Upstream(_)
            | Self::Internal(_)
            | Self::Unavailable(_)
            | Self::TryLater { .. }
            | Self::Login(_) => ErrorCode::InternalError,
        }
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let status = self.status();
        if matches!(self, Self::WebhookForbidden) {
            return (status, Json(serde_json::json!({"message": "forbidden"}))).into_response();
        }
        if let Self::Login(failure) = self {
            tracing::info!(reason = failure.reason(), "login failed");
            return failure.page();
        }
        if matches!(self, Self::Internal(_) | Self::Upstream(_)) {
            tracing::warn!(error = %self, "request failed");
        }
        let details = match &self {
            Self::Validation {
                field: Some(field), ..
            } => Some(serde_json::json!({ "field": field })),
            Self::RateLimited { retry_after } => {
                Some(serde_json::json!({ "retryAfter": retry_after_secs(*retry_after) }))
            }
            _ => None,
        };
        let message = match &self {
            // Never echo upstream text to a browser: it could carry anything.
            Self::Upstream(_) => "Discord request failed".to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let body = ApiError {
            message,
            code: self.code(),
            details,
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after } | Self::TryLater { retry_after, .. } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(retry_after)),
            );
        }
        response
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` carries.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}
