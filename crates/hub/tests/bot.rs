//! docs/spec.md §7 bot voice commands from the outside: `POST`/`DELETE /api/rooms/{id}/bot`
//! and `POST /api/rooms/{id}/cue` check the caller and the room, then reach the
//! worker as requests signed over method, path, timestamp, a unique id and body
//! (docs/spec.md §8), each attempt afresh; the worker's answer is relayed.
//! With an active/standby pair in `WORKER_ENDPOINT`, a refused connection or a
//! standby's 503 moves the command on to the next endpoint, which is remembered.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::post;
use common::*;
use coven_contract::internal::{REQUEST_ID_HEADER, RequestVerifier, verify_request};
use coven_contract::signature::{SIGNATURE_HEADER, Verifier};
use coven_contract::{Cue, CueList, Secret};
use coven_hub::{ChannelInfo, VOICE_CHANNEL_TYPE};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const ROOM: u64 = 41;
const TEXT: u64 = 42;

/// A stand-in for the worker's command endpoint: verifies signatures with the
/// contract's `verify_request` (so a repeated request id is refused), records
/// commands and their ids, refuses `leave` of a room the bot is not in; as a
/// standby of a pair it answers every command 503 `standby`.
#[derive(Clone)]
struct FakeWorker {
    verifier: Arc<RequestVerifier>,
    commands: Arc<Mutex<Vec<(String, Value)>>>,
    /// The `X-Hub-Request-Id` of every verified request.
    ids: Arc<Mutex<Vec<String>>>,
    standby: Arc<AtomicBool>,
    /// Requests received, signed or not, active or standby.
    hits: Arc<AtomicUsize>,
    /// The rooms its `/voice-view` lists (the hub only commands the bot in a
    /// room of the worker's view, docs/spec.md §7.1).
    rooms: Arc<Mutex<Vec<u64>>>,
}

impl FakeWorker {
    /// A fake verifying with `verifier` (fakes may share one, as if a request id
    /// accepted by one must never reach the other).
    fn new(verifier: Arc<RequestVerifier>) -> Self {
        Self {
            verifier,
            commands: Arc::default(),
            ids: Arc::default(),
            standby: Arc::default(),
            hits: Arc::default(),
            rooms: Arc::new(Mutex::new(vec![ROOM])),
        }
    }

    /// Lists `room` in the view too, as the real worker does once Discord
    /// announces a room created through the API.
    fn add_room(&self, room: u64) {
        self.rooms.lock().unwrap().push(room);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }
}

async fn fake_command(
    State(worker): State<FakeWorker>,
    Path(command): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    worker.hits.fetch_add(1, Ordering::SeqCst);
    let path = format!("/commands/{command}");
    let verified = verify_request(&worker.verifier, &Method::POST, &path, &headers, &body);
    let Ok(verified) = verified else {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "forbidden"})),
        );
    };
    assert!(
        headers.get(SIGNATURE_HEADER).is_none(),
        "no webhook signature on a command"
    );
    let id = headers[REQUEST_ID_HEADER].to_str().unwrap().to_owned();
    worker.ids.lock().unwrap().push(id);
    if worker.standby.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"message": "standby", "code": "INTERNAL_ERROR"})),
        );
    }
    let value: Value = serde_json::from_slice(verified.body()).unwrap();
    worker
        .commands
        .lock()
        .unwrap()
        .push((command.clone(), value));
    if command == "leave" {
        return (
            StatusCode::CONFLICT,
            axum::Json(
                json!({"message": "the bot is not in room 41", "code": "VALIDATION_FAILED"}),
            ),
        );
    }
    (StatusCode::OK, axum::Json(json!({"ok": true})))
}

async fn fake_view(State(worker): State<FakeWorker>) -> axum::Json<Value> {
    let rooms: serde_json::Map<String, Value> = worker
        .rooms
        .lock()
        .unwrap()
        .iter()
        .map(|room| (room.to_string(), json!({"name": "Table"})))
        .collect();
    axum::Json(json!({"rooms": rooms, "members": {}}))
}

fn verifier() -> Arc<RequestVerifier> {
    Arc::new(RequestVerifier::new(Verifier::new(vec![Secret::new(
        SECRET,
    )])))
}

