//! `DiscordRestClient`: the bot's REST calls (docs/spec.md §9) on twilight-http, whose rate
//! limiter keeps bursts within Discord's buckets and global limit and retries 429s after
//! `Retry-After`; around it, input validation, retries of 5xx and network errors, and
//! typed results.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use coven_contract::{Secret, Snowflake};
use serde::de::DeserializeOwned;
use twilight_http::Client;
use twilight_http::error::ErrorType;
use twilight_http::request::AuditLogReason;
use twilight_http::response::{Response, ResponseFuture};
use twilight_model::channel::ChannelType;
use url::Url;

use crate::error::DiscordError;
use crate::model::{
    Channel, Invite, InviteOptions, Member, Message, NewVoiceRoom, OverwriteKind,
    PermissionOverwrite, Role,
};
use crate::retry::RetryPolicy;
use crate::{origin, twilight_map as map, validate};

/// How long one HTTP attempt may take before it counts as a network error.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most sends of one request: the first and up to three re-sends after 429s. twilight-http
/// re-sends every 429 by itself, without end; a 429 it cannot schedule (global scope, or a
/// Cloudflare ban without rate-limit headers) would be re-sent at once, again and again,
/// which is how bots get their IP banned. Past this many sends the call fails instead.
const MAX_SENDS_PER_REQUEST: u32 = 4;

/// The wait reported when the 429 re-send cap ends a call (twilight does not expose the
/// last `Retry-After`).
const RATE_LIMIT_HINT: Duration = Duration::from_secs(1);

/// What the REST client needs; built by the caller from its configuration (this crate
/// reads no environment).
#[derive(Debug, Clone)]
pub struct RestSettings {
    /// The API origin, e.g. `https://discord.com` or `http://127.0.0.1:4000`; requests go
    /// to `{api_url}/api/v10/...`.
    pub api_url: Url,
    /// The bot token (a leading `Bot ` prefix is accepted and ignored).
    pub bot_token: Secret,
    /// How often a 5xx or network error is retried (`MAX_API_RETRIES`).
    pub max_retries: u32,
}

/// The bot's Discord REST client. Cheap to clone; clones share the connection pool, the
/// rate limiter and the remembered state of the token.
///
/// Build it inside a Tokio runtime (twilight's rate limiter runs as a task).
#[derive(Clone)]
pub struct DiscordRestClient {
    http: Arc<Client>,
    retry: RetryPolicy,
    api_url: Url,
}

