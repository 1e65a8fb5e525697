//! `coven sim`: the Discord simulator alone, for pointing any Discord client at it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use super::{CommandError, fail, shutdown_signal};
use crate::cli::SimArgs;

/// `coven sim`.
pub async fn sim(args: &SimArgs) -> ExitCode {
    let config = coven_sim::SimConfig {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
        ..coven_sim::SimConfig::default()
    };
    let sim = match coven_sim::Simulator::start(config).await {
        Ok(sim) => sim,
        Err(source) => {
            return fail(CommandError::SimStartOn {
                port: args.port,
                source,
            });
        }
    };
    println!("Discord simulator running (Ctrl-C to stop)\n{sim}");
    shutdown_signal().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}
