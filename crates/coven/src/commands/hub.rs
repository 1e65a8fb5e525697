//! `coven hub`: the hub alone.

use std::process::ExitCode;
use std::sync::Arc;

use super::{fail, shutdown_signal};
use crate::config::{HubConfig, ProcessEnv};

/// `coven hub`.
pub async fn hub() -> ExitCode {
    let config = match HubConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    let rooms = match rooms_backend(&config) {
        Ok(rooms) => rooms,
        Err(error) => return fail(&error),
    };
    let listener = match bind_hub(&config).await {
        Ok(listener) => listener,
        Err(error) => return fail(&error),
    };
    tracing::info!(addr = %listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()), "starting the hub");
    match coven_hub::serve(hub_settings(&config), listener, rooms, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&format!("the hub stopped: {error}")),
    }
}

/// Maps the environment's configuration onto the hub's settings.
pub fn hub_settings(config: &HubConfig) -> coven_hub::HubSettings {
    let shared = &config.shared;
    let mut settings = coven_hub::HubSettings::new(
        shared.primary_guild_id,
        shared.hub_secrets.clone(),
        config.jwt_issuer.clone(),
    );
    settings.jwt_audience.clone_from(&config.jwt_audience);
    settings
        .jwt_public_jwk_url
        .clone_from(&config.jwt_public_jwk_url);
    settings.web_origin.clone_from(&config.web_origin);
    settings
}

/// The hub's way to Discord: the REST client with the bot token.
pub(super) fn rooms_backend(
    config: &HubConfig,
) -> Result<Arc<dyn coven_hub::RoomsBackend>, String> {
    let rest = coven_discord::DiscordRestClient::new(coven_discord::RestSettings {
        api_url: config.shared.discord.api_url.clone(),
        bot_token: config.bot_token.clone(),
        max_retries: config.max_api_retries,
    })
    .map_err(|error| format!("cannot build the Discord REST client: {error}"))?;
    Ok(Arc::new(coven_hub::DiscordRooms::new(rest)))
}

pub(super) async fn bind_hub(config: &HubConfig) -> Result<tokio::net::TcpListener, String> {
    let addr = format!("{}:{}", config.host, config.port);
    tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on HOST:PORT {addr}: {error}"))
}
