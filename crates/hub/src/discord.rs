//! The rooms API's Discord backend: [`RoomsBackend`] on `coven-discord`'s
//! `DiscordRestClient`.
//!
//! The REST client already honours Discord's rate limits and retries 5xx; this adapter
//! only translates its domain types and typed errors into the hub's, so the handlers
//! never see twilight or Discord's JSON. A member's guild permissions (for who may
//! act on a room, `crate::permissions`) take three calls: the member (their role
//! ids), the guild's roles (each role's permissions) and the guild (its owner).

use coven_contract::Snowflake;
use coven_discord::{
    ASSUMED_EVERYONE, Channel, DiscordError, DiscordRestClient, NewVoiceRoom, is_room,
};
use futures_util::future::BoxFuture;

use crate::permissions::MemberPermissions;
use crate::rooms::{ChannelInfo, CreateVoiceChannel, MemberProfile, RoomsBackend, RoomsError};

/// [`RoomsBackend`] calling Discord (or the simulator) through `DiscordRestClient`.
#[derive(Debug, Clone)]
pub struct DiscordRooms {
    client: DiscordRestClient,
}

impl DiscordRooms {
    /// Wraps a REST client (built with the bot token by the binary).
    pub fn new(client: DiscordRestClient) -> Self {
        Self { client }
    }
}

fn info(channel: Channel) -> ChannelInfo {
    ChannelInfo {
        id: channel.id,
        guild_id: channel.guild_id,
        kind: channel.kind.number(),
        name: channel.name,
        parent_id: channel.parent_id,
        user_limit: channel.user_limit.and_then(|n| u8::try_from(n).ok()),
    }
}

fn error(error: DiscordError) -> RoomsError {
    match error {
        DiscordError::UnknownChannel => RoomsError::UnknownChannel,
        DiscordError::MissingPermissions => RoomsError::MissingPermissions,
        DiscordError::RateLimited { retry_after } => RoomsError::RateLimited { retry_after },
        DiscordError::Unauthorized => RoomsError::Unauthorized,
        DiscordError::Validation { .. } | DiscordError::InvalidFormBody { .. } => {
            RoomsError::Validation(error.to_string())
        }
        other => RoomsError::Upstream(other.to_string()),
    }
}

impl RoomsBackend for DiscordRooms {
    fn create_voice_channel(
        &self,
        request: CreateVoiceChannel,
    ) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        Box::pin(async move {
            let room = NewVoiceRoom {
                name: request.name,
                parent_id: request.parent_id,
                user_limit: request.user_limit,
                permission_overwrites: Vec::new(),
            };
            self.client
                .create_voice_room(request.guild_id, &room, Some(&request.audit_reason))
                .await
                .map(info)
                .map_err(error)
        })
    }

    fn get_channel(&self, channel_id: Snowflake) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        Box::pin(async move {
            self.client
                .channel(channel_id)
                .await
                .map(info)
                .map_err(error)
        })
    }

    fn delete_channel(
        &self,
        channel_id: Snowflake,
        audit_reason: String,
    ) -> BoxFuture<'_, Result<(), RoomsError>> {
        Box::pin(async move {
            self.client
                .delete_channel(channel_id, Some(&audit_reason))
                .await
                .map(|_| ())
                .map_err(error)
        })
    }

    fn guild_channels(
        &self,
        guild_id: Snowflake,
    ) -> BoxFuture<'_, Result<Vec<ChannelInfo>, RoomsError>> {
        Box::pin(async move {
            self.client
                .guild_channels(guild_id)
                .await
                .map(|channels| channels.into_iter().map(info).collect())
                .map_err(error)
        })
    }

    fn room_channels(
        &self,
        guild_id: Snowflake,
    ) -> BoxFuture<'_, Result<Vec<ChannelInfo>, RoomsError>> {
        // The channel's own `@everyone` overwrite decides; REST does not tell the
        // hub the role's guild permissions, so Discord's default is assumed.
        Box::pin(async move {
            self.client
                .guild_channels(guild_id)
                .await
                .map(|channels| {
                    channels
                        .into_iter()
                        .filter(|c| is_room(c, guild_id, ASSUMED_EVERYONE))
                        .map(info)
                        .collect()
                })
                .map_err(error)
        })
    }

    fn member_profile(
        &self,
        guild_id: Snowflake,
        user_id: Snowflake,
    ) -> BoxFuture<'_, Result<Option<MemberProfile>, RoomsError>> {
        Box::pin(async move {
            match self.client.guild_member(guild_id, user_id).await {
                Ok(member) => Ok(Some(MemberProfile {
                    name: member.display_name().to_owned(),
                    avatar_url: None,
                })),
                Err(DiscordError::NotFound { .. }) => Ok(None),
                Err(other) => Err(error(other)),
            }
        })
    }

    fn member_permissions(
        &self,
        guild_id: Snowflake,
        user_id: Snowflake,
    ) -> BoxFuture<'_, Result<MemberPermissions, RoomsError>> {
        Box::pin(async move {
            let member = match self.client.guild_member(guild_id, user_id).await {
                Ok(member) => member,
                Err(DiscordError::NotFound { .. }) => return Ok(MemberPermissions::default()),
                Err(other) => return Err(error(other)),
            };
            let (roles, owner) = tokio::try_join!(
                self.client.guild_roles(guild_id),
                self.client.guild_owner(guild_id)
            )
            .map_err(error)?;
            // `@everyone` (id = guild id) applies to every member.
            let permissions = roles
                .iter()
                .filter(|role| role.id == guild_id || member.roles.contains(&role.id))
                .fold(0, |bits, role| bits | role.permissions);
            Ok(MemberPermissions {
                owner: owner == user_id,
                permissions,
            })
        })
    }
}
