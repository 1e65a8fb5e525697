//! The gateway worker: holds the bot's Discord Gateway session and gets every
//! contract event to the hub, in order, at least once.
//!
//! The data path is one straight line through modules named for its steps:
//! `gateway` (Discord session) → `tracker` (voice states to contract events)
//! → `store` (durable queue, committed with the session) → `delivery` (signed
//! webhooks to the hub). `health` and `metrics` let operators watch it; the
//! bot's own voice connection (`voice`, driven by `commands`) feeds its
//! `voice.speaking` events back into the gateway loop, so every event takes
//! the same path.
//!
//! The store owns the difference between a single worker and a pair: alone, it
//! is a local redb file ([`LocalStore`]); with `REDIS_URL`, two workers for one
//! bot share their state in Redis ([`RedisStore`]), and a [`Lease`] decides
//! which one holds the Discord session and may write. The other waits, and
//! resumes the same session when the lease comes to it (`pair`). A single
//! worker's state file is moved into Redis the first time one of the pair is
//! active. See `docs/worker.md`.
//!
//! The modules are private; this page lists what the `coven` binary and the
//! tests use: [`run`] with its [`WorkerSettings`], the store's backends for
//! tests that drive them directly, and the [`VoiceTracker`].

mod backoff;
mod commands;
mod delivery;
mod gateway;
mod health;
mod metrics;
mod pair;
mod reconnect;
mod store;
mod tracker;
mod unreadable;
mod voice;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coven_contract::signature::{Signer, Verifier};
use coven_contract::{Secret, Snowflake};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

pub use backoff::Backoff;
pub use gateway::GatewaySettings;
pub use metrics::prometheus;
pub use reconnect::ReconnectPacing;
pub use store::{
    DeadLetter, Gauges, Lease, LeaseTimings, LocalStore, Pending, RedisStore, StoreError,
    StoredSession, wait_for_lease,
};
pub use tracker::{VoiceTracker, VoiceView};

use crate::store::Store;

/// Everything the worker needs; the `coven` binary fills it from the environment.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The Discord session's settings.
    pub gateway: GatewaySettings,
    /// The hub's `/api/internal/events`.
    pub hub_endpoint: Url,
    /// `HUB_SECRET`: the first signs webhooks; any of them authenticates the
    /// hub's requests to this worker (`/voice-view`).
    pub hub_secrets: Vec<Secret>,
    /// Where the state file lives (created if missing). Unused with `redis_url`.
    pub state_dir: PathBuf,
    /// `REDIS_URL`: when set, the session, voice view and outbox live in Redis
    /// and this worker is one of an active/standby pair (see [`Lease`]).
    pub redis_url: Option<Secret>,
    /// The pair's lease timings (only with `redis_url`).
    pub lease: LeaseTimings,
    /// Most events the outbox holds before dead-lettering new ones.
    pub outbox_capacity: u64,
    /// Most dead letters kept (10,000); beyond, the oldest are dropped and
    /// counted in `coven_worker_dead_letters_dropped_total`.
    pub dead_letter_capacity: u64,
    /// Timeout of one webhook attempt.
    pub delivery_timeout: Duration,
    /// Backoff between failed attempts.
    pub backoff: Backoff,
}

