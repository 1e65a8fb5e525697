//! Translation between twilight's types and this crate's: twilight-http errors into
//! [`DiscordError`], twilight models into the domain types, domain inputs into twilight's.

use std::num::NonZeroU64;

use coven_contract::Snowflake;
use twilight_http::error::{Error as TwilightError, ErrorType};
use twilight_model::channel::permission_overwrite::{
    PermissionOverwrite as TwilightOverwrite, PermissionOverwriteType,
};
use twilight_model::guild::Permissions;
use twilight_model::http::permission_overwrite::{
    PermissionOverwrite as HttpOverwrite, PermissionOverwriteType as HttpOverwriteType,
};
use twilight_model::id::Id;

use crate::error::DiscordError;
use crate::model::{
    Channel, ChannelKind, Invite, Member, Message, OverwriteKind, PermissionOverwrite,
};

/// A twilight id as a snowflake.
pub(crate) fn snowflake<T>(id: Id<T>) -> Snowflake {
    Snowflake::from(id.into_nonzero())
}

/// A snowflake as a twilight id.
pub(crate) fn id<T>(snowflake: Snowflake) -> Id<T> {
    // A snowflake is never zero by construction, so the fallback is never taken.
    Id::from(NonZeroU64::new(snowflake.get()).unwrap_or(NonZeroU64::MIN))
}

/// Maps a twilight-http error onto [`DiscordError`]. Nothing of the request (and so no
/// token) is included; transport errors keep only the error chain's descriptions.
pub(crate) fn error(error: TwilightError) -> DiscordError {
    let (kind, source) = error.into_parts();
    let chain = || {
        let mut text = String::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = next {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&e.to_string());
            next = e.source();
        }
        text
    };
    match kind {
        ErrorType::Response { body, status, .. } => {
            DiscordError::from_response(status.get(), &body, None)
        }
        ErrorType::Unauthorized => DiscordError::Unauthorized,
        ErrorType::RequestError => DiscordError::Transport(chain()),
        ErrorType::RequestTimedOut => DiscordError::Transport("request timed out".to_owned()),
        ErrorType::Validation => DiscordError::Validation {
            field: "request",
            reason: chain(),
        },
        ErrorType::Parsing { .. } => DiscordError::Other {
            status: None,
            code: None,
            message: "Discord answered an error with an unreadable body".to_owned(),
        },
        other => DiscordError::Other {
            status: None,
            code: None,
            message: format!("request could not be made: {}", describe(&other)),
        },
    }
}

fn describe(kind: &ErrorType) -> &'static str {
    match kind {
        ErrorType::BuildingRequest => "building the request failed",
        ErrorType::CreatingHeader { .. } => "a header value is invalid",
        ErrorType::Json => "serialising the body failed",
        ErrorType::RequestCanceled => "the request was cancelled",
        _ => "unexpected client error",
    }
}

/// A twilight channel as a domain [`Channel`].
pub(crate) fn channel(c: twilight_model::channel::Channel) -> Channel {
    Channel {
        id: snowflake(c.id),
        guild_id: c.guild_id.map(snowflake),
        kind: ChannelKind::from_number(u8::from(c.kind)),
        name: c.name.unwrap_or_default(),
        parent_id: c.parent_id.map(snowflake),
        user_limit: c.user_limit,
        permission_overwrites: c
            .permission_overwrites
            .unwrap_or_default()
            .iter()
            .filter_map(overwrite_from)
            .collect(),
    }
}

fn overwrite_from(o: &TwilightOverwrite) -> Option<PermissionOverwrite> {
    let kind = match o.kind {
        PermissionOverwriteType::Role => OverwriteKind::Role,
        PermissionOverwriteType::Member => OverwriteKind::Member,
        _ => return None,
    };
    Some(PermissionOverwrite {
        id: snowflake(o.id),
        kind,
        allow: o.allow.bits(),
        deny: o.deny.bits(),
    })
}

/// A domain overwrite as the model `PUT /channels/{c}/permissions/{o}` takes. The bits
/// were validated before.
pub(crate) fn overwrite_to_http(o: &PermissionOverwrite) -> HttpOverwrite {
    HttpOverwrite {
        allow: Some(Permissions::from_bits_truncate(o.allow)),
        deny: Some(Permissions::from_bits_truncate(o.deny)),
        id: id(o.id),
        kind: match o.kind {
            OverwriteKind::Role => HttpOverwriteType::Role,
            OverwriteKind::Member => HttpOverwriteType::Member,
        },
    }
}

/// A domain overwrite as the model channel creation takes. The bits were validated before.
pub(crate) fn overwrite_to(o: &PermissionOverwrite) -> TwilightOverwrite {
    TwilightOverwrite {
        allow: Permissions::from_bits_truncate(o.allow),
        deny: Permissions::from_bits_truncate(o.deny),
        id: id(o.id),
        kind: match o.kind {
            OverwriteKind::Role => PermissionOverwriteType::Role,
            OverwriteKind::Member => PermissionOverwriteType::Member,
        },
    }
}

/// A twilight message as a domain [`Message`].
pub(crate) fn message(m: twilight_model::channel::Message) -> Message {
    Message {
        id: snowflake(m.id),
        channel_id: snowflake(m.channel_id),
        content: m.content,
    }
}

/// A twilight invite as a domain [`Invite`].
pub(crate) fn invite(i: twilight_model::guild::invite::Invite) -> Invite {
    Invite {
        code: i.code,
        channel_id: i.channel.map(|c| snowflake(c.id)),
        max_age_secs: i.max_age,
        max_uses: i.max_uses,
    }
}

/// A twilight member as a domain [`Member`].
pub(crate) fn member(m: twilight_model::guild::Member) -> Member {
    Member {
        user_id: snowflake(m.user.id),
        username: m.user.name,
        global_name: m.user.global_name,
        nick: m.nick,
        roles: m.roles.into_iter().map(snowflake).collect(),
    }
}
