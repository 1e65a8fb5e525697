//! docs/spec.md §6–§7 JWT verification from the outside: every attack is refused with
//! `UNAUTHORIZED` and close 4401; the three allowed algorithms work; the JWKS is
//! refetched on an unknown `kid` at most once per interval, refreshed periodically
//! (a withdrawn key stops verifying), fetched only over `https` or from loopback,
//! without following redirects and cut off past its size limit while it streams.

mod common;

use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use futures_util::SinkExt;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn with(claims: Value, patch: &Value) -> Value {
    let mut claims = claims;
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

async fn refused(hub: &TestHub, token: &str) -> String {
    let mut ws = hub.connect().await;
    send_auth(&mut ws, token, None).await;
    expect_unauthorized(&mut ws).await
}

#[tokio::test]
async fn allowed_algorithms_are_accepted() {
    let (hub, _) = TestHub::start().await;
    // Up to date with the hub's stream (no event yet: its base).
    let head = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let mut ws = hub.connect().await;
        send_auth(&mut ws, &token(alg, kid, &claims()), Some(head)).await;
        let ack = next_json(&mut ws).await;
        assert_eq!(ack["event"], "auth.ok", "{alg:?}: {ack}");
        assert_eq!(ack["resumed"], true);
    }
    // Within the 60 s leeway an expired token still passes.
    let almost = with(claims(), &json!({"exp": now_secs() - 30}));
    let mut ws = hub.connect().await;
    send_auth(&mut ws, &token(Algorithm::RS256, "rsa-1", &almost), None).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["event"], "auth.ok");
    assert!(
        ack.get("resumed").is_none(),
        "no lastSeq, no resumed: {ack}"
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // One table of attacks reads best as one list.
async fn attacks_are_closed_4401() {
    let (hub, _) = TestHub::start().await;
    let now = now_secs();
    let good = claims();
    let rsa_sig = token(Algorithm::RS256, "rsa-1", &good)
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(
                &json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}),
                &good,
                "",
            ),
        ),
        (
            "alg none with a signature",
            unsigned(&json!({"alg": "none", "kid": "rsa-1"}), &good, &rsa_sig),
        ),
        (
            "HS256 keyed with the RSA public key",
            token(Algorithm::HS256, "rsa-1", &good),
        ),
        ("unknown kid", token(Algorithm::RS256, "rsa-2", &good)),
        (
            "injected kid",
            token(Algorithm::RS256, "../../../../dev/null", &good),
        ),
        (
            "sql kid",
            token(Algorithm::RS256, "rsa-1' OR '1'='1", &good),
        ),
        (
            "RS256 under the EC key's kid",
            token(Algorithm::RS256, "ec-1", &good),
        ),
        (
            "ES256 under the RSA key's kid",
            token(Algorithm::ES256, "rsa-1", &good),
        ),
        (
            "no kid",
            unsigned(&json!({"alg": "RS256"}), &good, &rsa_sig),
        ),
        (
            "string-typed exp",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"exp": (now + 600).to_string()})),
            ),
        ),
        (
            "expired",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"exp": now - 120})),
            ),
        ),
        (
            "future nbf",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"nbf": now + 300})),
            ),
        ),
        (
            "wrong aud",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"aud": "someone-else"})),
            ),
        ),
        (
            "wrong iss",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"iss": "https://evil.test"})),
            ),
        ),
        (
            "no exp",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"exp": null})),
            ),
        ),
        (
            "no iss",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"iss": null})),
            ),
        ),
        (
            "no aud",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"aud": null})),
            ),
        ),
        (
            "no sub",
            token(
                Algorithm::RS256,
                "rsa-1",
                &with(good.clone(), &json!({"sub": null})),
            ),
        ),
        ("tampered claims", {
            let real = token(Algorithm::RS256, "rsa-1", &good);
            let parts: Vec<&str> = real.split('.').collect();
            let evil = with(good.clone(), &json!({"sub": "1"}));
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(evil.to_string()),
                parts[2]
            )
        }),
        ("garbage", "not-a-jwt".to_owned()),
        ("empty", String::new()),
    ];
    for (name, token) in &cases {
        let message = refused(&hub, token).await;
        assert!(
            !message.contains(token.as_str()) || token.is_empty(),
            "{name}: token echoed"
        );
        eprintln!("{name}: {message}");
    }
    let metrics = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "expired",
        "unknown_kid",
        "algorithm",
        "claims",
        "not_yet_valid",
        "malformed",
    ] {
        assert!(
            metrics.contains(&format!("hub_ws_auth_failed_total{{reason=\"{reason}\"}}")),
            "{reason}"
        );
    }
    // All those unknown kids caused at most one JWKS fetch beyond the first.
    assert!(hub.jwks.fetches.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited() {
    let (hub, _) = TestHub::start().await;
    for n in 0..5 {
        refused(
            &hub,
            &token(Algorithm::RS256, &format!("made-up-{n}"), &claims()),
        )
        .await;
    }
    assert_eq!(
        hub.jwks.fetches.load(Ordering::SeqCst),
        1,
        "one fetch, then throttled"
    );
    let (_ws, _) = hub.authed(None).await;
    assert_eq!(
        hub.jwks.fetches.load(Ordering::SeqCst),
        1,
        "known kid served from cache"
    );
}

#[tokio::test]
async fn protocol_errors_close_1008_and_silence_closes_4401() {
    let (hub, _) =
        TestHub::start_with(|s| s.auth_timeout = std::time::Duration::from_millis(300)).await;
    for bad in [
        "not json".to_owned(),
        r#"{"type":"subscribe"}"#.to_owned(),
        r#"{"type":"auth"}"#.to_owned(),
    ] {
        let mut ws = hub.connect().await;
        ws.send(Message::text(bad.clone())).await.unwrap();
        let (code, texts) = close_code(&mut ws).await;
        assert_eq!(code, 1008, "{bad:.40}");
        assert_eq!(texts[0]["error"]["code"], "INVALID_MESSAGE");
    }
    // Over 4 KiB: 1009 (docs/spec.md §6; more cases in tests/socket.rs).
    let mut ws = hub.connect().await;
    let big = format!(r#"{{"type":"auth","token":"{}"}}"#, "a".repeat(5000));
    ws.send(Message::text(big)).await.unwrap();
    let (code, texts) = close_code(&mut ws).await;
    assert_eq!(code, 1009);
    assert_eq!(texts[0]["error"]["code"], "INVALID_MESSAGE");
    let mut ws = hub.connect().await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1008);

    // After auth, a malformed message is still 1008.
    let (mut ws, _) = hub.authed(None).await;
    ws.send(Message::text("{}")).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1008);

    // No auth in time.
    let mut ws = hub.connect().await;
    let message = expect_unauthorized(&mut ws).await;
    assert!(message.contains("in time"), "{message}");
}

