//! The command line (docs/spec.md §2). Each subcommand reads its own typed configuration
//! from the environment; flags only cover what is not part of the deployment
//! contract (such as the simulator's port). `demo` and `sim` exist only with the
//! `sim` cargo feature (on by default).

// Doc comments here are the `--help` text: backticks would show up in terminals.
#![allow(clippy::doc_markdown)]

use clap::{Parser, Subcommand};

/// Spell Coven's realtime Discord layer: gateway worker, hub and Discord simulator.
///
/// Configuration comes from environment variables (see the README and docs/spec.md §3).
#[derive(Debug, Parser)]
#[command(name = "coven", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands; each arrives with the part it runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway worker: the bot's Discord session, delivering events to the hub.
    ///
    /// Environment: PRIMARY_GUILD_ID, HUB_SECRET, DISCORD_BOT_TOKEN, HUB_ENDPOINT,
    /// HEALTH_CHECK_HOST (0.0.0.0: the health/command listener's address),
    /// HEALTH_CHECK_PORT (8080), STATE_DIR (./state; uses STATE_DIR/worker),
    /// OUTBOX_MAX_EVENTS (1000000), DISCORD_GATEWAY_URL, DISCORD_API_URL,
    /// REDIS_URL (two workers then run as an active/standby pair), LOG_LEVEL,
    /// LOG_FORMAT. Stops with a resumable close on SIGINT/SIGTERM.
    Worker,
    /// Run the hub: signed webhook ingest, WebSocket fan-out, rooms API, login, lobby.
    ///
    /// Environment: PRIMARY_GUILD_ID, HUB_SECRET, DISCORD_BOT_TOKEN, JWT_ISSUER,
    /// HOST (0.0.0.0), PORT (3000), JWT_AUDIENCE (spell-coven-web),
    /// JWT_PUBLIC_JWK_URL, WEB_ORIGIN, MAX_API_RETRIES (3), DISCORD_CLIENT_ID,
    /// DISCORD_CLIENT_SECRET, OAUTH_REDIRECT_URI, WORKER_ENDPOINT (one URL, or the
    /// worker pair's two, comma-separated), STATE_DIR (./state; uses
    /// STATE_DIR/hub), REDIS_URL (several hubs then share events and replay),
    /// DISCORD_API_URL, LOG_LEVEL, LOG_FORMAT.
    Hub,
    /// Run worker and hub in one process: the single-machine deployment.
    ///
    /// Environment: everything `coven hub` reads, plus HEALTH_CHECK_HOST (0.0.0.0),
    /// HEALTH_CHECK_PORT (8080) and OUTBOX_MAX_EVENTS of the worker. HUB_ENDPOINT
    /// defaults to the hub's own /api/internal/events on loopback (still signed);
    /// WORKER_ENDPOINT to http://127.0.0.1:HEALTH_CHECK_PORT (or
    /// HEALTH_CHECK_HOST, when that is one address).
    Run,
    /// The whole system on 127.0.0.1 with zero setup: simulator, worker, hub, lobby.
    #[cfg(feature = "sim")]
    ///
    /// Simulated players join, move, mute and leave rooms on a timer; sign in
    /// through the simulator's OAuth2. Prints the URL to open.
    Demo(DemoArgs),
    /// Run the Discord simulator alone on 127.0.0.1 and print where it is.
    #[cfg(feature = "sim")]
    Sim(SimArgs),
}

/// Options of `coven sim`. Without options it behaves like Discord (DAVE required, Discord's
/// heartbeat, buckets and resume window: `SimConfig::discord_like`); the options select the
/// fast test settings one by one (docs/simulator.md, "`coven sim`").
#[cfg(feature = "sim")]
#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools)] // independent switches, one per setting
pub struct SimArgs {
    /// Port on 127.0.0.1 for the gateway, REST, OAuth2 and control API (0 = any free port).
    #[arg(long, default_value_t = 4100)]
    pub port: u16,
    /// Gateway heartbeat interval in milliseconds (default: Discord's 41250; 1000 with `--fast`).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// The fast test configuration: 1 s heartbeats, DAVE off, channel creation 5 per 1 s,
    /// 60 s resume window (`SimConfig::default`).
    #[arg(long)]
    pub fast: bool,
    /// Voice without DAVE: offer no end-to-end encryption and accept clients without it.
    #[arg(long)]
    pub no_dave: bool,
    /// Keep offering DAVE but accept voice clients that do not speak it (Discord closes them
    /// with 4017).
    #[arg(long)]
    pub allow_no_dave: bool,
    /// The fast REST buckets: channel creation 5 per 1 s, other routes 10 per 1 s.
    #[arg(long)]
    pub fast_buckets: bool,
    /// Seconds a gateway session stays resumable after its connection dropped.
    #[arg(long)]
    pub resume_window_secs: Option<u64>,
}

/// Options of `coven demo`.
#[cfg(feature = "sim")]
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Port on 127.0.0.1 for the lobby and hub (0 = any free port).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Milliseconds between two actions of the simulated players.
    #[arg(long, default_value_t = 2500)]
    pub player_interval_ms: u64,
    /// Do not start the simulated players (tests drive the simulator themselves).
    #[arg(long)]
    pub no_players: bool,
}
