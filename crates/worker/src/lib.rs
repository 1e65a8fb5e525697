//! The gateway worker: holds the bot's Discord Gateway session and gets every
//! contract event to the hub, in order, at least once.
//!
//! The data path is one straight line through files named for its steps:
//! [`gateway`] (Discord session) → [`tracker`] (voice states to contract events)
//! → [`store`] (durable queue, committed with the session: the local [`outbox`]
//! file, or [`redis_store`] for a pair) → [`delivery`] (signed webhooks to the
//! hub). [`health`] and [`metrics`] let operators watch it.
//!
//! With `REDIS_URL`, two workers for one bot run as an active/standby pair: the
//! [`lease`] decides which one holds the Discord session; the other waits, and
//! resumes the same session when the lease comes to it. A single worker's state
//! file is moved into Redis the first time one of the pair is active ([`migrate`]).

pub mod commands;
pub mod delivery;
pub mod gateway;
pub mod health;
pub mod lease;
pub mod metrics;
pub mod migrate;
pub mod outbox;
pub mod redis_store;
pub mod store;
pub mod tracker;
pub mod voice;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coven_contract::signature::{Signer, Verifier};
use coven_contract::{Secret, Snowflake};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::lease::Lease;
use crate::store::Store;

/// Everything the worker needs; the `coven` binary fills it from the environment.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The Discord session's settings.
    pub gateway: gateway::GatewaySettings,
    /// The hub's `/api/internal/events`.
    pub hub_endpoint: Url,
    /// `HUB_SECRET`: the first signs webhooks; any of them authenticates the
    /// hub's requests to this worker (`/voice-view`).
    pub hub_secrets: Vec<Secret>,
    /// Where the state file lives (created if missing). Unused with `redis_url`.
    pub state_dir: PathBuf,
    /// `REDIS_URL`: when set, the session, voice view and outbox live in Redis
    /// and this worker is one of an active/standby pair (see [`lease`]).
    pub redis_url: Option<Secret>,
    /// The pair's lease timings (only with `redis_url`).
    pub lease: lease::LeaseTimings,
    /// Most events the outbox holds before dead-lettering new ones.
    pub outbox_capacity: u64,
    /// Timeout of one webhook attempt.
    pub delivery_timeout: Duration,
    /// Backoff between failed attempts.
    pub backoff: delivery::Backoff,
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
            gateway: gateway::GatewaySettings {
                guild_id,
                bot_token,
                gateway_url: None,
            },
            hub_endpoint,
            hub_secrets,
            state_dir,
            redis_url: None,
            lease: lease::LeaseTimings::default(),
            outbox_capacity: 1_000_000,
            delivery_timeout: Duration::from_secs(10),
            backoff: delivery::Backoff::default(),
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
    Store(#[from] outbox::StoreError),
    /// The state directory or the health port could not be used.
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
    let store = match &settings.redis_url {
        None => {
            std::fs::create_dir_all(&settings.state_dir)?;
            Store::Local(outbox::Outbox::open(
                &settings.state_dir.join(migrate::STATE_FILE),
                settings.outbox_capacity,
            )?)
        }
        Some(url) => Store::Redis(redis_store::RedisStore::open(
            url,
            settings.gateway.guild_id,
            settings.outbox_capacity,
            settings.lease.redis_timeout,
        )?),
    };
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
    let result = match &store {
        Store::Local(_) => term.run(None).await.map(drop),
        Store::Redis(redis) => run_pair(&term, redis).await,
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
struct Term<'a> {
    settings: &'a WorkerSettings,
    store: &'a Store,
    status: &'a Arc<health::Status>,
    voice: &'a voice::BotVoice,
    stop: &'a watch::Sender<bool>,
}

impl Term<'_> {
    /// Holds the session and delivers the outbox until shutdown, a fatal close,
    /// or (with a `lease`) the loss of the lease.
    async fn run(&self, lease: Option<Lease>) -> Result<gateway::Ended, WorkerError> {
        let settings = self.settings;
        let hub = delivery::HubClient::new(
            settings.hub_endpoint.clone(),
            Signer::new(settings.hub_secrets[0].clone()),
            settings.delivery_timeout,
        );
        let delivery = tokio::spawn(delivery::run(
            self.store.clone(),
            hub,
            settings.backoff,
            self.stop.subscribe(),
            lease.clone(),
        ));
        let gateway = gateway::run(
            settings.gateway.clone(),
            self.store.clone(),
            self.status.clone(),
            self.voice.clone(),
            self.stop.subscribe(),
            lease,
        );
        tokio::pin!(gateway);
        let mut delivery = Some(delivery);
        let result = tokio::select! {
            result = &mut gateway => result,
            joined = delivery.as_mut().expect("not taken yet") => {
                delivery = None;
                match joined {
                    // Delivery stops by itself only at shutdown or when the lease
                    // is lost: let the gateway end too.
                    Ok(Ok(())) => gateway.await,
                    // A state file failure stops everything, so the operator (or
                    // systemd) sees it, instead of queueing forever.
                    Ok(Err(error)) => Err(WorkerError::Store(error)),
                    Err(_) => Err(WorkerError::Panicked("delivery")),
                }
            }
        };

        // A failure ends the worker: stop the other tasks. (At shutdown the flag
        // is already set; when the lease is lost, delivery stops by itself.) An
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

/// One worker of an active/standby pair: standby until it takes the lease,
/// active until it loses it, standby again, … until shutdown or a fatal close.
async fn run_pair(term: &Term<'_>, redis: &redis_store::RedisStore) -> Result<(), WorkerError> {
    let mut shutdown = term.stop.subscribe();
    loop {
        term.voice.standby();
        term.status.set_role(health::Role::Standby);
        metrics::lease_held(false);
        tracing::info!("role: standby (another worker holds the session, or none has yet)");
        let reachable = |ok| term.status.set_redis_reachable(ok);
        let Some((lease, took_over)) =
            lease::wait_for_lease(redis, term.settings.lease, reachable, &mut shutdown).await
        else {
            return Ok(());
        };
        term.voice.activate();
        term.status.set_role(health::Role::Active);
        term.status.set_state(health::GatewayState::Disconnected);
        metrics::lease_held(true);
        if took_over {
            metrics::took_over();
        }
        tracing::info!(
            token = lease.token(),
            took_over,
            "role: active (holds the worker lease and the session)"
        );
        let keeper = lease.keep();
        match migrate::import_local_state(redis, &term.settings.state_dir).await {
            Ok(()) => {}
            Err(error) if error.is_transient() || matches!(error, outbox::StoreError::Fenced) => {
                tracing::warn!(%error, "could not import the local state file into redis; retrying as standby");
                lease.release().await;
                let _ = keeper.await;
                continue;
            }
            Err(error) => {
                lease.release().await;
                metrics::lease_held(false);
                return Err(error.into());
            }
        }
        let ended = term.run(Some(lease.clone())).await;
        match ended {
            Ok(gateway::Ended::LeaseLost) => {
                metrics::lease_lost();
                lease.give_up("the session loop stopped");
                let _ = keeper.await;
            }
            Ok(gateway::Ended::Shutdown) => {
                lease.release().await;
                metrics::lease_held(false);
                return Ok(());
            }
            Err(error) => {
                lease.release().await;
                metrics::lease_held(false);
                return Err(error);
            }
        }
    }
}
