//! `coven hub`: the hub alone.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use coven_discord::{DiscordRestClient, OAuthSettings, RestSettings};

use super::{CommandError, fail, shutdown_signal};
use crate::config::{HubConfig, ProcessEnv};

/// `coven hub`.
pub async fn hub() -> ExitCode {
    let config = match HubConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => return fail(error),
    };
    let rest = match rest_client(&config) {
        Ok(rest) => rest,
        Err(error) => return fail(error),
    };
    let listener = match bind_hub(&config).await {
        Ok(listener) => listener,
        Err(error) => return fail(error),
    };
    match serve(hub_settings(&config), listener, rest, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
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
        .worker_endpoints
        .clone_from(&config.worker_endpoints);
    settings.redis_url.clone_from(&shared.redis_url);
    let limits = &config.limits;
    settings.max_connections = limits.max_connections;
    settings.max_connections_per_ip = limits.max_connections_per_ip;
    settings.max_unauthenticated_per_ip = limits.max_unauthenticated_per_ip;
    settings.max_sockets_per_user = limits.max_sockets_per_user;
    settings.trusted_proxies.clone_from(&limits.trusted_proxies);
    settings.state_dir = Some(shared.state_dir.join("hub"));
    settings.rooms_category_id = config.rooms_category_id;
    settings.ice.urls.clone_from(&config.turn.urls);
    settings.ice.secret.clone_from(&config.turn.secret);
    settings.login = config.oauth.as_ref().map(|oauth| {
        coven_hub::LoginSettings::new(OAuthSettings {
            api_url: shared.discord.api_url.clone(),
            client_id: oauth.client_id,
            client_secret: oauth.client_secret.clone(),
            redirect_uri: oauth.redirect_uri.clone(),
        })
    });
    settings
}

/// The bot's REST client (rooms API, adding signed-in players to the guild).
pub(super) fn rest_client(config: &HubConfig) -> Result<DiscordRestClient, CommandError> {
    DiscordRestClient::new(RestSettings {
        api_url: config.shared.discord.api_url.clone(),
        bot_token: config.bot_token.clone(),
        max_retries: config.max_api_retries,
    })
    .map_err(CommandError::RestClient)
}

/// Builds the hub around the REST client and serves until `shutdown`.
pub(super) async fn serve(
    settings: coven_hub::HubSettings,
    listener: tokio::net::TcpListener,
    rest: DiscordRestClient,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CommandError> {
    let addr = listener.local_addr().map_err(CommandError::LocalAddr)?;
    let hub = coven_hub::Hub::builder(
        settings,
        Arc::new(coven_hub::DiscordRooms::new(rest.clone())),
    )
    .discord_rest(rest)
    .build()
    .map_err(CommandError::HubStart)?;
    tracing::info!(%addr, "hub listening");
    hub.serve(listener, shutdown)
        .await
        .map_err(CommandError::HubStopped)
}

pub(super) async fn bind_hub(config: &HubConfig) -> Result<tokio::net::TcpListener, CommandError> {
    let addr = format!("{}:{}", config.host, config.port);
    tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| CommandError::Listen {
            what: "HOST:PORT",
            addr,
            source,
        })
}
