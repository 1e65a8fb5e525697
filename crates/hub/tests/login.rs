//! Discord login and the hub's own issuer, end to end against the simulator's OAuth2:
//! the happy path ends with a JWT the hub's verifier accepts over `/api/ws`, the
//! user who was not a member is added to the guild, and every failure (bad state,
//! replayed code, denied consent, Discord down, not configured) ends on an HTML page.
//! Also: JWKS, expired tokens, key rotation, the key file across a restart, and the
//! embedded lobby files. Only guild members get a token: a banned user or one who
//! cannot join a full guild gets a 403 page and no token; `/auth/login` is
//! rate-limited per IP, and the logins in progress kept in Redis are capped.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{WAIT, eventually, expect_unauthorized, next_json, now_secs, send_auth};
use coven_contract::{Secret, Snowflake};
use coven_discord::{DiscordRestClient, OAuthSettings};
use coven_hub::{DiscordRooms, Hub, HubSettings, LoginSettings, MemoryRooms, TokenSubject};
use coven_sim::{SimConfig, SimHandle, Simulator};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

const ISSUER: &str = "https://hub.test";
const SIM_SECRET: &str = "sim-client-secret";

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coven-hub-login-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Running {
    addr: std::net::SocketAddr,
    hub: Hub,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT, server)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Authenticates a socket with `token`; returns the first answer.
    async fn ws_auth(&self, token: &str) -> Value {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", self.addr))
            .await
            .unwrap();
        send_auth(&mut ws, token, None).await;
        next_json(&mut ws).await
    }

    async fn ws_refused(&self, token: &str) -> String {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", self.addr))
            .await
            .unwrap();
        send_auth(&mut ws, token, None).await;
        expect_unauthorized(&mut ws).await
    }
}

