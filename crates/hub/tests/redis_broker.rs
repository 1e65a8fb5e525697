//! The Redis-backed broker and rooms memory against a real `redis-server`: the Lua
//! scripts' logic (one `seq` and one dedupe memory for several hubs, replay from
//! the stream, the age limit, shared `Idempotency-Key` answers and rate limits),
//! a new stream above the old one when Redis loses its data (`FLUSHALL`), room
//! keys that last as long as the room, and a hub that starts while Redis is down
//! and recovers when it comes up.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestHub, eventually, id, joined, next_event, room_created};
use coven_contract::{Secret, ServerMessage};
use coven_hub::{Broker, BrokerLimits, Frame, OnceKey, Outbox, RedisBroker};
use coven_testkit::{RedisServer, free_port};
use jsonwebtoken::Algorithm;

/// The URL of a private `redis-server` (volatile: no persistence), as a secret.
fn url(redis: &RedisServer) -> Secret {
    Secret::new(redis.url())
}

fn limits(max_age: Duration) -> BrokerLimits {
    BrokerLimits {
        replay_capacity: 1000,
        replay_max_age: max_age,
        dedupe_capacity: 1000,
        dedupe_max_age: Duration::from_secs(60),
    }
}

fn seqs(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .map(|frame| match ServerMessage::parse(frame).unwrap() {
            ServerMessage::Event(event) => event.seq,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn key(id: &str) -> OnceKey {
    OnceKey::Event(id.into())
}

fn outbox() -> Arc<Outbox> {
    Arc::new(Outbox::new(1 << 20))
}

/// Where a stream started now would begin: `seq` values come from the clock
/// (Unix ms × 1000), so every stream starts above this.
fn clock_base() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
        * 1000
}

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// The `seq` of the oldest event in the guild's Redis stream.
async fn oldest_in_stream(redis: &RedisServer) -> u64 {
    let mut conn = connection(redis).await;
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("coven:{{{}}}:hub:events", common::GUILD))
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    reply.ids[0].id.strip_suffix("-0").unwrap().parse().unwrap()
}

#[tokio::test]
async fn two_brokers_share_one_seq_and_one_dedupe_memory() {
    let redis = RedisServer::start_volatile();
    let a = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let b = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let clock = clock_base();
    let first = a
        .publish(joined(3), vec![key("k1")])
        .await
        .unwrap()
        .unwrap();
    assert!(first > clock, "{first} starts above {clock}");
    assert_eq!(b.publish(joined(3), vec![key("k1")]).await.unwrap(), None);
    assert_eq!(
        b.publish(joined(4), vec![key("k2"), key("k3")])
            .await
            .unwrap(),
        Some(first + 1)
    );
    assert_eq!(
        a.publish(joined(4), vec![key("k4"), key("k3")])
            .await
            .unwrap(),
        None,
        "k3 was seen"
    );
    assert_eq!(
        b.publish(joined(4), vec![key("k4")]).await.unwrap(),
        None,
        "k4 was remembered although its event was a duplicate"
    );
    assert_eq!(a.publish(joined(5), vec![]).await.unwrap(), Some(first + 2));
    assert!(a.redis_up() && b.redis_up());
}

#[tokio::test]
async fn once_keys_keep_the_redis_names_other_hubs_read() {
    // Hubs of a rolling deploy share these keys: their names are a wire format.
    let redis = RedisServer::start_volatile();
    let a = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let keys = vec![key("evt-1"), OnceKey::RoomCreated(id(77))];
    assert!(a.publish(joined(3), keys).await.unwrap().is_some());
    let mut conn = connection(&redis).await;
    for name in ["event:evt-1", "room.created:77"] {
        let full = format!("coven:{{{}}}:hub:once:{name}", common::GUILD);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&full)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(exists, "{full}");
    }
}

