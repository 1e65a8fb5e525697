//! The hub's state, split by purpose: one small struct per group of handlers.
//!
//! The router carries an [`AppState`] whose fields are these sub-states; axum's
//! `FromRef` (derived on [`AppState`]) lets each handler extract only the one it
//! uses (`State<Ingest>`, `State<RoomsState>`, …), so a handler's signature says
//! what it can touch. Everything shared is an `Arc`, so cloning a sub-state per
//! request is cheap. [`crate::builder`] fills them; [`crate::lifecycle`] and
//! [`crate::routes`] use them.

use std::sync::Arc;

use axum::extract::FromRef;
use coven_contract::signature::Verifier;
use coven_discord::{DiscordOAuthClient, DiscordRestClient};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Auth;
use crate::bot::WorkerCommands;
use crate::broker::Broker;
use crate::issuer::HubIssuer;
use crate::jwt::JwtVerifier;
use crate::lifecycle::Lifecycle;
use crate::login::Flows;
use crate::permissions::RoomAccess;
use crate::profiles::Profiles;
use crate::redis_link::RedisLink;
use crate::rooms::RoomsBackend;
use crate::rtc_relay::RtcRelay;
use crate::settings::HubSettings;
use crate::shared_limits::RoomsMemory;
use crate::snapshot::{SnapshotCache, VoiceViewSource};

/// What the router carries: one sub-state per group of handlers, each extracted
/// on its own through `FromRef`.
#[derive(Clone, FromRef)]
pub(crate) struct AppState {
    pub(crate) auth: Auth,
    pub(crate) ingest: Ingest,
    pub(crate) socket: SocketState,
    pub(crate) rooms: RoomsState,
    pub(crate) bot: BotState,
    pub(crate) snapshot: SnapshotState,
    pub(crate) login: LoginState,
    pub(crate) health: HealthState,
    pub(crate) metrics: MetricsState,
}

/// `POST /api/internal/events`: the webhook's verifier and where events go.
#[derive(Clone)]
pub(crate) struct Ingest {
    pub(crate) settings: Arc<HubSettings>,
    pub(crate) webhook_verifier: Arc<Verifier>,
    pub(crate) broker: Arc<dyn Broker>,
    /// Told when a `room.deleted` is accepted (the room no longer counts).
    pub(crate) access: Arc<RoomAccess>,
}

/// `GET /api/ws`: a browser session's limits, token check, stream and shutdown.
#[derive(Clone)]
pub(crate) struct SocketState {
    pub(crate) settings: Arc<HubSettings>,
    pub(crate) jwt: Arc<JwtVerifier>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) lifecycle: Lifecycle,
    /// The webcams' signalling relay and ICE servers (docs/spec.md §12).
    pub(crate) rtc: Arc<RtcRelay>,
}

/// The rooms API: Discord, the broker `room.created` goes through, and the
/// `Idempotency-Key` answers and rate limits.
#[derive(Clone)]
pub(crate) struct RoomsState {
    pub(crate) settings: Arc<HubSettings>,
    pub(crate) rooms: Arc<dyn RoomsBackend>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) rooms_memory: Arc<RoomsMemory>,
    /// Which channels are rooms (docs/spec.md §7.1): the snapshot's source.
    pub(crate) voice_view: Arc<dyn VoiceViewSource>,
    /// Who may act on a room; the live-room limits.
    pub(crate) access: Arc<RoomAccess>,
}

/// The bot's voice commands: the room checks of the rooms API and the worker.
#[derive(Clone)]
pub(crate) struct BotState {
    pub(crate) rooms: RoomsState,
    /// `None` without `worker_endpoints` (the commands answer 503).
    pub(crate) worker_commands: Option<Arc<WorkerCommands>>,
}

/// `GET /api/rooms`: the voice view, the `seq` it is read after, and the names.
#[derive(Clone)]
pub(crate) struct SnapshotState {
    pub(crate) settings: Arc<HubSettings>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) voice_view: Arc<dyn VoiceViewSource>,
    /// The last view read, reused for `HubSettings::snapshot_cache_ttl`.
    pub(crate) cache: Arc<SnapshotCache>,
    pub(crate) profiles: Arc<Profiles>,
    pub(crate) rooms: Arc<dyn RoomsBackend>,
}

/// The Discord login and the own issuer's JWKS.
#[derive(Clone)]
pub(crate) struct LoginState {
    pub(crate) settings: Arc<HubSettings>,
    /// The hub's own issuer (when it signs tokens).
    pub(crate) issuer: Option<Arc<HubIssuer>>,
    /// `None` without login settings.
    pub(crate) login: Option<Arc<LoginRuntime>>,
    pub(crate) flows: Arc<Flows>,
    /// Filled by logins for the room snapshot.
    pub(crate) profiles: Arc<Profiles>,
}

/// A configured Discord login.
pub(crate) struct LoginRuntime {
    pub(crate) oauth: DiscordOAuthClient,
    /// Adds a signed-in user to the primary guild; `None` skips that step.
    pub(crate) rest: Option<DiscordRestClient>,
    /// The redirect URI is `https`: the login cookie gets `Secure`.
    pub(crate) secure_cookie: bool,
}

/// `GET /health`: readiness and what an operator asks first.
#[derive(Clone)]
pub(crate) struct HealthState {
    pub(crate) settings: Arc<HubSettings>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) lifecycle: Lifecycle,
    /// How many JWT key sources the hub trusts.
    pub(crate) key_sources: usize,
    /// The Redis shared with other hubs, when `REDIS_URL` is set.
    pub(crate) redis: Option<Arc<RedisLink>>,
}

/// `GET /metrics`.
#[derive(Clone)]
pub(crate) struct MetricsState {
    pub(crate) metrics: PrometheusHandle,
}

/// A configured hub: build its router, or serve it until shutdown
/// (`lifecycle`), made by [`crate::HubBuilder`].
#[derive(Clone)]
pub struct Hub {
    pub(crate) app: AppState,
    pub(crate) settings: Arc<HubSettings>,
    pub(crate) lifecycle: Lifecycle,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// The broker events are published through (to publish from in-process code).
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.app.ingest.broker.clone()
    }

    /// The hub's own issuer, when it signs tokens (to rotate its key or mint tokens).
    pub fn issuer(&self) -> Option<Arc<HubIssuer>> {
        self.app.login.issuer.clone()
    }

    /// Open browser sockets.
    pub fn connections(&self) -> usize {
        self.lifecycle.connections()
    }
}
