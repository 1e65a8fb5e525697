//! The one error type of both Discord clients, and how Discord's JSON error bodies map
//! onto it. Which HTTP answer a caller of the hub gets for each variant is the hub's
//! business (`coven-hub`'s `discord.rs` and `rooms.rs`), not this crate's.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Discord's JSON error code "Unknown Channel".
pub(crate) const CODE_UNKNOWN_CHANNEL: u64 = 10003;
/// Discord's JSON error code "Missing Permissions".
pub(crate) const CODE_MISSING_PERMISSIONS: u64 = 50013;
/// Discord's JSON error code "Invalid Form Body".
pub(crate) const CODE_INVALID_FORM_BODY: u64 = 50035;
/// Discord's JSON error code "The user is banned from this guild".
pub(crate) const CODE_BANNED: u64 = 40007;
/// Discord's JSON error code "Maximum number of server members reached".
pub(crate) const CODE_MAX_MEMBERS: u64 = 30019;
/// Discord's JSON error code "Maximum number of guilds reached (100)" (the user's).
pub(crate) const CODE_MAX_GUILDS: u64 = 30001;

/// Everything that can go wrong when calling Discord.
///
/// Messages never contain a token, a secret or a request body; the Discord-provided
/// `message` texts they may carry are Discord's own descriptions of the error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscordError {
    /// An input was rejected before any request was sent.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The input that was wrong, e.g. `content`.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// Discord does not know the channel (JSON code 10003).
    #[error("unknown channel")]
    UnknownChannel,
    /// The bot lacks a permission for the action (JSON code 50013).
    #[error("the bot is missing permissions for this action")]
    MissingPermissions,
    /// Adding a member: the user is banned from the guild (JSON code 40007).
    #[error("the user is banned from this guild")]
    BannedFromGuild,
    /// Adding a member: the guild has as many members as Discord allows (JSON code 30019).
    #[error("the guild has reached its maximum number of members")]
    GuildFull,
    /// Adding a member: the user is in as many guilds as Discord allows (JSON code 30001).
    #[error("the user has reached the maximum number of guilds")]
    TooManyGuilds,
    /// Discord rejected fields of the request (JSON code 50035).
    #[error("invalid form body: {}", FieldList(.errors))]
    InvalidFormBody {
        /// Every field error Discord reported, flattened.
        errors: Vec<FieldError>,
    },
    /// Discord answered 429 and the call gave up: an OAuth2 endpoint's 429, or a REST
    /// request that was still answered 429 after four sends (the REST client otherwise
    /// waits out `Retry-After` and re-sends by itself).
    #[error("rate limited by Discord; retry after {retry_after:?}")]
    RateLimited {
        /// How long Discord asked to wait.
        retry_after: Duration,
    },
    /// Discord rejected the credentials (401). The REST client then stops calling
    /// Discord with that bot token: every later call fails with this error at once.
    #[error("Discord rejected the credentials")]
    Unauthorized,
    /// A 404 other than an unknown channel (unknown guild, member, user, …).
    #[error("not found: {message}")]
    NotFound {
        /// Discord's JSON error code, if the body had one.
        code: Option<u64>,
        /// Discord's message.
        message: String,
    },
    /// A 403 other than missing permissions (e.g. 50025, invalid OAuth2 access token).
    #[error("forbidden: {message}")]
    Forbidden {
        /// Discord's JSON error code, if the body had one.
        code: Option<u64>,
        /// Discord's message.
        message: String,
    },
    /// Discord answered 5xx, after every retry.
    #[error("Discord server error (HTTP {status})")]
    Server {
        /// The last HTTP status.
        status: u16,
    },
    /// The request could not be sent or its response not received (connect, timeout, …),
    /// after every retry.
    #[error("could not reach Discord: {0}")]
    Transport(String),
    /// Discord answered success with a body this client could not read.
    #[error("unexpected response from Discord: {0}")]
    Decode(String),
    /// The OAuth2 token endpoint rejected the grant: wrong, expired or reused code, wrong
    /// `code_verifier`, revoked refresh token, or a redirect URI that does not match.
    #[error("OAuth2 grant rejected{}", OptionalDetail(.description.as_deref()))]
    InvalidGrant {
        /// Discord's `error_description`.
        description: Option<String>,
    },
    /// Another OAuth2 error (`invalid_client`, `invalid_request`, `unsupported_grant_type`, …).
    #[error("OAuth2 error {error} (HTTP {status}){}", OptionalDetail(.description.as_deref()))]
    OAuth {
        /// HTTP status.
        status: u16,
        /// The OAuth2 `error` code.
        error: String,
        /// Discord's `error_description`.
        description: Option<String>,
    },
    /// Any other error response.
    #[error("Discord error (HTTP {}, code {}): {message}", OptionalNumber(.status.map(u64::from)), OptionalNumber(*.code))]
    Other {
        /// HTTP status, when known.
        status: Option<u16>,
        /// Discord's JSON error code, if the body had one.
        code: Option<u64>,
        /// Discord's message, or a description of the unreadable body.
        message: String,
    },
}