#[tokio::test]
async fn a_fresh_broker_replays_from_the_stream_and_refuses_what_it_cannot_fill() {
    let redis = RedisServer::start_volatile();
    let a = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let mut published = Vec::new();
    for user in 10..16 {
        published.push(a.publish(joined(user), vec![]).await.unwrap().unwrap());
    }
    let first = published[0];
    assert_eq!(published, (first..first + 6).collect::<Vec<_>>());
    // A broker that never read these events: its ring is empty, Redis has them.
    let b = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let s = b
        .subscribe(id(common::GUILD), Some(first + 1), outbox())
        .await
        .unwrap();
    assert_eq!(s.resumed, Some(true));
    assert_eq!(seqs(&s.replay), published[2..].to_vec());
    let s = b
        .subscribe(id(common::GUILD), Some(first + 5), outbox())
        .await
        .unwrap();
    assert_eq!((s.resumed, s.replay.len()), (Some(true), 0));
    let s = b
        .subscribe(id(common::GUILD), Some(first + 59), outbox())
        .await
        .unwrap();
    assert_eq!(s.resumed, Some(false), "ahead of every seq Redis assigned");
    let s = b
        .subscribe(id(common::GUILD), None, outbox())
        .await
        .unwrap();
    assert_eq!((s.resumed, s.replay.len()), (None, 0));

    // The age limit applies to the stream too (by each event's ts).
    let short = RedisBroker::new(&url(&redis), limits(Duration::from_millis(200))).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = short
        .subscribe(id(common::GUILD), Some(first + 1), outbox())
        .await
        .unwrap();
    assert_eq!(s.resumed, Some(false), "older than the replay age");
}

#[tokio::test]
async fn when_redis_loses_its_data_seq_goes_on_above_and_old_resumes_are_refused() {
    let redis = RedisServer::start_volatile();
    let a = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let b = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let guild = id(common::GUILD);
    // A browser on B follows the stream live.
    let live = outbox();
    assert_eq!(
        b.subscribe(guild, None, live.clone())
            .await
            .unwrap()
            .resumed,
        None
    );
    let mut old = Vec::new();
    for user in 1..=5 {
        old.push(a.publish(joined(user), vec![]).await.unwrap().unwrap());
    }
    let old_head = old[4];
    eventually("B to read the old stream", async || {
        b.ring_state(guild).head_seq == old_head
    })
    .await;
    let last_seq = old[2]; // a browser that went away after the third event

    let mut conn = connection(&redis).await;
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let mut new = Vec::new();
    for user in 6..=10 {
        new.push(a.publish(joined(user), vec![]).await.unwrap().unwrap());
    }
    assert!(new[0] > old_head, "{new:?} after {old_head}");
    assert!(new.windows(2).all(|w| w[1] == w[0] + 1), "{new:?}");
    eventually("B to read the new stream", async || {
        b.ring_state(guild).head_seq == new[4]
    })
    .await;
    assert!(
        live.is_overloaded(),
        "the live browser on B is closed (1013) to resume, not left with a hole"
    );

    for hub in [&a, &b] {
        for last in [last_seq, old_head] {
            let s = hub.subscribe(guild, Some(last), outbox()).await.unwrap();
            assert_eq!((s.resumed, s.replay.len()), (Some(false), 0), "{last}");
        }
        let s = hub.subscribe(guild, Some(new[1]), outbox()).await.unwrap();
        assert_eq!(s.resumed, Some(true));
        assert_eq!(seqs(&s.replay), new[2..].to_vec());
    }
}

#[tokio::test]
async fn a_rooms_key_lasts_while_the_room_exists_and_a_window_after() {
    let redis = RedisServer::start_volatile();
    let a = RedisBroker::new(&url(&redis), limits(Duration::from_secs(60))).unwrap();
    let room = room_created(88, "Table");
    let keys = vec![key("gw-1"), OnceKey::RoomCreated(id(88))];
    assert!(a.publish(room.clone(), keys).await.unwrap().is_some());
    let conn = connection(&redis).await;
    let ttl = |name: &str| {
        let full = format!("coven:{{{}}}:hub:once:{name}", common::GUILD);
        let mut conn = conn.clone();
        async move {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(full)
                .query_async(&mut conn)
                .await
                .unwrap();
            ttl
        }
    };
    let day = 24 * 3600 * 1000;
    assert!((1..=60_000).contains(&ttl("event:gw-1").await));
    assert!(
        ttl("room.created:88").await > 300 * day,
        "as long as the room"
    );
    let webhook = OnceKey::for_webhook("gw-2", &room);
    assert_eq!(a.publish(room.clone(), webhook).await.unwrap(), None);

    let deleted = coven_contract::Event::RoomDeleted(coven_contract::RoomDeleted {
        channel_id: id(88),
        guild_id: id(common::GUILD),
    });
    let gone = OnceKey::for_webhook("gw-3", &deleted);
    assert!(a.publish(deleted, gone).await.unwrap().is_some());
    let left = ttl("room.created:88").await;
    assert!(
        (1..=60_000).contains(&left),
        "a window after room.deleted: {left}"
    );
    let late = OnceKey::for_webhook("gw-4", &room);
    assert_eq!(a.publish(room, late).await.unwrap(), None, "a late webhook");
}