/// Starts a hub on 127.0.0.1; `tune` gets the settings with the callback URL known.
async fn start_hub(
    guild: u64,
    tune: impl FnOnce(&mut HubSettings, &str),
    rooms: Arc<dyn coven_hub::RoomsBackend>,
    rest: Option<DiscordRestClient>,
) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut settings = HubSettings::new(
        Snowflake::new(guild).unwrap(),
        vec![Secret::new(common::SECRET)],
        ISSUER.into(),
    );
    settings.jwt_audience = common::AUDIENCE.into();
    settings.close_timeout = Duration::from_secs(2);
    settings.drain_timeout = Duration::from_secs(5);
    tune(&mut settings, &format!("http://{addr}/auth/callback"));
    let mut builder = Hub::builder(settings, rooms);
    if let Some(rest) = rest {
        builder = builder.discord_rest(rest);
    }
    let hub = builder.build().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hub.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let running = Running {
        addr,
        hub,
        http,
        stop: Some(tx),
        server: Some(server),
    };
    eventually("the hub to be ready", async || {
        running
            .http
            .get(running.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    running
}

fn oauth_settings(sim: &Simulator, redirect: &str) -> OAuthSettings {
    OAuthSettings {
        api_url: sim.api_url().parse().unwrap(),
        client_id: sim.oauth_client_id().parse().unwrap(),
        client_secret: Secret::new(SIM_SECRET),
        redirect_uri: redirect.parse().unwrap(),
    }
}

/// A hub with login against `sim`, its own issuer keeping keys in `dir`.
async fn login_hub(sim: &Simulator, dir: &std::path::Path) -> Running {
    login_hub_with(sim, dir, |_| {}).await
}

/// [`login_hub`] with the hub's settings changed by `tune` (login already set).
async fn login_hub_with(
    sim: &Simulator,
    dir: &std::path::Path,
    tune: impl FnOnce(&mut HubSettings),
) -> Running {
    let rest = common::sim_rest_client(sim, 1);
    let login = |s: &mut HubSettings, redirect: &str| {
        s.state_dir = Some(dir.to_path_buf());
        s.login = Some(LoginSettings::new(oauth_settings(sim, redirect)));
        tune(s);
    };
    start_hub(
        sim.guild_id(),
        login,
        Arc::new(DiscordRooms::new(rest.clone())),
        Some(rest),
    )
    .await
}

/// The login cookie's `name=value` from a `Set-Cookie`, after checking its attributes.
fn login_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get(SET_COOKIE)
        .expect("a login cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set.starts_with("coven_login="), "{set}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/auth"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    set.split(';').next().unwrap().to_owned()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `/auth/login`, then Discord's (simulated, auto-consenting) authorize page:
/// returns the login cookie and the callback URL Discord sent the browser to.
async fn start_login(hub: &Running) -> (String, String) {
    let response = hub.http.get(hub.url("/auth/login")).send().await.unwrap();
    assert!(
        matches!(response.status(), StatusCode::FOUND | StatusCode::SEE_OTHER),
        "{}",
        response.status()
    );
    let cookie = login_cookie(&response);
    let authorize = location(&response);
    assert!(authorize.contains("/oauth2/authorize?"), "{authorize}");
    assert_eq!(
        query_param(&authorize, "scope").unwrap(),
        "identify guilds.join"
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").unwrap(),
        "S256"
    );
    assert!(query_param(&authorize, "code_verifier").is_none());
    let consent = hub.http.get(&authorize).send().await.unwrap();
    assert!(consent.status().is_redirection(), "{}", consent.status());
    let callback = location(&consent);
    assert!(
        callback.starts_with(&hub.url("/auth/callback")),
        "{callback}"
    );
    (cookie, callback)
}

async fn callback(hub: &Running, cookie: Option<&str>, url: &str) -> reqwest::Response {
    let mut request = hub.http.get(url);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.unwrap()
}

/// Asserts an HTML error page with `status` saying `phrase`; returns the body.
async fn error_page(response: reqwest::Response, status: StatusCode, phrase: &str) -> String {
    assert_eq!(response.status(), status);
    let headers = response.headers().clone();
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert!(headers.contains_key("content-security-policy"));
    let body = response.text().await.unwrap();
    assert!(body.contains(phrase), "{body}");
    assert!(body.contains("href=\"/\""), "{body}");
    assert!(!body.contains(SIM_SECRET), "{body}");
    body
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Waits for the simulator to dispatch `GUILD_MEMBER_ADD` for `user`.
async fn member_added(
    events: &mut tokio::sync::broadcast::Receiver<coven_sim::Dispatch>,
    user: u64,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            let dispatch = events.recv().await.unwrap();
            if dispatch.event == "GUILD_MEMBER_ADD"
                && dispatch.data["user"]["id"].as_str() == Some(user.to_string().as_str())
            {
                return;
            }
        }
    })
    .await
    .expect("GUILD_MEMBER_ADD in time");
}

fn sim_handle(sim: &Simulator) -> SimHandle {
    sim.handle()
}

#[tokio::test]
async fn login_adds_the_user_to_the_guild_and_issues_a_token_the_hub_accepts() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim_handle(&sim);
    let outsider = handle.seed().outsider_user_ids[0];
    handle.set_consenting_user(outsider);
    let dir = scratch_dir();
    let mut hub = login_hub(&sim, &dir).await;
    let mut events = handle.subscribe();

    let (cookie, callback_url) = start_login(&hub).await;
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    assert!(response.status().is_redirection(), "{}", response.status());
    let cleared = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cleared.starts_with("coven_login=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let target = location(&response);
    let token = target
        .strip_prefix("/#token=")
        .expect("token in the fragment");
    member_added(&mut events, outsider).await;

    let claims = claims_of(token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], common::AUDIENCE);
    assert_eq!(claims["sub"], outsider.to_string());
    assert!(
        claims["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{claims}"
    );
    assert!(claims.get("avatar").is_some(), "{claims}");
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now_secs() && exp <= now_secs() + 3600 + 5, "{claims}");
    assert_eq!(
        jsonwebtoken::decode_header(token).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );

    // The JWKS serves the signing key under the token's kid.
    let jwks: Value = hub
        .http
        .get(hub.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], kid_of(token));
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key.get("d").is_none(), "no private part: {key}");

    // The hub's own verifier accepts it: over the socket and on the REST API.
    let ack = hub.ws_auth(token).await;
    assert_eq!(ack["event"], "auth.ok", "{ack}");
    let rooms = hub
        .http
        .get(hub.url("/api/rooms"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(rooms.status(), 200);
    let rooms: Value = rooms.json().await.unwrap();
    // Without a worker: the seeded voice channels, nobody in them.
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 3, "{rooms}");

    // The user is a member now: the bot sees them.
    let member = common::sim_rest_client(&sim, 1)
        .guild_member(
            Snowflake::new(sim.guild_id()).unwrap(),
            Snowflake::new(outsider).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(member.user_id.to_string(), outsider.to_string());

    // The same callback again: the login cookie's flow was used up.
    let again = callback(&hub, Some(&cookie), &callback_url).await;
    error_page(again, StatusCode::BAD_REQUEST, "not valid any more").await;
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn every_login_failure_ends_on_an_error_page() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim_handle(&sim);
    let dir = scratch_dir();
    let mut hub = login_hub(&sim, &dir).await;

    // No cookie at all.
    let (_, callback_url) = start_login(&hub).await;
    let response = callback(&hub, None, &callback_url).await;
    error_page(response, StatusCode::BAD_REQUEST, "not valid any more").await;

    // A state that is not the cookie's.
    let (cookie, callback_url) = start_login(&hub).await;
    let state = query_param(&callback_url, "state").unwrap();
    let forged = callback_url.replace(&state, "forged-state-value");
    let response = callback(&hub, Some(&cookie), &forged).await;
    error_page(response, StatusCode::BAD_REQUEST, "not valid any more").await;

    // A code already exchanged, replayed within a fresh login.
    let (cookie, callback_url) = start_login(&hub).await;
    let first_code = query_param(&callback_url, "code").unwrap();
    let ok = callback(&hub, Some(&cookie), &callback_url).await;
    assert!(ok.status().is_redirection());
    let (cookie, callback_url) = start_login(&hub).await;
    let fresh_code = query_param(&callback_url, "code").unwrap();
    let replayed = callback_url.replace(&fresh_code, &first_code);
    let response = callback(&hub, Some(&cookie), &replayed).await;
    let body = error_page(
        response,
        StatusCode::BAD_REQUEST,
        "expired or was already used",
    )
    .await;
    assert!(!body.contains(&first_code));

    // Denied consent.
    handle.oauth_deny_next(1);
    let (cookie, callback_url) = start_login(&hub).await;
    assert_eq!(
        query_param(&callback_url, "error").unwrap(),
        "access_denied"
    );
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    error_page(response, StatusCode::BAD_REQUEST, "cancelled").await;
    hub.stop().await;

    // Discord unreachable: a login against a closed port.
    let dead = format!("http://127.0.0.1:{}", coven_testkit::free_port());
    let mut down = start_hub(
        sim.guild_id(),
        |s, redirect| {
            let mut oauth = oauth_settings(&sim, redirect);
            oauth.api_url = dead.parse().unwrap();
            s.login = Some(LoginSettings::new(oauth));
        },
        Arc::new(MemoryRooms::new(1)),
        None,
    )
    .await;
    let response = down.http.get(down.url("/auth/login")).send().await.unwrap();
    let cookie = login_cookie(&response);
    let state = query_param(&location(&response), "state").unwrap();
    let response = callback(
        &down,
        Some(&cookie),
        &down.url(&format!("/auth/callback?code=abc&state={state}")),
    )
    .await;
    error_page(response, StatusCode::BAD_GATEWAY, "could not be reached").await;
    down.stop().await;

    // No login configured: 503 with a clear message.
    let mut plain = start_hub(
        sim.guild_id(),
        |_, _| {},
        Arc::new(MemoryRooms::new(1)),
        None,
    )
    .await;
    let response = plain
        .http
        .get(plain.url("/auth/login"))
        .send()
        .await
        .unwrap();
    error_page(response, StatusCode::SERVICE_UNAVAILABLE, "not configured").await;
    plain.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn own_issuer_expiry_rotation_and_key_file_across_restarts() {
    let dir = scratch_dir();
    let tune = |s: &mut HubSettings, _: &str| s.state_dir = Some(dir.clone());
    let mut hub = start_hub(common::GUILD, tune, Arc::new(MemoryRooms::new(1)), None).await;
    let issuer = hub.hub.issuer().expect("the hub signs its own tokens");
    let subject = TokenSubject {
        user_id: "424242".into(),
        name: "Alice".into(),
        avatar_url: Some("https://cdn.discordapp.com/avatars/424242/abc.png".into()),
    };
    let first_kid = issuer.kid();
    let old_token = issuer.issue(&subject).unwrap();
    assert_eq!(hub.ws_auth(&old_token).await["event"], "auth.ok");

    // Expired (beyond the 60 s leeway).
    let expired = issuer.issue_at(&subject, now_secs() - 2 * 3600).unwrap();
    assert_eq!(hub.ws_refused(&expired).await, "token expired");

    // The key file: owner-only, with the kid.
    let file = dir.join(coven_hub::KEY_FILE_NAME);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(std::fs::read_to_string(&file).unwrap().contains(&first_kid));

    // Rotation: new tokens use the new key, old ones stay valid, both are published.
    let second_kid = issuer.rotate().unwrap();
    assert_ne!(first_kid, second_kid);
    let new_token = issuer.issue(&subject).unwrap();
    assert_eq!(kid_of(&new_token), second_kid);
    assert_eq!(hub.ws_auth(&old_token).await["event"], "auth.ok");
    assert_eq!(hub.ws_auth(&new_token).await["event"], "auth.ok");
    let jwks: Value = hub
        .http
        .get(hub.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [second_kid.as_str(), first_kid.as_str()]);
    hub.stop().await;

    // A restart reads the same keys: both tokens still verify.
    let tune = |s: &mut HubSettings, _: &str| s.state_dir = Some(dir.clone());
    let mut restarted = start_hub(common::GUILD, tune, Arc::new(MemoryRooms::new(1)), None).await;
    let reopened = restarted.hub.issuer().unwrap();
    assert_eq!(reopened.kid(), second_kid);
    assert_eq!(reopened.kids(), [first_kid.clone(), second_kid.clone()]);
    assert_eq!(restarted.ws_auth(&old_token).await["event"], "auth.ok");
    assert_eq!(restarted.ws_auth(&new_token).await["event"], "auth.ok");
    restarted.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_lobby_is_served_with_strict_headers() {
    let mut hub = start_hub(
        common::GUILD,
        |_, _| {},
        Arc::new(MemoryRooms::new(1)),
        None,
    )
    .await;
    let index = hub.http.get(hub.url("/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let headers = index.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with(
            "default-src 'self'; img-src 'self' https://cdn.discordapp.com data:; connect-src 'self' ws: wss:"
        ),
        "{csp}"
    );
    assert!(index.text().await.unwrap().to_lowercase().contains("<html"));
    for file in coven_hub::lobby_files() {
        let response = hub
            .http
            .get(hub.url(&format!("/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{file}");
        if let Some(ext) = file.rsplit('.').next() {
            let expected = match ext {
                "js" => Some("text/javascript; charset=utf-8"),
                "css" => Some("text/css; charset=utf-8"),
                "html" => Some("text/html; charset=utf-8"),
                _ => None,
            };
            if let Some(expected) = expected {
                assert_eq!(response.headers()[CONTENT_TYPE], expected, "{file}");
            }
        }
    }
    let missing = hub
        .http
        .get(hub.url("/no-such-file.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let post = hub.http.post(hub.url("/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    // The API still answers JSON.
    let health = hub.http.get(hub.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    hub.stop().await;
}

/// Asserts that `response` hands out no token: no redirect to `/#token=`, no cookie
/// but the cleared login cookie.
fn no_token(response: &reqwest::Response) {
    assert!(
        response
            .headers()
            .get(LOCATION)
            .is_none_or(|l| !l.to_str().unwrap().contains("token")),
        "{:?}",
        response.headers()
    );
    for cookie in response.headers().get_all(SET_COOKIE) {
        let cookie = cookie.to_str().unwrap();
        assert!(
            cookie.starts_with("coven_login=;") && cookie.contains("Max-Age=0"),
            "{cookie}"
        );
    }
}

#[tokio::test]
async fn a_banned_user_or_one_a_full_guild_cannot_take_gets_no_token() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim_handle(&sim);
    let [grace, heidi] = [
        handle.seed().outsider_user_ids[0],
        handle.seed().outsider_user_ids[1],
    ];
    let dir = scratch_dir();
    let mut hub = login_hub(&sim, &dir).await;

    // Banned: Discord answers 40007, the page says so, no token.
    handle.ban_user(grace).unwrap();
    handle.set_consenting_user(grace);
    let (cookie, callback_url) = start_login(&hub).await;
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    no_token(&response);
    error_page(
        response,
        StatusCode::FORBIDDEN,
        "You are banned from this Discord server",
    )
    .await;

    // A member who gets banned cannot sign in again either.
    let bob = handle.seed().member_user_ids[1];
    handle.ban_user(bob).unwrap();
    handle.set_consenting_user(bob);
    let (cookie, callback_url) = start_login(&hub).await;
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    no_token(&response);
    error_page(response, StatusCode::FORBIDDEN, "banned").await;

    // A full guild: Discord answers 30019, the page says so, no token.
    handle.set_guild_full(true);
    handle.set_consenting_user(heidi);
    let (cookie, callback_url) = start_login(&hub).await;
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    no_token(&response);
    error_page(
        response,
        StatusCode::FORBIDDEN,
        "This Discord server is full",
    )
    .await;

    // A member still signs in while the guild is full.
    let carol = handle.seed().member_user_ids[2];
    handle.set_consenting_user(carol);
    let (cookie, callback_url) = start_login(&hub).await;
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    assert!(location(&response).starts_with("/#token="));

    // With room again, the outsider joins and gets a token.
    handle.set_guild_full(false);
    handle.set_consenting_user(heidi);
    let (cookie, callback_url) = start_login(&hub).await;
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    let token = location(&response)
        .strip_prefix("/#token=")
        .expect("a token for the new member")
        .to_owned();
    assert_eq!(claims_of(&token)["sub"], heidi.to_string());
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn auth_login_is_rate_limited_per_ip() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = scratch_dir();
    let mut hub = login_hub_with(&sim, &dir, |s| {
        let login = s.login.as_mut().unwrap();
        login.rate_per_ip_burst = 10;
        login.rate_per_ip_period = Duration::from_secs(60);
    })
    .await;
    for i in 0..10 {
        let response = hub.http.get(hub.url("/auth/login")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "login {i}");
    }
    let refused = hub.http.get(hub.url("/auth/login")).send().await.unwrap();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    error_page(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-in attempts",
    )
    .await;
    // Other routes are not affected.
    let health = hub.http.get(hub.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn login_flows_kept_in_redis_are_capped() {
    let redis = coven_testkit::RedisServer::start();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim_handle(&sim);
    let dir = scratch_dir();
    let mut hub = login_hub_with(&sim, &dir, |s| {
        s.redis_url = Some(Secret::new(redis.url()));
        s.login.as_mut().unwrap().max_flows = 5;
    })
    .await;
    let mut first = None;
    for _ in 0..30 {
        let response = hub.http.get(hub.url("/auth/login")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        first.get_or_insert_with(|| (login_cookie(&response), location(&response)));
    }
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("coven:*:hub:login:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 5, "{keys:?}");

    // The oldest flow was dropped; the newest still completes.
    let (cookie, authorize) = first.unwrap();
    let consent = hub.http.get(&authorize).send().await.unwrap();
    let response = callback(&hub, Some(&cookie), &location(&consent)).await;
    error_page(response, StatusCode::BAD_REQUEST, "not valid any more").await;
    handle.set_consenting_user(handle.seed().member_user_ids[0]);
    let (cookie, callback_url) = start_login(&hub).await;
    let response = callback(&hub, Some(&cookie), &callback_url).await;
    assert!(location(&response).starts_with("/#token="));
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
