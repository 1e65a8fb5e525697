//! The command line (SPEC §2). Each subcommand reads its own typed configuration
//! from the environment; flags only cover what is not part of the deployment
//! contract (such as the simulator's port).

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
pub enum Command {}