async fn clustered(redis: &RedisServer, first_id: u64) -> (TestHub, Arc<coven_hub::MemoryRooms>) {
    let url = url(redis);
    // Each hub's fake Discord hands out its own ids (one real Discord would).
    let rooms = Arc::new(coven_hub::MemoryRooms::new(first_id));
    let hub = TestHub::start_backend(
        move |s| {
            s.redis_url = Some(url);
            s.rooms_rate_burst = 3;
            s.rooms_rate_period = Duration::from_secs(60);
        },
        rooms.clone(),
    )
    .await;
    (hub, rooms)
}

fn bearer() -> String {
    common::token(Algorithm::RS256, "rsa-1", &common::claims())
}

#[tokio::test]
async fn hubs_share_idempotency_answers_rate_limits_and_live_events() {
    let redis = RedisServer::start_volatile();
    let (a, rooms_a) = clustered(&redis, 5_000_000_000_000_000).await;
    let (b, rooms_b) = clustered(&redis, 6_000_000_000_000_000).await;
    let create = |hub: &TestHub, key: &str| {
        hub.http
            .post(hub.url("/api/create-room"))
            .bearer_auth(bearer())
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"name": "Shared"}))
            .send()
    };
    let first = create(&a, "k-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let second: serde_json::Value = create(&b, "k-1").await.unwrap().json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(rooms_a.created() + rooms_b.created(), 1, "one channel");

    // Burst 3 across both hubs: two more creates pass, the next is refused anywhere.
    assert_eq!(create(&b, "k-2").await.unwrap().status(), 201);
    assert_eq!(create(&a, "k-3").await.unwrap().status(), 201);
    let limited = create(&b, "k-4").await.unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // A refused create released its key: it is not answered from memory.
    assert_eq!(create(&a, "k-4").await.unwrap().status(), 429);

    // Live events: the room.created of each create reached browsers on both hubs,
    // with the same seq, followed by a webhook event posted to either hub.
    let first = oldest_in_stream(&redis).await;
    assert!(first > 1_700_000_000_000_000, "{first}: from the clock");
    let (mut on_a, _) = a.authed(Some(first - 1)).await;
    let (mut on_b, _) = b.authed(Some(first - 1)).await;
    b.post_event(&joined(9), "evt-9").await;
    for ws in [&mut on_a, &mut on_b] {
        let names: Vec<(u64, &str)> = [
            next_event(ws).await,
            next_event(ws).await,
            next_event(ws).await,
            next_event(ws).await,
        ]
        .iter()
        .map(|e| (e.seq, e.event.name()))
        .collect();
        assert_eq!(
            names,
            vec![
                (first, "room.created"),
                (first + 1, "room.created"),
                (first + 2, "room.created"),
                (first + 3, "voice.joined")
            ]
        );
    }
}

#[tokio::test]
async fn a_hub_starts_without_redis_and_recovers_when_it_comes_up() {
    let port = free_port();
    let url = Secret::new(format!("redis://127.0.0.1:{port}/"));
    let (hub, _rooms) = TestHub::start_with(move |s| s.redis_url = Some(url)).await;
    let health = hub.health().await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["redis"], "down", "{health}");
    let body = joined(5).to_webhook_body();
    let (status, _) = hub
        .post_signed(&body, common::SECRET, common::now_secs(), "early")
        .await;
    assert_eq!(status, 503, "refused so that the worker retries");
    let keyed = hub
        .http
        .post(hub.url("/api/create-room"))
        .bearer_auth(bearer())
        .header("Idempotency-Key", "down")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 503);
    assert!(keyed.headers().contains_key("retry-after"));
    let (mut ws, _) = hub.authed(None).await;

    let clock = clock_base();
    let _redis = tokio::task::spawn_blocking(move || RedisServer::start_volatile_on(port))
        .await
        .unwrap();
    eventually("redis up in /health", async || {
        hub.health().await["redis"] == "up"
    })
    .await;
    hub.post_event(&joined(5), "early").await;
    let event = next_event(&mut ws).await;
    assert_eq!(event.event.name(), "voice.joined");
    assert!(
        event.seq > clock,
        "{}: a new stream starts from the clock",
        event.seq
    );
    let metrics = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The gauge is process-wide (other tests' hubs set it too): only its presence.
    assert!(metrics.contains("hub_redis_up"), "{metrics}");
    assert!(metrics.contains("hub_redis_errors_total"), "{metrics}");
}