/// One field error of an Invalid Form Body (50035) response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `permission_overwrites.0.id`.
    pub path: String,
    /// Discord's error code, e.g. `BASE_TYPE_BAD_LENGTH`.
    pub code: String,
    /// Discord's message.
    pub message: String,
}

struct FieldList<'a>(&'a [FieldError]);

impl fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no field details");
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {} ({})", e.path, e.message, e.code)?;
        }
        Ok(())
    }
}

struct OptionalDetail<'a>(Option<&'a str>);

impl fmt::Display for OptionalDetail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, ": {d}"),
            None => Ok(()),
        }
    }
}

struct OptionalNumber(Option<u64>);

impl fmt::Display for OptionalNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("none"),
        }
    }
}

impl DiscordError {
    /// A validation error for `field`.
    pub(crate) fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Validation {
            field,
            reason: reason.into(),
        }
    }

    /// Whether the failure is transient, so that the same request may be sent again:
    /// 5xx and network errors. No other 4xx is ever retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport(_))
    }

    /// Maps an error response of Discord's REST API — status and raw body — onto a variant.
    /// `retry_after` is the `Retry-After` header, used when the body has none.
    pub(crate) fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let code = json
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_u64);
        let message = json
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("HTTP {status}"), str::to_owned);
        match (status, code) {
            (401, _) => Self::Unauthorized,
            (429, _) => {
                let from_body = json
                    .as_ref()
                    .and_then(|v| v.get("retry_after"))
                    .and_then(Value::as_f64)
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64);
                Self::RateLimited {
                    retry_after: from_body.or(retry_after).unwrap_or(Duration::from_secs(1)),
                }
            }
            (_, Some(CODE_UNKNOWN_CHANNEL)) => Self::UnknownChannel,
            (_, Some(CODE_MISSING_PERMISSIONS)) => Self::MissingPermissions,
            (_, Some(CODE_BANNED)) => Self::BannedFromGuild,
            (_, Some(CODE_MAX_MEMBERS)) => Self::GuildFull,
            (_, Some(CODE_MAX_GUILDS)) => Self::TooManyGuilds,
            (_, Some(CODE_INVALID_FORM_BODY)) => Self::InvalidFormBody {
                errors: json
                    .as_ref()
                    .and_then(|v| v.get("errors"))
                    .map(flatten_field_errors)
                    .unwrap_or_default(),
            },
            (500..=599, _) => Self::Server { status },
            (404, _) => Self::NotFound { code, message },
            (403, _) => Self::Forbidden { code, message },
            _ => Self::Other {
                status: Some(status),
                code,
                message,
            },
        }
    }
}

