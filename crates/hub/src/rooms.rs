//! The rooms API (docs/spec.md §7): `POST /api/create-room`, `DELETE /api/end-room/{id}`.
//!
//! Discord is reached through the small [`RoomsBackend`] trait so the handlers do not
//! depend on a particular REST client (the binary plugs in `DiscordRestClient`; the
//! tests a fake). A create publishes `room.created` itself, under the same once-key
//! the webhook path uses, so exactly one `room.created` reaches browsers per channel
//! whichever path is first. `Idempotency-Key` makes a retried create return the first
//! answer and create one channel only; each user has a token-bucket rate limit.
//! Who may end a room, how many rooms one may create and where new rooms go
//! (`ROOMS_CATEGORY_ID`) are the rules of docs/spec.md §7.1, kept in
//! `crate::permissions`; a `parentId` other than the configured category is a
//! validation error (400 `VALIDATION_FAILED`, field `parentId`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use coven_contract::{Event, OkBody, RoomCreated, RoomName, Snowflake, UserLimit};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthUser, rate_limit};
use crate::error::HubError;
use crate::jwt::VerifiedUser;
use crate::once_key::OnceKey;
use crate::permissions::MemberPermissions;
use crate::shared_limits::Claim;
use crate::state::RoomsState;

/// Discord's channel type of a voice channel: the only kind that is a room.
pub const VOICE_CHANNEL_TYPE: u8 = 2;
/// Default `userLimit` of a new room.
const DEFAULT_USER_LIMIT: u8 = 4;
/// Longest accepted `Idempotency-Key`.
const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

/// What the hub asks Discord to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateVoiceChannel {
    /// The guild (always the primary one).
    pub guild_id: Snowflake,
    /// Channel name.
    pub name: RoomName,
    /// Category, if any.
    pub parent_id: Option<Snowflake>,
    /// 0 = unlimited.
    pub user_limit: UserLimit,
    /// The `X-Audit-Log-Reason`.
    pub audit_reason: String,
}

/// What the hub needs to know about a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Channel id.
    pub id: Snowflake,
    /// Its guild; `None` for DMs.
    pub guild_id: Option<Snowflake>,
    /// Discord channel type (2 = voice).
    pub kind: u8,
    /// Channel name.
    pub name: String,
    /// Category, if any.
    pub parent_id: Option<Snowflake>,
    /// Voice user limit, if any.
    pub user_limit: Option<u8>,
}

/// Why a Discord call failed, as far as the rooms API cares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomsError {
    /// Discord does not know the channel (10003).
    #[error("unknown channel")]
    UnknownChannel,
    /// The bot may not do this (50013).
    #[error("the bot lacks the permission")]
    MissingPermissions,
    /// Discord said to wait.
    #[error("rate limited by Discord")]
    RateLimited {
        /// How long Discord asked to wait.
        retry_after: Duration,
    },
    /// The bot token was refused.
    #[error("Discord refused the bot's credentials")]
    Unauthorized,
    /// Discord refused the values.
    #[error("{0}")]
    Validation(String),
    /// Anything else: network, 5xx after retries, unexpected answers.
    #[error("{0}")]
    Upstream(String),
}