impl WorkerSettings {
    /// Settings with the defaults for everything the environment does not set.
    ///
    /// # Panics
    ///
    /// If `hub_secrets` is empty.
    pub fn new(
        guild_id: Snowflake,
        bot_token: Secret,
        hub_endpoint: Url,
        hub_secrets: Vec<Secret>,
        state_dir: PathBuf,
    ) -> Self {
        assert!(!hub_secrets.is_empty(), "at least one hub secret");
        Self {
            gateway: GatewaySettings {
                guild_id,
                bot_token,
                gateway_url: None,
                reconnect: ReconnectPacing::default(),
            },
            hub_endpoint,
            hub_secrets,
            state_dir,
            redis_url: None,
            lease: LeaseTimings::default(),
            outbox_capacity: 1_000_000,
            dead_letter_capacity: store::DEFAULT_DEAD_LETTER_CAPACITY,
            delivery_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Discord closed the session with a code that forbids reconnecting.
    #[error("{explanation} (gateway close code {})", code.map_or_else(|| "none".to_owned(), |c| c.to_string()))]
    Fatal {
        /// The close code.
        code: Option<u16>,
        /// What it means for the operator.
        explanation: &'static str,
    },
    /// The state file (or, for a pair, the Redis configuration) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state directory could not be created.
    #[error("cannot create the state directory {}: {source}", path.display())]
    StateDir {
        /// The directory (`STATE_DIR`'s worker part).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A background task panicked.
    #[error("internal error: {0} panicked")]
    Panicked(&'static str),
}

/// Runs the worker until `shutdown` resolves or Discord ends the session for good.
///
/// `health` is the listener for `/health` and `/metrics`. Without `redis_url` the
/// worker is alone and always active; with it, it is one of an active/standby pair.
///
/// # Panics
///
/// Only if an internal invariant breaks (a task polled after completion).
pub async fn run(
    settings: WorkerSettings,
    health: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    // twilight's TLS stack needs a process-wide provider; another part may have set it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = Store::open(&settings)?;
    let status = Arc::new(health::Status::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let voice = voice::BotVoice::default();
    let router = health::router(
        status.clone(),
        store.clone(),
        metrics::prometheus(),
        Verifier::new(settings.hub_secrets.clone()),
    )
    .merge(commands::router(
        Verifier::new(settings.hub_secrets.clone()),
        voice.clone(),
    ));
    let mut health_stop = stop_rx.clone();
    let health_server = tokio::spawn(async move {
        axum::serve(health, router)
            .with_graceful_shutdown(async move {
                let _ = health_stop.wait_for(|stop| *stop).await;
            })
            .await
    });

    let stop = Arc::new(stop_tx);
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    });
    let term = Term {
        settings: &settings,
        store: &store,
        status: &status,
        voice: &voice,
        stop: &stop,
    };
    let result = if store.is_pair() {
        pair::run(&term).await
    } else {
        term.run(&store).await.map(drop)
    };

    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(5), health_server)
        .await
        .is_err()
    {
        tracing::warn!("health server did not stop in time");
    }
    result
}

/// What one stretch of holding the Discord session needs.
pub(crate) struct Term<'a> {
    settings: &'a WorkerSettings,
    store: &'a Store,
    status: &'a Arc<health::Status>,
    voice: &'a voice::BotVoice,
    stop: &'a watch::Sender<bool>,
}

impl Term<'_> {
    /// Holds the session and delivers the outbox through `store` until
    /// shutdown, a fatal close, or the store fences this worker off (one of a
    /// pair lost its lease).
    pub(crate) async fn run(&self, store: &Store) -> Result<gateway::Ended, WorkerError> {
        let settings = self.settings;
        let hub = delivery::HubClient::new(
            settings.hub_endpoint.clone(),
            Signer::new(settings.hub_secrets[0].clone()),
            settings.delivery_timeout,
        );
        let delivery = tokio::spawn(delivery::run(
            store.clone(),
            hub,
            settings.backoff,
            self.stop.subscribe(),
        ));
        let gateway = gateway::run(
            settings.gateway.clone(),
            store.clone(),
            self.status.clone(),
            self.voice.clone(),
            self.stop.subscribe(),
        );
        tokio::pin!(gateway);
        let mut delivery = Some(delivery);
        let result = tokio::select! {
            result = &mut gateway => result,
            joined = delivery.as_mut().expect("not taken yet") => {
                delivery = None;
                match joined {
                    // Delivery stops by itself only at shutdown or when the store
                    // fences this worker off: let the gateway end too.
                    Ok(Ok(())) => gateway.await,
                    // A state file failure stops everything, so the operator (or
                    // systemd) sees it, instead of queueing forever.
                    Ok(Err(error)) => Err(WorkerError::Store(error)),
                    Err(_) => Err(WorkerError::Panicked("delivery")),
                }
            }
        };

        // A failure ends the worker: stop the other tasks. (At shutdown the flag
        // is already set; when fenced off, delivery stops by itself.) An
        // attempt cut short is simply delivered again: the hub deduplicates by id.
        if result.is_err() {
            let _ = self.stop.send(true);
        }
        if let Some(mut delivery) = delivery
            && tokio::time::timeout(Duration::from_secs(5), &mut delivery)
                .await
                .is_err()
        {
            delivery.abort();
        }
        result
    }
}
