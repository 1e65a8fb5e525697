//! The gateway worker: holds the bot's Discord Gateway session and gets every
//! contract event to the hub, in order, at least once.
//!
//! The data path is one straight line through files named for its steps:
//! [`gateway`] (Discord session) → [`tracker`] (voice states to contract events)
//! → [`outbox`] (durable queue, committed with the session) → [`delivery`]
//! (signed webhooks to the hub). [`health`] and [`metrics`] let operators watch it.

pub mod commands;
pub mod delivery;
pub mod gateway;
pub mod health;
pub mod metrics;
pub mod outbox;
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
    /// Where the state file lives (created if missing).
    pub state_dir: PathBuf,
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
    /// The state file failed.
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
/// `health` is the listener for `/health` and `/metrics`.
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
    std::fs::create_dir_all(&settings.state_dir)?;
    let outbox = outbox::Outbox::open(
        &settings.state_dir.join("worker.redb"),
        settings.outbox_capacity,
    )?;
    let status = Arc::new(health::Status::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let voice = voice::BotVoice::default();
    let router = health::router(
        status.clone(),
        outbox.clone(),
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

    let hub = delivery::HubClient::new(
        settings.hub_endpoint.clone(),
        Signer::new(settings.hub_secrets[0].clone()),
        settings.delivery_timeout,
    );
    let delivery = tokio::spawn(delivery::run(
        outbox.clone(),
        hub,
        settings.backoff,
        stop_rx.clone(),
    ));

    let stop = Arc::new(stop_tx);
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    });
    let gateway = gateway::run(settings.gateway, outbox, status, voice, stop_rx);
    tokio::pin!(gateway);
    let mut delivery = Some(delivery);
    let result = tokio::select! {
        result = &mut gateway => result,
        joined = delivery.as_mut().expect("not taken yet") => {
            delivery = None;
            match joined {
                // Delivery stops by itself only at shutdown: let the gateway close.
                Ok(Ok(())) => gateway.await,
                // A state file failure stops everything, so the operator (or
                // systemd) sees it, instead of queueing forever.
                Ok(Err(error)) => Err(WorkerError::Store(error)),
                Err(_) => Err(WorkerError::Panicked("delivery")),
            }
        }
    };

    // Whatever ended the session, stop the other tasks. An attempt cut short is
    // simply delivered again next time: the hub deduplicates by event id.
    let _ = stop.send(true);
    if let Some(mut delivery) = delivery
        && tokio::time::timeout(Duration::from_secs(5), &mut delivery)
            .await
            .is_err()
    {
        delivery.abort();
    }
    if tokio::time::timeout(Duration::from_secs(5), health_server)
        .await
        .is_err()
    {
        tracing::warn!("health server did not stop in time");
    }
    result
}
