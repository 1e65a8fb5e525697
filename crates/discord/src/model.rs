//! The domain types the REST client takes and returns, so that callers never depend on
//! twilight's models: channels, messages, invites, members and permission overwrites.

use coven_contract::{RoomName, Snowflake, UserLimit};

/// Permission bits used in overwrites (Discord's `permissions` bitfield).
pub mod permissions {
    /// Allows creating invites.
    pub const CREATE_INVITE: u64 = 1 << 0;
    /// Every permission, overriding every channel overwrite.
    pub const ADMINISTRATOR: u64 = 1 << 3;
    /// Allows managing the channel (guild-wide: managing every channel).
    pub const MANAGE_CHANNELS: u64 = 1 << 4;
    /// Allows seeing the channel.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// Allows sending messages.
    pub const SEND_MESSAGES: u64 = 1 << 11;
    /// Allows joining a voice channel.
    pub const CONNECT: u64 = 1 << 20;
    /// Allows speaking in a voice channel.
    pub const SPEAK: u64 = 1 << 21;
    /// Allows using video and screen share.
    pub const STREAM: u64 = 1 << 9;
}

/// What kind of channel a [`Channel`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// A guild text channel (type 0).
    Text,
    /// A guild voice channel (type 2): what Spell Coven calls a room.
    Voice,
    /// A category (type 4).
    Category,
    /// Any other type, with Discord's number.
    Other(u8),
}

impl ChannelKind {
    /// Discord's channel type number.
    pub const fn number(self) -> u8 {
        match self {
            Self::Text => 0,
            Self::Voice => 2,
            Self::Category => 4,
            Self::Other(n) => n,
        }
    }

    /// The kind of a Discord channel type number.
    pub const fn from_number(n: u8) -> Self {
        match n {
            0 => Self::Text,
            2 => Self::Voice,
            4 => Self::Category,
            n => Self::Other(n),
        }
    }
}

/// A guild channel as Discord reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The channel's id.
    pub id: Snowflake,
    /// Its guild (absent for DM channels).
    pub guild_id: Option<Snowflake>,
    /// Its type.
    pub kind: ChannelKind,
    /// Its name (empty for channels without one).
    pub name: String,
    /// Its category.
    pub parent_id: Option<Snowflake>,
    /// The voice user limit (0 = unlimited); `None` for non-voice channels.
    pub user_limit: Option<u32>,
    /// Its permission overwrites.
    pub permission_overwrites: Vec<PermissionOverwrite>,
}

/// Whom a permission overwrite applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverwriteKind {
    /// A role (type 0); the guild id is the `@everyone` role.
    Role,
    /// A member (type 1).
    Member,
}

/// A permission overwrite of a channel: bits allowed and denied for a role or member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PermissionOverwrite {
    /// The role or user id.
    pub id: Snowflake,
    /// Whether `id` is a role or a member.
    pub kind: OverwriteKind,
    /// Allowed permission bits (see [`permissions`]).
    pub allow: u64,
    /// Denied permission bits.
    pub deny: u64,
}

/// What to create with [`crate::DiscordRestClient::create_voice_room`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVoiceRoom {
    /// The channel name (1–100 characters, validated by its type).
    pub name: RoomName,
    /// The category to create it in.
    pub parent_id: Option<Snowflake>,
    /// How many users may join (0 = unlimited, at most 99).
    pub user_limit: UserLimit,
    /// Permission overwrites to create it with.
    pub permission_overwrites: Vec<PermissionOverwrite>,
}

/// A message the bot sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message id.
    pub id: Snowflake,
    /// The channel it was sent to.
    pub channel_id: Snowflake,
    /// Its text.
    pub content: String,
}

/// How an invite is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteOptions {
    /// Lifetime in seconds, 0 (never expires) to 604 800 (7 days). Discord's default is 86 400.
    pub max_age_secs: u32,
    /// How many times it may be used, 0 (unlimited) to 100.
    pub max_uses: u16,
}

impl Default for InviteOptions {
    /// Discord's defaults: one day, unlimited uses.
    fn default() -> Self {
        Self {
            max_age_secs: 86_400,
            max_uses: 0,
        }
    }
}

/// An invite to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The invite code.
    pub code: String,
    /// The channel it leads to.
    pub channel_id: Option<Snowflake>,
    /// Lifetime in seconds (0 = never expires), when reported.
    pub max_age_secs: Option<u64>,
    /// Maximum uses (0 = unlimited), when reported.
    pub max_uses: Option<u64>,
}

impl Invite {
    /// The invite's public link, `https://discord.gg/{code}`.
    pub fn url(&self) -> String {
        format!("https://discord.gg/{}", self.code)
    }
}

/// A member of a guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's user id.
    pub user_id: Snowflake,
    /// The user's unique username.
    pub username: String,
    /// The user's display name.
    pub global_name: Option<String>,
    /// The member's nickname in the guild.
    pub nick: Option<String>,
    /// The member's role ids.
    pub roles: Vec<Snowflake>,
}

/// A guild role, as far as permissions go: `GET /guilds/{guild_id}/roles`. The
/// `@everyone` role's id is the guild's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// The role id.
    pub id: Snowflake,
    /// The permissions it grants guild-wide (see [`permissions`]).
    pub permissions: u64,
}

impl Member {
    /// The name to show: nickname, else display name, else username.
    pub fn display_name(&self) -> &str {
        self.nick
            .as_deref()
            .or(self.global_name.as_deref())
            .unwrap_or(&self.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_kinds_round_trip() {
        for n in 0..=20u8 {
            assert_eq!(ChannelKind::from_number(n).number(), n);
        }
        assert_eq!(ChannelKind::from_number(2), ChannelKind::Voice);
        assert_eq!(ChannelKind::from_number(13), ChannelKind::Other(13));
    }

    #[test]
    fn member_display_name_prefers_nick() {
        let mut m = Member {
            user_id: Snowflake::new(1).unwrap(),
            username: "alice".into(),
            global_name: Some("Alice".into()),
            nick: Some("Al".into()),
            roles: vec![],
        };
        assert_eq!(m.display_name(), "Al");
        m.nick = None;
        assert_eq!(m.display_name(), "Alice");
        m.global_name = None;
        assert_eq!(m.display_name(), "alice");
    }
}
