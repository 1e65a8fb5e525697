//! docs/spec.md §7.1 from the outside: a voice channel that is not a room (hidden from
//! `@everyone`, so absent from the voice view the worker keeps) answers 403
//! `FORBIDDEN` to `DELETE /api/end-room/{id}`, `POST`/`DELETE /api/rooms/{id}/bot`
//! and `POST /api/rooms/{id}/cue`, and nothing reaches Discord or the worker; a
//! room of the view is served as before; a view that cannot be read is 503; a room
//! the view lists a moment later (just created) is found. Without a worker the
//! rooms backend's list applies the same rule (`MemoryRooms::set_hidden`, and the
//! simulator's overwrites over REST).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use common::*;
use coven_contract::internal::{VoiceRoom, VoiceView};
use coven_contract::{RoomName, UserLimit};
use coven_hub::{ChannelInfo, MemoryRooms, RoomsError, VOICE_CHANNEL_TYPE, VoiceViewSource};
use futures_util::future::{BoxFuture, join_all};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const ROOM: u64 = 41;
const HIDDEN: u64 = 43;
const LATE: u64 = 44;

/// The worker's view: `ROOM` always, `LATE` once `late` is set; never `HIDDEN`.
/// `broken` makes every read fail.
#[derive(Default)]
struct View {
    late: AtomicBool,
    broken: AtomicBool,
    fetches: AtomicUsize,
}

impl VoiceViewSource for View {
    fn fetch(&self) -> BoxFuture<'_, Result<VoiceView, RoomsError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let mut view = VoiceView::default();
        let room = VoiceRoom {
            name: RoomName::try_from("Table").unwrap(),
            parent_id: None,
            user_limit: UserLimit::UNLIMITED,
        };
        view.rooms.insert(id(ROOM), room.clone());
        if self.late.load(Ordering::SeqCst) {
            view.rooms.insert(id(LATE), room);
        }
        let broken = self.broken.load(Ordering::SeqCst);
        Box::pin(async move {
            if broken {
                Err(RoomsError::Upstream("worker voice view: 502".into()))
            } else {
                Ok(view)
            }
        })
    }
}

