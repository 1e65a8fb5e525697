//! Webcams at the table (docs/spec.md §12): the WebRTC signalling relayed by the
//! hub and the ICE servers handed to browsers in `auth.ok`.
//!
//! The hub never looks inside `data` (an SDP offer/answer or an ICE candidate,
//! whatever the two browsers agreed on); it only checks that it is a JSON object
//! and that the whole message fits the 16 KiB limit
//! ([`crate::limits::RTC_SIGNAL_MAX_BYTES`]), and relays it while both users are
//! in the named voice channel.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Snowflake, Version};

/// The free-form body of a signal: a JSON object.
pub type RtcData = serde_json::Map<String, serde_json::Value>;

/// Browser → hub: `{"type":"rtc.signal","to":…,"channelId":…,"data":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RtcSignal {
    /// The user the signal is for.
    pub to: Snowflake,
    /// The voice channel both users must be in.
    pub channel_id: Snowflake,
    /// An SDP offer/answer or an ICE candidate.
    pub data: RtcData,
}

/// Hub → browser: `{"v":1,"type":"rtc.signal","from":…,"channelId":…,"data":{…},"ts":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RtcSignalEnvelope {
    /// Always 1.
    pub v: Version,
    /// The user who sent the signal.
    pub from: Snowflake,
    /// The voice channel both users are in.
    pub channel_id: Snowflake,
    /// The sender's `data`, unchanged.
    pub data: RtcData,
    /// Milliseconds since the Unix epoch when the hub relayed it.
    pub ts: u64,
}

/// One entry of `auth.ok`'s `iceServers`, in the shape of WebRTC's `RTCIceServer`:
/// STUN/TURN URLs and, for TURN, short-lived credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// The TURN REST API user name, `<unix expiry>:<user id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// base64(HMAC-SHA1(`TURN_SECRET`, username)): valid until the expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential opens the TURN server to whoever holds it: keep it out of logs.
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMessage, ServerMessage};
    use serde_json::json;

    #[test]
    fn signal_shapes_match_the_spec() {
        let client = json!({"type":"rtc.signal","to":"3","channelId":"2","data":{"sdp":"v=0","type":"offer"}});
        let ClientMessage::RtcSignal(signal) = ClientMessage::parse(&client.to_string()).unwrap()
        else {
            panic!("an rtc.signal");
        };
        assert_eq!(signal.to.get(), 3);
        assert_eq!(signal.channel_id.get(), 2);
        assert_eq!(signal.data["type"], "offer");
        assert_eq!(
            serde_json::to_value(ClientMessage::RtcSignal(signal.clone())).unwrap(),
            client
        );
        let relayed = ServerMessage::RtcSignal(RtcSignalEnvelope {
            v: Version,
            from: Snowflake::new(4).unwrap(),
            channel_id: signal.channel_id,
            data: signal.data,
            ts: 5,
        });
        let wire = json!({"v":1,"type":"rtc.signal","from":"4","channelId":"2","data":{"sdp":"v=0","type":"offer"},"ts":5});
        assert_eq!(serde_json::to_value(&relayed).unwrap(), wire);
        assert_eq!(ServerMessage::parse(&wire.to_string()).unwrap(), relayed);
    }

    #[test]
    fn ice_server_omits_absent_credentials_and_hides_them_in_debug() {
        let stun = IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
        };
        assert_eq!(
            serde_json::to_value(&stun).unwrap(),
            json!({"urls":["stun:127.0.0.1:3478"]})
        );
        let turn = IceServer {
            credential: Some("c2VjcmV0".into()),
            username: Some("1:2".into()),
            ..stun
        };
        assert!(!format!("{turn:?}").contains("c2VjcmV0"));
    }
}
