//! Discord's exact JSON shapes for the world's entities (users, members, channels,
//! voice states, the guild, messages, invites). Snowflakes are strings; permissions are strings.

use serde_json::{Value, json};

use crate::snowflake::{created_ms, iso8601};
use crate::world::{Channel, Member, Role, User, VoiceState, World, channel_type};

/// Permissions of `@everyone` in the seeded guild (view, connect, speak, send, ...).
pub const EVERYONE_PERMISSIONS: u64 = 1_071_698_660_929;

/// A user object.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id.to_string(),
        "username": u.username,
        "global_name": u.global_name,
        "discriminator": "0",
        "avatar": null,
        "avatar_decoration_data": null,
        "banner": null,
        "accent_color": null,
        "bot": u.bot,
        "public_flags": 0,
        "flags": 0,
        "primary_guild": null,
    })
}

/// The current user (`GET /users/@me`, READY's `user`); `email` only when asked for.
pub fn current_user(u: &User, with_email: bool) -> Value {
    let mut v = json!({
        "id": u.id.to_string(),
        "username": u.username,
        "global_name": u.global_name,
        "discriminator": "0",
        "avatar": null,
        "banner": null,
        "accent_color": null,
        "bot": u.bot,
        "mfa_enabled": false,
        "locale": "en-US",
        "verified": true,
        "flags": 0,
        "public_flags": 0,
        "premium_type": 0,
    });
    if with_email {
        v["email"] = json!(u.email);
    }
    v
}

fn user_of(world: &World, id: u64) -> Value {
    world.users.get(&id).map_or_else(
        || json!({"id": id.to_string(), "username": "deleted_user", "discriminator": "0", "avatar": null, "global_name": null}),
        user,
    )
}

/// A guild member object.
pub fn member(world: &World, m: &Member) -> Value {
    json!({
        "user": user_of(world, m.user_id),
        "nick": m.nick,
        "avatar": null,
        "banner": null,
        "roles": m.roles.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "joined_at": iso8601(m.joined_at_ms),
        "premium_since": null,
        "deaf": m.deaf,
        "mute": m.mute,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
    })
}

/// A guild channel object.
pub fn channel(world: &World, c: &Channel) -> Value {
    let mut v = json!({
        "id": c.id.to_string(),
        "type": c.kind,
        "guild_id": world.guild_id.to_string(),
        "name": c.name,
        "position": c.position,
        "flags": 0,
        "parent_id": c.parent_id.map(|p| p.to_string()),
        "permission_overwrites": c.permission_overwrites.iter().map(|o| json!({
            "id": o.id.to_string(),
            "type": o.kind,
            "allow": o.allow.to_string(),
            "deny": o.deny.to_string(),
        })).collect::<Vec<_>>(),
        "nsfw": c.nsfw,
    });
    match c.kind {
        channel_type::VOICE | channel_type::STAGE => {
            v["bitrate"] = json!(c.bitrate);
            v["user_limit"] = json!(c.user_limit);
            v["rtc_region"] = json!(c.rtc_region);
            v["last_message_id"] = json!(c.last_message_id.map(|i| i.to_string()));
            v["rate_limit_per_user"] = json!(c.rate_limit_per_user);
        }
        channel_type::TEXT => {
            v["topic"] = json!(c.topic);
            v["last_message_id"] = json!(c.last_message_id.map(|i| i.to_string()));
            v["rate_limit_per_user"] = json!(c.rate_limit_per_user);
        }
        _ => {}
    }
    v
}

/// A voice state; `with_guild` adds `guild_id` and `member` as in `VOICE_STATE_UPDATE`.
pub fn voice_state(world: &World, vs: &VoiceState, with_guild: bool) -> Value {
    let mut v = json!({
        "channel_id": vs.channel_id.to_string(),
        "user_id": vs.user_id.to_string(),
        "session_id": vs.session_id,
        "deaf": vs.deaf,
        "mute": vs.mute,
        "self_deaf": vs.self_deaf,
        "self_mute": vs.self_mute,
        "self_stream": vs.self_stream,
        "self_video": vs.self_video,
        "suppress": vs.suppress,
        "request_to_speak_timestamp": null,
    });
    if with_guild {
        v["guild_id"] = json!(world.guild_id.to_string());
        if let Some(m) = world.members.get(&vs.user_id) {
            v["member"] = member(world, m);
        }
    }
    v
}

/// The `VOICE_STATE_UPDATE` of a user who left voice (`channel_id: null`).
pub fn voice_state_left(world: &World, user_id: u64) -> Value {
    let deaf_mute = world
        .members
        .get(&user_id)
        .map_or((false, false), |m| (m.deaf, m.mute));
    let mut v = json!({
        "guild_id": world.guild_id.to_string(),
        "channel_id": null,
        "user_id": user_id.to_string(),
        "session_id": World::user_session_id(user_id),
        "deaf": deaf_mute.0,
        "mute": deaf_mute.1,
        "self_deaf": false,
        "self_mute": false,
        "self_stream": false,
        "self_video": false,
        "suppress": false,
        "request_to_speak_timestamp": null,
    });
    if let Some(m) = world.members.get(&user_id) {
        v["member"] = member(world, m);
    }
    v
}

