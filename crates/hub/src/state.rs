//! The hub's shared state, its router and its lifecycle (serve, drain, shut down).
//!
//! Everything a handler needs lives in one [`AppState`] behind an `Arc`; handlers
//! stay thin and call into the modules named for each step of the data path.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::routing::{delete, get, post};
use coven_contract::signature::Verifier;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use coven_discord::{DiscordOAuthClient, DiscordRestClient};

use crate::bot::WorkerCommands;
use crate::broker::{Broker, BrokerLimits, InProcessBroker};
use crate::issuer::HubIssuer;
use crate::jwt::{JwksKeySource, JwtVerifier, KeySource};
use crate::login::Flows;
use crate::profiles::Profiles;
use crate::redis_broker::RedisBroker;
use crate::redis_link::RedisLink;
use crate::rooms::RoomsBackend;
use crate::settings::HubSettings;
use crate::shared_limits::RoomsMemory;
use crate::snapshot::{ChannelsVoiceView, VoiceViewSource, WorkerVoiceView};
use crate::worker_link::WorkerLink;
use crate::{bot, health, ingest, issuer, lobby, login, metrics, rooms, snapshot, socket};

/// Member profiles cached for the room snapshot.
const PROFILE_CAPACITY: usize = 10_000;
/// How long a cached member profile is used.
const PROFILE_MAX_AGE: Duration = Duration::from_secs(600);

/// A configured Discord login.
pub(crate) struct LoginRuntime {
    pub(crate) oauth: DiscordOAuthClient,
    /// Adds a signed-in user to the primary guild; `None` skips that step.
    pub(crate) rest: Option<DiscordRestClient>,
    /// The redirect URI is `https`: the login cookie gets `Secure`.
    pub(crate) secure_cookie: bool,
}

/// Largest accepted `POST /api/create-room` body.
const CREATE_BODY_MAX_BYTES: usize = 16 * 1024;

/// The `Arc` every handler receives.
pub(crate) type SharedState = Arc<AppState>;

/// Everything the handlers share.
pub(crate) struct AppState {
    pub(crate) settings: HubSettings,
    pub(crate) webhook_verifier: Verifier,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) jwt: JwtVerifier,
    pub(crate) key_sources: usize,
    pub(crate) rooms: Arc<dyn RoomsBackend>,
    /// The hub's own issuer (when it signs tokens).
    pub(crate) issuer: Option<Arc<HubIssuer>>,
    pub(crate) login: Option<LoginRuntime>,
    pub(crate) flows: Flows,
    pub(crate) profiles: Profiles,
    pub(crate) voice_view: Arc<dyn VoiceViewSource>,
    pub(crate) worker_commands: Option<WorkerCommands>,
    /// `Idempotency-Key` answers and rate limits of the rooms API.
    pub(crate) rooms_memory: RoomsMemory,
    /// The Redis shared with other hubs, when `REDIS_URL` is set.
    pub(crate) redis: Option<Arc<RedisLink>>,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) shutdown: CancellationToken,
    pub(crate) ready: AtomicBool,
    /// Every JWT key source can verify tokens (e.g. the JWKS was fetched once).
    pub(crate) keys_ready: AtomicBool,
    warming: AtomicBool,
    connections: AtomicUsize,
    drained: Notify,
}

