//! A faithful local stand-in for Discord — gateway v10 (JSON, zlib-stream, zstd-stream),
//! REST v10 with Discord's rate limits and errors, OAuth2 with PKCE — plus fault injection,
//! counters and a seeded guild. Start one with [`Simulator::start`]; drive it with
//! [`SimHandle`] in-process or over HTTP under `/_sim/...`. See `docs/simulator.md`.

#![recursion_limit = "256"]

// Every module is private; what a test or the `coven` binary uses is re-exported below,
// plus the voice server's façade (`voice`: the test CA, transport modes, its counters).
mod config;
mod control;
mod counters;
mod gateway;
mod handle;
mod intents;
mod oauth;
mod rest;
mod shapes;
mod snowflake;
mod state;
pub mod voice;
mod world;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{BucketConfig, OAuthAppConfig, SimConfig};
pub use counters::Counters;
pub use gateway::Fault;
#[doc(hidden)]
pub use gateway::fuzzing;
pub use handle::{SimHandle, WaitTimeout};
pub use oauth::s256_challenge;
pub use rest::{CHANNEL_CREATE_ROUTE, InjectedResponse, RecordedRequest};
pub use state::AuditEntry;
pub use world::{Dispatch, SeedIds, SentMessage, VoiceFlags, WorldError};

pub(crate) use gateway::random_hex as gateway_random_hex;
use state::Shared;

/// A running simulator on 127.0.0.1 (gateway, REST, OAuth2 and control on one port).
pub struct Simulator {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Binds `config.bind` (must be a loopback address) and starts serving.
    pub async fn start(config: SimConfig) -> io::Result<Self> {
        if !config.bind.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the simulator only listens on loopback",
            ));
        }
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, addr));
        let voice = voice::start(&shared).await?;
        let _ = shared.voice.set(voice);
        let api = rest::router(shared.clone());
        let app = Router::new()
            .route("/", get(gateway::upgrade))
            .nest("/api/v10", api.clone())
            .nest("/api/v9", api.clone())
            .nest("/api", api)
            .merge(oauth::router())
            .merge(control::router())
            .merge(voice::router())
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        tracing::info!(%addr, "discord simulator listening");
        Ok(Self {
            shared,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `ws://127.0.0.1:port` — the gateway URL (also READY's `resume_gateway_url`).
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url()
    }

    /// `http://127.0.0.1:port` — the API/OAuth2 origin (REST under `/api/v10`).
    pub fn api_url(&self) -> String {
        self.shared.api_url()
    }

    /// The voice gateway endpoint (`127.0.0.1:port`, no scheme; TLS with the test CA, see
    /// [`voice::test_ca_path`]) that `VOICE_SERVER_UPDATE` advertises now.
    pub fn voice_endpoint(&self) -> String {
        self.shared
            .voice
            .get()
            .map_or_else(|| self.shared.addr.to_string(), |v| v.endpoint())
    }

    /// The voice server's UDP media address.
    pub fn voice_udp_addr(&self) -> Option<SocketAddr> {
        self.shared.voice.get().map(|v| v.udp_addr)
    }

    /// `http://127.0.0.1:port/_sim` — the control API.
    pub fn control_url(&self) -> String {
        format!("{}/_sim", self.shared.api_url())
    }

    /// The seeded guild's id.
    pub fn guild_id(&self) -> u64 {
        self.handle().guild_id()
    }

    /// The bot token clients must present.
    pub fn bot_token(&self) -> &str {
        &self.shared.config.bot_token
    }

    /// The OAuth2 client id (the application id unless configured).
    pub fn oauth_client_id(&self) -> String {
        self.shared
            .config
            .oauth
            .client_id
            .clone()
            .unwrap_or_else(|| self.handle().seed().bot_user_id.to_string())
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A handle for users, faults, counters and assertions.
    pub fn handle(&self) -> SimHandle {
        SimHandle {
            shared: self.shared.clone(),
        }
    }

    /// The lines `coven sim` prints: gateway URL, API URL, bot token, guild id, control endpoint.
    pub fn summary(&self) -> String {
        self.to_string()
    }

    /// Stops serving and closes every connection.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle().close(1001);
        if let Some(v) = self.shared.voice.get() {
            v.stop();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

/// Runs a simulator until `shutdown` completes, printing [`Simulator::summary`] to stdout
/// once it listens. The entry point for `coven sim`.
pub async fn run_standalone(
    config: SimConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let sim = Simulator::start(config).await?;
    println!("{}", sim.summary());
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}

impl fmt::Display for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api = self.api_url();
        writeln!(f, "gateway url:   {}", self.gateway_url())?;
        writeln!(f, "api url:       {api}  (REST under /api/v10)")?;
        writeln!(f, "api base:      {api}/api  (discord.js `rest.api`)")?;
        writeln!(
            f,
            "api host:      {}  (twilight-http `proxy(host, true)`)",
            self.addr()
        )?;
        writeln!(f, "bot token:     {}", self.bot_token())?;
        writeln!(f, "guild id:      {}", self.guild_id())?;
        writeln!(
            f,
            "oauth client:  {} / {}",
            self.oauth_client_id(),
            self.shared.config.oauth.client_secret
        )?;
        let voice = self.voice_endpoint();
        let dave = match (
            self.shared.config.voice_dave,
            self.shared.config.voice_require_dave,
        ) {
            (true, true) => "DAVE required (4017 without)",
            (true, false) => "DAVE offered, not required",
            (false, _) => "no DAVE",
        };
        writeln!(
            f,
            "voice:         {voice}  (wss://{voice}/?v=8 or ?v=4, TLS; {dave})"
        )?;
        write!(f, "control:       {}", self.control_url())
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            // Upgraded WebSockets outlive the server task: close them too.
            self.handle().close(1001);
        }
        if let Some(v) = self.shared.voice.get() {
            v.stop();
        }
        self.task.abort();
    }
}