#[tokio::test]
async fn not_ready_until_the_jwks_was_fetched() {
    // A JWKS URL where nothing listens.
    let url: url::Url = format!("http://127.0.0.1:{}/jwks.json", coven_testkit::free_port())
        .parse()
        .unwrap();
    let hub = TestHub::launch(
        |s| s.jwt_public_jwk_url = Some(url),
        std::sync::Arc::new(coven_hub::MemoryRooms::new(1)),
    )
    .await;
    let mut ws = hub.connect().await;
    send_auth(&mut ws, &token(Algorithm::RS256, "rsa-1", &claims()), None).await;
    assert_eq!(expect_unauthorized(&mut ws).await, "unknown signing key");
    let response = hub.http.get(hub.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "starting");
}

#[tokio::test]
async fn the_own_issuer_replaces_its_signing_key_when_it_is_due() {
    // Due at once: the hub's key task replaces the key it generated at start.
    let (hub, _) = TestHub::start_with(|s| {
        s.jwt_public_jwk_url = None;
        s.jwt_key_max_age = std::time::Duration::ZERO;
    })
    .await;
    let issuer = hub.hub.issuer().expect("the hub signs its own tokens");
    eventually("the signing key to be rotated", async || {
        issuer.kids().len() >= 2
    })
    .await;
    let jwks: Value = hub
        .http
        .get(hub.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"][0]["kid"],
        issuer.kid().as_str(),
        "newest first"
    );
    assert!(jwks["keys"].as_array().unwrap().len() >= 2, "{jwks}");
}

