//! The room snapshot, `GET /api/rooms`: every room of the primary guild and who is
//! in it, for a page that just loaded (then live through `/api/ws`).
//!
//! `seq` is the broker's last `seq` for the guild, read BEFORE the view is fetched:
//! a client that then connects with `lastSeq=seq` replays every event newer than
//! the snapshot and applies it idempotently (an event already reflected in the view
//! changes nothing). Rooms and members come from a [`VoiceViewSource`]: the worker's
//! signed `GET /voice-view` ([`WorkerVoiceView`], through `worker_link`, either
//! worker of a pair) or, without a worker, the guild's rooms with nobody in them
//! ([`ChannelsVoiceView`]). Either holds rooms only (docs/spec.md §7.1), and the
//! rooms API's 403 for a channel that is not a room reads the same source.
//!
//! The snapshot is the same for every signed-in user, so a page reload storm must
//! not become a storm of `/voice-view` requests: [`SnapshotCache`] keeps the view
//! it read (with the `seq` read before it) for `HubSettings::snapshot_cache_ttl`
//! (1 s, docs/spec.md §7.2), and requests arriving while a read is in flight wait
//! for that one read. Only the snapshot is cached: the room checks of the rooms
//! API read the source afresh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use coven_contract::internal::{VOICE_VIEW_PATH, VoiceRoom, VoiceView};
use coven_contract::{Secret, Snowflake, VoiceFlags};
use futures_util::future::{BoxFuture, join_all};
use reqwest::Method;
use serde::Serialize;
use url::Url;

use crate::auth::AuthUser;
use crate::error::HubError;
use crate::rooms::{RoomsBackend, RoomsError};
use crate::state::SnapshotState;
use crate::worker_link::{LinkError, WorkerLink};

/// Largest `/voice-view` answer read.
const MAX_VIEW_BYTES: usize = 4 * 1024 * 1024;
/// How long one endpoint may take to answer `/voice-view`.
const VIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the snapshot's rooms and members come from.
pub trait VoiceViewSource: Send + Sync + 'static {
    /// The current view.
    fn fetch(&self) -> BoxFuture<'_, Result<VoiceView, RoomsError>>;
}

/// The worker's view: `GET {endpoint}/voice-view`, signed (docs/spec.md §8: method,
/// path, timestamp, a unique id and the empty body) with the first `HUB_SECRET`.
/// With several endpoints (an
/// active/standby pair) the one that last answered is asked first, the others
/// when it is unreachable or answers 503.
pub struct WorkerVoiceView {
    link: WorkerLink,
}

impl std::fmt::Debug for WorkerVoiceView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerVoiceView")
            .field("link", &self.link)
            .finish()
    }
}

impl WorkerVoiceView {
    /// A source reading `{endpoint}/voice-view` from `endpoints` (the worker's base
    /// URLs, e.g. both workers of a pair; at least one).
    ///
    /// # Panics
    ///
    /// When `endpoints` is empty.
    pub fn new(endpoints: &[Url], secret: Secret) -> Self {
        assert!(!endpoints.is_empty(), "at least one worker endpoint");
        Self {
            link: WorkerLink::new(endpoints.to_vec(), secret),
        }
    }
}

impl VoiceViewSource for WorkerVoiceView {
    fn fetch(&self) -> BoxFuture<'_, Result<VoiceView, RoomsError>> {
        Box::pin(async move {
            let upstream = |e: reqwest::Error| {
                RoomsError::Upstream(format!("worker voice view: {}", e.without_url()))
            };
            let response = self
                .link
                .send(Method::GET, VOICE_VIEW_PATH, Bytes::new(), VIEW_TIMEOUT)
                .await
                .map_err(|error| match error {
                    LinkError::Unreachable(e) => upstream(e),
                    LinkError::Unavailable(r) => {
                        RoomsError::Upstream(format!("worker voice view: {}", r.status()))
                    }
                })?
                .error_for_status()
                .map_err(upstream)?;
            if response
                .content_length()
                .is_some_and(|n| n > MAX_VIEW_BYTES as u64)
            {
                return Err(RoomsError::Upstream("worker voice view too large".into()));
            }
            let body = response.bytes().await.map_err(upstream)?;
            if body.len() > MAX_VIEW_BYTES {
                return Err(RoomsError::Upstream("worker voice view too large".into()));
            }
            serde_json::from_slice(&body)
                .map_err(|e| RoomsError::Upstream(format!("worker voice view: {e}")))
        })
    }
}

/// Without a worker: the guild's rooms (the rooms backend's voice channels that
/// `@everyone` may view, docs/spec.md §7.1), empty.
pub struct ChannelsVoiceView {
    rooms: Arc<dyn RoomsBackend>,
    guild_id: Snowflake,
}

impl ChannelsVoiceView {
    /// Lists `guild_id`'s voice channels through `rooms`.
    pub fn new(rooms: Arc<dyn RoomsBackend>, guild_id: Snowflake) -> Self {
        Self { rooms, guild_id }
    }
}