/// The Discord operations the rooms API needs.
pub trait RoomsBackend: Send + Sync + 'static {
    /// Creates a voice channel.
    fn create_voice_channel(
        &self,
        request: CreateVoiceChannel,
    ) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>>;

    /// Reads a channel.
    fn get_channel(&self, channel_id: Snowflake) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>>;

    /// Deletes a channel with an audit-log reason.
    fn delete_channel(
        &self,
        channel_id: Snowflake,
        audit_reason: String,
    ) -> BoxFuture<'_, Result<(), RoomsError>>;

    /// Every channel of `guild` (the room snapshot's fallback without a worker keeps
    /// the voice ones). The default knows none.
    fn guild_channels(
        &self,
        guild_id: Snowflake,
    ) -> BoxFuture<'_, Result<Vec<ChannelInfo>, RoomsError>> {
        let _ = guild_id;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The guild's rooms (docs/spec.md §7.1): its voice channels `@everyone` may view,
    /// for the room list without a worker. The default keeps every voice channel of
    /// [`guild_channels`](Self::guild_channels), for a backend without permissions.
    fn room_channels(
        &self,
        guild_id: Snowflake,
    ) -> BoxFuture<'_, Result<Vec<ChannelInfo>, RoomsError>> {
        Box::pin(async move {
            let channels = self.guild_channels(guild_id).await?;
            Ok(channels
                .into_iter()
                .filter(|c| c.kind == VOICE_CHANNEL_TYPE && c.guild_id == Some(guild_id))
                .collect())
        })
    }

    /// A member's name (and avatar, when known), for the room snapshot; `None` when
    /// the user is not a member. The default knows nobody.
    fn member_profile(
        &self,
        guild_id: Snowflake,
        user_id: Snowflake,
    ) -> BoxFuture<'_, Result<Option<MemberProfile>, RoomsError>> {
        let _ = (guild_id, user_id);
        Box::pin(async { Ok(None) })
    }

    /// Whether `user_id` owns the guild, and their guild-wide permissions (the
    /// `@everyone` role's combined with their roles'), for the rule of
    /// docs/spec.md §7.1. The default grants nothing: only a room's creator may
    /// act on it.
    fn member_permissions(
        &self,
        guild_id: Snowflake,
        user_id: Snowflake,
    ) -> BoxFuture<'_, Result<MemberPermissions, RoomsError>> {
        let _ = (guild_id, user_id);
        Box::pin(async { Ok(MemberPermissions::default()) })
    }
}

/// What the lobby shows of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberProfile {
    /// The display name (nickname, else global name, else username).
    pub name: String,
    /// The avatar URL, when known.
    pub avatar_url: Option<String>,
}

impl From<RoomsError> for HubError {
    fn from(error: RoomsError) -> Self {
        match error {
            RoomsError::UnknownChannel => Self::NotFound("unknown channel".into()),
            RoomsError::MissingPermissions => {
                Self::Forbidden("the bot lacks the permission to do this".into())
            }
            RoomsError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            RoomsError::Validation(message) => Self::validation(message),
            RoomsError::Unauthorized => Self::Internal("Discord refused the bot token".into()),
            RoomsError::Upstream(message) => Self::Upstream(message),
        }
    }
}

/// `201` body of a create: `{channelId, name, guildId}`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedRoom {
    /// The new voice channel.
    channel_id: Snowflake,
    /// Its name.
    name: String,
    /// The guild.
    guild_id: Snowflake,
}

/// `POST /api/create-room` body; every field is optional. The fields are read as
/// JSON values so that a wrong one gets its own message; the schema says what is accepted.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "CreateRoomRequest")]
pub(crate) struct CreateRoomBody {
    /// The room's name (default `spell-coven-<base36 time>`).
    #[serde(default)]
    #[schemars(with = "Option<RoomName>")]
    name: Option<serde_json::Value>,
    /// The category to create it in (with `ROOMS_CATEGORY_ID`: that one or none).
    #[serde(default)]
    #[schemars(with = "Option<Snowflake>")]
    parent_id: Option<serde_json::Value>,
    /// Seats, 0 (unlimited) to 99; default 4.
    #[serde(default)]
    #[schemars(with = "Option<UserLimit>")]
    user_limit: Option<serde_json::Value>,
}

/// The validated request.
struct CreateRoomRequest {
    name: RoomName,
    parent_id: Option<Snowflake>,
    user_limit: UserLimit,
}

pub(crate) fn field_error(message: &str, field: &'static str) -> HubError {
    HubError::Validation {
        message: message.to_owned(),
        field: Some(field),
    }
}

