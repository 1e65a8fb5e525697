//! Shared test harness: a hub on 127.0.0.1 with a tiny JWKS server, signed webhook
//! posting, token minting from the committed test-only keys, and a WebSocket client.
//!
//! Everything runs over real loopback sockets; waits are bounded by timeouts. What
//! tests of other crates share too comes from `coven-testkit`.

#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use coven_contract::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
use coven_contract::{
    Event, EventEnvelope, RoomCreated, RoomName, Secret, ServerMessage, Snowflake, UserLimit,
    VoiceJoined,
};
use coven_hub::{Hub, HubSettings, MemoryRooms, RoomsBackend};
/// Shared with the other crates' tests: waits on a condition, the signature clock.
pub use coven_testkit::{eventually, now_secs};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const GUILD: u64 = 1_000_000_000_000_001;
pub const OTHER_GUILD: u64 = 1_000_000_000_000_002;
pub const SECRET: &str = "test-hub-secret-9f8e7d6c";
pub const OLD_SECRET: &str = "old-hub-secret-1a2b3c4d";
pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "spell-coven-web";
pub const WAIT: Duration = Duration::from_secs(10);

pub const RSA_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../fixtures/rsa_public.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../fixtures/ec_private.pem");
pub const ED_PRIVATE: &[u8] = include_bytes!("../fixtures/ed_private.pem");
pub const JWKS: &str = include_str!("../fixtures/jwks.json");

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn id(n: u64) -> Snowflake {
    Snowflake::new(n).unwrap()
}

/// A JWKS server counting its fetches.
pub struct Jwks {
    pub url: url::Url,
    pub fetches: Arc<AtomicUsize>,
}

