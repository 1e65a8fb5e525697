//! docs/spec.md §7: the bot token and `HUB_SECRET` never appear in a response or a log line,
//! and neither do browsers' JWTs. Every log line of a busy session (at TRACE for the
//! hub and tower-http) is captured and searched, as is every response body.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use coven_contract::{Secret, Snowflake};
use coven_hub::{ChannelInfo, CreateVoiceChannel, RoomsBackend, RoomsError};
use futures_util::future::BoxFuture;
use jsonwebtoken::Algorithm;
use serde_json::json;

const BOT_TOKEN: &str = "MTIzNDU2Nzg5.bot-token-never-printed";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_env_filter("debug,coven_hub=trace,tower_http=trace")
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .init();
            capture
        })
        .clone()
}

/// A Discord backend that holds a bot token, as the real one does, and fails in the
/// ways Discord fails.
struct TokenHoldingBackend {
    token: Secret,
}

impl RoomsBackend for TokenHoldingBackend {
    fn create_voice_channel(
        &self,
        _request: CreateVoiceChannel,
    ) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        tracing::debug!(token = ?self.token, "calling Discord");
        Box::pin(async { Err(RoomsError::Unauthorized) })
    }

    fn get_channel(&self, _id: Snowflake) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        Box::pin(async { Err(RoomsError::Upstream("503 from Discord".into())) })
    }

    fn delete_channel(
        &self,
        _id: Snowflake,
        _reason: String,
    ) -> BoxFuture<'_, Result<(), RoomsError>> {
        Box::pin(async { Err(RoomsError::MissingPermissions) })
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_responses() {
    let logs = capture();
    let backend = Arc::new(TokenHoldingBackend {
        token: Secret::new(BOT_TOKEN),
    });
    let hub = TestHub::start_backend(|_| {}, backend).await;
    let settings_dump = format!("{:?}", common::settings(&hub.jwks));
    let mut bodies = vec![settings_dump];

    let good = token(Algorithm::RS256, "rsa-1", &claims());
    let expired = token(
        Algorithm::RS256,
        "rsa-1",
        &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "1", "exp": 1}),
    );
    let (mut ws, ack) = hub.authed(None).await;
    bodies.push(ack.to_string());
    let mut refused = hub.connect().await;
    send_auth(&mut refused, &expired, None).await;
    bodies.push(expect_unauthorized(&mut refused).await);

    let body = joined(3).to_webhook_body();
    for (secret, ts, id) in [
        (SECRET, now_secs(), "a"),
        (OLD_SECRET, now_secs(), "b"),
        ("guess", now_secs(), "c"),
        (SECRET, now_secs() - 3600, "d"),
    ] {
        let (_, text) = hub.post_signed(&body, secret, ts, id).await;
        bodies.push(text);
    }
    let (_, text) = hub
        .post_signed(b"{\"event\":1}", SECRET, now_secs(), "e")
        .await;
    bodies.push(text);
    bodies.push(next_event(&mut ws).await.seq.to_string());

    for (method, path) in [
        (reqwest::Method::POST, "/api/create-room"),
        (reqwest::Method::DELETE, "/api/end-room/123"),
    ] {
        for auth in [format!("Bearer {good}"), format!("Bearer {expired}")] {
            let response = hub
                .http
                .request(method.clone(), hub.url(path))
                .header("authorization", auth)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            bodies.push(format!("{:?}", response.headers()));
            bodies.push(response.text().await.unwrap());
        }
    }
    bodies.push(
        hub.http
            .get(hub.url("/health"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    bodies.push(
        hub.http
            .get(hub.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("webhook refused"),
        "logs were captured:\n{logs}"
    );
    assert!(
        logs.contains("request failed"),
        "errors were logged:\n{logs}"
    );
    for secret in [
        SECRET,
        OLD_SECRET,
        BOT_TOKEN,
        good.as_str(),
        expired.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs:\n{logs}");
        for body in &bodies {
            assert!(
                !body.contains(secret),
                "a secret reached a response: {body}"
            );
        }
    }
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    // Upstream details stay in the logs, never in the answer to the browser.
    assert!(bodies.iter().all(|b| !b.contains("503 from Discord")));
}