/// Flattens Discord's nested `errors` tree (`{"field": {"0": {"_errors": [...]}}}`) into
/// a list of dotted paths with their codes and messages.
pub(crate) fn flatten_field_errors(tree: &Value) -> Vec<FieldError> {
    fn walk(node: &Value, path: &mut Vec<String>, out: &mut Vec<FieldError>) {
        let Some(object) = node.as_object() else {
            return;
        };
        for (key, child) in object {
            if key == "_errors" {
                for e in child.as_array().into_iter().flatten() {
                    out.push(FieldError {
                        path: path.join("."),
                        code: e
                            .get("code")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        message: e
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    });
                }
            } else {
                path.push(key.clone());
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(status: u16, body: &Value) -> DiscordError {
        DiscordError::from_response(status, body.to_string().as_bytes(), None)
    }

    #[test]
    fn maps_discord_json_codes() {
        assert_eq!(
            map(404, &json!({"message": "Unknown Channel", "code": 10003})),
            DiscordError::UnknownChannel
        );
        assert_eq!(
            map(
                403,
                &json!({"message": "Missing Permissions", "code": 50013})
            ),
            DiscordError::MissingPermissions
        );
        assert_eq!(
            map(401, &json!({"message": "401: Unauthorized", "code": 0})),
            DiscordError::Unauthorized
        );
        assert_eq!(
            map(404, &json!({"message": "Unknown Guild", "code": 10004})),
            DiscordError::NotFound {
                code: Some(10004),
                message: "Unknown Guild".into()
            }
        );
        assert_eq!(
            map(
                403,
                &json!({"message": "Invalid OAuth2 access token", "code": 50025})
            ),
            DiscordError::Forbidden {
                code: Some(50025),
                message: "Invalid OAuth2 access token".into()
            }
        );
        assert_eq!(
            map(
                403,
                &json!({"message": "The user is banned from this guild", "code": 40007})
            ),
            DiscordError::BannedFromGuild
        );
        assert_eq!(
            map(
                400,
                &json!({"message": "Maximum number of server members reached", "code": 30019})
            ),
            DiscordError::GuildFull
        );
        assert_eq!(
            map(
                400,
                &json!({"message": "Maximum number of guilds reached (100)", "code": 30001})
            ),
            DiscordError::TooManyGuilds
        );
        assert_eq!(
            map(502, &json!({"message": "502: Bad Gateway", "code": 0})),
            DiscordError::Server { status: 502 }
        );
        assert_eq!(
            DiscordError::from_response(503, b"<html>busy</html>", None),
            DiscordError::Server { status: 503 }
        );
        assert_eq!(
            map(
                400,
                &json!({"message": "Cannot send an empty message", "code": 50006})
            ),
            DiscordError::Other {
                status: Some(400),
                code: Some(50006),
                message: "Cannot send an empty message".into()
            }
        );
    }

    #[test]
    fn maps_rate_limits_from_body_or_header() {
        let body =
            json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false});
        assert_eq!(
            map(429, &body),
            DiscordError::RateLimited {
                retry_after: Duration::from_millis(1500)
            }
        );
        assert_eq!(
            DiscordError::from_response(429, b"", Some(Duration::from_secs(3))),
            DiscordError::RateLimited {
                retry_after: Duration::from_secs(3)
            }
        );
    }

    #[test]
    fn flattens_form_errors() {
        let body = json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {
                "name": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}]},
                "permission_overwrites": {"0": {"id": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}}}
            }
        });
        let DiscordError::InvalidFormBody { errors } = map(400, &body) else {
            panic!("not an invalid form body");
        };
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["name", "permission_overwrites.0.id"]);
        assert_eq!(errors[0].code, "BASE_TYPE_BAD_LENGTH");
        assert_eq!(errors[1].message, "This field is required");
        let text = DiscordError::InvalidFormBody { errors }.to_string();
        assert!(text.contains("permission_overwrites.0.id"), "{text}");
    }

    #[test]
    fn only_server_and_transport_errors_are_retryable() {
        assert!(DiscordError::Server { status: 500 }.is_retryable());
        assert!(DiscordError::Transport("reset".into()).is_retryable());
        assert!(!DiscordError::Unauthorized.is_retryable());
        assert!(!DiscordError::UnknownChannel.is_retryable());
        assert!(
            !DiscordError::RateLimited {
                retry_after: Duration::ZERO
            }
            .is_retryable()
        );
    }
}
