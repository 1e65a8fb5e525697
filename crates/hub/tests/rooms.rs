//! docs/spec.md §7 rooms API from the outside: create and end rooms with a Bearer JWT,
//! `Idempotency-Key`, the per-user rate limit, error shapes, exactly one
//! `room.created` per channel whichever of the API and the gateway webhook comes
//! first, plus CORS, request ids, `/health` and `/metrics`.

mod common;

use std::sync::Arc;

use common::*;
use coven_contract::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
use coven_contract::{Secret, Snowflake};
use coven_hub::{
    ChannelInfo, CreateVoiceChannel, MemoryRooms, RoomsBackend, RoomsError, VOICE_CHANNEL_TYPE,
};
use futures_util::future::BoxFuture;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

fn bearer() -> String {
    format!("Bearer {}", token(Algorithm::RS256, "rsa-1", &claims()))
}

fn bearer_for(sub: &str) -> String {
    let mut claims = claims();
    claims["sub"] = json!(sub);
    format!("Bearer {}", token(Algorithm::ES256, "ec-1", &claims))
}

async fn create(
    hub: &TestHub,
    auth: &str,
    body: Value,
    key: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = hub
        .http
        .post(hub.url("/api/create-room"))
        .header("authorization", auth)
        .json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

async fn end(hub: &TestHub, auth: &str, channel: &str) -> (u16, Value) {
    let response = hub
        .http
        .delete(hub.url(&format!("/api/end-room/{channel}")))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn create_and_end_rooms() {
    let (hub, rooms) = TestHub::start().await;
    let (status, body, _) = create(&hub, "Bearer nope", json!({}), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "UNAUTHORIZED");
    let response = hub
        .http
        .post(hub.url("/api/create-room"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // The size of a create's body is checked before the caller, the caller before
    // the body's fields and before the channel id of an end.
    let response = hub
        .http
        .post(hub.url("/api/create-room"))
        .body(vec![b' '; 17 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let (status, _, _) = create(&hub, "Bearer nope", json!({"userLimit": 100}), None).await;
    assert_eq!(status, 401);
    let (status, _) = end(&hub, "Bearer nope", "not-a-snowflake").await;
    assert_eq!(status, 401);

    let (status, body, _) = create(&hub, &bearer(), json!({}), None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["guildId"], GUILD.to_string());
    assert!(body["name"].as_str().unwrap().starts_with("spell-coven-"));
    let channel: Snowflake = body["channelId"].as_str().unwrap().parse().unwrap();
    assert!(rooms.contains(channel));

    let (status, body, _) = create(
        &hub,
        &bearer(),
        json!({"name": "Friday Commander", "parentId": "42", "userLimit": 0}),
        None,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["name"], "Friday Commander");

    for (bad, field) in [
        (json!({"userLimit": 100}), "userLimit"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"parentId": "abc"}), "parentId"),
    ] {
        let (status, body, _) = create(&hub, &bearer(), bad.clone(), None).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["code"], "VALIDATION_FAILED");
        assert_eq!(body["details"]["field"], field);
    }

    // End: 400 non-snowflake, 404 unknown, 403 not a voice channel of the guild.
    let (status, body) = end(&hub, &bearer(), "abc").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("VALIDATION_FAILED"))
    );
    let (status, body) = end(&hub, &bearer(), "0123").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = end(&hub, &bearer(), "999999").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    rooms.insert(ChannelInfo {
        id: id(31),
        guild_id: Some(id(GUILD)),
        kind: 0,
        name: "general".into(),
        parent_id: None,
        user_limit: None,
    });
    rooms.insert(ChannelInfo {
        id: id(32),
        guild_id: Some(id(OTHER_GUILD)),
        kind: VOICE_CHANNEL_TYPE,
        name: "elsewhere".into(),
        parent_id: None,
        user_limit: Some(4),
    });
    for text_or_foreign in ["31", "32"] {
        let (status, body) = end(&hub, &bearer(), text_or_foreign).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
    }
    assert!(rooms.contains(id(31)) && rooms.contains(id(32)));
    let (status, body) = end(&hub, "Bearer x", &channel.to_string()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = end(&hub, &bearer(), &channel.to_string()).await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    assert!(!rooms.contains(channel));
}

#[tokio::test]
async fn idempotency_key_creates_one_channel() {
    let (hub, rooms) = TestHub::start().await;
    let hub = Arc::new(hub);
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let hub = hub.clone();
        attempts.push(tokio::spawn(async move {
            create(&hub, &bearer(), json!({"name": "Table"}), Some("retry-me")).await
        }));
    }
    let mut ids = Vec::new();
    for attempt in attempts {
        let (status, body, _) = attempt.await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.push(body["channelId"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(rooms.created(), 1);
    // Another key, or another user with the same key, is another room.
    let (_, other, _) = create(&hub, &bearer(), json!({}), Some("another")).await;
    assert_ne!(other["channelId"], ids[0]);
    let (_, theirs, _) = create(&hub, &bearer_for("7"), json!({}), Some("retry-me")).await;
    assert_ne!(theirs["channelId"], ids[0]);
    assert_eq!(rooms.created(), 3);
}

#[tokio::test]
async fn per_user_rate_limit_answers_429_with_retry_after() {
    let (hub, rooms) = TestHub::start_with(|s| {
        s.rooms_rate_burst = 2;
        s.rooms_rate_period = std::time::Duration::from_secs(30);
    })
    .await;
    for _ in 0..2 {
        assert_eq!(create(&hub, &bearer(), json!({}), None).await.0, 201);
    }
    let (status, body, headers) = create(&hub, &bearer(), json!({}), None).await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], "RATE_LIMITED");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(rooms.created(), 2);
    // Someone else is not limited.
    assert_eq!(create(&hub, &bearer_for("8"), json!({}), None).await.0, 201);
}

#[tokio::test]
async fn one_room_created_when_the_api_is_first() {
    let (hub, _) = TestHub::start().await;
    let (mut ws, _) = hub.authed(None).await;
    let base = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    let (status, body, _) = create(&hub, &bearer(), json!({"name": "Table"}), None).await;
    assert_eq!(status, 201);
    let channel: u64 = body["channelId"].as_str().unwrap().parse().unwrap();
    let event = next_event(&mut ws).await;
    assert_eq!(event.event, room_created(channel, "Table"));

    // The gateway's webhook for the same channel arrives later: acknowledged, not sent.
    hub.post_event(&room_created(channel, "Table"), "gw-1")
        .await;
    hub.post_event(&joined(5), "gw-2").await;
    let next = next_event(&mut ws).await;
    assert_eq!((next.seq, next.event), (base + 2, joined(5)));
}

/// A backend whose `create` lets the gateway's webhook reach the hub before the
/// REST answer does, as happens when Discord's gateway is faster than its REST.
struct GatewayFirst {
    inner: MemoryRooms,
    hub_url: std::sync::OnceLock<String>,
}

impl RoomsBackend for GatewayFirst {
    fn create_voice_channel(
        &self,
        request: CreateVoiceChannel,
    ) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        Box::pin(async move {
            let channel = self.inner.create_voice_channel(request).await?;
            let event = room_created(channel.id.get(), &channel.name);
            let body = event.to_webhook_body();
            let signed = Signer::new(Secret::new(SECRET)).sign(now_secs(), &body);
            let response = reqwest::Client::new()
                .post(format!(
                    "{}/api/internal/events",
                    self.hub_url.get().unwrap()
                ))
                .header(TIMESTAMP_HEADER, signed.timestamp)
                .header(SIGNATURE_HEADER, signed.signature)
                .header(EVENT_ID_HEADER, format!("gw-{}", channel.id))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            Ok(channel)
        })
    }

    fn get_channel(&self, id: Snowflake) -> BoxFuture<'_, Result<ChannelInfo, RoomsError>> {
        self.inner.get_channel(id)
    }

    fn delete_channel(
        &self,
        id: Snowflake,
        reason: String,
    ) -> BoxFuture<'_, Result<(), RoomsError>> {
        self.inner.delete_channel(id, reason)
    }
}

