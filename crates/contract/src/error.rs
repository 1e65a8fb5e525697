//! Error codes and bodies shared by HTTP responses and WebSocket errors (docs/spec.md §6, §7).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The error codes used everywhere in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Missing, invalid or expired credentials.
    Unauthorized,
    /// Authenticated, but not allowed.
    Forbidden,
    /// The thing does not exist.
    NotFound,
    /// Too many requests; retry later.
    RateLimited,
    /// The request was understood but its values are invalid.
    ValidationFailed,
    /// A WebSocket message was malformed or of an unknown type.
    InvalidMessage,
    /// Something failed on our side.
    InternalError,
}

impl ErrorCode {
    /// The code's wire spelling, e.g. `RATE_LIMITED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::RateLimited => "RATE_LIMITED",
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::InvalidMessage => "INVALID_MESSAGE",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// `{"code": …, "message": …}`, the `error` member of a WebSocket error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation, safe to show (never contains secrets).
    pub message: String,
}

/// The JSON body of every HTTP error: `{"message", "code", "details"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    /// Human-readable explanation.
    pub message: String,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Structured detail, e.g. which fields failed validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// `{"ok": true}`, the success body of the webhook and of room deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OkBody {
    /// Always `true` on success.
    pub ok: bool,
}

/// Why a contract message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The input is larger than its limit allows.
    #[error("message is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The input is not valid JSON, has an unknown type, or has invalid fields.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl ContractError {
    pub(crate) fn from_json(error: &serde_json::Error) -> Self {
        Self::Malformed(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_spell_as_the_spec() {
        for (code, text) in [
            (ErrorCode::Unauthorized, "UNAUTHORIZED"),
            (ErrorCode::Forbidden, "FORBIDDEN"),
            (ErrorCode::NotFound, "NOT_FOUND"),
            (ErrorCode::RateLimited, "RATE_LIMITED"),
            (ErrorCode::ValidationFailed, "VALIDATION_FAILED"),
            (ErrorCode::InvalidMessage, "INVALID_MESSAGE"),
            (ErrorCode::InternalError, "INTERNAL_ERROR"),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(text));
            assert_eq!(code.as_str(), text);
        }
    }

    #[test]
    fn api_error_omits_absent_details() {
        let error = ApiError {
            message: "no such room".into(),
            code: ErrorCode::NotFound,
            details: None,
        };
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"message": "no such room", "code": "NOT_FOUND"})
        );
    }
}