impl VoiceViewSource for ChannelsVoiceView {
    fn fetch(&self) -> BoxFuture<'_, Result<VoiceView, RoomsError>> {
        Box::pin(async move {
            let channels = self.rooms.room_channels(self.guild_id).await?;
            let rooms = channels
                .into_iter()
                .map(|c| {
                    let limit = c.user_limit.map(u32::from);
                    (
                        c.id,
                        VoiceRoom::from_channel(Some(c.name), c.parent_id, limit),
                    )
                })
                .collect();
            Ok(VoiceView {
                rooms,
                members: BTreeMap::new(),
            })
        })
    }
}

/// The last view read for the snapshot, shared by the requests of one TTL window.
pub(crate) struct SnapshotCache {
    ttl: Duration,
    last: tokio::sync::Mutex<Option<CachedView>>,
}

/// One read of the view: when it started, the `seq` read just before, its answer
/// (an error is shared too: a dead worker is asked once per window, not once per
/// request).
struct CachedView {
    started: Instant,
    seq: u64,
    view: Result<VoiceView, RoomsError>,
}

impl SnapshotCache {
    /// A cache whose reads are reused for `ttl` (zero: never).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The `seq` and the view of a read started less than the TTL ago, or of a new
    /// read of `source` (`seq` from `read_seq`, taken before the view). Concurrent
    /// callers wait for the read in flight rather than start their own.
    async fn get(
        &self,
        read_seq: impl FnOnce() -> u64,
        source: &dyn VoiceViewSource,
    ) -> (u64, Result<VoiceView, RoomsError>) {
        if self.ttl.is_zero() {
            let seq = read_seq();
            return (seq, source.fetch().await);
        }
        let mut last = self.last.lock().await;
        if let Some(cached) = last.as_ref()
            && cached.started.elapsed() < self.ttl
        {
            return (cached.seq, cached.view.clone());
        }
        let started = Instant::now();
        let seq = read_seq();
        let view = source.fetch().await;
        *last = Some(CachedView {
            started,
            seq,
            view: view.clone(),
        });
        (seq, view)
    }
}

/// `GET /api/rooms` body.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    /// The guild (`PRIMARY_GUILD_ID`).
    guild_id: Snowflake,
    /// The `seq` this snapshot is current at: resume the socket with it as `lastSeq`.
    seq: u64,
    /// Every room (docs/spec.md §7.1) with its members.
    rooms: Vec<SnapshotRoom>,
}

/// A room in the snapshot.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct SnapshotRoom {
    /// The voice channel.
    channel_id: Snowflake,
    /// Its name.
    name: String,
    /// Its category, or `null`.
    parent_id: Option<Snowflake>,
    /// How many users may join (0 = unlimited).
    #[schemars(range(max = 99))]
    user_limit: u32,
    /// Who is in it, with their voice flags.
    members: Vec<SnapshotMember>,
}

/// A member of a room in the snapshot.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct SnapshotMember {
    /// The user.
    user_id: Snowflake,
    /// Their display name, or `null` when the hub does not know it.
    name: Option<String>,
    /// Their avatar (Discord CDN), or `null`.
    avatar_url: Option<String>,
    #[serde(flatten)]
    flags: VoiceFlags,
}

/// `GET /api/rooms`.
pub(crate) async fn rooms(
    State(state): State<SnapshotState>,
    _user: AuthUser,
) -> Result<Json<Snapshot>, HubError> {
    let guild_id = state.settings.primary_guild_id;
    // First the seq, then the view: anything after `seq` is replayed on connect.
    let (seq, view) = state
        .cache
        .get(
            || state.broker.ring_state(guild_id).head_seq,
            state.voice_view.as_ref(),
        )
        .await;
    let view = view?;
    let profiles = join_all(view.members.keys().map(|&user| {
        let state = state.clone();
        async move {
            let profile = state
                .profiles
                .get(state.rooms.as_ref(), guild_id, user)
                .await;
            (user, profile)
        }
    }))
    .await;
    let mut profiles: BTreeMap<Snowflake, _> = profiles.into_iter().collect();
    let mut rooms: BTreeMap<Snowflake, SnapshotRoom> = view
        .rooms
        .into_iter()
        .map(|(channel_id, room)| {
            (
                channel_id,
                SnapshotRoom {
                    channel_id,
                    name: room.name.into(),
                    parent_id: room.parent_id,
                    user_limit: u32::from(room.user_limit.get()),
                    members: Vec::new(),
                },
            )
        })
        .collect();
    for (user_id, member) in view.members {
        let Some(room) = rooms.get_mut(&member.channel_id) else {
            continue;
        };
        let profile = profiles.remove(&user_id).flatten();
        room.members.push(SnapshotMember {
            user_id,
            name: profile.as_ref().map(|p| p.name.clone()),
            avatar_url: profile.and_then(|p| p.avatar_url),
            flags: member.flags,
        });
    }
    Ok(Json(Snapshot {
        guild_id,
        seq,
        rooms: rooms.into_values().collect(),
    }))
}
