//! Browser → hub messages (docs/spec.md §6). Today there is one: `auth`, sent first.
//!
//! Parsing checks the size limit before looking at the text and rejects unknown
//! `type`s, so the hub can answer `INVALID_MESSAGE` without guessing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ContractError;
use crate::limits::CLIENT_MESSAGE_MAX_BYTES;

/// A message a browser sends over `/api/ws`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMessage {
    /// Authenticate with the app's JWT, optionally resuming after `lastSeq`.
    Auth {
        /// The JWT.
        token: String,
        /// The last `seq` the client saw; events after it are replayed.
        #[serde(rename = "lastSeq", default, skip_serializing_if = "Option::is_none")]
        last_seq: Option<u64>,
    },
}

impl ClientMessage {
    /// Parses one text frame from a browser, refusing frames over 4 KiB.
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        if text.len() > CLIENT_MESSAGE_MAX_BYTES {
            return Err(ContractError::TooLarge {
                limit: CLIENT_MESSAGE_MAX_BYTES,
            });
        }
        serde_json::from_str(text).map_err(|e| ContractError::from_json(&e))
    }
}

impl std::fmt::Debug for ClientMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The token is a credential: keep it out of logs.
            Self::Auth { last_seq, .. } => f
                .debug_struct("Auth")
                .field("token", &"[redacted]")
                .field("last_seq", last_seq)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_with_and_without_last_seq() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"auth","token":"abc"}"#).unwrap(),
            ClientMessage::Auth {
                token: "abc".into(),
                last_seq: None
            }
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"auth","token":"abc","lastSeq":41}"#).unwrap(),
            ClientMessage::Auth {
                token: "abc".into(),
                last_seq: Some(41)
            }
        );
    }

    #[test]
    fn rejects_malformed_unknown_and_oversized() {
        for text in [
            "",
            "not json",
            r#"{"type":"subscribe","token":"abc"}"#,
            r#"{"token":"abc"}"#,
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":42}"#,
            r#"{"type":"auth","token":"abc","lastSeq":-1}"#,
        ] {
            assert!(
                matches!(ClientMessage::parse(text), Err(ContractError::Malformed(_))),
                "{text}"
            );
        }
        let huge = format!(r#"{{"type":"auth","token":"{}"}}"#, "a".repeat(5000));
        assert_eq!(
            ClientMessage::parse(&huge),
            Err(ContractError::TooLarge { limit: 4096 })
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let message = ClientMessage::Auth {
            token: "eyJsecret".into(),
            last_seq: Some(3),
        };
        assert!(!format!("{message:?}").contains("eyJsecret"));
    }
}
