//! The contract events (docs/spec.md §4) and their payloads.
//!
//! [`Event`] serialises as `{"event": "<name>", "payload": {…}}`, which is exactly
//! the internal webhook body (docs/spec.md §5); the hub wraps the same value in an
//! [`EventEnvelope`](crate::EventEnvelope) for browsers. Payload fields are
//! camelCase on the wire. Unknown event names are rejected; unknown payload fields
//! are ignored, because v1 may grow new fields but never renames or removes one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits::WEBHOOK_BODY_MAX_BYTES;
use crate::signature::Verified;
use crate::{ContractError, RoomName, Snowflake, UserLimit};

/// One contract event, tagged by its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", content = "payload")]
pub enum Event {
    /// A voice channel (a room) was created in the guild.
    #[serde(rename = "room.created")]
    RoomCreated(RoomCreated),
    /// A room was deleted.
    #[serde(rename = "room.deleted")]
    RoomDeleted(RoomDeleted),
    /// A user entered a room.
    #[serde(rename = "voice.joined")]
    VoiceJoined(VoiceJoined),
    /// A user left a room; `channelId` is the room left.
    #[serde(rename = "voice.left")]
    VoiceLeft(VoiceLeft),
    /// A user's voice flags changed while staying in the same room.
    #[serde(rename = "voice.state")]
    VoiceState(VoiceStateChanged),
    /// A user started or stopped speaking, as heard by the bot's voice connection.
    #[serde(rename = "voice.speaking")]
    VoiceSpeaking(VoiceSpeaking),
}

impl Event {
    /// Every event name of contract v1.
    pub const NAMES: [&'static str; 6] = [
        "room.created",
        "room.deleted",
        "voice.joined",
        "voice.left",
        "voice.state",
        "voice.speaking",
    ];

    /// The event's wire name, e.g. `voice.joined`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::RoomCreated(_) => "room.created",
            Self::RoomDeleted(_) => "room.deleted",
            Self::VoiceJoined(_) => "voice.joined",
            Self::VoiceLeft(_) => "voice.left",
            Self::VoiceState(_) => "voice.state",
            Self::VoiceSpeaking(_) => "voice.speaking",
        }
    }

    /// The guild the event belongs to.
    pub const fn guild_id(&self) -> Snowflake {
        match self {
            Self::RoomCreated(p) => p.guild_id,
            Self::RoomDeleted(p) => p.guild_id,
            Self::VoiceJoined(p) => p.guild_id,
            Self::VoiceLeft(p) => p.guild_id,
            Self::VoiceState(p) => p.guild_id,
            Self::VoiceSpeaking(p) => p.guild_id,
        }
    }

    /// The room (voice channel) the event is about.
    pub const fn channel_id(&self) -> Snowflake {
        match self {
            Self::RoomCreated(p) => p.channel_id,
            Self::RoomDeleted(p) => p.channel_id,
            Self::VoiceJoined(p) => p.channel_id,
            Self::VoiceLeft(p) => p.channel_id,
            Self::VoiceState(p) => p.channel_id,
            Self::VoiceSpeaking(p) => p.channel_id,
        }
    }

    /// The webhook body for this event: `{"event": …, "payload": …}`.
    ///
    /// # Panics
    ///
    /// Never: every field serialises infallibly to JSON.
    pub fn to_webhook_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("contract events always serialise")
    }

    /// Parses a webhook body whose signature has been verified.
    ///
    /// Taking [`Verified`] rather than bytes makes "never parse an unverified body"
    /// a property the compiler checks: the only way to get one is
    /// [`Verifier::verify`](crate::signature::Verifier::verify).
    pub fn from_verified_body(body: Verified<'_>) -> Result<Self, ContractError> {
        let bytes = body.body();
        if bytes.len() > WEBHOOK_BODY_MAX_BYTES {
            return Err(ContractError::TooLarge {
                limit: WEBHOOK_BODY_MAX_BYTES,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| ContractError::from_json(&e))
    }
}

/// Payload of `room.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomCreated {
    /// The new voice channel.
    pub channel_id: Snowflake,
    /// Its name.
    pub name: RoomName,
    /// The guild it was created in.
    pub guild_id: Snowflake,
    /// The category it sits under, or `null`.
    pub parent_id: Option<Snowflake>,
    /// How many users may join (0 = unlimited).
    pub user_limit: UserLimit,
}

/// Payload of `room.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomDeleted {
    /// The deleted voice channel.
    pub channel_id: Snowflake,
    /// Its guild.
    pub guild_id: Snowflake,
}

/// Payload of `voice.joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceJoined {
    /// The guild.
    pub guild_id: Snowflake,
    /// The room joined.
    pub channel_id: Snowflake,
    /// Who joined.
    pub user_id: Snowflake,
}

