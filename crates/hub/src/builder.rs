//! Building a [`Hub`] from its settings: the one place where the parts are chosen
//! and wired into the sub-states of `crate::state`.
//!
//! One build path: [`HubBuilder::build`] opens what the settings name (the Redis
//! link, the own issuer's key file, the Discord login) and fails with a
//! [`HubStartError`] when one cannot be used, rather than starting a hub that
//! silently lacks it. The builder's options replace a part (another broker, an
//! issuer, a voice view source) or add one (a key source, the bot's REST client).

use std::sync::Arc;
use std::time::Duration;

use coven_contract::signature::Verifier;
use coven_discord::{DiscordOAuthClient, DiscordRestClient};

use crate::auth::Auth;
use crate::bot::WorkerCommands;
use crate::broker::{Broker, BrokerLimits, InProcessBroker};
use crate::issuer::HubIssuer;
use crate::jwt::{JwksKeySource, JwtVerifier, KeySource};
use crate::lifecycle::Lifecycle;
use crate::login::Flows;
use crate::metrics;
use crate::permissions::{RoomAccess, RoomLimits};
use crate::profiles::Profiles;
use crate::redis_broker::RedisBroker;
use crate::redis_link::RedisLink;
use crate::room_owners::RoomOwners;
use crate::rooms::RoomsBackend;
use crate::rtc_presence::Presence;
use crate::rtc_relay::{LocalPeers, RtcRelay};
use crate::rtc_route::RedisRoute;
use crate::settings::HubSettings;
use crate::shared_limits::RoomsMemory;
use crate::snapshot::{ChannelsVoiceView, SnapshotCache, VoiceViewSource, WorkerVoiceView};
use crate::start_error::HubStartError;
use crate::state::{
    AppState, BotState, HealthState, Hub, Ingest, LoginRuntime, LoginState, MetricsState,
    RoomsState, SnapshotState, SocketState,
};
use crate::worker_link::WorkerLink;

/// Member profiles cached for the room snapshot.
const PROFILE_CAPACITY: usize = 10_000;
/// How long a cached member profile is used.
const PROFILE_MAX_AGE: Duration = Duration::from_secs(600);

/// Builds a [`Hub`] with optional extra key sources or another broker.
pub struct HubBuilder {
    settings: HubSettings,
    rooms: Arc<dyn RoomsBackend>,
    key_sources: Vec<Arc<dyn KeySource>>,
    broker: Option<Arc<dyn Broker>>,
    issuer: Option<Arc<HubIssuer>>,
    discord_rest: Option<DiscordRestClient>,
    voice_view: Option<Arc<dyn VoiceViewSource>>,
}

impl Hub {
    /// A hub with the in-process broker (or Redis's, with `redis_url`) and, when
    /// configured, the JWKS key source; see [`HubBuilder::build`].
    ///
    /// # Errors
    ///
    /// As [`HubBuilder::build`].
    pub fn new(settings: HubSettings, rooms: Arc<dyn RoomsBackend>) -> Result<Self, HubStartError> {
        Self::builder(settings, rooms).build()
    }

    /// A builder, to add key sources or another broker.
    pub fn builder(settings: HubSettings, rooms: Arc<dyn RoomsBackend>) -> HubBuilder {
        HubBuilder {
            settings,
            rooms,
            key_sources: Vec::new(),
            broker: None,
            issuer: None,
            discord_rest: None,
            voice_view: None,
        }
    }
}

impl HubBuilder {
    /// Trusts one more source of JWT verification keys (tried after the JWKS URL's).
    #[must_use]
    pub fn key_source(mut self, source: Arc<dyn KeySource>) -> Self {
        self.key_sources.push(source);
        self
    }

