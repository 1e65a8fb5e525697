//! OAuth2 against the simulator: authorize with PKCE S256 (RFC 7636 appendix B vector),
//! code exchange, single-use codes, wrong verifier, refresh, revoke, bearer `@me`,
//! `access_denied` injection, Basic client auth, and a guild join with the token.

mod common;

use common::{STEP, fast_config};
use coven_sim::{OAuthAppConfig, SimConfig, Simulator, s256_challenge};
use serde_json::{Value, json};

/// RFC 7636 appendix B: this verifier's S256 challenge is `CHALLENGE`.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:9/auth/callback";

async fn sim() -> Simulator {
    let oauth = OAuthAppConfig {
        client_id: Some("4242".into()),
        redirect_uris: vec![REDIRECT.into()],
        ..OAuthAppConfig::default()
    };
    Simulator::start(SimConfig {
        oauth,
        ..fast_config()
    })
    .await
    .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Authorizes and returns the redirect's query pairs.
async fn authorize(
    sim: &Simulator,
    scope: &str,
    challenge: &str,
    state: &str,
) -> Vec<(String, String)> {
    let r = http()
        .get(format!("{}/oauth2/authorize", sim.api_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", "4242"),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", state),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT));
    location.query_pairs().into_owned().collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

async fn token(sim: &Simulator, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut form = form.to_vec();
    form.extend([
        ("client_id", "4242"),
        ("client_secret", "sim-client-secret"),
    ]);
    let r = http()
        .post(format!("{}{path}", sim.api_url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn me(sim: &Simulator, access: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{}/api/v10/users/@me", sim.api_url()))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[test]
fn rfc7636_appendix_b_vector() {
    assert_eq!(s256_challenge(VERIFIER), CHALLENGE);
    // A mistyped pair that circulates in this project's briefs is NOT a valid S256 pair.
    assert_ne!(
        s256_challenge("dBjftJeZ4CVP-a0M8ZpUEuwkPfZ25WlG0o4OXPKLu88"),
        "E9Melhoa2OwvFWFfUwNwaWOYfNdwEeb2PFP2smPHnPg"
    );
}

#[tokio::test]
async fn pkce_code_flow_refresh_and_revoke() {
    let sim = sim().await;
    let alice = sim.handle().seed().member_user_ids[0];
    let q = authorize(&sim, "identify email guilds.join", CHALLENGE, "st@te 1").await;
    assert_eq!(param(&q, "state"), Some("st@te 1"));
    let code = param(&q, "code").unwrap().to_owned();

    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = token(&sim, "/api/v10/oauth2/token", &grant).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "identify email guilds.join");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    let (status, user) = me(&sim, &access).await;
    assert_eq!(status, 200);
    assert_eq!(user["id"], alice.to_string());
    assert_eq!(user["email"], "alice@example.invalid");

    // Codes are single-use.
    let (status, body) = token(&sim, "/api/v10/oauth2/token", &grant).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Refresh rotates both tokens.
    let (status, body) = token(
        &sim,
        "/api/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access2 = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(access2, access);
    assert_eq!(me(&sim, &access).await.0, 401);
    assert_eq!(me(&sim, &access2).await.0, 200);
    let (status, _) = token(
        &sim,
        "/api/v10/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 400);

    // Revoke.
    let (status, _) = token(
        &sim,
        "/api/v10/oauth2/token/revoke",
        &[
            ("token", access2.as_str()),
            ("token_type_hint", "access_token"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me(&sim, &access2).await.0, 401);
}

#[tokio::test]
async fn wrong_verifier_is_rejected_and_basic_auth_works() {
    let sim = sim().await;
    let q = authorize(&sim, "identify", CHALLENGE, "s").await;
    let code = param(&q, "code").unwrap().to_owned();
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl";
    let (status, body) = token(
        &sim,
        "/api/v10/oauth2/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", wrong),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let q = authorize(&sim, "identify", CHALLENGE, "s").await;
    let code = param(&q, "code").unwrap().to_owned();
    let r = http()
        .post(format!("{}/api/oauth2/token", sim.api_url()))
        .basic_auth("4242", Some("sim-client-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = http()
        .post(format!("{}/api/v10/oauth2/token", sim.api_url()))
        .basic_auth("4242", Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn access_denied_can_be_injected() {
    let sim = sim().await;
    sim.handle().oauth_deny_next(1);
    let q = authorize(&sim, "identify", CHALLENGE, "xyz").await;
    assert_eq!(param(&q, "error"), Some("access_denied"));
    assert_eq!(param(&q, "state"), Some("xyz"));
    assert_eq!(param(&q, "code"), None);
    let q = authorize(&sim, "identify", CHALLENGE, "xyz").await;
    assert!(param(&q, "code").is_some());
}

#[tokio::test]
async fn guild_join_with_access_token_adds_member_once() {
    let sim = sim().await;
    let h = sim.handle();
    let grace = h.seed().outsider_user_ids[0];
    h.set_consenting_user(grace);
    let mut events = h.subscribe();
    let q = authorize(&sim, "identify guilds.join", CHALLENGE, "s").await;
    let code = param(&q, "code").unwrap().to_owned();
    let (_, body) = token(
        &sim,
        "/api/v10/oauth2/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    let access = body["access_token"].as_str().unwrap();
    let url = format!(
        "{}/api/v10/guilds/{}/members/{grace}",
        sim.api_url(),
        sim.guild_id()
    );
    let put = || {
        http()
            .put(&url)
            .header("authorization", format!("Bot {}", sim.bot_token()))
            .json(&json!({"access_token": access}))
    };
    let r = put().send().await.unwrap();
    assert_eq!(r.status(), 201);
    let member: Value = r.json().await.unwrap();
    assert_eq!(member["user"]["id"], grace.to_string());
    let added = tokio::time::timeout(STEP, async {
        loop {
            let d = events.recv().await.unwrap();
            if d.event == "GUILD_MEMBER_ADD" {
                return d;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(added.data["guild_id"], sim.guild_id().to_string());
    assert_eq!(put().send().await.unwrap().status(), 204);
    let r = http()
        .put(&url)
        .header("authorization", format!("Bot {}", sim.bot_token()))
        .json(&json!({"access_token": "bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn codes_and_tokens_expire_and_redirects_are_checked() {
    let oauth = OAuthAppConfig {
        client_id: Some("4242".into()),
        redirect_uris: vec![REDIRECT.into()],
        code_ttl: std::time::Duration::from_millis(50),
        access_token_ttl: std::time::Duration::from_millis(300),
        ..OAuthAppConfig::default()
    };
    let sim = Simulator::start(SimConfig {
        oauth,
        ..fast_config()
    })
    .await
    .unwrap();
    let q = authorize(&sim, "identify", CHALLENGE, "s").await;
    let code = param(&q, "code").unwrap().to_owned();
    // Outlive the 50 ms code lifetime (a deterministic expiry, not a race).
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = token(&sim, "/api/v10/oauth2/token", &grant).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let q = authorize(&sim, "identify", CHALLENGE, "s").await;
    let code = param(&q, "code").unwrap().to_owned();
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = token(&sim, "/api/v10/oauth2/token", &grant).await;
    assert_eq!(status, 200);
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&sim, &access).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(me(&sim, &access).await.0, 401, "expired access token");

    let r = http()
        .get(format!("{}/oauth2/authorize", sim.api_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", "4242"),
            ("redirect_uri", "http://evil.invalid/cb"),
            ("scope", "identify"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "an unregistered redirect_uri is never redirected to"
    );
}