/// Payload of `voice.left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceLeft {
    /// The guild.
    pub guild_id: Snowflake,
    /// The room left (not the one moved to, if any).
    pub channel_id: Snowflake,
    /// Who left.
    pub user_id: Snowflake,
}

/// The voice flags Discord reports for a member in a voice channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::struct_excessive_bools)] // These are Discord's own independent flags.
pub struct VoiceFlags {
    /// Muted by themselves.
    pub self_mute: bool,
    /// Deafened by themselves.
    pub self_deaf: bool,
    /// Muted by the server.
    pub mute: bool,
    /// Deafened by the server.
    pub deaf: bool,
    /// Camera on.
    pub self_video: bool,
    /// Streaming (Go Live).
    pub self_stream: bool,
    /// Suppressed (e.g. not a speaker in a stage channel).
    pub suppress: bool,
}

/// Payload of `voice.state`: the full set of flags after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceStateChanged {
    /// The guild.
    pub guild_id: Snowflake,
    /// The room the user is in.
    pub channel_id: Snowflake,
    /// Whose flags changed.
    pub user_id: Snowflake,
    /// The flags now.
    #[serde(flatten)]
    pub flags: VoiceFlags,
}

/// Payload of `voice.speaking`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceSpeaking {
    /// The guild.
    pub guild_id: Snowflake,
    /// The room the bot hears the user in.
    pub channel_id: Snowflake,
    /// Who started or stopped speaking.
    pub user_id: Snowflake,
    /// Whether they are speaking now.
    pub speaking: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    #[test]
    fn webhook_body_shapes_match_the_spec() {
        let joined = Event::VoiceJoined(VoiceJoined {
            guild_id: id(1),
            channel_id: id(2),
            user_id: id(3),
        });
        assert_eq!(
            serde_json::to_value(&joined).unwrap(),
            json!({"event": "voice.joined", "payload": {"guildId": "1", "channelId": "2", "userId": "3"}})
        );

        let created = Event::RoomCreated(RoomCreated {
            channel_id: id(2),
            name: RoomName::try_from("table one").unwrap(),
            guild_id: id(1),
            parent_id: None,
            user_limit: UserLimit::try_from(4).unwrap(),
        });
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            json!({"event": "room.created", "payload": {
                "channelId": "2", "name": "table one", "guildId": "1", "parentId": null, "userLimit": 4}})
        );

        let state = Event::VoiceState(VoiceStateChanged {
            guild_id: id(1),
            channel_id: id(2),
            user_id: id(3),
            flags: VoiceFlags {
                self_mute: true,
                ..VoiceFlags::default()
            },
        });
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            json!({"event": "voice.state", "payload": {
                "guildId": "1", "channelId": "2", "userId": "3", "selfMute": true, "selfDeaf": false,
                "mute": false, "deaf": false, "selfVideo": false, "selfStream": false, "suppress": false}})
        );
    }

    #[test]
    fn names_are_consistent() {
        for name in Event::NAMES {
            let payload = if name.starts_with("room.") {
                json!({"channelId": "2", "guildId": "1", "name": "x", "parentId": null, "userLimit": 0})
            } else {
                json!({"guildId": "1", "channelId": "2", "userId": "3", "speaking": true,
                    "selfMute": false, "selfDeaf": false, "mute": false, "deaf": false,
                    "selfVideo": false, "selfStream": false, "suppress": false})
            };
            let event: Event =
                serde_json::from_value(json!({"event": name, "payload": payload})).unwrap();
            assert_eq!(event.name(), name);
            assert_eq!(event.guild_id(), id(1));
            assert_eq!(event.channel_id(), id(2));
        }
    }

    #[test]
    fn unknown_events_and_bad_payloads_are_rejected() {
        let bad = [
            json!({"event": "voice.teleported", "payload": {}}),
            json!({"event": "voice.joined"}),
            json!({"event": "voice.joined", "payload": {"guildId": 1, "channelId": "2", "userId": "3"}}),
            json!({"event": "voice.joined", "payload": {"guildId": "1", "channelId": "2"}}),
            json!({"event": "room.created", "payload": {"channelId": "2", "guildId": "1", "name": "x", "parentId": null, "userLimit": 100}}),
            json!({"payload": {"guildId": "1", "channelId": "2", "userId": "3"}}),
        ];
        for value in bad {
            assert!(
                serde_json::from_value::<Event>(value.clone()).is_err(),
                "{value}"
            );
        }
    }

    #[test]
    fn unknown_payload_fields_are_ignored() {
        let event: Event = serde_json::from_value(json!({"event": "voice.left",
            "payload": {"guildId": "1", "channelId": "2", "userId": "3", "future": [1, 2]}}))
        .unwrap();
        assert_eq!(event.name(), "voice.left");
    }
}