#[tokio::test]
async fn one_room_created_when_the_gateway_is_first() {
    let backend = Arc::new(GatewayFirst {
        inner: MemoryRooms::new(7_000_000),
        hub_url: std::sync::OnceLock::new(),
    });
    let hub = TestHub::start_backend(|_| {}, backend.clone()).await;
    backend.hub_url.set(hub.url("")).unwrap();
    let (mut ws, _) = hub.authed(None).await;
    let base = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    let (status, body, _) = create(&hub, &bearer(), json!({"name": "Race"}), None).await;
    assert_eq!(status, 201, "{body}");
    let channel: u64 = body["channelId"].as_str().unwrap().parse().unwrap();
    let event = next_event(&mut ws).await;
    assert_eq!(
        (event.seq, event.event),
        (base + 1, room_created(channel, "Race"))
    );
    // A redelivery of the gateway's event is still suppressed.
    hub.post_event(&room_created(channel, "Race"), &format!("gw-{channel}"))
        .await;
    hub.post_event(&room_created(channel, "Race"), "gw-other-id")
        .await;
    hub.post_event(&joined(6), "after").await;
    let next = next_event(&mut ws).await;
    assert_eq!((next.seq, next.event), (base + 2, joined(6)));
}

#[tokio::test]
async fn cors_request_ids_health_and_metrics() {
    let (hub, _) = TestHub::start().await;
    let preflight = |origin: &'static str| {
        hub.http
            .request(reqwest::Method::OPTIONS, hub.url("/api/create-room"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://play.example.test").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://play.example.test"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    // Another origin is never allowed: the header names only WEB_ORIGIN (or is absent).
    let header = refused.headers().get("access-control-allow-origin");
    assert!(
        header.is_none_or(|v| v == "https://play.example.test"),
        "{header:?}"
    );
    assert!(
        refused
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );

    let response = hub.http.get(hub.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["connections"], 0);
    // No event yet: the head is the stream's base, derived from the clock (ms × 1000).
    let base = health["replay"]["headSeq"].as_u64().unwrap();
    assert!(base > 1_700_000_000_000_000, "{base}");

    let (_ws, ack) = hub.authed(None).await;
    assert_eq!(ack["guildId"], GUILD.to_string());
    hub.post_event(&joined(1), "m1").await;
    eventually("health to count the socket", async || {
        hub.health().await["connections"] == 1
    })
    .await;
    assert_eq!(hub.health().await["replay"]["headSeq"], base + 1);
    let metrics = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "hub_ws_sockets",
        "hub_ws_auth_ok_total",
        "hub_events_in_total",
        "hub_events_out_total",
        "hub_deliveries_total",
        "hub_ingest_latency_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
}