impl fmt::Debug for DiscordRestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordRestClient")
            .field("api_url", &self.api_url.as_str())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl DiscordRestClient {
    /// Builds a client for `settings`. Fails with [`DiscordError::Validation`] when the
    /// API URL is not a bare `http(s)` origin or the token is empty.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as twilight's rate limiter spawns its task.
    pub fn new(settings: RestSettings) -> Result<Self, DiscordError> {
        Self::with_retry_policy(
            settings.api_url,
            &settings.bot_token,
            RetryPolicy::new(settings.max_retries),
        )
    }

    /// Like [`Self::new`], with a custom backoff (tests and benchmarks use a shorter one).
    pub fn with_retry_policy(
        api_url: Url,
        bot_token: &Secret,
        retry: RetryPolicy,
    ) -> Result<Self, DiscordError> {
        origin::check(&api_url)?;
        let token = bot_token.expose().trim();
        // Accept the token with or without its `Bot ` prefix.
        let token = token.strip_prefix("Bot ").unwrap_or(token);
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DiscordError::validation(
                "botToken",
                "must be a non-empty token without spaces",
            ));
        }
        // twilight-http's TLS connector needs a process-wide rustls crypto provider; an
        // error means one is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = Client::builder()
            .token(format!("Bot {token}"))
            .remember_invalid_token(true)
            .timeout(ATTEMPT_TIMEOUT);
        if let Some((host_port, use_http)) = origin::twilight_proxy(&api_url) {
            builder = builder.proxy(host_port, use_http);
        }
        Ok(Self {
            http: Arc::new(builder.build()),
            retry,
            api_url,
        })
    }

    /// Awaits a twilight request with the 429 re-send cap and maps its error.
    async fn send<T: Unpin>(
        &self,
        mut request: ResponseFuture<T>,
    ) -> Result<Response<T>, DiscordError> {
        let sends = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&sends);
        // Runs after each rate-limit permit, right before each send, re-sends included.
        request.set_pre_flight(move || {
            counter.fetch_add(1, Ordering::Relaxed) < MAX_SENDS_PER_REQUEST
        });
        request.await.map_err(|error| {
            if matches!(error.kind(), ErrorType::RequestCanceled)
                && sends.load(Ordering::Relaxed) > MAX_SENDS_PER_REQUEST
            {
                tracing::warn!(
                    sends = MAX_SENDS_PER_REQUEST,
                    "Discord kept answering 429; giving up on this call"
                );
                DiscordError::RateLimited {
                    retry_after: RATE_LIMIT_HINT,
                }
            } else {
                map::error(error)
            }
        })
    }

    /// One REST call: `build` makes the request afresh for every attempt, which is sent
    /// with the 429 re-send cap; 5xx and network errors are retried per the policy.
    async fn call<T: Unpin>(
        &self,
        operation: &'static str,
        build: impl Fn() -> ResponseFuture<T>,
    ) -> Result<Response<T>, DiscordError> {
        self.retry.run(operation, || self.send(build())).await
    }

    /// [`Self::call`], then the response body read as twilight's `T` and mapped onto a
    /// domain type. A body that cannot be read is [`DiscordError::Decode`], never retried.
    async fn call_for<T, U>(
        &self,
        operation: &'static str,
        build: impl Fn() -> ResponseFuture<T>,
        to_domain: impl FnOnce(T) -> U,
    ) -> Result<U, DiscordError>
    where
        T: DeserializeOwned + Unpin,
    {
        let response = self.call(operation, build).await?;
        response
            .model()
            .await
            .map(to_domain)
            .map_err(|e| decode(&e))
    }

    /// The API origin this client calls.
    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    /// Creates a voice channel (type 2) in `guild_id`:
    /// `POST /guilds/{guild_id}/channels` with `X-Audit-Log-Reason` when `reason` is given.
    pub async fn create_voice_room(
        &self,
        guild_id: Snowflake,
        room: &NewVoiceRoom,
        reason: Option<&str>,
    ) -> Result<Channel, DiscordError> {
        validate::overwrites(&room.permission_overwrites)?;
        validate::audit_reason(reason)?;
        let overwrites: Vec<_> = room
            .permission_overwrites
            .iter()
            .map(map::overwrite_to)
            .collect();
        let build = || {
            let mut request = self
                .http
                .create_guild_channel(map::id(guild_id), room.name.as_str())
                .kind(ChannelType::GuildVoice)
                .user_limit(u16::from(room.user_limit.get()));
            if let Some(parent) = room.parent_id {
                request = request.parent_id(map::id(parent));
            }
            if !overwrites.is_empty() {
                request = request.permission_overwrites(&overwrites);
            }
            if let Some(reason) = reason {
                request = request.reason(reason);
            }
            request.into_future()
        };
        self.call_for("create_voice_room", build, map::channel)
            .await
    }

    /// Deletes a channel: `DELETE /channels/{channel_id}`. Returns the deleted channel.
    pub async fn delete_channel(
        &self,
        channel_id: Snowflake,
        reason: Option<&str>,
    ) -> Result<Channel, DiscordError> {
        validate::audit_reason(reason)?;
        let build = || {
            let mut request = self.http.delete_channel(map::id(channel_id));
            if let Some(reason) = reason {
                request = request.reason(reason);
            }
            request.into_future()
        };
        self.call_for("delete_channel", build, map::channel).await
    }

    /// Lists a guild's channels: `GET /guilds/{guild_id}/channels`.
    pub async fn guild_channels(&self, guild_id: Snowflake) -> Result<Vec<Channel>, DiscordError> {
        let response = self
            .call("guild_channels", || {
                self.http.guild_channels(map::id(guild_id)).into_future()
            })
            .await?;
        let channels = response.models().await.map_err(|e| decode(&e))?;
        Ok(channels.into_iter().map(map::channel).collect())
    }

    /// Fetches a channel: `GET /channels/{channel_id}`.
    pub async fn channel(&self, channel_id: Snowflake) -> Result<Channel, DiscordError> {
        self.call_for(
            "channel",
            || self.http.channel(map::id(channel_id)).into_future(),
            map::channel,
        )
        .await
    }

    /// Sends a text message (1–2000 characters): `POST /channels/{channel_id}/messages`.
    pub async fn send_message(
        &self,
        channel_id: Snowflake,
        content: &str,
    ) -> Result<Message, DiscordError> {
        validate::message_content(content)?;
        let build = || {
            self.http
                .create_message(map::id(channel_id))
                .content(content)
                .into_future()
        };
        self.call_for("send_message", build, map::message).await
    }

    /// Creates an invite to a channel: `POST /channels/{channel_id}/invites`.
    pub async fn create_invite(
        &self,
        channel_id: Snowflake,
        options: InviteOptions,
        reason: Option<&str>,
    ) -> Result<Invite, DiscordError> {
        validate::invite(options)?;
        validate::audit_reason(reason)?;
        let build = || {
            let mut request = self
                .http
                .create_invite(map::id(channel_id))
                .max_age(options.max_age_secs)
                .max_uses(options.max_uses);
            if let Some(reason) = reason {
                request = request.reason(reason);
            }
            request.into_future()
        };
        self.call_for("create_invite", build, map::invite).await
    }

    /// Creates or replaces a permission overwrite:
    /// `PUT /channels/{channel_id}/permissions/{overwrite.id}`.
    pub async fn put_permission_overwrite(
        &self,
        channel_id: Snowflake,
        overwrite: &PermissionOverwrite,
        reason: Option<&str>,
    ) -> Result<(), DiscordError> {
        validate::overwrite(overwrite)?;
        validate::audit_reason(reason)?;
        let model = map::overwrite_to_http(overwrite);
        let build = || {
            let mut request = self
                .http
                .update_channel_permission(map::id(channel_id), &model);
            if let Some(reason) = reason {
                request = request.reason(reason);
            }
            request.into_future()
        };
        self.call("put_permission_overwrite", build).await?;
        Ok(())
    }

    /// Removes a permission overwrite of a role or member:
    /// `DELETE /channels/{channel_id}/permissions/{target}`.
    pub async fn delete_permission_overwrite(
        &self,
        channel_id: Snowflake,
        kind: OverwriteKind,
        target: Snowflake,
        reason: Option<&str>,
    ) -> Result<(), DiscordError> {
        validate::audit_reason(reason)?;
        let build = || {
            let request = self.http.delete_channel_permission(map::id(channel_id));
            let mut request = match kind {
                OverwriteKind::Role => request.role(map::id(target)),
                OverwriteKind::Member => request.member(map::id(target)),
            };
            if let Some(reason) = reason {
                request = request.reason(reason);
            }
            request.into_future()
        };
        self.call("delete_permission_overwrite", build).await?;
        Ok(())
    }

    /// Adds a user to the guild with their OAuth2 access token (scope `guilds.join`):
    /// `PUT /guilds/{guild_id}/members/{user_id}`. Returns `true` when the user was added,
    /// `false` when they were already a member. Discord's refusals come back typed:
    /// [`DiscordError::BannedFromGuild`] (40007), [`DiscordError::GuildFull`] (30019),
    /// [`DiscordError::TooManyGuilds`] (30001, the user is in 100 guilds).
    pub async fn add_guild_member(
        &self,
        guild_id: Snowflake,
        user_id: Snowflake,
        access_token: &Secret,
    ) -> Result<bool, DiscordError> {
        validate::access_token(access_token.expose())?;
        let build = || {
            self.http
                .add_guild_member(map::id(guild_id), map::id(user_id), access_token.expose())
                .into_future()
        };
        let response = self.call("add_guild_member", build).await?;
        // 201 with the member when added, 204 without a body when already a member.
        Ok(response.status().get() == 201)
    }

    /// Fetches a guild member: `GET /guilds/{guild_id}/members/{user_id}`.
    pub async fn guild_member(
        &self,
        guild_id: Snowflake,
        user_id: Snowflake,
    ) -> Result<Member, DiscordError> {
        let build = || {
            self.http
                .guild_member(map::id(guild_id), map::id(user_id))
                .into_future()
        };
        self.call_for("guild_member", build, map::member).await
    }

    /// Every role of a guild with its permissions: `GET /guilds/{guild_id}/roles`.
    pub async fn guild_roles(&self, guild_id: Snowflake) -> Result<Vec<Role>, DiscordError> {
        let response = self
            .call("guild_roles", || {
                self.http.roles(map::id(guild_id)).into_future()
            })
            .await?;
        let roles = response.models().await.map_err(|e| decode(&e))?;
        Ok(roles
            .into_iter()
            .map(|role| Role {
                id: map::snowflake(role.id),
                permissions: role.permissions.bits(),
            })
            .collect())
    }

    /// The guild owner's user id: `GET /guilds/{guild_id}`. Only `owner_id` is read
    /// from the answer, so a guild object with fields this client does not know (or
    /// lacking ones it does not need) still works.
    pub async fn guild_owner(&self, guild_id: Snowflake) -> Result<Snowflake, DiscordError> {
        #[derive(serde::Deserialize)]
        struct Owner {
            owner_id: Snowflake,
        }
        let response = self
            .call("guild", || self.http.guild(map::id(guild_id)).into_future())
            .await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| DiscordError::Decode(e.to_string()))?;
        serde_json::from_slice::<Owner>(&body)
            .map(|owner| owner.owner_id)
            .map_err(|e| DiscordError::Decode(e.to_string()))
    }
}