fn parse_create(body: &[u8]) -> Result<CreateRoomRequest, HubError> {
    let body: CreateRoomBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRoomBody {
            name: None,
            parent_id: None,
            user_limit: None,
        }
    } else {
        serde_json::from_slice(body)
            .map_err(|_| HubError::validation("body must be a JSON object"))?
    };
    let name = match body.name {
        None | Some(serde_json::Value::Null) => default_room_name(),
        Some(serde_json::Value::String(name)) => {
            RoomName::try_from(name).map_err(|m| field_error(m, "name"))?
        }
        Some(_) => return Err(field_error("name must be a string", "name")),
    };
    let parent_id = match body.parent_id {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) => Some(
            id.parse()
                .map_err(|_| field_error("parentId must be a snowflake", "parentId"))?,
        ),
        Some(_) => return Err(field_error("parentId must be a snowflake", "parentId")),
    };
    let user_limit = match body.user_limit {
        None | Some(serde_json::Value::Null) => {
            UserLimit::try_from(DEFAULT_USER_LIMIT).map_err(|m| field_error(m, "userLimit"))?
        }
        Some(value) => value
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(|n| UserLimit::try_from(n).ok())
            .ok_or_else(|| field_error("userLimit must be between 0 and 99", "userLimit"))?,
    };
    Ok(CreateRoomRequest {
        name,
        parent_id,
        user_limit,
    })
}

/// `spell-coven-<base36 milliseconds>`, unique per millisecond per hub (a counter
/// breaks ties within one millisecond).
fn default_room_name() -> RoomName {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut previous = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(previous + 1);
        match LAST.compare_exchange(previous, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => previous = actual,
        }
    };
    RoomName::try_from(format!("spell-coven-{}", base36(stamp)))
        .unwrap_or_else(|_| unreachable!("a short ASCII name is always valid"))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `POST /api/create-room`.
pub(crate) async fn create_room(
    State(state): State<RoomsState>,
    headers: HeaderMap,
    // Applied after the body is read, as an over-limit body is 413 from anyone.
    user: Result<AuthUser, HubError>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedRoom>), HubError> {
    let AuthUser(user) = user?;
    let mut request = parse_create(&body)?;
    if let Some(category) = state.settings.rooms_category_id {
        if request.parent_id.is_some_and(|parent| parent != category) {
            return Err(field_error(
                "parentId must be the rooms category (ROOMS_CATEGORY_ID) or absent",
                "parentId",
            ));
        }
        request.parent_id = Some(category);
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX_LEN)
                .ok_or_else(|| field_error("invalid Idempotency-Key", "Idempotency-Key"))?
                .to_owned(),
        ),
    };
    let Some(key) = key else {
        rate_limit(&state.rooms_memory, &user).await?;
        let room = create(&state, &user, request).await?;
        return Ok((StatusCode::CREATED, Json(room)));
    };
    // Retries with one key (on any hub) get the first attempt's answer.
    let claimed = match state.rooms_memory.claim(&user.subject, &key).await? {
        Claim::Answered(room) => return Ok((StatusCode::CREATED, Json(room))),
        Claim::Mine(claimed) => claimed,
    };
    let created = match rate_limit(&state.rooms_memory, &user).await {
        Ok(()) => create(&state, &user, request).await,
        Err(error) => Err(error),
    };
    match created {
        Ok(room) => {
            claimed.finish(&room).await;
            Ok((StatusCode::CREATED, Json(room)))
        }
        Err(error) => {
            claimed.release().await;
            Err(error)
        }
    }
}

async fn create(
    state: &RoomsState,
    user: &VerifiedUser,
    request: CreateRoomRequest,
) -> Result<CreatedRoom, HubError> {
    let guild_id = state.settings.primary_guild_id;
    let permit = state.access.may_create(user).await?;
    let channel = state
        .rooms
        .create_voice_channel(CreateVoiceChannel {
            guild_id,
            name: request.name.clone(),
            parent_id: request.parent_id,
            user_limit: request.user_limit,
            audit_reason: format!("Spell Coven room created by user {}", user.subject),
        })
        .await?;
    state
        .access
        .created(permit, channel.id, &user.subject)
        .await;
    let name = RoomName::try_from(channel.name.clone()).unwrap_or(request.name);
    let user_limit = channel
        .user_limit
        .and_then(|n| UserLimit::try_from(n).ok())
        .unwrap_or(request.user_limit);
    let event = Event::RoomCreated(RoomCreated {
        channel_id: channel.id,
        name: name.clone(),
        guild_id,
        parent_id: channel.parent_id,
        user_limit,
    });
    // The channel exists now: a broker failure must not turn it into an error the
    // client retries (creating a second channel); the gateway's webhook will still
    // announce the room.
    if let Err(error) = state
        .broker
        .publish(event, vec![OnceKey::RoomCreated(channel.id)])
        .await
    {
        tracing::warn!(%error, channel = %channel.id, "room.created not published");
    }
    tracing::info!(channel = %channel.id, user = %user.subject, "room created");
    Ok(CreatedRoom {
        channel_id: channel.id,
        name: name.to_string(),
        guild_id,
    })
}

