//! The command line (SPEC §2). Each subcommand reads its own typed configuration
//! from the environment; flags only cover what is not part of the deployment
//! contract (such as the simulator's port).

// Doc comments here are the `--help` text: backticks would show up in terminals.
#![allow(clippy::doc_markdown)]

use clap::{Parser, Subcommand};

/// Spell Coven's realtime Discord layer: gateway worker, hub and Discord simulator.
///
/// Configuration comes from environment variables (see the README and SPEC §3).
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
    /// HEALTH_CHECK_PORT (8080), STATE_DIR (./state; uses STATE_DIR/worker),
    /// OUTBOX_MAX_EVENTS (1000000), DISCORD_GATEWAY_URL, DISCORD_API_URL,
    /// LOG_LEVEL, LOG_FORMAT. Stops with a resumable close on SIGINT/SIGTERM.
    Worker,
    /// Run the Discord simulator alone on 127.0.0.1 and print where it is.
    Sim(SimArgs),
}

/// Options of `coven sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Port on 127.0.0.1 for the gateway, REST, OAuth2 and control API (0 = any free port).
    #[arg(long, default_value_t = 4100)]
    pub port: u16,
    /// Gateway heartbeat interval in milliseconds (Discord uses 41250).
    #[arg(long, default_value_t = 41_250)]
    pub heartbeat_ms: u64,
}