impl AppState {
    /// Counts one open browser socket until the guard drops.
    pub(crate) fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Decrements the socket count on drop.
pub(crate) struct ConnectionGuard(Arc<AppState>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Builds a [`Hub`] with optional extra key sources or another broker.
pub struct HubBuilder {
    settings: HubSettings,
    rooms: Arc<dyn RoomsBackend>,
    key_sources: Vec<Arc<dyn KeySource>>,
    broker: Option<Arc<dyn Broker>>,
    issuer: Option<Arc<HubIssuer>>,
    discord_rest: Option<DiscordRestClient>,
    voice_view: Option<Arc<dyn VoiceViewSource>>,
    /// The link to `redis_url`, once opened.
    redis: Option<Arc<RedisLink>>,
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
    /// the issuer [`Self::try_build`] opens from the settings.
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
    /// first start); fails when that file cannot be read or written, or when the
    /// login's OAuth settings are invalid.
    pub fn try_build(mut self) -> Result<Hub, crate::HubError> {
        if let Some(url) = &self.settings.redis_url {
            self.redis = Some(Arc::new(
                RedisLink::new(url).map_err(|e| crate::HubError::Internal(e.to_string()))?,
            ));
        }
        if self.issuer.is_none() && self.settings.jwt_public_jwk_url.is_none() {
            let issuer = HubIssuer::open(&self.settings).map_err(|e| {
                crate::HubError::Internal(format!("JWT signing keys not available: {e}"))
            })?;
            let issuer = match &self.redis {
                Some(link) => issuer.share_through(link.clone(), self.settings.primary_guild_id),
                None => issuer,
            };
            self.issuer = Some(Arc::new(issuer));
        }
        if let Some(login) = &self.settings.login {
            DiscordOAuthClient::new(login.oauth.clone())
                .map_err(|e| crate::HubError::Internal(format!("login settings: {e}")))?;
        }
        Ok(self.build())
    }

    /// The hub. Like [`Self::try_build`], but a key file or login configuration that
    /// fails is logged and the hub runs without it (an in-memory key, no login);
    /// a malformed `redis_url` is logged and the hub runs alone.
    pub fn build(mut self) -> Hub {
        let redis = self.redis.take().or_else(|| {
            let url = self.settings.redis_url.as_ref()?;
            RedisLink::new(url)
                .map_err(|error| tracing::error!(%error, "running without Redis"))
                .ok()
                .map(Arc::new)
        });
        self.open_issuer(redis.as_ref());
        let settings = self.settings;
        let mut jwt = JwtVerifier::new(
            settings.jwt_issuer.clone(),
            settings.jwt_audience.clone(),
            settings.jwt_leeway,
        );
        let mut key_sources = 0;
        if let Some(url) = &settings.jwt_public_jwk_url {
            jwt.add_source(Arc::new(JwksKeySource::new(
                url.clone(),
                settings.jwks_refresh_interval,
            )));
            key_sources += 1;
        }
        for source in self.key_sources {
            jwt.add_source(source);
            key_sources += 1;
        }
        if let Some(issuer) = &self.issuer {
            jwt.add_source(issuer.clone());
            key_sources += 1;
        }
        let login = login_runtime(&settings, self.discord_rest.clone());
        let voice_view = self
            .voice_view
            .unwrap_or_else(|| default_voice_view(&settings, &self.rooms));
        let limits = BrokerLimits {
            replay_capacity: settings.replay_capacity,
            replay_max_age: settings.replay_max_age,
            dedupe_capacity: settings.dedupe_capacity,
            dedupe_max_age: settings.dedupe_max_age,
        };
        let broker: Arc<dyn Broker> = match (self.broker, &redis) {
            (Some(broker), _) => broker,
            (None, Some(link)) => {
                let broker = RedisBroker::with_link(link.clone(), limits);
                if tokio::runtime::Handle::try_current().is_ok() {
                    broker.follow(settings.primary_guild_id);
                }
                Arc::new(broker)
            }
            (None, None) => Arc::new(InProcessBroker::open(limits, settings.state_dir.as_deref())),
        };
        let state = AppState {
            webhook_verifier: Verifier::new(settings.hub_secrets.clone()),
            broker,
            jwt,
            key_sources,
            rooms: self.rooms,
            issuer: self.issuer,
            login,
            flows: Flows::new(
                settings
                    .login
                    .as_ref()
                    .map_or(Duration::from_secs(600), |l| l.flow_ttl),
                redis.clone().map(|link| (link, settings.primary_guild_id)),
            ),
            profiles: Profiles::new(PROFILE_CAPACITY, PROFILE_MAX_AGE),
            voice_view,
            worker_commands: worker_link(&settings).map(WorkerCommands::new),
            rooms_memory: RoomsMemory::new(&settings, redis.clone()),
            redis,
            metrics: metrics::handle(settings.metrics.clone()),
            shutdown: CancellationToken::new(),
            ready: AtomicBool::new(true),
            keys_ready: AtomicBool::new(false),
            warming: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            drained: Notify::new(),
            settings,
        };
        let hub = Hub {
            state: Arc::new(state),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            hub.warm_up_keys();
        }
        hub
    }

    /// Opens the own issuer from the settings (unless one was given or an external
    /// issuer is configured), sharing its keys through `redis` when set.
    fn open_issuer(&mut self, redis: Option<&Arc<RedisLink>>) {
        if self.issuer.is_none() && self.settings.jwt_public_jwk_url.is_none() {
            let opened = HubIssuer::open(&self.settings).or_else(|error| {
                tracing::error!(%error, "JWT key file unusable; signing with an in-memory key");
                HubIssuer::with_key_file(
                    None,
                    self.settings.jwt_issuer.clone(),
                    self.settings.jwt_audience.clone(),
                    self.settings.jwt_ttl,
                )
            });
            match opened {
                Ok(issuer) => {
                    let issuer = match redis {
                        Some(link) => {
                            issuer.share_through(link.clone(), self.settings.primary_guild_id)
                        }
                        None => issuer,
                    };
                    self.issuer = Some(Arc::new(issuer));
                }
                Err(error) => tracing::error!(%error, "the hub's own issuer is not available"),
            }
        }
    }
}

/// The login, when configured and its OAuth settings are valid.
fn login_runtime(settings: &HubSettings, rest: Option<DiscordRestClient>) -> Option<LoginRuntime> {
    let login = settings.login.as_ref()?;
    match DiscordOAuthClient::new(login.oauth.clone()) {
        Ok(oauth) => Some(LoginRuntime {
            oauth,
            rest,
            secure_cookie: login.oauth.redirect_uri.scheme() == "https",
        }),
        Err(error) => {
            tracing::error!(%error, "login disabled: invalid OAuth settings");
            None
        }
    }
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

/// A link to the worker's endpoints, when any is set, signing with the first secret.
fn worker_link(settings: &HubSettings) -> Option<WorkerLink> {
    let secret = settings.hub_secrets.first()?;
    (!settings.worker_endpoints.is_empty())
        .then(|| WorkerLink::new(settings.worker_endpoints.clone(), secret.clone()))
}

/// A configured hub: build its router, or serve it until shutdown.
#[derive(Clone)]
pub struct Hub {
    state: SharedState,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.state.connections())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with the in-process broker and, when configured, the JWKS key source.
    pub fn new(settings: HubSettings, rooms: Arc<dyn RoomsBackend>) -> Self {
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
            redis: None,
        }
    }

    /// The broker events are published through (to publish from in-process code).
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.state.broker.clone()
    }

