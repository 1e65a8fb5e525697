//! Webcams at the table (docs/spec.md §12) through real hub sockets: `rtc.signal`
//! relayed between two members of one voice channel and nobody else (`FORBIDDEN`,
//! the socket stays open), stopped at once by a leave or a move, limited in size
//! and rate, across two hubs sharing Redis; presence seeded from the voice view;
//! `iceServers` with TURN REST API credentials in `auth.ok`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{GUILD, TestHub, Ws, claims, id, next_json, now_secs, send_auth, token};
use coven_contract::internal::{VoiceMember, VoiceRoom, VoiceView};
use coven_contract::{Event, Secret, VoiceFlags, VoiceJoined, VoiceLeft};
use coven_hub::{IceSettings, MemoryRooms, RoomsError, RtcLimits, VoiceViewSource};
use coven_testkit::RedisServer;
use futures_util::SinkExt;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TABLE_A: u64 = 77;
const TABLE_B: u64 = 88;
const ALICE: u64 = 1_100_000_000_000_001;
const BOB: u64 = 1_100_000_000_000_002;
const CAROL: u64 = 1_100_000_000_000_003;

fn joined(user: u64, channel: u64) -> Event {
    Event::VoiceJoined(VoiceJoined {
        guild_id: id(GUILD),
        channel_id: id(channel),
        user_id: id(user),
    })
}

fn left(user: u64, channel: u64) -> Event {
    Event::VoiceLeft(VoiceLeft {
        guild_id: id(GUILD),
        channel_id: id(channel),
        user_id: id(user),
    })
}

/// A socket signed in as `user`; returns it and its `auth.ok`.
async fn sign_in(hub: &TestHub, user: u64) -> (Ws, Value) {
    let mut ws = hub.connect().await;
    let mut claims = claims();
    claims["sub"] = json!(user.to_string());
    send_auth(&mut ws, &token(Algorithm::RS256, "rsa-1", &claims), None).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["event"], "auth.ok", "{ack}");
    (ws, ack)
}

async fn send(ws: &mut Ws, message: &Value) {
    ws.send(Message::text(message.to_string())).await.unwrap();
}

fn signal(to: u64, channel: u64, data: &Value) -> Value {
    json!({"type":"rtc.signal","to":to.to_string(),"channelId":channel.to_string(),"data":data})
}

/// The next frame that is not an event.
async fn next_non_event(ws: &mut Ws) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] != "event" {
            return frame;
        }
    }
}

/// Reads events until one named `event` about `user` arrived.
async fn wait_event(ws: &mut Ws, event: &str, user: u64) {
    loop {
        let frame = next_json(ws).await;
        assert_ne!(frame["type"], "rtc.signal", "unexpected signal {frame}");
        if frame["event"] == event && frame["payload"]["userId"] == json!(user.to_string()) {
            return;
        }
    }
}

fn assert_error(frame: &Value, code: &str) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["error"]["code"], code, "{frame}");
}

fn assert_signal(frame: &Value, from: u64, channel: u64, data: &Value) {
    assert_eq!(frame["type"], "rtc.signal", "{frame}");
    assert_eq!(frame["v"], 1);
    assert_eq!(frame["from"], from.to_string());
    assert_eq!(frame["channelId"], channel.to_string());
    assert_eq!(&frame["data"], data);
    assert!(frame["ts"].as_u64().is_some(), "{frame}");
}

/// Alice and Bob at table A, Carol at table B; each socket has seen all three joins.
async fn seated(hub: &TestHub) -> (Ws, Ws, Ws) {
    let (mut alice, _) = sign_in(hub, ALICE).await;
    let (mut bob, _) = sign_in(hub, BOB).await;
    let (mut carol, _) = sign_in(hub, CAROL).await;
    hub.post_event(&joined(ALICE, TABLE_A), "j-alice").await;
    hub.post_event(&joined(BOB, TABLE_A), "j-bob").await;
    hub.post_event(&joined(CAROL, TABLE_B), "j-carol").await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        wait_event(ws, "voice.joined", CAROL).await;
    }
    (alice, bob, carol)
}

