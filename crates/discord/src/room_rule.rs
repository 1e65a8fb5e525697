//! What makes a voice channel a room (docs/spec.md §7.1): `@everyone` may view it.
//!
//! Discord decides what a role may do in a channel from the role's guild
//! permissions and then the channel's overwrites; twilight-util's
//! [`PermissionCalculator`] implements that algorithm, so this module only feeds
//! it the two inputs the rule names: the `@everyone` role's guild permissions and
//! the channel's own overwrite for `@everyone` (the role whose id is the guild id).
//! A category's overwrites count only as Discord copies them onto a synced
//! channel, so the parent is never consulted.
//!
//! The worker's tracker applies it to the gateway's channels (its view and events
//! only ever contain rooms); the hub's room list without a worker applies it to the
//! channels read over REST ([`is_room`]). One rule, here, for both.

use twilight_model::channel::ChannelType;
use twilight_model::channel::permission_overwrite::{PermissionOverwrite, PermissionOverwriteType};
use twilight_model::guild::Permissions;
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;
use twilight_util::permission_calculator::PermissionCalculator;

use crate::model::{Channel, ChannelKind};
use crate::twilight_map::{id, overwrite_to};

/// What `@everyone` is assumed to hold in the guild while the worker has not seen
/// the role (a worker restarted onto a resumed session sees no `GUILD_CREATE`):
/// Discord's default, which lets everyone view channels. The next `GUILD_CREATE`
/// or `GUILD_ROLE_UPDATE` replaces it.
pub const ASSUMED_EVERYONE: Permissions = Permissions::VIEW_CHANNEL;

/// Whether `@everyone` of `guild_id`, holding `everyone` in the guild, may view a
/// voice channel with these overwrites (only the `@everyone` one counts).
pub fn everyone_may_view(
    guild_id: Id<GuildMarker>,
    everyone: Permissions,
    overwrites: &[PermissionOverwrite],
) -> bool {
    let own = everyone_overwrite(guild_id, overwrites);
    // Nobody's own roles or member overwrite take part: the subject is the role.
    PermissionCalculator::new(guild_id, guild_id.cast(), everyone, &[])
        .in_channel(ChannelType::GuildVoice, own.as_slice())
        .contains(Permissions::VIEW_CHANNEL)
}

/// The channel's overwrite for `@everyone`, if it has one.
pub fn everyone_overwrite(
    guild_id: Id<GuildMarker>,
    overwrites: &[PermissionOverwrite],
) -> Option<PermissionOverwrite> {
    overwrites
        .iter()
        .find(|o| o.kind == PermissionOverwriteType::Role && o.id.get() == guild_id.get())
        .copied()
}

/// Whether a channel read over REST is a room of `guild_id`: a voice channel of
/// that guild `@everyone` may view, holding `everyone` in the guild
/// ([`ASSUMED_EVERYONE`] when the caller does not know the role).
pub fn is_room(
    channel: &Channel,
    guild_id: coven_contract::Snowflake,
    everyone: Permissions,
) -> bool {
    let overwrites: Vec<PermissionOverwrite> = channel
        .permission_overwrites
        .iter()
        .map(overwrite_to)
        .collect();
    channel.kind == ChannelKind::Voice
        && channel.guild_id == Some(guild_id)
        && everyone_may_view(id(guild_id), everyone, &overwrites)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: u64 = 1000;

    fn overwrite(
        id: u64,
        kind: PermissionOverwriteType,
        allow: Permissions,
        deny: Permissions,
    ) -> PermissionOverwrite {
        PermissionOverwrite {
            allow,
            deny,
            id: Id::new(id),
            kind,
        }
    }

    fn visible(everyone: Permissions, overwrites: &[PermissionOverwrite]) -> bool {
        everyone_may_view(Id::new(GUILD), everyone, overwrites)
    }

    #[test]
    fn the_role_then_its_overwrite() {
        let none = Permissions::empty();
        let view = Permissions::VIEW_CHANNEL;
        let role = PermissionOverwriteType::Role;
        assert!(visible(view | Permissions::CONNECT, &[]));
        assert!(!visible(Permissions::CONNECT, &[]));
        assert!(!visible(view, &[overwrite(GUILD, role, none, view)]));
        assert!(visible(none, &[overwrite(GUILD, role, view, none)]));
        // Allow wins over deny within one overwrite (Discord applies deny, then allow).
        assert!(visible(none, &[overwrite(GUILD, role, view, view)]));
    }

    #[test]
    fn other_roles_and_members_do_not_count() {
        let none = Permissions::empty();
        let view = Permissions::VIEW_CHANNEL;
        let hidden_for_staff = [
            overwrite(GUILD, PermissionOverwriteType::Role, none, view),
            overwrite(77, PermissionOverwriteType::Role, view, none),
            overwrite(GUILD, PermissionOverwriteType::Member, view, none),
        ];
        assert!(!visible(view, &hidden_for_staff));
        let denied_elsewhere = [
            overwrite(77, PermissionOverwriteType::Role, none, view),
            overwrite(78, PermissionOverwriteType::Member, none, view),
        ];
        assert!(visible(view, &denied_elsewhere));
    }

    /// As the calculator has it: ADMINISTRATOR on `@everyone` overrides every overwrite.
    #[test]
    fn administrator_on_everyone_sees_everything() {
        let deny = [overwrite(
            GUILD,
            PermissionOverwriteType::Role,
            Permissions::empty(),
            Permissions::VIEW_CHANNEL,
        )];
        assert!(visible(Permissions::ADMINISTRATOR, &deny));
    }

    #[test]
    fn a_rest_channel_is_a_room_when_a_visible_voice_channel_of_the_guild() {
        use coven_contract::Snowflake;

        use crate::model::{OverwriteKind, PermissionOverwrite as Overwrite};
        let guild = Snowflake::new(GUILD).unwrap();
        let mut channel = Channel {
            id: Snowflake::new(5).unwrap(),
            guild_id: Some(guild),
            kind: ChannelKind::Voice,
            name: "Table".into(),
            parent_id: None,
            user_limit: Some(4),
            permission_overwrites: Vec::new(),
        };
        assert!(is_room(&channel, guild, ASSUMED_EVERYONE));
        assert!(!is_room(
            &channel,
            Snowflake::new(9).unwrap(),
            ASSUMED_EVERYONE
        ));
        channel.permission_overwrites.push(Overwrite {
            id: guild,
            kind: OverwriteKind::Role,
            allow: 0,
            deny: Permissions::VIEW_CHANNEL.bits(),
        });
        assert!(!is_room(&channel, guild, ASSUMED_EVERYONE));
        channel.permission_overwrites.clear();
        channel.kind = ChannelKind::Text;
        assert!(!is_room(&channel, guild, ASSUMED_EVERYONE));
    }
}
