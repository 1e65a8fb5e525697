//! The HTTP answer for a failed Discord call: which status, contract error code and
//! body (`docs/contract.md`, "HTTP errors") a caller gets for each `DiscordError`.
//!
//! This lives in the hub, not in `coven-discord`: the Discord client knows Discord's
//! errors, the hub knows its own HTTP answers. The table is in
//! `docs/discord-clients.md`, "Errors".

use axum::http::StatusCode;
use coven_contract::{ApiError, ErrorCode};
use coven_discord::DiscordError;
use serde_json::json;

/// What the hub answers when a Discord call made for a request fails.
///
/// Errors about the caller's input become 400/404/403/429; failures of Discord or of
/// the bot's own credentials are not the caller's fault and become 502
/// `INTERNAL_ERROR` (a rejected bot token must not look like a bad user login).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordAnswer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error body: the error's message, its code and, where useful, `details`
    /// (the field of a validation error, Discord's field errors, the wait of a rate
    /// limit in milliseconds).
    pub body: ApiError,
}

impl From<&DiscordError> for DiscordAnswer {
    fn from(error: &DiscordError) -> Self {
        let (status, code) = status_and_code(error);
        let details = match error {
            DiscordError::Validation { field, .. } => Some(json!({ "field": field })),
            DiscordError::InvalidFormBody { errors } => Some(json!({ "errors": errors })),
            DiscordError::RateLimited { retry_after } => Some(json!({
                "retryAfterMs": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)
            })),
            _ => None,
        };
        Self {
            status,
            body: ApiError {
                message: error.to_string(),
                code,
                details,
            },
        }
    }
}

fn status_and_code(error: &DiscordError) -> (StatusCode, ErrorCode) {
    match error {
        DiscordError::Validation { .. } | DiscordError::InvalidFormBody { .. } => {
            (StatusCode::BAD_REQUEST, ErrorCode::ValidationFailed)
        }
        DiscordError::UnknownChannel | DiscordError::NotFound { .. } => {
            (StatusCode::NOT_FOUND, ErrorCode::NotFound)
        }
        DiscordError::MissingPermissions | DiscordError::Forbidden { .. } => {
            (StatusCode::FORBIDDEN, ErrorCode::Forbidden)
        }
        DiscordError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
        DiscordError::InvalidGrant { .. } => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
        // Unauthorized (the bot's token), Server, Transport, Decode, OAuth, Other, and any
        // variant added later: Discord's or the deployment's problem, not the caller's.
        _ => (StatusCode::BAD_GATEWAY, ErrorCode::InternalError),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn statuses_for_the_hub() {
        let cases = [
            (
                DiscordError::Validation {
                    field: "name",
                    reason: "empty".into(),
                },
                400,
                ErrorCode::ValidationFailed,
            ),
            (
                DiscordError::InvalidFormBody { errors: vec![] },
                400,
                ErrorCode::ValidationFailed,
            ),
            (DiscordError::UnknownChannel, 404, ErrorCode::NotFound),
            (
                DiscordError::NotFound {
                    code: None,
                    message: String::new(),
                },
                404,
                ErrorCode::NotFound,
            ),
            (DiscordError::MissingPermissions, 403, ErrorCode::Forbidden),
            (
                DiscordError::Forbidden {
                    code: None,
                    message: String::new(),
                },
                403,
                ErrorCode::Forbidden,
            ),
            (
                DiscordError::RateLimited {
                    retry_after: Duration::ZERO,
                },
                429,
                ErrorCode::RateLimited,
            ),
            (
                DiscordError::InvalidGrant { description: None },
                401,
                ErrorCode::Unauthorized,
            ),
            (DiscordError::Unauthorized, 502, ErrorCode::InternalError),
            (
                DiscordError::Server { status: 500 },
                502,
                ErrorCode::InternalError,
            ),
            (
                DiscordError::Transport("x".into()),
                502,
                ErrorCode::InternalError,
            ),
            (
                DiscordError::Decode("x".into()),
                502,
                ErrorCode::InternalError,
            ),
            // A misconfigured app (wrong client secret) is not the player's fault.
            (
                DiscordError::OAuth {
                    status: 401,
                    error: "invalid_client".into(),
                    description: None,
                },
                502,
                ErrorCode::InternalError,
            ),
            (
                DiscordError::Other {
                    status: None,
                    code: None,
                    message: String::new(),
                },
                502,
                ErrorCode::InternalError,
            ),
        ];
        for (error, status, code) in cases {
            let answer = DiscordAnswer::from(&error);
            assert_eq!(
                (answer.status, answer.body.code),
                (StatusCode::from_u16(status).unwrap(), code),
                "{error:?}"
            );
            assert_eq!(answer.body.message, error.to_string());
        }
    }

    #[test]
    fn wire_names_and_details() {
        // The wire names the discord crate's integration tests checked before the move.
        let unknown = DiscordAnswer::from(&DiscordError::UnknownChannel);
        assert_eq!(
            (unknown.status.as_u16(), unknown.body.code.as_str()),
            (404, "NOT_FOUND")
        );
        let grant = DiscordAnswer::from(&DiscordError::InvalidGrant { description: None });
        assert_eq!(
            (grant.status.as_u16(), grant.body.code.as_str()),
            (401, "UNAUTHORIZED")
        );
        let limited = DiscordAnswer::from(&DiscordError::RateLimited {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(limited.body.details, Some(json!({"retryAfterMs": 1500})));
    }
}