#[tokio::test]
async fn members_of_one_channel_signal_each_other_and_a_stranger_is_forbidden() {
    let (hub, _rooms) = TestHub::start().await;
    let (mut alice, mut bob, mut carol) = seated(&hub).await;
    let offer = json!({"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    send(&mut alice, &signal(BOB, TABLE_A, &offer)).await;
    assert_signal(&next_non_event(&mut bob).await, ALICE, TABLE_A, &offer);
    let answer = json!({"type":"answer","sdp":"v=0"});
    send(&mut bob, &signal(ALICE, TABLE_A, &answer)).await;
    assert_signal(&next_non_event(&mut alice).await, BOB, TABLE_A, &answer);

    // Carol is at table B: into table A, to Alice, she is refused and stays connected.
    send(&mut carol, &signal(ALICE, TABLE_A, &offer)).await;
    let refused = next_non_event(&mut carol).await;
    assert_error(&refused, "FORBIDDEN");
    // Naming her own channel does not help: Alice is not in it.
    send(&mut carol, &signal(ALICE, TABLE_B, &offer)).await;
    assert_error(&next_non_event(&mut carol).await, "FORBIDDEN");
    // Nor may Alice reach into table B, nor signal herself.
    send(&mut alice, &signal(CAROL, TABLE_B, &offer)).await;
    assert_error(&next_non_event(&mut alice).await, "FORBIDDEN");
    send(&mut alice, &signal(ALICE, TABLE_A, &offer)).await;
    assert_error(&next_non_event(&mut alice).await, "FORBIDDEN");

    // Nothing of Carol's reached Alice: the next frame she gets is Bob's.
    let candidate = json!({"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0"});
    send(&mut bob, &signal(ALICE, TABLE_A, &candidate)).await;
    assert_signal(&next_non_event(&mut alice).await, BOB, TABLE_A, &candidate);
    // Carol's socket is still open and live.
    hub.post_event(&joined(ALICE + 10, TABLE_B), "j-dave").await;
    wait_event(&mut carol, "voice.joined", ALICE + 10).await;
}

#[tokio::test]
async fn a_leave_or_a_move_stops_the_relay_at_once() {
    let (hub, _rooms) = TestHub::start().await;
    let (mut alice, mut bob, mut carol) = seated(&hub).await;
    let hello = json!({"type":"hello"});
    // Bob moves from A to B: left(A) then joined(B).
    hub.post_event(&left(BOB, TABLE_A), "l-bob").await;
    hub.post_event(&joined(BOB, TABLE_B), "m-bob").await;
    // The moment Alice sees Bob leave, she can no longer reach him, nor he her.
    wait_event(&mut alice, "voice.left", BOB).await;
    send(&mut alice, &signal(BOB, TABLE_A, &hello)).await;
    assert_error(&next_non_event(&mut alice).await, "FORBIDDEN");
    wait_event(&mut bob, "voice.joined", BOB).await;
    send(&mut bob, &signal(ALICE, TABLE_A, &hello)).await;
    assert_error(&next_non_event(&mut bob).await, "FORBIDDEN");
    // At table B he and Carol may.
    send(&mut bob, &signal(CAROL, TABLE_B, &hello)).await;
    assert_signal(&next_non_event(&mut carol).await, BOB, TABLE_B, &hello);
    // Carol leaves: Bob is alone.
    hub.post_event(&left(CAROL, TABLE_B), "l-carol").await;
    wait_event(&mut bob, "voice.left", CAROL).await;
    send(&mut bob, &signal(CAROL, TABLE_B, &hello)).await;
    assert_error(&next_non_event(&mut bob).await, "FORBIDDEN");
}

#[tokio::test]
async fn signals_are_limited_in_rate_and_size_and_need_auth() {
    let (hub, _rooms) = TestHub::start_with(|s| {
        s.rtc_limits = RtcLimits {
            burst: 3,
            period: Duration::from_secs(600),
        };
    })
    .await;
    let (mut alice, mut bob, _carol) = seated(&hub).await;
    // Over 4 KiB (the limit of other messages) is fine for a signal.
    let sdp = json!({"type":"offer","sdp":"a".repeat(12 * 1024)});
    send(&mut alice, &signal(BOB, TABLE_A, &sdp)).await;
    assert_signal(&next_non_event(&mut bob).await, ALICE, TABLE_A, &sdp);
    let small = json!({"n":1});
    for _ in 0..2 {
        send(&mut alice, &signal(BOB, TABLE_A, &small)).await;
        assert_signal(&next_non_event(&mut bob).await, ALICE, TABLE_A, &small);
    }
    // The fourth within the period is refused; the socket stays open.
    send(&mut alice, &signal(BOB, TABLE_A, &small)).await;
    assert_error(&next_non_event(&mut alice).await, "RATE_LIMITED");
    send(&mut bob, &signal(ALICE, TABLE_A, &small)).await;
    assert_signal(&next_non_event(&mut alice).await, BOB, TABLE_A, &small);

    // A signal over 16 KiB is too big: INVALID_MESSAGE and close 1009 (docs/spec.md §6).
    let huge = json!({"type":"offer","sdp":"a".repeat(16 * 1024)});
    send(&mut bob, &signal(ALICE, TABLE_A, &huge)).await;
    let (code, texts) = common::close_code(&mut bob).await;
    assert_eq!(code, 1009, "{texts:?}");
    assert_error(texts.last().unwrap(), "INVALID_MESSAGE");

    // Before `auth`, a signal is refused with UNAUTHORIZED.
    let mut stranger = hub.connect().await;
    send(&mut stranger, &signal(ALICE, TABLE_A, &small)).await;
    assert!(
        common::expect_unauthorized(&mut stranger)
            .await
            .contains("auth")
    );
}

/// A voice view with fixed members (the worker's, in production).
struct FixedView(VoiceView);

impl VoiceViewSource for FixedView {
    fn fetch(&self) -> BoxFuture<'_, Result<VoiceView, RoomsError>> {
        let view = self.0.clone();
        Box::pin(async move { Ok(view) })
    }
}

#[tokio::test]
async fn presence_is_seeded_from_the_voice_view() {
    let member = |channel| VoiceMember {
        channel_id: id(channel),
        flags: VoiceFlags::default(),
    };
    let view = VoiceView {
        rooms: BTreeMap::from([(
            id(TABLE_A),
            VoiceRoom::from_channel(Some("Table A".into()), None, Some(4)),
        )]),
        members: BTreeMap::from([(id(ALICE), member(TABLE_A)), (id(BOB), member(TABLE_A))]),
    };
    let jwks = common::jwks_server().await;
    let hub = coven_hub::Hub::builder(common::settings(&jwks), Arc::new(MemoryRooms::new(1)))
        .voice_view(Arc::new(FixedView(view)))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hub.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    let hub = TestHub::from_parts(addr, hub, jwks, tx, server);
    let (mut alice, _) = sign_in(&hub, ALICE).await;
    let (mut bob, _) = sign_in(&hub, BOB).await;
    let hello = json!({"type":"hello"});
    // No event was ever posted: the view alone says they sit at table A.
    common::eventually("the presence to be seeded", async || {
        send(&mut alice, &signal(BOB, TABLE_A, &hello)).await;
        tokio::time::timeout(Duration::from_millis(200), next_non_event(&mut bob))
            .await
            .is_ok_and(|frame| frame["type"] == "rtc.signal")
    })
    .await;
}

fn turn_settings() -> IceSettings {
    IceSettings {
        urls: vec![
            "stun:127.0.0.1:3478".into(),
            "turn:127.0.0.1:3478?transport=udp".into(),
        ],
        secret: Some(Secret::new("turn-shared-secret")),
        ttl: Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn auth_ok_carries_ice_servers_with_turn_credentials_for_the_user() {
    let (plain, _rooms) = TestHub::start().await;
    let (_ws, ack) = sign_in(&plain, ALICE).await;
    assert_eq!(ack["iceServers"], json!([]), "no TURN configured: {ack}");

    let (hub, _rooms) = TestHub::start_with(|s| s.ice = turn_settings()).await;
    let (_ws, ack) = sign_in(&hub, ALICE).await;
    let servers = ack["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{ack}");
    assert_eq!(servers[0], json!({"urls":["stun:127.0.0.1:3478"]}));
    assert_eq!(
        servers[1]["urls"],
        json!(["turn:127.0.0.1:3478?transport=udp"])
    );
    let username = servers[1]["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, ALICE.to_string());
    let expiry: u64 = expiry.parse().unwrap();
    let now = now_secs();
    assert!(
        (now + 3500..=now + 3700).contains(&expiry),
        "about an hour: {expiry} vs {now}"
    );
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"turn-shared-secret").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(servers[1]["credential"], expected);
    assert!(!ack.to_string().contains("turn-shared-secret"));
}

#[tokio::test]
async fn two_players_on_two_hubs_sharing_redis_signal_each_other() {
    let redis = RedisServer::start_volatile();
    let url = Secret::new(redis.url());
    let (url_a, url_b) = (url.clone(), url);
    let (hub_a, _) = TestHub::start_with(move |s| s.redis_url = Some(url_a)).await;
    let (hub_b, _) = TestHub::start_with(move |s| s.redis_url = Some(url_b)).await;
    let (mut alice, _) = sign_in(&hub_a, ALICE).await;
    let (mut bob, _) = sign_in(&hub_b, BOB).await;
    let (mut carol, _) = sign_in(&hub_b, CAROL).await;
    // The worker posts to either hub; both hubs see every event.
    hub_a.post_event(&joined(ALICE, TABLE_A), "j-alice").await;
    hub_b.post_event(&joined(BOB, TABLE_A), "j-bob").await;
    hub_a.post_event(&joined(CAROL, TABLE_B), "j-carol").await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        wait_event(ws, "voice.joined", CAROL).await;
    }
    let offer = json!({"type":"offer","sdp":"v=0"});
    // Bob's hub subscribes to his channel as his socket signs in; wait for it once.
    common::eventually("a signal to reach the other hub", async || {
        send(&mut alice, &signal(BOB, TABLE_A, &offer)).await;
        tokio::time::timeout(Duration::from_millis(300), next_non_event(&mut bob))
            .await
            .is_ok_and(|frame| frame["type"] == "rtc.signal")
    })
    .await;
    let answer = json!({"type":"answer","sdp":"v=0"});
    send(&mut bob, &signal(ALICE, TABLE_A, &answer)).await;
    assert_signal(&next_non_event(&mut alice).await, BOB, TABLE_A, &answer);
    // Carol, on Bob's hub but at table B, is refused by her own hub.
    send(&mut carol, &signal(ALICE, TABLE_A, &offer)).await;
    assert_error(&next_non_event(&mut carol).await, "FORBIDDEN");
    // Alice leaves (posted to hub B): hub A stops relaying her signals at once.
    hub_b.post_event(&left(ALICE, TABLE_A), "l-alice").await;
    wait_event(&mut alice, "voice.left", ALICE).await;
    send(&mut alice, &signal(BOB, TABLE_A, &offer)).await;
    assert_error(&next_non_event(&mut alice).await, "FORBIDDEN");
    wait_event(&mut bob, "voice.left", ALICE).await;
    send(&mut bob, &signal(ALICE, TABLE_A, &answer)).await;
    assert_error(&next_non_event(&mut bob).await, "FORBIDDEN");
}

#[tokio::test]
async fn only_a_demo_hub_seats_anyone_at_a_table() {
    let (hub, _rooms) = TestHub::start().await;
    let url = hub.url(&format!("/api/demo/sit/{TABLE_A}"));
    assert_eq!(hub.http.get(&url).send().await.unwrap().status(), 404);
    let mut claims = claims();
    claims["sub"] = json!(ALICE.to_string());
    let sit = hub
        .http
        .post(&url)
        .bearer_auth(token(Algorithm::RS256, "rsa-1", &claims))
        .send()
        .await
        .unwrap();
    assert_eq!(sit.status(), 404);
    assert_eq!(
        hub.http.post(&url).send().await.unwrap().status(),
        401,
        "a token first"
    );
}
