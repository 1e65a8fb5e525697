//! Hub → browser messages (docs/spec.md §4 and §6): event envelopes, the auth ack, errors.
//!
//! Every message carries `"v": 1` and a `type`; parsing rejects any other version
//! and any unknown type, so a client built on these types fails loudly rather than
//! misreading a future, incompatible protocol.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::{ContractError, ErrorBody, Event, IceServer, RtcSignalEnvelope, Snowflake};

/// The protocol version, always `1` on the wire; any other number is rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Version;

impl Version {
    /// The only version this contract speaks.
    pub const NUMBER: u64 = 1;
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(Self::NUMBER)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Version;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("protocol version 1")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Version, E> {
                if v == Version::NUMBER {
                    Ok(Version)
                } else {
                    Err(E::custom("unsupported protocol version (expected 1)"))
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Version, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("unsupported protocol version (expected 1)"))
                    .and_then(|v| self.visit_u64(v))
            }
        }

        deserializer.deserialize_u64(Visitor)
    }
}

/// On the wire and in the JSON Schema: the integer `1`, nothing else.
impl schemars::JsonSchema for Version {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Version".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The protocol version, always 1.",
            "type": "integer",
            "const": Self::NUMBER,
        })
    }
}

/// Any message the hub sends to a browser, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    /// A contract event with its per-guild sequence number.
    Event(EventEnvelope),
    /// The answer to a successful `auth`.
    Ack(Ack),
    /// An error; the hub closes the socket after sending it, except after a
    /// refused `rtc.signal` (docs/spec.md §12).
    Error(ErrorEnvelope),
    /// WebRTC signalling from another member of the same voice channel (docs/spec.md §12).
    #[serde(rename = "rtc.signal")]
    RtcSignal(RtcSignalEnvelope),
}

impl ServerMessage {
    /// Parses one text frame from the hub.
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        serde_json::from_str(text).map_err(|e| ContractError::from_json(&e))
    }

    /// The JSON text of this message.
    ///
    /// # Panics
    ///
    /// Never: every field serialises infallibly to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }
}

/// `{"v":1,"type":"event","event":…,"payload":…,"ts":…,"seq":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope {
    /// Always 1.
    pub v: Version,
    /// The event name and payload, flattened into the envelope.
    #[serde(flatten)]
    pub event: Event,
    /// Milliseconds since the Unix epoch when the hub accepted the event.
    pub ts: u64,
    /// Per-guild sequence number, strictly increasing by one.
    pub seq: u64,
}

/// The only acknowledgement event so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AckEvent {
    /// Authentication succeeded.
    #[serde(rename = "auth.ok")]
    AuthOk,
}

/// `{"v":1,"type":"ack","event":"auth.ok","guildId":…,"ts":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// Always 1.
    pub v: Version,
    /// What is acknowledged.
    pub event: AckEvent,
    /// The guild whose events this socket receives.
    pub guild_id: Snowflake,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// Present only when the client sent `lastSeq`: `true` when every missed event
    /// follows, `false` when the gap is older than the replay window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    /// The STUN/TURN servers for `RTCPeerConnection` (docs/spec.md §12), with TURN
    /// credentials minted for this user; empty when the hub has none.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
}

/// `{"v":1,"type":"error","error":{"code":…,"message":…},"ts":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorEnvelope {
    /// Always 1.
    pub v: Version,
    /// What went wrong.
    pub error: ErrorBody,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, VoiceJoined};
    use serde_json::json;

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    #[test]
    fn event_envelope_matches_the_spec_example() {
        let spec = json!({"v":1,"type":"event","event":"voice.joined",
            "payload":{"guildId":"1","channelId":"2","userId":"3"},"ts":1_730_000_000_000_u64,"seq":17});
        let message = ServerMessage::Event(EventEnvelope {
            v: Version,
            event: Event::VoiceJoined(VoiceJoined {
                guild_id: id(1),
                channel_id: id(2),
                user_id: id(3),
            }),
            ts: 1_730_000_000_000,
            seq: 17,
        });
        assert_eq!(serde_json::to_value(&message).unwrap(), spec);
        assert_eq!(ServerMessage::parse(&spec.to_string()).unwrap(), message);
    }

    #[test]
    fn ack_and_error_shapes() {
        let ack = ServerMessage::Ack(Ack {
            v: Version,
            event: AckEvent::AuthOk,
            guild_id: id(9),
            ts: 5,
            resumed: None,
            ice_servers: Vec::new(),
        });
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            json!({"v":1,"type":"ack","event":"auth.ok","guildId":"9","ts":5,"iceServers":[]})
        );
        let error = ServerMessage::Error(ErrorEnvelope {
            v: Version,
            error: ErrorBody {
                code: ErrorCode::Unauthorized,
                message: "token expired".into(),
            },
            ts: 5,
        });
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"v":1,"type":"error","error":{"code":"UNAUTHORIZED","message":"token expired"},"ts":5})
        );
    }

    #[test]
    fn other_versions_and_types_are_rejected() {
        for text in [
            r#"{"v":2,"type":"ack","event":"auth.ok","guildId":"9","ts":5}"#,
            r#"{"v":0,"type":"ack","event":"auth.ok","guildId":"9","ts":5}"#,
            r#"{"v":-1,"type":"ack","event":"auth.ok","guildId":"9","ts":5}"#,
            r#"{"v":"1","type":"ack","event":"auth.ok","guildId":"9","ts":5}"#,
            r#"{"type":"ack","event":"auth.ok","guildId":"9","ts":5}"#,
            r#"{"v":1,"type":"nack","event":"auth.ok","guildId":"9","ts":5}"#,
            r#"{"v":1,"type":"ack","event":"auth.maybe","guildId":"9","ts":5}"#,
        ] {
            assert!(ServerMessage::parse(text).is_err(), "{text}");
        }
    }
}