pub async fn jwks_server() -> Jwks {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { ([("content-type", "application/json")], JWKS) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks {
        url: format!("http://{addr}/jwks.json").parse().unwrap(),
        fetches,
    }
}

pub fn settings(jwks: &Jwks) -> HubSettings {
    let mut settings = HubSettings::new(
        id(GUILD),
        vec![Secret::new(SECRET), Secret::new(OLD_SECRET)],
        ISSUER.into(),
    );
    settings.jwt_audience = AUDIENCE.into();
    settings.jwt_public_jwk_url = Some(jwks.url.clone());
    settings.web_origin = Some("https://play.example.test".parse().unwrap());
    settings.close_timeout = Duration::from_secs(2);
    settings.drain_timeout = Duration::from_secs(5);
    settings
}

pub struct TestHub {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub jwks: Jwks,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    pub async fn start() -> (Self, Arc<MemoryRooms>) {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut HubSettings)) -> (Self, Arc<MemoryRooms>) {
        let rooms = Arc::new(MemoryRooms::new(5_000_000_000_000_000));
        let hub = Self::start_backend(tune, rooms.clone()).await;
        (hub, rooms)
    }

    /// Starts a hub and waits until `/health` says it is ready.
    pub async fn start_backend(
        tune: impl FnOnce(&mut HubSettings),
        rooms: Arc<dyn RoomsBackend>,
    ) -> Self {
        let hub = Self::launch(tune, rooms).await;
        eventually("the hub to be ready", async || {
            hub.http
                .get(hub.url("/health"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        hub
    }

    /// Starts a hub without waiting for readiness.
    pub async fn launch(tune: impl FnOnce(&mut HubSettings), rooms: Arc<dyn RoomsBackend>) -> Self {
        let jwks = jwks_server().await;
        let mut settings = settings(&jwks);
        tune(&mut settings);
        let hub = Hub::new(settings, rooms).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(hub.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            hub,
            jwks,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Wraps a hub already serving on `addr` (started by a test with its own builder).
    pub fn from_parts(
        addr: SocketAddr,
        hub: Hub,
        jwks: Jwks,
        shutdown: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    ) -> Self {
        Self {
            addr,
            hub,
            jwks,
            http: reqwest::Client::new(),
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT, server)
                .await
                .expect("serve returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }

    /// Posts a raw body with explicit headers.
    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> (reqwest::StatusCode, String) {
        let mut request = self
            .http
            .post(self.url("/api/internal/events"))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// Posts `body` signed with `secret` at `timestamp` under `event_id`.
    pub async fn post_signed(
        &self,
        body: &[u8],
        secret: &str,
        timestamp: u64,
        event_id: &str,
    ) -> (reqwest::StatusCode, String) {
        let signed = Signer::new(Secret::new(secret)).sign(timestamp, body);
        self.post_raw(
            body.to_vec(),
            &[
                (TIMESTAMP_HEADER, signed.timestamp),
                (SIGNATURE_HEADER, signed.signature),
                (EVENT_ID_HEADER, event_id.to_owned()),
            ],
        )
        .await
    }

    /// Posts an event correctly signed now; asserts 200.
    pub async fn post_event(&self, event: &Event, event_id: &str) {
        let (status, body) = self
            .post_signed(&event.to_webhook_body(), SECRET, now_secs(), event_id)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, r#"{"ok":true}"#);
    }

    pub async fn connect(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", self.addr))
            .await
            .unwrap();
        ws
    }

    /// Connects and authenticates; returns the socket and the ack.
    pub async fn authed(&self, last_seq: Option<u64>) -> (Ws, Value) {
        authenticate(self.connect().await, last_seq).await
    }

    /// Connects with a kernel receive buffer of `bytes` (a browser that reads
    /// slowly, or not at all) and authenticates.
    pub async fn authed_with_receive_buffer(&self, bytes: u32) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(
            format!("ws://{}/api/ws", self.addr),
            MaybeTlsStream::Plain(stream),
        )
        .await
        .unwrap();
        authenticate(ws, None).await.0
    }

    /// The hub's head before any event: its stream's base (`seq` starts above the
    /// clock, so a restarted hub never hands out a `seq` twice); the first event
    /// gets base + 1, each next one + 1.
    pub async fn base_seq(&self) -> u64 {
        self.health().await["replay"]["headSeq"].as_u64().unwrap()
    }

    pub async fn health(&self) -> Value {
        self.http
            .get(self.url("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Authenticates `ws` with a valid token; returns it and the ack.
pub async fn authenticate(mut ws: Ws, last_seq: Option<u64>) -> (Ws, Value) {
    send_auth(
        &mut ws,
        &token(Algorithm::RS256, "rsa-1", &claims()),
        last_seq,
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["event"], "auth.ok");
    assert!(ack["guildId"].is_string(), "{ack}");
    (ws, ack)
}

pub fn joined(user: u64) -> Event {
    Event::VoiceJoined(VoiceJoined {
        guild_id: id(GUILD),
        channel_id: id(77),
        user_id: id(user),
    })
}

pub fn room_created(channel: u64, name: &str) -> Event {
    Event::RoomCreated(RoomCreated {
        channel_id: id(channel),
        name: RoomName::try_from(name).unwrap(),
        guild_id: id(GUILD),
        parent_id: None,
        user_limit: UserLimit::try_from(4).unwrap(),
    })
}

pub fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "424242", "exp": now_secs() + 600})
}

pub fn token(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(RSA_PUBLIC),
        other => panic!("{other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

pub async fn send_auth(ws: &mut Ws, token: &str, last_seq: Option<u64>) {
    let mut message = json!({"type": "auth", "token": token});
    if let Some(seq) = last_seq {
        message["lastSeq"] = json!(seq);
    }
    ws.send(Message::text(message.to_string())).await.unwrap();
}

/// The next text frame as JSON (pings are answered by the client library).
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("no socket error");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next event envelope.
pub async fn next_event(ws: &mut Ws) -> EventEnvelope {
    let value = next_json(ws).await;
    match ServerMessage::parse(&value.to_string()).unwrap() {
        ServerMessage::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reads until the close frame; returns its code (skipping any text before it).
pub async fn close_code(ws: &mut Ws) -> (u16, Vec<Value>) {
    let mut texts = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close in time");
        match message {
            Some(Ok(Message::Text(text))) => texts.push(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), texts),
            Some(Ok(Message::Close(None))) => return (1005, texts),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!(
                "socket error before close: {e}; after {} texts",
                texts.len()
            ),
            None => panic!("socket ended without a close frame"),
        }
    }
}

/// Expects `UNAUTHORIZED` then close 4401.
pub async fn expect_unauthorized(ws: &mut Ws) -> String {
    let (code, texts) = close_code(ws).await;
    assert_eq!(code, 4401, "{texts:?}");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["type"], "error");
    assert_eq!(texts[0]["v"], 1);
    assert_eq!(texts[0]["error"]["code"], "UNAUTHORIZED");
    texts[0]["error"]["message"].as_str().unwrap().to_owned()
}

/// The bot's REST client against the simulator `sim`, retrying at most
/// `max_retries` times with millisecond backoffs (tests wait on nothing longer).
pub fn sim_rest_client(
    sim: &coven_sim::Simulator,
    max_retries: u32,
) -> coven_discord::DiscordRestClient {
    coven_discord::DiscordRestClient::with_retry_policy(
        sim.api_url().parse().unwrap(),
        &coven_contract::Secret::new(sim.bot_token()),
        coven_discord::RetryPolicy {
            max_retries,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
        },
    )
    .unwrap()
}