async fn fake_worker() -> (FakeWorker, url::Url) {
    fake_worker_with(verifier()).await
}

async fn fake_worker_with(verifier: Arc<RequestVerifier>) -> (FakeWorker, url::Url) {
    let worker = FakeWorker::new(verifier);
    let app = Router::new()
        .route("/commands/{command}", post(fake_command))
        // The hub checks that the channel is a room in the worker's view (docs/spec.md §7.1).
        .route("/voice-view", axum::routing::get(fake_view))
        .with_state(worker.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (worker, url)
}

fn bearer() -> String {
    format!("Bearer {}", token(Algorithm::RS256, "rsa-1", &claims()))
}

async fn call(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = hub.http.request(method, hub.url(path));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A voice and a text channel nobody created through the API; the test user
/// manages channels, so may command the bot in any room (who else may is
/// `only_the_creator_or_a_manager_commands_the_bot`).
fn add_channels(rooms: &coven_hub::MemoryRooms) {
    rooms.set_permissions(id(424_242), false, coven_hub::MANAGE_CHANNELS);
    for (channel, kind) in [(ROOM, VOICE_CHANNEL_TYPE), (TEXT, 0)] {
        rooms.insert(ChannelInfo {
            id: id(channel),
            guild_id: Some(id(GUILD)),
            kind,
            name: format!("channel {channel}"),
            parent_id: None,
            user_limit: None,
        });
    }
}

#[tokio::test]
async fn commands_are_checked_then_forwarded_signed() {
    let (worker, url) = fake_worker().await;
    let (hub, rooms) = TestHub::start_with(|s| s.worker_endpoints = vec![url]).await;
    add_channels(&rooms);
    let auth = bearer();
    let post_ = reqwest::Method::POST;

    let (status, body) = call(
        &hub,
        post_.clone(),
        &format!("/api/rooms/{ROOM}/bot"),
        Some(&auth),
        None,
    )
    .await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let (status, _) = call(
        &hub,
        post_.clone(),
        &format!("/api/rooms/{ROOM}/cue"),
        Some(&auth),
        Some(json!({"cue": "turn_chime"})),
    )
    .await;
    assert_eq!(status, 200);
    // The worker's refusal is relayed with its status and message.
    let (status, body) = call(
        &hub,
        reqwest::Method::DELETE,
        &format!("/api/rooms/{ROOM}/bot"),
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["message"], "the bot is not in room 41");

    let commands = worker.commands.lock().unwrap().clone();
    assert_eq!(
        commands,
        [
            ("join".to_owned(), json!({"channelId": ROOM.to_string()})),
            (
                "cue".to_owned(),
                json!({"channelId": ROOM.to_string(), "cue": "turn_chime"})
            ),
            ("leave".to_owned(), json!({"channelId": ROOM.to_string()})),
        ]
    );
    let ids = worker.ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter()
            .all(|id| ids.iter().filter(|x| *x == id).count() == 1),
        "a fresh id for every request: {ids:?}"
    );
    assert_eq!(worker.verifier.seen().len(), 3, "the ids are remembered");
}

#[tokio::test]
async fn only_the_creator_or_a_manager_commands_the_bot() {
    let (worker, url) = fake_worker().await;
    let (hub, rooms) = TestHub::start_with(|s| s.worker_endpoints = vec![url]).await;
    let as_user = |sub: &str| {
        let mut claims = claims();
        claims["sub"] = json!(sub);
        format!("Bearer {}", token(Algorithm::RS256, "rsa-1", &claims))
    };
    let (creator, stranger, manager) = (as_user("501"), as_user("502"), as_user("503"));
    rooms.set_permissions(id(503), false, coven_hub::MANAGE_CHANNELS);
    let created: Value = hub
        .http
        .post(hub.url("/api/create-room"))
        .header("authorization", &creator)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = created["channelId"].as_str().unwrap().to_owned();
    worker.add_room(room.parse().unwrap());
    let bot = format!("/api/rooms/{room}/bot");
    let cue = format!("/api/rooms/{room}/cue");
    let commands = [
        (reqwest::Method::POST, bot.as_str(), None),
        (
            reqwest::Method::POST,
            cue.as_str(),
            Some(json!({"cue": "turn_chime"})),
        ),
        (reqwest::Method::DELETE, bot.as_str(), None),
    ];
    for (method, path, body) in commands.clone() {
        let (status, answer) = call(&hub, method, path, Some(&stranger), body).await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(answer["code"], "FORBIDDEN");
    }
    assert_eq!(worker.hits(), 0, "nothing reached the worker");
    for auth in [&creator, &manager] {
        let (status, _) = call(&hub, commands[0].0.clone(), commands[0].1, Some(auth), None).await;
        assert_eq!(status, 200);
        let (status, _) = call(
            &hub,
            commands[1].0.clone(),
            commands[1].1,
            Some(auth),
            commands[1].2.clone(),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(worker.commands.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn bad_commands_never_reach_the_worker() {
    let (worker, url) = fake_worker().await;
    let (hub, rooms) = TestHub::start_with(|s| s.worker_endpoints = vec![url]).await;
    add_channels(&rooms);
    let auth = bearer();
    let post_ = reqwest::Method::POST;
    let cases = [
        (format!("/api/rooms/{ROOM}/bot"), None, None, 401),
        (
            "/api/rooms/not-a-snowflake/bot".to_owned(),
            Some(auth.as_str()),
            None,
            400,
        ),
        (
            format!("/api/rooms/{TEXT}/bot"),
            Some(auth.as_str()),
            None,
            403,
        ),
        (
            "/api/rooms/999/bot".to_owned(),
            Some(auth.as_str()),
            None,
            404,
        ),
        (
            format!("/api/rooms/{ROOM}/cue"),
            Some(auth.as_str()),
            Some(json!({"cue": "Air Horn!"})),
            400,
        ),
        (
            format!("/api/rooms/{ROOM}/cue"),
            Some(auth.as_str()),
            Some(json!({"sound": "x"})),
            400,
        ),
        // The order of the checks: a cue's body before the caller, the caller
        // before the channel id.
        (
            format!("/api/rooms/{ROOM}/cue"),
            None,
            Some(json!({"cue": "Air Horn!"})),
            400,
        ),
        ("/api/rooms/not-a-snowflake/bot".to_owned(), None, None, 401),
    ];
    for (path, auth, body, expected) in cases {
        let (status, answer) = call(&hub, post_.clone(), &path, auth, body).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert!(answer["code"].is_string(), "{path}: {answer}");
    }
    assert!(worker.commands.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_a_worker_endpoint_commands_are_unavailable() {
    let (hub, rooms) = TestHub::start().await;
    add_channels(&rooms);
    let (status, body) = call(
        &hub,
        reqwest::Method::POST,
        &format!("/api/rooms/{ROOM}/bot"),
        Some(&bearer()),
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("WORKER_ENDPOINT"),
        "{body}"
    );
}

/// A loopback URL nothing listens on (a port no one is handed): connections
/// are refused.
fn refusing_url() -> url::Url {
    format!("http://127.0.0.1:{}/", coven_testkit::free_port())
        .parse()
        .unwrap()
}

async fn join(hub: &TestHub) -> (u16, Value) {
    call(
        hub,
        reqwest::Method::POST,
        &format!("/api/rooms/{ROOM}/bot"),
        Some(&bearer()),
        None,
    )
    .await
}

#[tokio::test]
async fn a_refused_first_endpoint_falls_over_to_the_second() {
    let (worker, url) = fake_worker().await;
    let dead = refusing_url();
    let (mut hub, rooms) = TestHub::start_with(|s| s.worker_endpoints = vec![dead, url]).await;
    add_channels(&rooms);
    for _ in 0..2 {
        assert_eq!(join(&hub).await, (200, json!({"ok": true})));
    }
    assert_eq!(worker.commands.lock().unwrap().len(), 2);
    hub.stop().await;
}

#[tokio::test]
async fn a_standby_is_skipped_and_the_active_is_remembered() {
    // The two fakes share one id cache: the attempt that moves on to B after A
    // accepted the signature (and answered 503) must carry a new id.
    let shared = verifier();
    let (a, url_a) = fake_worker_with(shared.clone()).await;
    let (b, url_b) = fake_worker_with(shared).await;
    a.set_standby(true);
    let (mut hub, rooms) = TestHub::start_with(|s| s.worker_endpoints = vec![url_a, url_b]).await;
    add_channels(&rooms);

    assert_eq!(join(&hub).await, (200, json!({"ok": true})));
    assert_eq!((a.hits(), b.hits()), (1, 1), "A said standby, B took it");
    assert_eq!(join(&hub).await.0, 200);
    assert_eq!(
        (a.hits(), b.hits()),
        (1, 2),
        "B, remembered, is asked first"
    );

    // A takeover: B is the standby now, A the active.
    b.set_standby(true);
    a.set_standby(false);
    assert_eq!(join(&hub).await.0, 200);
    assert_eq!((a.hits(), b.hits()), (2, 3));
    assert_eq!(join(&hub).await.0, 200);
    assert_eq!((a.hits(), b.hits()), (3, 3), "A, remembered");
    assert_eq!(a.commands.lock().unwrap().len(), 2);
    assert_eq!(b.commands.lock().unwrap().len(), 2);
    hub.stop().await;
}

#[tokio::test]
async fn when_every_endpoint_fails_the_answer_is_503() {
    // A dead worker and a standby: the standby's answer is relayed.
    let (standby, url) = fake_worker().await;
    standby.set_standby(true);
    let dead = refusing_url();
    let (mut hub, rooms) =
        TestHub::start_with(|s| s.worker_endpoints = vec![dead.clone(), url]).await;
    add_channels(&rooms);
    let (status, body) = join(&hub).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "standby");
    assert_eq!(standby.hits(), 1);
    hub.stop().await;

    // Nobody listening at all: 503, the voice service is not reachable.
    let (mut hub, rooms) =
        TestHub::start_with(|s| s.worker_endpoints = vec![dead, refusing_url()]).await;
    add_channels(&rooms);
    let (status, body) = join(&hub).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "INTERNAL_ERROR");
    assert!(
        body["message"].as_str().unwrap().contains("not reachable"),
        "{body}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_cue_list_is_the_contracts_and_needs_a_token() {
    let (hub, _rooms) = TestHub::start().await;
    let get = reqwest::Method::GET;
    let (status, body) = call(&hub, get.clone(), "/api/cues", None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
    let (status, body) = call(&hub, get, "/api/cues", Some(&bearer()), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::to_value(CueList::all()).unwrap());
    let names: Vec<&str> = body["cues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cue| cue["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["turn_chime", "timer_tick", "timer_end"]);
}

#[tokio::test]
async fn every_listed_cue_is_forwarded_and_an_unlisted_one_refused_by_the_hub() {
    let (worker, url) = fake_worker().await;
    let (hub, rooms) = TestHub::start_with(|s| s.worker_endpoints = vec![url]).await;
    add_channels(&rooms);
    let auth = bearer();
    let path = format!("/api/rooms/{ROOM}/cue");

    // A well-formed name the worker does not play (what the lobby used to send):
    // 400 from the hub itself, naming the field and the cues; the worker never hears it.
    for unknown in ["chime", "air_horn", "TURN_CHIME", ""] {
        let (status, body) = call(
            &hub,
            reqwest::Method::POST,
            &path,
            Some(&auth),
            Some(json!({"cue": unknown})),
        )
        .await;
        assert_eq!(status, 400, "{unknown}: {body}");
        assert_eq!(body["code"], "VALIDATION_FAILED", "{body}");
        assert_eq!(body["details"], json!({"field": "cue"}), "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("turn_chime, timer_tick, timer_end"),
            "{body}"
        );
    }
    assert_eq!(worker.hits(), 0, "unknown cues never reach the worker");

    for cue in Cue::ALL {
        let (status, body) = call(
            &hub,
            reqwest::Method::POST,
            &path,
            Some(&auth),
            Some(json!({"cue": cue.name()})),
        )
        .await;
        assert_eq!((status, body), (200, json!({"ok": true})), "{cue}");
    }
    let forwarded: Vec<Value> = worker
        .commands
        .lock()
        .unwrap()
        .iter()
        .map(|(command, body)| {
            assert_eq!(command, "cue");
            body["cue"].clone()
        })
        .collect();
    assert_eq!(forwarded, ["turn_chime", "timer_tick", "timer_end"]);
}
