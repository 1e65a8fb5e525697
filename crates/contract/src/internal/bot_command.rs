//! The bot's voice commands, hub → worker: which command goes to which path, and
//! the one body they all carry.
//!
//! The hub checks the caller and that the channel is a room, then posts
//! [`BotCommandBody`] to [`BotCommand::path`] on the worker, signed with
//! [`sign_request`](super::sign_request). The body is
//! `{"channelId":"…"}` for join and leave and `{"channelId":"…","cue":"…"}` for a
//! cue; the worker ignores fields it does not know. The cue names are the
//! contract's [`Cue`]: the hub sends only those, and the cue travels as its name so
//! that the worker can answer an unknown one with a 400 listing the names.

use serde::{Deserialize, Serialize};

use crate::{Cue, Snowflake};

/// A command the hub forwards to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BotCommand {
    /// The bot joins the room's voice channel: `POST /commands/join`.
    Join,
    /// The bot leaves the room: `POST /commands/leave`.
    Leave,
    /// The bot plays a short cue in the room it is in: `POST /commands/cue`.
    Cue,
}

impl BotCommand {
    /// Every command, in path order.
    pub const ALL: [Self; 3] = [Self::Join, Self::Leave, Self::Cue];

    /// The command's path on the worker, from its root: `/commands/join`, ….
    pub const fn path(self) -> &'static str {
        match self {
            Self::Join => "/commands/join",
            Self::Leave => "/commands/leave",
            Self::Cue => "/commands/cue",
        }
    }

    /// A short, stable name for logs: `join`, `leave` or `cue`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Cue => "cue",
        }
    }
}

/// The body of every bot command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotCommandBody {
    /// The room (voice channel) the command is about.
    pub channel_id: Snowflake,
    /// The cue to play (only for [`BotCommand::Cue`]; left out otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cue: Option<String>,
}

impl BotCommandBody {
    /// The body of a join or a leave.
    pub const fn room(channel_id: Snowflake) -> Self {
        Self {
            channel_id,
            cue: None,
        }
    }

    /// The body of a cue.
    pub fn cue(channel_id: Snowflake, cue: Cue) -> Self {
        Self {
            channel_id,
            cue: Some(cue.name().to_owned()),
        }
    }

    /// The cue this body names, if it names a known one.
    pub fn known_cue(&self) -> Option<Cue> {
        self.cue.as_deref().and_then(Cue::from_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Snowflake {
        Snowflake::new(77).unwrap()
    }

    #[test]
    fn paths() {
        let paths = BotCommand::ALL.map(BotCommand::path);
        assert_eq!(
            paths,
            ["/commands/join", "/commands/leave", "/commands/cue"]
        );
        for command in BotCommand::ALL {
            assert_eq!(command.path(), format!("/commands/{}", command.name()));
        }
    }

    #[test]
    fn bodies_keep_their_shape() {
        let join = serde_json::to_string(&BotCommandBody::room(room())).unwrap();
        assert_eq!(join, r#"{"channelId":"77"}"#);
        let cue = serde_json::to_string(&BotCommandBody::cue(room(), Cue::TurnChime)).unwrap();
        assert_eq!(cue, r#"{"channelId":"77","cue":"turn_chime"}"#);
        for known in Cue::ALL {
            assert_eq!(BotCommandBody::cue(room(), known).known_cue(), Some(known));
        }
        let unknown: BotCommandBody =
            serde_json::from_str(r#"{"channelId":"77","cue":"chime"}"#).unwrap();
        assert_eq!(unknown.known_cue(), None);
    }

    #[test]
    fn bodies_parse_leniently_but_need_a_room() {
        let body: BotCommandBody =
            serde_json::from_str(r#"{"channelId":"77","extra":1,"cue":null}"#).unwrap();
        assert_eq!(body, BotCommandBody::room(room()));
        for malformed in ["{}", r#"{"channelId":"0"}"#, r#"{"channelId":77}"#, "[]"] {
            assert!(
                serde_json::from_str::<BotCommandBody>(malformed).is_err(),
                "{malformed}"
            );
        }
    }
}