/// `DELETE /api/end-room/{channelId}`.
pub(crate) async fn end_room(
    State(state): State<RoomsState>,
    Path(channel_id): Path<String>,
    AuthUser(user): AuthUser,
) -> Result<Json<OkBody>, HubError> {
    let channel_id: Snowflake = channel_id
        .parse()
        .map_err(|_| field_error("channelId must be a snowflake", "channelId"))?;
    rate_limit(&state.rooms_memory, &user).await?;
    voice_room(&state, channel_id).await?;
    state.access.authorize(&user, channel_id).await?;
    state
        .rooms
        .delete_channel(
            channel_id,
            format!("Spell Coven room ended by user {}", user.subject),
        )
        .await?;
    state.access.ended(channel_id).await;
    tracing::info!(channel = %channel_id, user = %user.subject, "room ended");
    Ok(Json(OkBody { ok: true }))
}

/// The channel, when it is a room (docs/spec.md §7.1): 404 when Discord does not
/// know it, 403 when it is not a voice channel of the primary guild or not a room.
pub(crate) async fn voice_room(
    state: &RoomsState,
    channel_id: Snowflake,
) -> Result<ChannelInfo, HubError> {
    let channel = state.rooms.get_channel(channel_id).await?;
    if channel.guild_id != Some(state.settings.primary_guild_id)
        || channel.kind != VOICE_CHANNEL_TYPE
    {
        return Err(HubError::Forbidden(
            "not a voice channel of this guild".into(),
        ));
    }
    crate::room_visibility::ensure_room(state.voice_view.as_ref(), channel_id).await?;
    Ok(channel)
}

/// An in-memory [`RoomsBackend`] for tests and demos without Discord.
#[derive(Debug)]
pub struct MemoryRooms {
    next_id: AtomicU64,
    channels: Mutex<HashMap<Snowflake, ChannelInfo>>,
    profiles: Mutex<HashMap<Snowflake, MemberProfile>>,
    created: AtomicU64,
    /// Channels hidden from `@everyone`: no rooms.
    hidden: Mutex<std::collections::HashSet<Snowflake>>,
    permissions: Mutex<HashMap<Snowflake, MemberPermissions>>,
}

impl MemoryRooms {
    /// An empty guild whose new channel ids start at `first_id`.
    pub fn new(first_id: u64) -> Self {
        Self {
            next_id: AtomicU64::new(first_id.max(1)),
            channels: Mutex::new(HashMap::new()),
            profiles: Mutex::new(HashMap::new()),
            created: AtomicU64::new(0),
            hidden: Mutex::default(),
            permissions: Mutex::new(HashMap::new()),
        }
    }

    /// Hides a channel from `@everyone` (or shows it again): a hidden one is no room.
    pub fn set_hidden(&self, id: Snowflake, hidden: bool) {
        let mut set = self
            .hidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hidden {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// Adds an existing channel.
    pub fn insert(&self, channel: ChannelInfo) {
        self.lock().insert(channel.id, channel);
    }

    /// Makes `user_id` a member with `profile`.
    pub fn insert_profile(&self, user_id: Snowflake, profile: MemberProfile) {
        self.profiles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user_id, profile);
    }

    /// Gives `user_id` guild-wide `permissions` (Discord's bits, e.g.
    /// `MANAGE_CHANNELS`), or makes them the guild owner with `owner`.
    pub fn set_permissions(&self, user_id: Snowflake, owner: bool, permissions: u64) {
        self.permissions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user_id, MemberPermissions { owner, permissions });
    }

