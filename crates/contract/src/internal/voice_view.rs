//! The voice view: every room of the guild and who is in it, as the worker's
//! tracker knows it.
//!
//! The worker keeps it durably (its state file and, in a pair, Redis) so that a
//! restarted worker still knows who to report as leaving, and serves it signed at
//! [`VOICE_VIEW_PATH`] so the hub can give browsers a snapshot. Its JSON is
//!
//! ```json
//! {"rooms":{"<channelId>":{"name":"…","parentId":null,"userLimit":0}},
//!  "members":{"<userId>":{"channelId":"…","flags":{"selfMute":false,…}}}}
//! ```
//!
//! Writing always produces every field (stored views of older workers must keep
//! loading, so the shape never changes). Reading is lenient where the hub always
//! was: missing `rooms`/`members`, a missing or `null` `parentId`, `userLimit`
//! (unlimited) or `flags` (all off) are accepted. A name or limit Discord would not
//! accept is refused, like any malformed view.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{RoomName, Snowflake, UserLimit, VoiceFlags};

/// Where the worker serves the view: `GET {worker}/voice-view`, the empty body
/// signed with [`sign_request`](super::sign_request).
pub const VOICE_VIEW_PATH: &str = "/voice-view";

/// The name a voice channel without a usable one is shown with.
const FALLBACK_ROOM_NAME: &str = "voice";

/// A voice channel of the guild: a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceRoom {
    /// The channel's name.
    pub name: RoomName,
    /// Its category, if any.
    #[serde(default)]
    pub parent_id: Option<Snowflake>,
    /// Its user limit (0 = unlimited; a missing or `null` limit reads as 0).
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_limit: UserLimit,
}

impl VoiceRoom {
    /// A room from what Discord says of a voice channel: a missing or invalid name
    /// reads as `"voice"`, a limit above 99 as 99, none as unlimited.
    pub fn from_channel(
        name: Option<String>,
        parent_id: Option<Snowflake>,
        user_limit: Option<u32>,
    ) -> Self {
        let name = name
            .and_then(|name| RoomName::try_from(name).ok())
            .unwrap_or_else(fallback_name);
        let limit = user_limit.map_or(0, |limit| {
            u8::try_from(limit.min(u32::from(crate::limits::USER_LIMIT_MAX))).unwrap_or(0)
        });
        Self {
            name,
            parent_id,
            user_limit: UserLimit::try_from(limit).unwrap_or_default(),
        }
    }
}

fn fallback_name() -> RoomName {
    RoomName::try_from(FALLBACK_ROOM_NAME).expect("a valid name")
}

/// Where a member is and with which flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceMember {
    /// The room the member is in.
    pub channel_id: Snowflake,
    /// Mute, deafen, video, … (missing or `null`: all off).
    #[serde(default, deserialize_with = "null_as_default")]
    pub flags: VoiceFlags,
}

/// The whole view: rooms by channel id, members in a room by user id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceView {
    /// Voice channels by id.
    #[serde(default)]
    pub rooms: BTreeMap<Snowflake, VoiceRoom>,
    /// Users in a room, by user id.
    #[serde(default)]
    pub members: BTreeMap<Snowflake, VoiceMember>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view as workers have always written it (state files and Redis hold this).
    const STORED: &str = concat!(
        r#"{"rooms":{"5":{"name":"Table 1","parentId":"4","userLimit":4},"#,
        r#""6":{"name":"Table 2","parentId":null,"userLimit":0}},"#,
        r#""members":{"9":{"channelId":"5","flags":{"selfMute":true,"selfDeaf":false,"#,
        r#""mute":false,"deaf":false,"selfVideo":false,"selfStream":true,"suppress":false}}}}"#,
    );

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    fn stored() -> VoiceView {
        let mut view = VoiceView::default();
        view.rooms.insert(
            id(5),
            VoiceRoom {
                name: RoomName::try_from("Table 1").unwrap(),
                parent_id: Some(id(4)),
                user_limit: UserLimit::try_from(4).unwrap(),
            },
        );
        view.rooms.insert(
            id(6),
            VoiceRoom {
                name: RoomName::try_from("Table 2").unwrap(),
                parent_id: None,
                user_limit: UserLimit::UNLIMITED,
            },
        );
        view.members.insert(
            id(9),
            VoiceMember {
                channel_id: id(5),
                flags: VoiceFlags {
                    self_mute: true,
                    self_stream: true,
                    ..VoiceFlags::default()
                },
            },
        );
        view
    }

    #[test]
    fn the_stored_shape_is_unchanged() {
        assert_eq!(serde_json::to_string(&stored()).unwrap(), STORED);
        let back: VoiceView = serde_json::from_str(STORED).unwrap();
        assert_eq!(back, stored());
        assert_eq!(serde_json::to_string(&back).unwrap(), STORED);
        assert_eq!(
            serde_json::to_string(&VoiceView::default()).unwrap(),
            r#"{"rooms":{},"members":{}}"#
        );
    }

    /// Moved from the hub's snapshot, which has always read views this way.
    #[test]
    fn reads_nulls_and_missing_fields() {
        let view: VoiceView = serde_json::from_str(
            r#"{"rooms":{"5":{"name":"A","parentId":null,"userLimit":null},"6":{"name":"B"}},
                "members":{"9":{"channelId":"5","flags":null},"10":{"channelId":"6",
                "flags":{"selfMute":true,"selfDeaf":false,"mute":false,"deaf":false,
                "selfVideo":false,"selfStream":false,"suppress":false}}}}"#,
        )
        .unwrap();
        assert_eq!(view.rooms[&id(5)].user_limit, UserLimit::UNLIMITED);
        assert_eq!(view.rooms[&id(6)].parent_id, None);
        assert_eq!(view.members.len(), 2);
        assert_eq!(view.members[&id(9)].flags, VoiceFlags::default());
        assert!(view.members[&id(10)].flags.self_mute);
        assert_eq!(
            serde_json::from_str::<VoiceView>("{}").unwrap(),
            VoiceView::default()
        );
    }

    #[test]
    fn refuses_a_malformed_view() {
        for malformed in [
            r#"{"rooms":[]}"#,
            r#"{"rooms":{"0":{"name":"A"}}}"#,
            r#"{"rooms":{"5":{}}}"#,
            r#"{"rooms":{"5":{"name":""}}}"#,
            r#"{"rooms":{"5":{"name":"A","userLimit":100}}}"#,
            r#"{"members":{"9":{"flags":null}}}"#,
            r#"{"members":{"9":{"channelId":"x"}}}"#,
            r#"{"rooms":{"5":{"name":"A"}},"members":{"9":{"channelId":"5","flags":1}}}"#,
        ] {
            assert!(
                serde_json::from_str::<VoiceView>(malformed).is_err(),
                "{malformed}"
            );
        }
    }

    #[test]
    fn rooms_from_discord_channels() {
        let room = VoiceRoom::from_channel(Some("Table".into()), Some(id(4)), Some(7));
        assert_eq!(room.name.as_str(), "Table");
        assert_eq!(room.parent_id, Some(id(4)));
        assert_eq!(room.user_limit.get(), 7);
        let odd = VoiceRoom::from_channel(Some("  ".into()), None, Some(500));
        assert_eq!(odd.name.as_str(), "voice");
        assert_eq!(odd.user_limit.get(), 99);
        let bare = VoiceRoom::from_channel(None, None, None);
        assert_eq!(bare.name.as_str(), "voice");
        assert_eq!(bare.user_limit, UserLimit::UNLIMITED);
    }
}