/// Authenticates a socket on `hub` with `token`; returns the first answer.
async fn ws_answer(hub: &TestHub, token: &str) -> serde_json::Value {
    let mut ws = hub.connect().await;
    common::send_auth(&mut ws, token, None).await;
    common::next_json(&mut ws).await
}

#[tokio::test]
async fn the_own_issuers_keys_are_shared_and_rotate_across_hubs() {
    let redis = RedisServer::start_volatile();
    let own_issuer = |url: Secret| {
        move |s: &mut coven_hub::HubSettings| {
            s.jwt_public_jwk_url = None;
            s.redis_url = Some(url);
        }
    };
    let (a, _) = TestHub::start_with(own_issuer(url(&redis))).await;
    let (b, _) = TestHub::start_with(own_issuer(url(&redis))).await;
    let (issuer_a, issuer_b) = (a.hub.issuer().unwrap(), b.hub.issuer().unwrap());
    assert!(issuer_a.is_shared());
    assert_eq!(
        issuer_a.kid(),
        issuer_b.kid(),
        "both sign with the shared key"
    );
    let subject = coven_hub::TokenSubject {
        user_id: "4242".into(),
        name: "Alice".into(),
        avatar_url: None,
    };
    let token = issuer_a.issue(&subject).unwrap();
    assert_eq!(ws_answer(&b, &token).await["event"], "auth.ok");

    // A rotation on A reaches B the first time B sees a token with the new key.
    let rotated = issuer_a.rotate_shared().await.unwrap();
    assert_eq!(issuer_a.kid(), rotated);
    let fresh = issuer_a.issue(&subject).unwrap();
    assert_eq!(ws_answer(&b, &fresh).await["event"], "auth.ok");
    assert_eq!(issuer_b.kid(), rotated, "B adopted the rotated set");
    assert_eq!(
        ws_answer(&b, &token).await["event"],
        "auth.ok",
        "tokens of the previous key stay valid"
    );

    // Automatic rotation: when the key falls due on both hubs at once, one
    // rotates and the other adopts its key instead of adding one more.
    let max_age = Duration::from_secs(2);
    tokio::time::sleep(max_age).await; // the key's age is the condition here
    let due = issuer_a.rotate_if_older_than(max_age).await.unwrap();
    let due = due.expect("the shared key is older than max_age");
    assert_eq!(issuer_b.rotate_if_older_than(max_age).await.unwrap(), None);
    assert_eq!(issuer_b.kid(), due, "B took A's new key");
    // (B also keeps the key it had before it first read the shared set.)
    assert!(
        issuer_b.kids().ends_with(&issuer_a.kids()),
        "one shared set"
    );
}

#[tokio::test]
async fn hubs_share_the_per_ip_api_allowance() {
    let redis = RedisServer::start_volatile();
    let mut hubs = Vec::new();
    for first_id in [5_000_000_000_000_000, 6_000_000_000_000_000] {
        let url = url(&redis);
        let rooms = Arc::new(coven_hub::MemoryRooms::new(first_id));
        hubs.push(
            TestHub::start_backend(
                move |s| {
                    s.redis_url = Some(url);
                    s.api_rate_per_ip_burst = 3;
                    s.api_rate_per_ip_period = Duration::from_secs(60);
                },
                rooms,
            )
            .await,
        );
    }
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let (nat, other) = (from("127.0.0.2"), from("127.0.0.3"));
    let cues = |client: &reqwest::Client, hub: &TestHub| {
        client
            .get(hub.url("/api/cues"))
            .bearer_auth(bearer())
            .send()
    };
    // Burst 3 across both hubs: A, B, A pass; the next is refused on either.
    for hub in [&hubs[0], &hubs[1], &hubs[0]] {
        assert_eq!(cues(&nat, hub).await.unwrap().status(), 200);
    }
    for hub in &hubs {
        let refused = cues(&nat, hub).await.unwrap();
        assert_eq!(refused.status(), 429);
        assert!(refused.headers().contains_key("retry-after"));
    }
    assert_eq!(cues(&other, &hubs[1]).await.unwrap().status(), 200);
}
