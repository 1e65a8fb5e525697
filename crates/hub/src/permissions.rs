//! Who may act on a room, and how many rooms one may create (docs/spec.md §7.1;
//! docs/security.md "Who may act on a room").
//!
//! The rule, in one place: ending a room (`DELETE /api/end-room/{id}`) and
//! commanding the bot in it (`/api/rooms/{id}/bot`, `/cue`) is allowed to
//!
//! 1. the member who created it through the API (`crate::room_owners`, durable),
//! 2. a member whose guild permissions include `MANAGE_CHANNELS` or
//!    `ADMINISTRATOR` (the `@everyone` role's permissions combined with those of the
//!    member's roles), or
//! 3. the guild's owner;
//!
//! anyone else gets 403 `FORBIDDEN`. Points 2 and 3 come from
//! [`RoomsBackend::member_permissions`] (Discord REST in production, a table in
//! `MemoryRooms`), cached per user for a short while ([`ACCESS_CACHE_TTL`], at
//! most [`ACCESS_CACHE_MAX`] users) so a burst of commands costs one lookup.
//!
//! Creating: a user holds at most `max_rooms_per_user` live API-created rooms and
//! the guild `max_rooms_per_guild` (3 and 50), else 403 naming the limit. Creates
//! on one hub are serialised (check, create, record), so one hub never overshoots;
//! hubs sharing Redis may overshoot by the creates racing at the same instant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coven_contract::Snowflake;
use tokio::sync::MutexGuard;

use crate::error::HubError;
use crate::jwt::VerifiedUser;
use crate::room_owners::RoomOwners;
use crate::rooms::{RoomsBackend, RoomsError};

/// Discord's `ADMINISTRATOR` permission bit.
pub const ADMINISTRATOR: u64 = 1 << 3;
/// Discord's `MANAGE_CHANNELS` permission bit.
pub const MANAGE_CHANNELS: u64 = 1 << 4;

/// How long a member's guild permissions are trusted without asking Discord again.
pub const ACCESS_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most users whose guild permissions are cached at once.
const ACCESS_CACHE_MAX: usize = 10_000;

/// A member's standing in the guild, as far as rooms go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberPermissions {
    /// The member owns the guild.
    pub owner: bool,
    /// Guild-wide permission bits: the `@everyone` role's combined with the member's
    /// roles' (0 for a non-member).
    pub permissions: u64,
}

impl MemberPermissions {
    /// Whether this member may act on any room: the owner, an administrator, or a
    /// member who may manage channels.
    pub fn manages_rooms(self) -> bool {
        self.owner || self.permissions & (ADMINISTRATOR | MANAGE_CHANNELS) != 0
    }
}

/// The room rules: creators, cached guild permissions and the live-room limits.
pub(crate) struct RoomAccess {
    guild: Snowflake,
    rooms: Arc<dyn RoomsBackend>,
    owners: RoomOwners,
    cache: Mutex<HashMap<String, (Instant, bool)>>,
    cache_ttl: Duration,
    max_per_user: usize,
    max_per_guild: usize,
    /// Held from the limit check until the new room is recorded.
    creating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RoomAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomAccess")
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

/// Room limits and the permission cache's lifetime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomLimits {
    pub(crate) max_per_user: usize,
    pub(crate) max_per_guild: usize,
    pub(crate) cache_ttl: Duration,
}

/// The right to create one room (the limits were checked): record the room with
/// [`RoomAccess::created`].
pub(crate) struct CreatePermit<'a> {
    _creating: MutexGuard<'a, ()>,
}