    /// Uses `broker` instead of the in-process one.
    #[must_use]
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Signs tokens with `issuer` (and trusts them, and serves its JWKS) instead of
    /// the issuer [`Self::build`] opens from the settings.
    #[must_use]
    pub fn issuer(mut self, issuer: Arc<HubIssuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// The bot's REST client, used by login to add users to the primary guild.
    #[must_use]
    pub fn discord_rest(mut self, client: DiscordRestClient) -> Self {
        self.discord_rest = Some(client);
        self
    }

    /// Reads the room snapshot's voice view from `source` instead of the worker
    /// (`worker_endpoints`) or the rooms backend.
    #[must_use]
    pub fn voice_view(mut self, source: Arc<dyn VoiceViewSource>) -> Self {
        self.voice_view = Some(source);
        self
    }

    /// The hub. Without `jwt_public_jwk_url` and without [`Self::issuer`], the hub
    /// runs its own issuer with keys in `<state_dir>/jwt-keys.json` (created on
    /// first start; in memory without a state dir), shared through Redis with
    /// `redis_url`. Inside a Tokio runtime it starts loading the JWT keys (and,
    /// with Redis, following the other hubs' events) at once.
    ///
    /// # Errors
    ///
    /// When `redis_url` is malformed, when the key file cannot be read or written,
    /// or when the login's OAuth settings are invalid.
    pub fn build(self) -> Result<Hub, HubStartError> {
        let settings = Arc::new(self.settings);
        let redis = match &settings.redis_url {
            Some(url) => Some(Arc::new(
                RedisLink::new(url).map_err(|e| HubStartError::Redis(e.into()))?,
            )),
            None => None,
        };
        let issuer = match self.issuer {
            Some(issuer) => Some(issuer),
            None if settings.jwt_public_jwk_url.is_none() => {
                Some(Arc::new(open_issuer(&settings, redis.as_ref())?))
            }
            None => None,
        };
        let login = login_runtime(&settings, self.discord_rest)?;
        let (jwt, key_sources) = jwt_verifier(&settings, self.key_sources, issuer.as_ref());
        let jwt = Arc::new(jwt);
        // The webcams' presence is seeded only from a view that knows who is in
        // voice (the worker's, or one given): the rooms backend's has no members.
        let knows_members = self.voice_view.is_some() || !settings.worker_endpoints.is_empty();
        let voice_view = self
            .voice_view
            .unwrap_or_else(|| default_voice_view(&settings, &self.rooms));
        let seed = knows_members.then(|| voice_view.clone());
        let broker = self
            .broker
            .unwrap_or_else(|| default_broker(&settings, redis.as_ref()));
        let lifecycle = Lifecycle::new(&settings);
        let profiles = Arc::new(Profiles::new(PROFILE_CAPACITY, PROFILE_MAX_AGE));
        let flows = Flows::new(
            settings.login.as_ref(),
            redis.clone().map(|link| (link, settings.primary_guild_id)),
        );
        let access = Arc::new(room_access(&settings, redis.as_ref(), &self.rooms));
        let rooms = RoomsState {
            settings: settings.clone(),
            rooms: self.rooms.clone(),
            broker: broker.clone(),
            rooms_memory: Arc::new(RoomsMemory::new(&settings, redis.clone())),
            voice_view: voice_view.clone(),
            access: access.clone(),
        };
        let app = AppState {
            auth: Auth { jwt: jwt.clone() },
            ingest: Ingest {
                settings: settings.clone(),
                webhook_verifier: Arc::new(Verifier::new(settings.hub_secrets.clone())),
                broker: broker.clone(),
                access,
            },
            socket: SocketState {
                settings: settings.clone(),
                jwt,
                broker: broker.clone(),
                lifecycle: lifecycle.clone(),
                rtc: rtc_relay(&settings, &broker, seed, redis.as_ref(), &lifecycle),
            },
            bot: BotState {
                rooms: rooms.clone(),
                worker_commands: worker_link(&settings).map(|l| Arc::new(WorkerCommands::new(l))),
            },
            rooms,
            snapshot: SnapshotState {
                settings: settings.clone(),
                broker: broker.clone(),
                voice_view,
                cache: Arc::new(SnapshotCache::new(settings.snapshot_cache_ttl)),
                profiles: profiles.clone(),
                rooms: self.rooms,
            },
            login: LoginState {
                settings: settings.clone(),
                issuer,
                login: login.map(Arc::new),
                flows: Arc::new(flows),
                profiles,
            },
            health: HealthState {
                settings: settings.clone(),
                broker,
                lifecycle: lifecycle.clone(),
                key_sources,
                redis,
            },
            metrics: MetricsState {
                metrics: metrics::handle(settings.metrics.clone()),
            },
        };
        let hub = Hub {
            app,
            settings,
            lifecycle,
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            hub.warm_up_keys();
        }
        Ok(hub)
    }
}

/// The own issuer from the settings, sharing its keys through `redis` when set.
fn open_issuer(
    settings: &HubSettings,
    redis: Option<&Arc<RedisLink>>,
) -> Result<HubIssuer, HubStartError> {
    let issuer = HubIssuer::open(settings).map_err(HubStartError::KeyStore)?;
    Ok(match redis {
        Some(link) => issuer.share_through(link.clone(), settings.primary_guild_id),
        None => issuer,
    })
}

/// The login, when configured.
fn login_runtime(
    settings: &HubSettings,
    rest: Option<DiscordRestClient>,
) -> Result<Option<LoginRuntime>, HubStartError> {
    let Some(login) = settings.login.as_ref() else {
        return Ok(None);
    };
    let oauth = DiscordOAuthClient::new(login.oauth.clone()).map_err(HubStartError::Login)?;
    Ok(Some(LoginRuntime {
        oauth,
        rest,
        secure_cookie: login.oauth.redirect_uri.scheme() == "https",
    }))
}

/// The JWT verifier over every key source, in order: the JWKS URL's, the ones
/// given to the builder, the own issuer; and how many there are.
fn jwt_verifier(
    settings: &HubSettings,
    extra: Vec<Arc<dyn KeySource>>,
    issuer: Option<&Arc<HubIssuer>>,
) -> (JwtVerifier, usize) {
    let mut jwt = JwtVerifier::new(
        settings.jwt_issuer.clone(),
        settings.jwt_audience.clone(),
        settings.jwt_leeway,
    );
    let mut key_sources = 0;
    if let Some(url) = &settings.jwt_public_jwk_url {
        jwt.add_source(Arc::new(
            JwksKeySource::new(url.clone(), settings.jwks_refresh_interval)
                .with_max_age(settings.jwks_max_age),
        ));
        key_sources += 1;
    }
    for source in extra {
        jwt.add_source(source);
        key_sources += 1;
    }
    if let Some(issuer) = issuer {
        jwt.add_source(issuer.clone());
        key_sources += 1;
    }
    (jwt, key_sources)
}

/// Redis's broker with `redis` (following the guild's events inside a runtime),
/// else the in-process one.
fn default_broker(settings: &HubSettings, redis: Option<&Arc<RedisLink>>) -> Arc<dyn Broker> {
    let limits = BrokerLimits {
        replay_capacity: settings.replay_capacity,
        replay_max_age: settings.replay_max_age,
        dedupe_capacity: settings.dedupe_capacity,
        dedupe_max_age: settings.dedupe_max_age,
    };
    match redis {
        Some(link) => {
            let broker = RedisBroker::with_link(link.clone(), limits);
            if tokio::runtime::Handle::try_current().is_ok() {
                broker.follow(settings.primary_guild_id);
            }
            Arc::new(broker)
        }
        None => Arc::new(InProcessBroker::open(limits, settings.state_dir.as_deref())),
    }
}

/// The room rules over the record of who created which room: Redis's with
/// `redis`, else `<state_dir>/room-owners.redb` (in memory without a state dir, or
/// when the file cannot be opened, e.g. another hub holds it: logged, like the
/// broker's once-keys).
fn room_access(
    settings: &HubSettings,
    redis: Option<&Arc<RedisLink>>,
    rooms: &Arc<dyn RoomsBackend>,
) -> RoomAccess {
    let owners = match (redis, settings.state_dir.as_deref()) {
        (Some(link), _) => RoomOwners::shared(link.clone(), settings.primary_guild_id),
        (None, Some(dir)) => RoomOwners::open(dir).unwrap_or_else(|error| {
            tracing::error!(%error, "room creators kept in memory only: a restart forgets them");
            RoomOwners::in_memory()
        }),
        (None, None) => RoomOwners::in_memory(),
    };
    RoomAccess::new(
        settings.primary_guild_id,
        rooms.clone(),
        owners,
        RoomLimits {
            max_per_user: settings.max_rooms_per_user,
            max_per_guild: settings.max_rooms_per_guild,
            cache_ttl: settings.member_permissions_ttl,
        },
    )
}

/// The worker's voice view when worker endpoints are set, else the rooms backend's
/// voice channels without members.
fn default_voice_view(
    settings: &HubSettings,
    rooms: &Arc<dyn RoomsBackend>,
) -> Arc<dyn VoiceViewSource> {
    match settings.hub_secrets.first() {
        Some(secret) if !settings.worker_endpoints.is_empty() => Arc::new(WorkerVoiceView::new(
            &settings.worker_endpoints,
            secret.clone(),
        )),
        _ => Arc::new(ChannelsVoiceView::new(
            rooms.clone(),
            settings.primary_guild_id,
        )),
    }
}

/// The webcams' relay: voice presence observed on `broker` and seeded from
/// `seed` (when the hub has a view of who is in voice), the other hubs through
/// Redis. Inside a Tokio runtime its tasks start at once and stop at shutdown.
fn rtc_relay(
    settings: &HubSettings,
    broker: &Arc<dyn Broker>,
    seed: Option<Arc<dyn VoiceViewSource>>,
    redis: Option<&Arc<RedisLink>>,
    lifecycle: &Lifecycle,
) -> Arc<RtcRelay> {
    let guild = settings.primary_guild_id;
    let presence = Arc::new(Presence::new(broker.clone(), guild));
    let peers = Arc::new(LocalPeers::default());
    let mut route = None;
    if tokio::runtime::Handle::try_current().is_ok() {
        broker.follow(guild);
        let stop = lifecycle.shutdown();
        presence.run(seed, stop.clone());
        if let (Some(link), Some(url)) = (redis, &settings.redis_url) {
            route = RedisRoute::start(link.clone(), url, guild, peers.clone(), stop);
        }
    }
    Arc::new(RtcRelay::new(
        presence,
        peers,
        route,
        settings.ice.clone(),
        settings.rtc_limits,
    ))
}

/// A link to the worker's endpoints, when any is set, signing with the first secret.
fn worker_link(settings: &HubSettings) -> Option<WorkerLink> {
    let secret = settings.hub_secrets.first()?;
    (!settings.worker_endpoints.is_empty())
        .then(|| WorkerLink::new(settings.worker_endpoints.clone(), secret.clone()))
}