/// The `@everyone` role (its id is the guild id).
pub fn everyone_role(world: &World) -> Value {
    json!({
        "id": world.guild_id.to_string(),
        "name": "@everyone",
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": 0,
        "permissions": EVERYONE_PERMISSIONS.to_string(),
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

/// Any other role, shaped like [`everyone_role`].
pub fn role(_world: &World, r: &Role) -> Value {
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": r.position,
        "permissions": r.permissions.to_string(),
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

/// Every role of the guild, `@everyone` first (`GET /guilds/{id}/roles`, `GUILD_CREATE`).
pub fn roles(world: &World) -> Vec<Value> {
    std::iter::once(everyone_role(world))
        .chain(world.roles.values().map(|r| role(world, r)))
        .collect()
}

/// The guild object of `GET /guilds/{guild_id}` (no gateway-only fields).
pub fn guild(world: &World) -> Value {
    guild_base(world)
}

/// The full guild object of `GUILD_CREATE`: channels, members, voice states and the
/// gateway-only fields (`joined_at`, `large`, `member_count`, ...). As on Discord, `members`
/// holds every member only with `GUILD_PRESENCES`; otherwise the bot and users in voice.
/// `voice_states` needs `GUILD_VOICE_STATES`.
pub fn guild_create(world: &World, intents: u64) -> Value {
    let with_voice_states = intents & crate::intents::GUILD_VOICE_STATES != 0;
    let all_members = intents & crate::intents::GUILD_PRESENCES != 0;
    let channels: Vec<Value> = world.channels.values().map(|c| channel(world, c)).collect();
    let members: Vec<Value> = world
        .members
        .values()
        .filter(|m| {
            all_members
                || m.user_id == world.bot_user_id()
                || world.voice_states.contains_key(&m.user_id)
        })
        .map(|m| member(world, m))
        .collect();
    let voice_states: Vec<Value> = if with_voice_states {
        world
            .voice_states
            .values()
            .map(|v| voice_state(world, v, false))
            .collect()
    } else {
        Vec::new()
    };
    let mut g = guild_base(world);
    let extra = json!({
        "joined_at": iso8601(created_ms(world.guild_id)),
        "large": false,
        "unavailable": false,
        "member_count": world.members.len(),
        "voice_states": voice_states,
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    });
    if let (Some(g), Some(extra)) = (g.as_object_mut(), extra.as_object()) {
        g.extend(extra.clone());
    }
    g
}

fn guild_base(world: &World) -> Value {
    json!({
        "id": world.guild_id.to_string(),
        "name": world.guild_name,
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": world.owner_id.to_string(),
        "region": "deprecated",
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "roles": roles(world),
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": world.seed.text_channel_id.to_string(),
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500_000,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "safety_alerts_channel_id": null,
        "nsfw_level": 0,
        "nsfw": false,
        "premium_progress_bar_enabled": false,
        "incidents_data": null,
        "latest_onboarding_question_id": null,
        "hub_type": null,
        "home_header": null,
    })
}

/// A message object as returned by `POST /channels/{c}/messages` and sent in `MESSAGE_CREATE`.
pub fn message(
    world: &World,
    id: u64,
    channel_id: u64,
    author_id: u64,
    content: &str,
    tts: bool,
    embeds: &Value,
) -> Value {
    json!({
        "id": id.to_string(),
        "type": 0,
        "channel_id": channel_id.to_string(),
        "author": user_of(world, author_id),
        "content": content,
        "timestamp": iso8601(created_ms(id)),
        "edited_timestamp": null,
        "tts": tts,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "mention_channels": [],
        "attachments": [],
        "embeds": embeds,
        "components": [],
        "reactions": [],
        "message_snapshots": [],
        "pinned": false,
        "flags": 0,
        "nonce": null,
    })
}

/// The terms of an invite.
#[derive(Clone, Copy, Debug)]
pub struct InviteTerms {
    /// Seconds until expiry (0 = never).
    pub max_age: u64,
    /// Maximum uses (0 = unlimited).
    pub max_uses: u64,
    /// Temporary membership.
    pub temporary: bool,
    /// Creation time, Unix ms.
    pub created_ms: u64,
}

/// An invite object for a channel of the guild.
pub fn invite(world: &World, code: &str, c: &Channel, inviter: u64, terms: InviteTerms) -> Value {
    let InviteTerms {
        max_age,
        max_uses,
        temporary,
        created_ms: created,
    } = terms;
    let expires = (max_age > 0).then(|| iso8601(created + max_age * 1000));
    json!({
        "type": 0,
        "code": code,
        "inviter": user_of(world, inviter),
        "max_age": max_age,
        "created_at": iso8601(created),
        "expires_at": expires,
        "guild": {
            "id": world.guild_id.to_string(),
            "name": world.guild_name,
            "splash": null,
            "banner": null,
            "description": null,
            "icon": null,
            "features": [],
            "verification_level": 1,
            "vanity_url_code": null,
            "nsfw_level": 0,
            "premium_subscription_count": 0,
        },
        "guild_id": world.guild_id.to_string(),
        "channel": {"id": c.id.to_string(), "type": c.kind, "name": c.name},
        "uses": 0,
        "max_uses": max_uses,
        "temporary": temporary,
    })
}