impl RoomAccess {
    pub(crate) fn new(
        guild: Snowflake,
        rooms: Arc<dyn RoomsBackend>,
        owners: RoomOwners,
        limits: RoomLimits,
    ) -> Self {
        Self {
            guild,
            rooms,
            owners,
            cache: Mutex::new(HashMap::new()),
            cache_ttl: limits.cache_ttl,
            max_per_user: limits.max_per_user,
            max_per_guild: limits.max_per_guild,
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// 403 `FORBIDDEN` unless `user` may end `channel` or command the bot in it.
    pub(crate) async fn authorize(
        &self,
        user: &VerifiedUser,
        channel: Snowflake,
    ) -> Result<(), HubError> {
        let creator = self.owners.creator(channel).await;
        if matches!(&creator, Ok(Some(creator)) if *creator == user.subject) {
            return Ok(());
        }
        if self.manages_rooms(&user.subject).await? {
            return Ok(());
        }
        if let Err(error) = creator {
            // The creator could not be looked up: do not claim they are not it.
            tracing::warn!(%error, "room owner lookup failed");
            return Err(HubError::TryLater {
                message: "who created this room cannot be checked right now".into(),
                retry_after: Duration::from_secs(2),
            });
        }
        Err(HubError::Forbidden(
            "only the room's creator or a member who may manage channels may do this".into(),
        ))
    }

    /// Whether `subject` is the guild owner or may manage channels (cached).
    async fn manages_rooms(&self, subject: &str) -> Result<bool, HubError> {
        let Ok(user_id) = subject.parse::<Snowflake>() else {
            return Ok(false);
        };
        let now = Instant::now();
        if let Some(&(at, answer)) = self.lock_cache().get(subject)
            && now.duration_since(at) < self.cache_ttl
        {
            return Ok(answer);
        }
        let answer = self
            .rooms
            .member_permissions(self.guild, user_id)
            .await
            .map_err(HubError::from)?
            .manages_rooms();
        let mut cache = self.lock_cache();
        if cache.len() >= ACCESS_CACHE_MAX {
            cache.retain(|_, (at, _)| now.duration_since(*at) < self.cache_ttl);
            if cache.len() >= ACCESS_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(subject.to_owned(), (now, answer));
        Ok(answer)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, bool)>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the live-room limits for `user` before a create: 403 `FORBIDDEN`
    /// naming the limit reached, 503 when the record cannot be read.
    pub(crate) async fn may_create(
        &self,
        user: &VerifiedUser,
    ) -> Result<CreatePermit<'_>, HubError> {
        let creating = self.creating.lock().await;
        let mut rooms = self.owners.all().await.map_err(|e| unavailable(&e))?;
        let mut mine: Vec<Snowflake> = rooms
            .iter()
            .filter(|(_, creator)| *creator == user.subject)
            .map(|(channel, _)| *channel)
            .collect();
        if mine.len() >= self.max_per_user {
            // A room deleted in Discord while no `room.deleted` reached the hub
            // still counts: check the user's few rooms before refusing.
            for channel in mine.clone() {
                if matches!(
                    self.rooms.get_channel(channel).await,
                    Err(RoomsError::UnknownChannel)
                ) {
                    self.ended(channel).await;
                    mine.retain(|c| *c != channel);
                    rooms.retain(|(c, _)| *c != channel);
                }
            }
        }
        if mine.len() >= self.max_per_user {
            return Err(HubError::Forbidden(format!(
                "room limit reached: at most {} live rooms per user; end one first",
                self.max_per_user
            )));
        }
        if rooms.len() >= self.max_per_guild {
            return Err(HubError::Forbidden(format!(
                "room limit reached: at most {} live rooms in the guild",
                self.max_per_guild
            )));
        }
        Ok(CreatePermit {
            _creating: creating,
        })
    }

    /// Records that `user` created `channel` (releasing the permit).
    pub(crate) async fn created(&self, permit: CreatePermit<'_>, channel: Snowflake, user: &str) {
        if let Err(error) = self.owners.record(channel, user).await {
            // The room exists: failing the request now would make the client retry
            // and create a second one. Managers can still end it.
            tracing::warn!(%error, %channel, "room creator not recorded");
        }
        drop(permit);
    }

    /// The room is gone (ended through the API, or `room.deleted` seen).
    pub(crate) async fn ended(&self, channel: Snowflake) {
        if let Err(error) = self.owners.forget(channel).await {
            tracing::warn!(%error, %channel, "ended room not removed from the owners record");
        }
    }
}

fn unavailable(error: &crate::room_owners::RoomOwnersError) -> HubError {
    tracing::warn!(%error, "room owners record unavailable");
    HubError::TryLater {
        message: "room creation is unavailable for a moment".into(),
        retry_after: Duration::from_secs(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_manages_rooms() {
        let none = MemberPermissions::default();
        assert!(!none.manages_rooms());
        assert!(
            MemberPermissions {
                owner: true,
                permissions: 0
            }
            .manages_rooms()
        );
        for bits in [ADMINISTRATOR, MANAGE_CHANNELS, ADMINISTRATOR | 1 << 10] {
            let member = MemberPermissions {
                owner: false,
                permissions: bits,
            };
            assert!(member.manages_rooms(), "{bits:#x}");
        }
        let viewer = MemberPermissions {
            owner: false,
            permissions: 1 << 10 | 1 << 20,
        };
        assert!(!viewer.manages_rooms());
    }
}
