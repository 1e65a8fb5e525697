//! What each subcommand runs: read its configuration, start its part, wait for a
//! shutdown signal, and turn the outcome into an exit status.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use coven_worker::WorkerSettings;

use crate::cli::SimArgs;
use crate::config::{ProcessEnv, WorkerConfig};

/// `coven worker`.
pub async fn worker() -> ExitCode {
    let config = match WorkerConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    let settings = worker_settings(&config);
    let health_addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.health_check_port));
    let health = match tokio::net::TcpListener::bind(health_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            return fail(&format!(
                "cannot listen on HEALTH_CHECK_PORT {health_addr}: {error}"
            ));
        }
    };
    tracing::info!(%health_addr, hub = %config.hub_endpoint, "starting the gateway worker");
    match coven_worker::run(settings, health, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Maps the environment's configuration onto the worker's settings.
pub fn worker_settings(config: &WorkerConfig) -> WorkerSettings {
    let shared = &config.shared;
    let mut settings = WorkerSettings::new(
        shared.primary_guild_id,
        config.bot_token.clone(),
        config.hub_endpoint.clone(),
        shared.hub_secrets.clone(),
        shared.state_dir.join("worker"),
    );
    let gateway = shared.discord.gateway_url.as_str();
    if gateway.trim_end_matches('/') != "wss://gateway.discord.gg" {
        settings.gateway.gateway_url = Some(gateway.trim_end_matches('/').to_owned());
    }
    settings.outbox_capacity = config.outbox_max_events;
    settings
}

/// `coven sim`.
pub async fn sim(args: &SimArgs) -> ExitCode {
    let config = coven_sim::SimConfig {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
        ..coven_sim::SimConfig::default()
    };
    let sim = match coven_sim::Simulator::start(config).await {
        Ok(sim) => sim,
        Err(error) => {
            return fail(&format!(
                "cannot start the simulator on port {}: {error}",
                args.port
            ));
        }
    };
    println!("Discord simulator running (Ctrl-C to stop)\n{sim}");
    shutdown_signal().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
///
/// # Panics
///
/// If the SIGTERM handler cannot be installed (no signal support at all).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}

/// Prints one clear line and returns a failure status.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("coven: {error}");
    ExitCode::FAILURE
}