    /// How many channels were created through the backend.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Whether `id` exists.
    pub fn contains(&self, id: Snowflake) -> bool {
        self.lock().contains_key(&id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Snowflake, ChannelInfo>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RoomsBackend for MemoryRooms {
    fn create_voice_channel(
        &self,
        request: CreateVoiceChannel,
    ) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let channel = ChannelInfo {
            id: Snowflake::new(id).unwrap_or(request.guild_id),
            guild_id: Some(request.guild_id),
            kind: VOICE_CHANNEL_TYPE,
            name: request.name.to_string(),
            parent_id: request.parent_id,
            user_limit: Some(request.user_limit.get()),
        };
        self.insert(channel.clone());
        self.created.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(channel) })
    }

    fn get_channel(&self, channel_id: Snowflake) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        let found = self.lock().get(&channel_id).cloned();
        Box::pin(async move { found.ok_or(RoomsError::UnknownChannel) })
    }

    fn delete_channel(
        &self,
        channel_id: Snowflake,
        _audit_reason: String,
    ) -> BoxFuture<'_, Result<(), RoomsError>> {
        let removed = self.lock().remove(&channel_id);
        Box::pin(async move { removed.map(|_| ()).ok_or(RoomsError::UnknownChannel) })
    }

    fn guild_channels(
        &self,
        guild_id: Snowflake,
    ) -> BoxFuture<'_, Result<Vec<ChannelInfo>, RoomsError>> {
        let mut channels: Vec<ChannelInfo> = self
            .lock()
            .values()
            .filter(|c| c.guild_id == Some(guild_id))
            .cloned()
            .collect();
        channels.sort_by_key(|c| c.id);
        Box::pin(async move { Ok(channels) })
    }

    fn room_channels(
        &self,
        guild_id: Snowflake,
    ) -> BoxFuture<'_, Result<Vec<ChannelInfo>, RoomsError>> {
        let hidden = self
            .hidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut channels: Vec<ChannelInfo> = self
            .lock()
            .values()
            .filter(|c| c.guild_id == Some(guild_id) && c.kind == VOICE_CHANNEL_TYPE)
            .filter(|c| !hidden.contains(&c.id))
            .cloned()
            .collect();
        channels.sort_by_key(|c| c.id);
        Box::pin(async move { Ok(channels) })
    }

    fn member_profile(
        &self,
        _guild_id: Snowflake,
        user_id: Snowflake,
    ) -> BoxFuture<'_, Result<Option<MemberProfile>, RoomsError>> {
        let found = self
            .profiles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&user_id)
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn member_permissions(
        &self,
        _guild_id: Snowflake,
        user_id: Snowflake,
    ) -> BoxFuture<'_, Result<MemberPermissions, RoomsError>> {
        let found = self
            .permissions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&user_id)
            .copied()
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_and_default_names() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        let a = default_room_name();
        let b = default_room_name();
        assert!(a.as_str().starts_with("spell-coven-"));
        assert_ne!(a, b);
    }

    #[test]
    fn create_body_validation() {
        let ok = parse_create(b"").unwrap();
        assert_eq!(ok.user_limit.get(), 4);
        assert!(ok.parent_id.is_none());
        let ok = parse_create(br#"{"name":"Table","parentId":"9","userLimit":0}"#).unwrap();
        assert_eq!(ok.name.as_str(), "Table");
        for bad in [
            r#"{"userLimit":100}"#,
            r#"{"userLimit":-1}"#,
            r#"{"userLimit":"4"}"#,
            r#"{"name":""}"#,
            r#"{"name":5}"#,
            r#"{"parentId":"01"}"#,
            r#"{"parentId":9}"#,
            "[1]",
            "nope",
        ] {
            assert!(parse_create(bad.as_bytes()).is_err(), "{bad}");
        }
        let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(101));
        assert!(parse_create(long.as_bytes()).is_err());
    }
}
