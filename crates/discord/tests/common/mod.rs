//! Shared helpers of the integration tests: a simulator per test, clients pointed at it,
//! and an OAuth2 login driven through the simulator's consent redirect.

#![allow(dead_code)]

use std::time::Duration;

use coven_contract::{Secret, Snowflake};
use coven_discord::{
    AuthorizationRequest, DiscordOAuthClient, DiscordRestClient, OAuthSettings, RetryPolicy,
};
use coven_sim::{SimConfig, Simulator};
use url::Url;

/// A fast backoff so that retry tests take milliseconds.
pub const FAST_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 3,
    base: Duration::from_millis(5),
    cap: Duration::from_millis(50),
};

/// How long a test waits for any condition before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Starts a simulator with the default configuration.
pub async fn sim() -> Simulator {
    sim_with(SimConfig::default()).await
}

/// Starts a simulator with a configuration.
pub async fn sim_with(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

/// A snowflake from a simulator id.
pub fn sf(id: u64) -> Snowflake {
    Snowflake::new(id).expect("non-zero id")
}

/// The simulator's API origin as a URL.
pub fn api_url(sim: &Simulator) -> Url {
    Url::parse(&sim.api_url()).expect("api url")
}

/// A REST client for the simulator with the bot's token and a fast backoff.
pub fn rest(sim: &Simulator) -> DiscordRestClient {
    rest_with(sim, sim.bot_token(), FAST_RETRY)
}

/// A REST client for the simulator with a given token and backoff.
pub fn rest_with(sim: &Simulator, token: &str, retry: RetryPolicy) -> DiscordRestClient {
    DiscordRestClient::with_retry_policy(api_url(sim), &Secret::new(token), retry)
        .expect("client builds")
}

/// The redirect URI the tests register (nothing listens there: the redirect is read, not followed).
pub fn redirect_uri() -> Url {
    Url::parse("http://127.0.0.1:9/auth/callback").expect("redirect uri")
}

/// An OAuth2 client for the simulator's application.
pub fn oauth(sim: &Simulator) -> DiscordOAuthClient {
    oauth_with_secret(sim, &sim.config().oauth.client_secret)
}

/// An OAuth2 client for the simulator's application with a given client secret.
pub fn oauth_with_secret(sim: &Simulator, secret: &str) -> DiscordOAuthClient {
    DiscordOAuthClient::new(OAuthSettings {
        api_url: api_url(sim),
        client_id: sim
            .oauth_client_id()
            .parse()
            .expect("client id is a snowflake"),
        client_secret: Secret::new(secret),
        redirect_uri: redirect_uri(),
    })
    .expect("oauth client builds")
    .with_retry_policy(FAST_RETRY)
}

/// Plays the browser: opens the authorize URL, reads the consent redirect and returns
/// the `code` after checking that `state` came back unchanged.
pub async fn consent(request: &AuthorizationRequest) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser client");
    let response = browser
        .get(request.url.clone())
        .send()
        .await
        .expect("authorize answers");
    assert_eq!(response.status(), 302, "authorize redirects");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect has a location");
    let location = Url::parse(location).expect("location is a URL");
    assert!(
        location.as_str().starts_with(redirect_uri().as_str()),
        "{location}"
    );
    let query = |key: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        query("state").as_deref(),
        Some(request.state.as_str()),
        "state comes back"
    );
    query("code").expect("redirect carries a code")
}