/// A JWKS server whose document can be changed, with a redirect, an oversized
/// document and one that never ends; counting fetches of `/jwks.json`.
struct JwksServer {
    base: String,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    async fn start() -> Self {
        use axum::response::IntoResponse;
        let body = std::sync::Arc::new(std::sync::Mutex::new(JWKS.to_owned()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counter) = (body.clone(), fetches.clone());
        let padded = format!("{}{}", " ".repeat(100 * 1024), JWKS);
        let app = axum::Router::new()
            .route(
                "/jwks.json",
                axum::routing::get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            )
            .route(
                "/redirect",
                axum::routing::get(|| async {
                    axum::response::Redirect::temporary("/jwks.json").into_response()
                }),
            )
            .route("/huge", axum::routing::get(move || async move { padded }))
            .route(
                "/endless",
                axum::routing::get(|| async {
                    let spaces = bytes::Bytes::from(vec![b' '; 8192]);
                    axum::body::Body::from_stream(futures_util::stream::repeat_with(move || {
                        Ok::<_, std::convert::Infallible>(spaces.clone())
                    }))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://{addr}"),
            body,
            fetches,
        }
    }

    fn url(&self, path: &str) -> url::Url {
        format!("{}{path}", self.base).parse().unwrap()
    }
}

async fn accepted(hub: &TestHub, token: &str) -> bool {
    let mut ws = hub.connect().await;
    send_auth(&mut ws, token, None).await;
    next_json(&mut ws).await["event"] == "auth.ok"
}

#[tokio::test]
async fn a_key_the_issuer_withdrew_stops_verifying_after_the_periodic_refresh() {
    let server = JwksServer::start().await;
    let url = server.url("/jwks.json");
    let hub = TestHub::start_backend(
        |s| {
            s.jwt_public_jwk_url = Some(url);
            s.jwks_max_age = std::time::Duration::from_secs(1);
        },
        std::sync::Arc::new(coven_hub::MemoryRooms::new(1)),
    )
    .await;
    let old = token(Algorithm::RS256, "rsa-1", &claims());
    assert!(accepted(&hub, &old).await);
    // The issuer rotates: the RSA key leaves its JWKS. Its `kid` is still cached, so
    // only the periodic refresh can notice.
    let mut rotated: Value = serde_json::from_str(JWKS).unwrap();
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "rsa-1");
    *server.body.lock().unwrap() = rotated.to_string();
    eventually("the withdrawn key to be refused", async || {
        !accepted(&hub, &old).await
    })
    .await;
    assert!(server.fetches.load(Ordering::SeqCst) >= 2);
    assert!(accepted(&hub, &token(Algorithm::EdDSA, "ed-1", &claims())).await);
}

#[tokio::test]
async fn a_jwks_redirect_is_not_followed() {
    let server = JwksServer::start().await;
    let source =
        coven_hub::JwksKeySource::new(server.url("/redirect"), std::time::Duration::from_secs(60));
    assert!(!coven_hub::KeySource::warm_up(&source).await);
    assert!(coven_hub::KeySource::key(&source, "rsa-1").await.is_none());
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        0,
        "the target was never asked"
    );
}

#[tokio::test]
async fn an_oversized_or_endless_jwks_is_cut_off() {
    let server = JwksServer::start().await;
    for path in ["/huge", "/endless"] {
        let source =
            coven_hub::JwksKeySource::new(server.url(path), std::time::Duration::from_secs(60));
        // Well under the 10 s request timeout: cut off by size, not by time.
        let warm = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            coven_hub::KeySource::warm_up(&source),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: still reading"));
        assert!(!warm, "{path}");
    }
}

#[tokio::test]
async fn a_jwks_over_plain_http_to_another_host_is_refused() {
    for refused in [
        "http://example.com/jwks.json",
        "http://10.0.0.1/jwks.json",
        "ftp://localhost/jwks.json",
    ] {
        let url: url::Url = refused.parse().unwrap();
        assert!(coven_hub::check_jwks_url(&url).is_err(), "{refused}");
        // Refused before any connection is attempted.
        let source = coven_hub::JwksKeySource::new(url, std::time::Duration::from_secs(60));
        assert!(!coven_hub::KeySource::warm_up(&source).await, "{refused}");
    }
    for allowed in [
        "https://example.com/jwks.json",
        "http://127.0.0.1:8080/jwks.json",
        "http://localhost/jwks.json",
        "http://[::1]/jwks.json",
    ] {
        assert!(
            coven_hub::check_jwks_url(&allowed.parse().unwrap()).is_ok(),
            "{allowed}"
        );
    }
}
