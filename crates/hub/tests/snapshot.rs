//! The room snapshot `GET /api/rooms`: its exact shape from a fake voice view, the
//! `seq` read before the view (a resume from it replays what is newer), the signed
//! `GET /voice-view` to a (fake) worker that verifies the signature, the failover
//! across the endpoints of an active/standby pair, the 502 for a view the hub cannot
//! read, and the fallback to the guild's voice channels without a worker.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::get;
use common::*;
use coven_contract::internal::{
    RequestVerifier, VOICE_VIEW_PATH, VoiceMember, VoiceRoom, VoiceView, verify_request,
};
use coven_contract::signature::Verifier;
use coven_contract::{RoomName, Secret, Snowflake, UserLimit, VoiceFlags};
use coven_hub::{
    ChannelInfo, MemberProfile, MemoryRooms, RoomsError, VOICE_CHANNEL_TYPE, VoiceViewSource,
};
use futures_util::future::BoxFuture;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// A fixed view, counting its reads.
struct FakeView {
    view: VoiceView,
    fetches: AtomicUsize,
}

impl VoiceViewSource for FakeView {
    fn fetch(&self) -> BoxFuture<'_, Result<VoiceView, RoomsError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let view = self.view.clone();
        Box::pin(async move { Ok(view) })
    }
}

fn view() -> VoiceView {
    let mut view = VoiceView::default();
    view.rooms.insert(
        id(77),
        VoiceRoom {
            name: RoomName::try_from("Table 1").unwrap(),
            parent_id: Some(id(70)),
            user_limit: UserLimit::try_from(4).unwrap(),
        },
    );
    view.rooms.insert(
        id(78),
        VoiceRoom {
            name: RoomName::try_from("Table 2").unwrap(),
            parent_id: None,
            user_limit: UserLimit::UNLIMITED,
        },
    );
    view.members.insert(
        id(501),
        VoiceMember {
            channel_id: id(77),
            flags: VoiceFlags {
                self_mute: true,
                self_video: true,
                ..VoiceFlags::default()
            },
        },
    );
    view.members.insert(
        id(502),
        VoiceMember {
            channel_id: id(77),
            flags: VoiceFlags::default(),
        },
    );
    // In a channel the view does not list: left out.
    view.members.insert(
        id(503),
        VoiceMember {
            channel_id: id(99),
            flags: VoiceFlags::default(),
        },
    );
    view
}

fn bearer() -> String {
    format!("Bearer {}", token(Algorithm::RS256, "rsa-1", &claims()))
}