fn decode(error: &twilight_http::response::DeserializeBodyError) -> DiscordError {
    DiscordError::Decode(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, token: &str) -> RestSettings {
        RestSettings {
            api_url: Url::parse(url).unwrap(),
            bot_token: Secret::new(token),
            max_retries: 3,
        }
    }

    #[tokio::test]
    async fn rejects_bad_settings_and_hides_the_token() {
        assert!(matches!(
            DiscordRestClient::new(settings("http://127.0.0.1:1/api", "t")),
            Err(DiscordError::Validation {
                field: "apiUrl",
                ..
            })
        ));
        assert!(matches!(
            DiscordRestClient::new(settings("http://127.0.0.1:1", " ")),
            Err(DiscordError::Validation {
                field: "botToken",
                ..
            })
        ));
        assert!(DiscordRestClient::new(settings("http://127.0.0.1:1", "Bot abc")).is_ok());
        let client =
            DiscordRestClient::new(settings("http://127.0.0.1:1", "very-secret-token")).unwrap();
        let printed = format!(
            "{client:?} {:?}",
            settings("http://127.0.0.1:1", "very-secret-token")
        );
        assert!(!printed.contains("very-secret-token"), "{printed}");
    }

    #[tokio::test]
    async fn validates_before_any_request() {
        // Port 1 is closed: a request would fail as Transport, not Validation.
        let client = DiscordRestClient::new(settings("http://127.0.0.1:1", "t")).unwrap();
        let id = Snowflake::new(1).unwrap();
        assert!(matches!(
            client.send_message(id, "").await,
            Err(DiscordError::Validation {
                field: "content",
                ..
            })
        ));
        assert!(matches!(
            client.send_message(id, &"x".repeat(2001)).await,
            Err(DiscordError::Validation {
                field: "content",
                ..
            })
        ));
        assert!(matches!(
            client
                .create_invite(
                    id,
                    InviteOptions {
                        max_age_secs: 700_000,
                        max_uses: 0
                    },
                    None
                )
                .await,
            Err(DiscordError::Validation {
                field: "maxAge",
                ..
            })
        ));
        assert!(matches!(
            client.delete_channel(id, Some(&"r".repeat(600))).await,
            Err(DiscordError::Validation {
                field: "reason",
                ..
            })
        ));
        assert!(matches!(
            client.add_guild_member(id, id, &Secret::new("")).await,
            Err(DiscordError::Validation {
                field: "accessToken",
                ..
            })
        ));
    }
}