    /// The hub's own issuer, when it signs tokens (to rotate its key or mint tokens).
    pub fn issuer(&self) -> Option<Arc<HubIssuer>> {
        self.state.issuer.clone()
    }

    /// Open browser sockets.
    pub fn connections(&self) -> usize {
        self.state.connections()
    }

    /// Loads the JWT keys in the background (once per hub), retrying every
    /// `jwks_refresh_interval` until every source is ready; `/health` is 503 until then.
    fn warm_up_keys(&self) {
        if self.state.warming.swap(true, Ordering::Relaxed) {
            return;
        }
        let state = self.state.clone();
        // Sources rate-limit their own fetches; this only bounds how soon a source
        // that failed (a JWKS URL, Redis for the shared issuer keys) is tried again.
        let retry = state
            .settings
            .jwks_refresh_interval
            .min(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                if state.jwt.warm_up().await {
                    state.keys_ready.store(true, Ordering::Relaxed);
                    break;
                }
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
            }
            // The own issuer replaces its signing key when it is due, and a shared one
            // re-reads the key set now and then (rotations by other hubs).
            let Some(issuer) = state.issuer.clone() else {
                return;
            };
            loop {
                match issuer
                    .rotate_if_older_than(state.settings.jwt_key_max_age)
                    .await
                {
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "JWT signing key due but not rotated"),
                }
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(issuer::SHARED_SYNC_INTERVAL) => {}
                }
                if issuer.is_shared() {
                    issuer.sync_shared().await;
                }
            }
        });
    }

    /// Starts shutting down: readiness turns 503 and every browser is closed with 1001.
    pub fn begin_shutdown(&self) {
        self.state.ready.store(false, Ordering::Relaxed);
        self.state.shutdown.cancel();
    }

    /// The full router, with CORS, request ids and request tracing.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let api = Router::new()
            .route("/api/internal/events", post(ingest::ingest))
            .route("/api/ws", get(socket::upgrade))
            .route(
                "/api/create-room",
                // A create body is a few dozen bytes; refuse megabytes before reading.
                post(rooms::create_room).layer(DefaultBodyLimit::max(CREATE_BODY_MAX_BYTES)),
            )
            .route("/api/end-room/{channel_id}", delete(rooms::end_room))
            .route(
                "/api/rooms/{channel_id}/bot",
                post(bot::join).delete(bot::leave),
            )
            .route("/api/rooms/{channel_id}/cue", post(bot::cue))
            .route("/api/rooms", get(snapshot::rooms))
            .route("/.well-known/jwks.json", get(login::jwks))
            .route("/auth/login", get(login::login))
            .route("/auth/callback", get(login::callback))
            .route("/health", get(health::health))
            .route("/metrics", get(metrics::metrics))
            .fallback(lobby::serve)
            .with_state(state.clone());
        let request_id = HeaderName::from_static("x-request-id");
        let mut router = api
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
                }),
            )
            .layer(PropagateRequestIdLayer::new(request_id.clone()))
            .layer(SetRequestIdLayer::new(request_id, RequestIds::default()));
        if let Some(origin) = &state.settings.web_origin {
            let origin = origin.origin().ascii_serialization();
            if let Ok(origin) = HeaderValue::from_str(&origin) {
                router = router.layer(
                    CorsLayer::new()
                        .allow_origin(origin)
                        .allow_methods([Method::GET, Method::POST, Method::DELETE])
                        .allow_headers([
                            header::AUTHORIZATION,
                            header::CONTENT_TYPE,
                            HeaderName::from_static("idempotency-key"),
                        ])
                        .expose_headers([header::RETRY_AFTER])
                        .max_age(Duration::from_secs(600)),
                );
            }
        }
        router
    }

    /// Serves on `listener` until `shutdown` completes, then drains: browsers get
    /// 1001, in-flight requests finish, for at most the drain timeout.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        self.warm_up_keys();
        let hub = self.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("hub shutting down");
            hub.begin_shutdown();
        };
        let drain = self.state.settings.drain_timeout;
        // Small event frames must leave at once: without TCP_NODELAY, Nagle holds a
        // frame back until the previous one is acknowledged (up to 40 ms of delayed ACK).
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY not set");
                }
            });
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(signal);
        let token = self.state.shutdown.clone();
        let server = async move {
            let mut server = std::pin::pin!(server.into_future());
            tokio::select! {
                result = &mut server => result,
                () = async { token.cancelled().await; tokio::time::sleep(drain).await } => {
                    tracing::warn!("HTTP requests still running after the drain timeout");
                    Ok(())
                }
            }
        };
        server.await?;
        self.wait_for_sockets(drain).await;
        tracing::info!("hub stopped");
        Ok(())
    }

    async fn wait_for_sockets(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.state.drained.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.state.connections() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(
                    sockets = self.state.connections(),
                    "sockets still open after the drain timeout"
                );
                return;
            }
        }
    }
}

/// Request ids: a random per-process prefix and a counter, cheap and unique enough
/// to follow one request through the logs.
#[derive(Clone)]
struct RequestIds {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self {
            prefix: rand::random(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