async fn snapshot(hub: &TestHub) -> Value {
    let response = hub
        .http
        .get(hub.url("/api/rooms"))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A hub like `TestHub::start_backend`, with a custom voice view.
async fn hub_with_view(rooms: Arc<MemoryRooms>, source: Arc<dyn VoiceViewSource>) -> TestHub {
    let jwks = jwks_server().await;
    let settings = settings(&jwks);
    let hub = coven_hub::Hub::builder(settings, rooms)
        .voice_view(source)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hub.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    let test_hub = TestHub::from_parts(addr, hub, jwks, tx, server);
    eventually("the hub to be ready", async || {
        test_hub
            .http
            .get(test_hub.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    test_hub
}

#[tokio::test]
async fn snapshot_shape_from_a_voice_view_and_resume_from_its_seq() {
    let rooms = Arc::new(MemoryRooms::new(1));
    rooms.insert_profile(
        id(501),
        MemberProfile {
            name: "Alice".into(),
            avatar_url: Some("https://cdn.discordapp.com/avatars/501/abc.png".into()),
        },
    );
    let source = Arc::new(FakeView {
        view: view(),
        fetches: AtomicUsize::new(0),
    });
    let mut hub = hub_with_view(rooms, source.clone()).await;
    let base = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    hub.post_event(&joined(1), "evt-1").await;
    hub.post_event(&joined(2), "evt-2").await;

    let unauthenticated = hub.http.get(hub.url("/api/rooms")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let body = snapshot(&hub).await;
    assert_eq!(
        body,
        json!({
            "guildId": GUILD.to_string(),
            "seq": base + 2,
            "rooms": [
                {
                    "channelId": "77", "name": "Table 1", "parentId": "70", "userLimit": 4,
                    "members": [
                        {
                            "userId": "501", "name": "Alice",
                            "avatarUrl": "https://cdn.discordapp.com/avatars/501/abc.png",
                            "selfMute": true, "selfDeaf": false, "mute": false, "deaf": false,
                            "selfVideo": true, "selfStream": false, "suppress": false
                        },
                        {
                            "userId": "502", "name": null, "avatarUrl": null,
                            "selfMute": false, "selfDeaf": false, "mute": false, "deaf": false,
                            "selfVideo": false, "selfStream": false, "suppress": false
                        }
                    ]
                },
                {
                    "channelId": "78", "name": "Table 2", "parentId": null, "userLimit": 0,
                    "members": []
                }
            ]
        })
    );
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);

    // An event after the snapshot is replayed to a client resuming from its seq.
    hub.post_event(&joined(3), "evt-3").await;
    let (mut ws, _) = hub.authed(Some(body["seq"].as_u64().unwrap())).await;
    let replayed = next_event(&mut ws).await;
    assert_eq!(replayed.seq, base + 3);
    hub.stop().await;
}

#[tokio::test]
async fn snapshot_reads_the_workers_voice_view_with_a_signed_get() {
    let verified = Arc::new(AtomicUsize::new(0));
    let counter = verified.clone();
    // The worker's own check (docs/spec.md §8): method, path, id, each id once.
    let signatures = Arc::new(RequestVerifier::new(Verifier::new(vec![Secret::new(
        SECRET,
    )])));
    let worker = Router::new().route(
        VOICE_VIEW_PATH,
        get(move |method: Method, headers: HeaderMap| {
            let counter = counter.clone();
            let signatures = signatures.clone();
            async move {
                if verify_request(&signatures, &method, VOICE_VIEW_PATH, &headers, b"").is_err() {
                    return (
                        StatusCode::FORBIDDEN,
                        r#"{"message":"forbidden"}"#.to_owned(),
                    );
                }
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::OK,
                    json!({
                        "rooms": {"77": {"name": "Table 1", "parentId": null, "userLimit": 6}},
                        "members": {"501": {"channelId": "77", "flags": {
                            "selfMute": false, "selfDeaf": true, "mute": false, "deaf": false,
                            "selfVideo": false, "selfStream": true, "suppress": false
                        }}}
                    })
                    .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, worker).await.unwrap() });

    let (mut hub, _rooms) = TestHub::start_with(|s| {
        // The hub signs with the first secret.
        s.hub_secrets = vec![Secret::new(SECRET), Secret::new(OLD_SECRET)];
        s.worker_endpoints = vec![format!("http://{worker_addr}/").parse().unwrap()];
    })
    .await;
    let body = snapshot(&hub).await;
    assert_eq!(verified.load(Ordering::SeqCst), 1);
    let base = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    assert_eq!(body["seq"], base, "no event yet: the stream's base");
    let room = &body["rooms"][0];
    assert_eq!(room["channelId"], "77");
    assert_eq!(room["userLimit"], 6);
    assert_eq!(room["members"][0]["userId"], "501");
    assert_eq!(room["members"][0]["selfDeaf"], true);
    assert_eq!(room["members"][0]["selfStream"], true);
    assert_eq!(room["members"][0]["name"], Value::Null);
    hub.stop().await;

    // A worker refusing the signature (the hub signs with another secret): 502,
    // without the worker's body.
    let (mut hub, _rooms) = TestHub::start_with(|s| {
        s.hub_secrets = vec![Secret::new("not-the-workers-secret")];
        s.worker_endpoints = vec![format!("http://{worker_addr}").parse().unwrap()];
    })
    .await;
    let response = hub
        .http
        .get(hub.url("/api/rooms"))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "INTERNAL_ERROR");
    assert_eq!(verified.load(Ordering::SeqCst), 1);
    hub.stop().await;
}

#[tokio::test]
async fn without_a_worker_the_snapshot_lists_the_guilds_voice_channels() {
    let (mut hub, rooms) = TestHub::start().await;
    for (n, kind) in [(60, VOICE_CHANNEL_TYPE), (61, 0)] {
        rooms.insert(ChannelInfo {
            id: id(n),
            guild_id: Some(id(GUILD)),
            kind,
            name: format!("channel-{n}"),
            parent_id: None,
            user_limit: Some(5),
        });
    }
    rooms.insert(ChannelInfo {
        id: id(62),
        guild_id: Some(Snowflake::new(OTHER_GUILD).unwrap()),
        kind: VOICE_CHANNEL_TYPE,
        name: "elsewhere".into(),
        parent_id: None,
        user_limit: None,
    });
    let body = snapshot(&hub).await;
    assert_eq!(
        body["rooms"],
        json!([{"channelId": "60", "name": "channel-60", "parentId": null, "userLimit": 5, "members": []}])
    );
    hub.stop().await;
}

/// A `/voice-view` that answers `status` (a one-room view on 200), counting reads.
async fn view_worker(status: StatusCode) -> (Arc<AtomicUsize>, url::Url) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let worker = Router::new().route(
        "/voice-view",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = json!({"rooms": {"77": {"name": "Table 1"}}, "members": {}});
                (status, body.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, worker).await.unwrap() });
    (hits, url)
}

/// A loopback URL nothing listens on: connections are refused.
fn refusing_url() -> url::Url {
    format!("http://127.0.0.1:{}", coven_testkit::free_port())
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_snapshot_moves_past_a_dead_or_unavailable_worker_and_remembers() {
    let (unavailable, unavailable_url) = view_worker(StatusCode::SERVICE_UNAVAILABLE).await;
    let (good, good_url) = view_worker(StatusCode::OK).await;
    let (mut hub, _rooms) = TestHub::start_with(|s| {
        s.worker_endpoints = vec![refusing_url(), unavailable_url, good_url];
        // Every snapshot reads the view: this test counts the reads per endpoint.
        s.snapshot_cache_ttl = Duration::ZERO;
    })
    .await;
    for expected_good in 1..=2 {
        let body = snapshot(&hub).await;
        assert_eq!(body["rooms"][0]["channelId"], "77", "{body}");
        assert_eq!(good.load(Ordering::SeqCst), expected_good);
        // Only the first snapshot went past the 503; the second started at `good`.
        assert_eq!(unavailable.load(Ordering::SeqCst), 1);
    }
    hub.stop().await;

    // Every endpoint down or unavailable: 502, as with one unreachable worker.
    let (unavailable, unavailable_url) = view_worker(StatusCode::SERVICE_UNAVAILABLE).await;
    let (mut hub, _rooms) = TestHub::start_with(|s| {
        s.worker_endpoints = vec![refusing_url(), unavailable_url];
    })
    .await;
    let response = hub
        .http
        .get(hub.url("/api/rooms"))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "INTERNAL_ERROR");
    assert_eq!(unavailable.load(Ordering::SeqCst), 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_malformed_voice_view_is_a_bad_gateway() {
    // Not a view, a name Discord would refuse, a limit above 99: each is refused
    // like any answer the hub cannot read, 502 without the worker's body.
    for malformed in [
        json!({"rooms": []}),
        json!({"rooms": {"77": {"name": ""}}, "members": {}}),
        json!({"rooms": {"77": {"name": "Table 1", "userLimit": 100}}, "members": {}}),
    ] {
        let body = malformed.to_string();
        let worker = Router::new().route("/voice-view", get(move || async move { body }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let worker_addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, worker).await.unwrap() });
        let (mut hub, _rooms) = TestHub::start_with(|s| {
            s.worker_endpoints = vec![format!("http://{worker_addr}").parse().unwrap()];
        })
        .await;
        let response = hub
            .http
            .get(hub.url("/api/rooms"))
            .header("authorization", bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{malformed}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "INTERNAL_ERROR");
        hub.stop().await;
    }
}

#[tokio::test]
async fn the_snapshot_reads_the_worker_once_per_cache_window() {
    // A window longer than the test: thirty snapshots, one read of the worker.
    let (reads, url) = view_worker(StatusCode::OK).await;
    let (mut hub, _rooms) = TestHub::start_with(|s| {
        s.worker_endpoints = vec![url];
        s.snapshot_cache_ttl = Duration::from_secs(60);
    })
    .await;
    // Twenty at once (one read in flight, the others wait for it), then ten in turn.
    let bodies = futures_util::future::join_all((0..20).map(|_| snapshot(&hub))).await;
    for _ in 0..10 {
        let body = snapshot(&hub).await;
        assert_eq!(body["rooms"][0]["channelId"], "77", "{body}");
    }
    assert!(bodies.iter().all(|b| b["rooms"][0]["channelId"] == "77"));
    assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for the window");
    hub.stop().await;

    // A short window: once it has passed, the next snapshot reads the worker again.
    let (reads, url) = view_worker(StatusCode::OK).await;
    let ttl = Duration::from_millis(300);
    let (mut hub, _rooms) = TestHub::start_with(|s| {
        s.worker_endpoints = vec![url];
        s.snapshot_cache_ttl = ttl;
    })
    .await;
    snapshot(&hub).await;
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    snapshot(&hub).await;
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "a new read after the window"
    );
    hub.stop().await;
}

#[tokio::test]
async fn without_a_cache_window_every_snapshot_reads_the_worker() {
    let (reads, url) = view_worker(StatusCode::OK).await;
    let (mut hub, _rooms) = TestHub::start_with(|s| {
        s.worker_endpoints = vec![url];
        s.snapshot_cache_ttl = Duration::ZERO;
    })
    .await;
    for _ in 0..3 {
        snapshot(&hub).await;
    }
    assert_eq!(reads.load(Ordering::SeqCst), 3);
    hub.stop().await;
}