/// The worker's command endpoint, recording what reaches it.
async fn fake_worker() -> (Arc<Mutex<Vec<String>>>, url::Url) {
    let commands: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = Router::new()
        .route(
            "/commands/{command}",
            post(
                |State(seen): State<Arc<Mutex<Vec<String>>>>, Path(command): Path<String>| async move {
                    seen.lock().unwrap().push(command);
                    axum::Json(json!({"ok": true}))
                },
            ),
        )
        .with_state(commands.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (commands, url)
}

/// A hub on `rooms` (every channel a voice channel of the guild) reading `view`,
/// with the fake worker for commands.
async fn hub(view: Arc<View>, worker: url::Url) -> (TestHub, Arc<MemoryRooms>) {
    let rooms = Arc::new(MemoryRooms::new(1000));
    // The test user manages channels: who may act on a room is tests/owners.rs's
    // subject; here only whether the channel is a room decides.
    rooms.set_permissions(id(424_242), false, coven_hub::MANAGE_CHANNELS);
    for channel in [ROOM, HIDDEN, LATE] {
        rooms.insert(ChannelInfo {
            id: id(channel),
            guild_id: Some(id(GUILD)),
            kind: VOICE_CHANNEL_TYPE,
            name: format!("channel {channel}"),
            parent_id: None,
            user_limit: None,
        });
    }
    let jwks = jwks_server().await;
    let mut settings = settings(&jwks);
    settings.worker_endpoints = vec![worker];
    let hub = coven_hub::Hub::builder(settings, rooms.clone())
        .voice_view(view)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hub.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    (TestHub::from_parts(addr, hub, jwks, tx, server), rooms)
}

async fn call(hub: &TestHub, method: reqwest::Method, path: &str) -> (u16, Value) {
    call_as(hub, method, path, &claims()).await
}

/// [`call`] as the user `claims` names.
async fn call_as(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    claims: &Value,
) -> (u16, Value) {
    let mut request = hub.http.request(method, hub.url(path)).header(
        "authorization",
        format!("Bearer {}", token(Algorithm::RS256, "rsa-1", claims)),
    );
    if path.ends_with("/cue") {
        request = request.json(&json!({"cue": "turn_chime"}));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn routes(channel: u64) -> [(reqwest::Method, String); 4] {
    [
        (reqwest::Method::POST, format!("/api/rooms/{channel}/bot")),
        (reqwest::Method::DELETE, format!("/api/rooms/{channel}/bot")),
        (reqwest::Method::POST, format!("/api/rooms/{channel}/cue")),
        (reqwest::Method::DELETE, format!("/api/end-room/{channel}")),
    ]
}

#[tokio::test]
async fn a_channel_hidden_from_everyone_is_forbidden_everywhere() {
    let view = Arc::new(View::default());
    let (commands, worker) = fake_worker().await;
    let (mut hub, rooms) = hub(view.clone(), worker).await;

    // Each waits out the view's grace for new rooms: asked together.
    let answers = join_all(
        routes(HIDDEN)
            .into_iter()
            .map(|(method, path)| async { (call(&hub, method, &path).await, path) }),
    )
    .await;
    for ((status, body), path) in answers {
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "FORBIDDEN", "{path}: {body}");
    }
    assert!(
        rooms.contains(id(HIDDEN)),
        "a hidden channel is never ended"
    );
    assert!(
        commands.lock().unwrap().is_empty(),
        "nothing reached the worker"
    );
    let (status, snapshot) = call(&hub, reqwest::Method::GET, "/api/rooms").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = snapshot["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["channelId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ROOM.to_string()]);

    // A room of the view: everything goes through.
    for (method, path) in routes(ROOM) {
        let (status, body) = call(&hub, method, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(*commands.lock().unwrap(), ["join", "leave", "cue"]);
    assert!(!rooms.contains(id(ROOM)));
    hub.stop().await;
}

#[tokio::test]
async fn an_unreadable_view_is_503_and_a_late_room_is_found() {
    let view = Arc::new(View::default());
    let (commands, worker) = fake_worker().await;
    let (mut hub, rooms) = hub(view.clone(), worker).await;

    view.broken.store(true, Ordering::SeqCst);
    let (status, body) = call(
        &hub,
        reqwest::Method::DELETE,
        &format!("/api/end-room/{ROOM}"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(rooms.contains(id(ROOM)));
    view.broken.store(false, Ordering::SeqCst);

    // Created a moment ago: the view lists it shortly after the request arrives.
    let late = view.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        late.late.store(true, Ordering::SeqCst);
    });
    let (status, body) = call(
        &hub,
        reqwest::Method::POST,
        &format!("/api/rooms/{LATE}/bot"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*commands.lock().unwrap(), ["join"]);
    hub.stop().await;
}

/// Without a worker the rooms are the backend's voice channels `@everyone` may view:
/// the snapshot and the 403 agree with it.
#[tokio::test]
async fn without_a_worker_a_hidden_channel_is_no_room_either() {
    let (mut hub, rooms) = TestHub::start().await;
    for channel in [ROOM, HIDDEN] {
        rooms.insert(ChannelInfo {
            id: id(channel),
            guild_id: Some(id(GUILD)),
            kind: VOICE_CHANNEL_TYPE,
            name: format!("channel {channel}"),
            parent_id: None,
            user_limit: None,
        });
    }
    rooms.set_hidden(id(HIDDEN), true);
    let (_, snapshot) = call(&hub, reqwest::Method::GET, "/api/rooms").await;
    assert_eq!(snapshot["rooms"].as_array().unwrap().len(), 1, "{snapshot}");
    assert_eq!(snapshot["rooms"][0]["channelId"], ROOM.to_string());
    let (status, body) = call(
        &hub,
        reqwest::Method::DELETE,
        &format!("/api/end-room/{HIDDEN}"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );
    assert!(rooms.contains(id(HIDDEN)));
    hub.stop().await;
}

/// The same against the simulator over REST: a channel it created hidden from
/// `@everyone` (an overwrite for the guild id denying `VIEW_CHANNEL`).
#[tokio::test]
async fn over_rest_a_channel_hidden_in_discord_is_no_room() {
    let sim = coven_sim::Simulator::start(coven_sim::SimConfig::default())
        .await
        .unwrap();
    let handle = sim.handle();
    let seed = handle.seed();
    let hidden = handle
        .create_hidden_channel("staff", 2, Some(seed.category_id))
        .unwrap();
    let client = common::sim_rest_client(&sim, 1);
    let mut hub = TestHub::start_backend(
        |s| s.primary_guild_id = id(sim.guild_id()),
        Arc::new(coven_hub::DiscordRooms::new(client)),
    )
    .await;
    let (_, snapshot) = call(&hub, reqwest::Method::GET, "/api/rooms").await;
    let listed: Vec<String> = snapshot["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["channelId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), seed.voice_channel_ids.len(), "{snapshot}");
    assert!(!listed.contains(&hidden.to_string()), "{snapshot}");
    let (status, body) = call(
        &hub,
        reqwest::Method::DELETE,
        &format!("/api/end-room/{hidden}"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(handle.channel_ids().contains(&hidden));
    // Shown to everyone again, it is a room, which the guild's owner may end.
    handle.show_channel(hidden).unwrap();
    let mut owner = claims();
    owner["sub"] = json!(handle.owner_id().to_string());
    let (status, body) = call_as(
        &hub,
        reqwest::Method::DELETE,
        &format!("/api/end-room/{hidden}"),
        &owner,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    hub.stop().await;
}
