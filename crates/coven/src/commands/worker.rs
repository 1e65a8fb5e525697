//! `coven worker`: the gateway worker alone.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use coven_worker::WorkerSettings;

use super::{CommandError, fail, shutdown_signal};
use crate::config::{ProcessEnv, WorkerConfig};

/// `coven worker`.
pub async fn worker() -> ExitCode {
    let config = match WorkerConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => return fail(error),
    };
    let settings = worker_settings(&config);
    let health_addr = SocketAddr::from((config.health_check_host, config.health_check_port));
    let health = match bind_health(config.health_check_host, config.health_check_port).await {
        Ok(listener) => listener,
        Err(error) => return fail(error),
    };
    tracing::info!(
        %health_addr,
        hub = %config.hub_endpoint,
        active_standby = config.shared.redis_url.is_some(),
        "starting the gateway worker"
    );
    match coven_worker::run(settings, health, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

/// The worker's health/command listener on `HEALTH_CHECK_HOST` (every
/// interface by default) and `HEALTH_CHECK_PORT`.
pub(super) async fn bind_health(
    host: IpAddr,
    port: u16,
) -> Result<tokio::net::TcpListener, CommandError> {
    let addr = SocketAddr::from((host, port));
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CommandError::Listen {
            what: "HEALTH_CHECK_PORT",
            addr: addr.to_string(),
            source,
        })
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
    // With REDIS_URL, this worker is one of an active/standby pair.
    settings.redis_url.clone_from(&shared.redis_url);
    settings
}
