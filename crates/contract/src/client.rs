//! Browser → hub messages (docs/spec.md §6): `auth`, sent first, and `rtc.signal`,
//! the WebRTC signalling of docs/spec.md §12.
//!
//! Parsing checks the size limits and rejects unknown `type`s, so the hub can
//! answer `INVALID_MESSAGE` without guessing. Every message is held to 4 KiB except
//! `rtc.signal`, whose SDP may take up to the 16 KiB frame limit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ContractError;
use crate::limits::{CLIENT_MESSAGE_MAX_BYTES, RTC_SIGNAL_MAX_BYTES};
use crate::rtc::RtcSignal;

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
    /// WebRTC signalling for another member of the same voice channel (docs/spec.md §12).
    #[serde(rename = "rtc.signal")]
    RtcSignal(RtcSignal),
}

impl ClientMessage {
    /// Parses one text frame from a browser, refusing messages over 4 KiB, except
    /// an `rtc.signal`, which may take 16 KiB.
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        let too_large = |limit| Err(ContractError::TooLarge { limit });
        if text.len() > RTC_SIGNAL_MAX_BYTES {
            return too_large(RTC_SIGNAL_MAX_BYTES);
        }
        match serde_json::from_str(text) {
            Ok(message @ Self::RtcSignal(_)) => Ok(message),
            _ if text.len() > CLIENT_MESSAGE_MAX_BYTES => too_large(CLIENT_MESSAGE_MAX_BYTES),
            parsed => parsed.map_err(|e| ContractError::from_json(&e)),
        }
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
            Self::RtcSignal(signal) => f.debug_tuple("RtcSignal").field(signal).finish(),
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
        let garbage = "x".repeat(5000);
        assert_eq!(
            ClientMessage::parse(&garbage),
            Err(ContractError::TooLarge { limit: 4096 })
        );
    }

    fn signal_of(sdp_len: usize) -> String {
        format!(
            r#"{{"type":"rtc.signal","to":"3","channelId":"2","data":{{"type":"offer","sdp":"{}"}}}}"#,
            "a".repeat(sdp_len)
        )
    }

    #[test]
    fn an_rtc_signal_may_take_16_kib_and_no_more() {
        let big = signal_of(16 * 1024 - 100);
        assert!(big.len() > 4096 && big.len() <= 16 * 1024);
        assert!(matches!(
            ClientMessage::parse(&big),
            Ok(ClientMessage::RtcSignal(_))
        ));
        assert_eq!(
            ClientMessage::parse(&signal_of(16 * 1024)),
            Err(ContractError::TooLarge { limit: 16 * 1024 })
        );
        for bad in [
            r#"{"type":"rtc.signal","to":"3","channelId":"2","data":"offer"}"#,
            r#"{"type":"rtc.signal","to":"x","channelId":"2","data":{}}"#,
            r#"{"type":"rtc.signal","channelId":"2","data":{}}"#,
            r#"{"type":"rtc.signal","to":"3","data":{}}"#,
        ] {
            assert!(
                matches!(ClientMessage::parse(bad), Err(ContractError::Malformed(_))),
                "{bad}"
            );
        }
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
