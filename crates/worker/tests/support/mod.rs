//! Test support: a fake hub that verifies signatures and records what it receives,
//! and a worker running in-process against the simulator.

#![allow(dead_code)] // Each test file uses a different part of the support module.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use coven_contract::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, Verifier};
use coven_contract::{Event, Secret, Snowflake};
use coven_sim::{SimConfig, Simulator};
use coven_worker::{WorkerError, WorkerSettings};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub mod redis;

pub const SECRET: &str = "test-hub-secret";
pub const WAIT: Duration = Duration::from_secs(20);

/// How the fake hub answers one delivery.
pub type Policy = Box<dyn Fn(&Event, usize) -> StatusCode + Send + Sync>;

/// Every delivery attempt the hub saw, and the events it accepted in order.
#[derive(Default)]
pub struct Received {
    pub attempts: usize,
    pub accepted: Vec<(String, Event)>,
    /// When each accepted delivery arrived (same order as `accepted`).
    pub accepted_at: Vec<std::time::Instant>,
}

#[derive(Clone)]
struct HubState {
    verifier: Verifier,
    received: Arc<Mutex<Received>>,
    changed: watch::Sender<usize>,
    policy: Arc<Policy>,
}

/// A stand-in for the hub's `/api/internal/events`.
pub struct FakeHub {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    changed: watch::Receiver<usize>,
    _task: JoinHandle<()>,
}

impl FakeHub {
    pub async fn start(policy: Policy) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, policy)
    }

    pub fn serve(listener: tokio::net::TcpListener, policy: Policy) -> Self {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let (changed_tx, changed) = watch::channel(0);
        let state = HubState {
            verifier: Verifier::new(vec![Secret::new(SECRET)]),
            received: received.clone(),
            changed: changed_tx,
            policy: Arc::new(policy),
        };
        let app = Router::new()
            .route("/api/internal/events", post(ingest))
            .with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            received,
            changed,
            _task: task,
        }
    }

    pub fn accepting() -> Policy {
        Box::new(|_, _| StatusCode::OK)
    }

    pub fn endpoint(&self) -> url::Url {
        format!("http://{}/api/internal/events", self.addr)
            .parse()
            .unwrap()
    }

    /// The accepted events, with duplicates (same event id) collapsed.
    pub fn events(&self) -> Vec<Event> {
        let received = self.received.lock().unwrap();
        let mut seen = std::collections::HashSet::new();
        received
            .accepted
            .iter()
            .filter(|(id, _)| seen.insert(id.clone()))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Every accepted delivery, in arrival order, with its event id (redeliveries
    /// included).
    pub fn accepted(&self) -> Vec<(String, Event)> {
        self.received.lock().unwrap().accepted.clone()
    }

    /// When the `index`-th accepted delivery arrived.
    pub fn accepted_at(&self, index: usize) -> std::time::Instant {
        self.received.lock().unwrap().accepted_at[index]
    }

    pub fn attempts(&self) -> usize {
        self.received.lock().unwrap().attempts
    }

    /// Waits until at least `count` distinct events were accepted.
    pub async fn wait_for_events(&self, count: usize) -> Vec<Event> {
        let mut changed = self.changed.clone();
        let result = tokio::time::timeout(WAIT, async {
            loop {
                if self.events().len() >= count {
                    return;
                }
                changed.changed().await.unwrap();
            }
        })
        .await;
        let events = self.events();
        assert!(
            result.is_ok(),
            "timed out waiting for {count} events; got {events:#?}"
        );
        events
    }
}

async fn ingest(State(state): State<HubState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let Ok(verified) = state.verifier.verify(
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        now,
    ) else {
        return StatusCode::FORBIDDEN;
    };
    let event = Event::from_verified_body(verified).expect("the worker sends valid events");
    let event_id = header(EVENT_ID_HEADER).expect("an event id").to_owned();
    let status = {
        let mut received = state.received.lock().unwrap();
        received.attempts += 1;
        let status = (state.policy)(&event, received.attempts);
        if status.is_success() {
            received.accepted.push((event_id, event));
            received.accepted_at.push(std::time::Instant::now());
        }
        status
    };
    state.changed.send_modify(|n| *n += 1);
    status
}

/// The simulator with a short heartbeat, so zombies are detected quickly.
pub async fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        heartbeat_interval: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A worker running in-process; stop it with [`RunningWorker::stop`].
pub struct RunningWorker {
    pub health: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl RunningWorker {
    pub async fn start(sim: &Simulator, hub: &FakeHub, state_dir: &Path) -> Self {
        Self::start_with(sim, hub, state_dir, |_| {}).await
    }

    pub async fn start_with(
        sim: &Simulator,
        hub: &FakeHub,
        state_dir: &Path,
        adjust: impl FnOnce(&mut WorkerSettings),
    ) -> Self {
        let mut settings = WorkerSettings::new(
            Snowflake::new(sim.guild_id()).unwrap(),
            Secret::new(sim.bot_token()),
            hub.endpoint(),
            vec![Secret::new(SECRET)],
            state_dir.to_owned(),
        );
        settings.gateway.gateway_url = Some(sim.gateway_url());
        settings.backoff.base = Duration::from_millis(20);
        settings.backoff.cap = Duration::from_millis(200);
        adjust(&mut settings);
        let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let health_addr = health.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(coven_worker::run(settings, health, async {
            let _ = stopped.await;
        }));
        Self {
            health: health_addr,
            stop: Some(stop),
            task,
        }
    }

    /// Graceful shutdown; returns the worker's result.
    pub async fn stop(mut self) -> Result<(), WorkerError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("worker stops")
            .unwrap()
    }

    /// Waits for the worker to end by itself (a fatal close).
    pub async fn finished(self) -> Result<(), WorkerError> {
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("worker ends")
            .unwrap()
    }

    /// Polls `/health` until it answers `status`.
    pub async fn wait_for_health(&self, status: u16) -> serde_json::Value {
        let url = format!("http://{}/health", self.health);
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().as_u16() == status
            {
                return response.json().await.unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/health never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `/health` of the worker whose health port is at `addr`: status and body,
/// or `None` while nothing answers.
pub async fn health_of(addr: SocketAddr) -> Option<(u16, serde_json::Value)> {
    let response = reqwest::get(format!("http://{addr}/health")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Retries `check` every 20 ms until it yields a value, for at most [`WAIT`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/health` at `addr` until it reports `role` ("active" or "standby")
/// with status 200; returns the body.
pub async fn wait_for_role(addr: SocketAddr, role: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((200, body)) = health_of(addr).await
            && body["role"] == role
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never became a healthy {role}: {:?}",
            health_of(addr).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request to the worker at `addr` signed with the test secret (SPEC §5).
pub fn signed(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    use coven_contract::signature::Signer;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let headers = Signer::new(Secret::new(SECRET)).sign(now, body);
    reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .header(TIMESTAMP_HEADER, headers.timestamp)
        .header(SIGNATURE_HEADER, headers.signature)
        .body(body.to_vec())
}

/// Checks what a hub received against what was expected: after collapsing
/// redeliveries (same event id), exactly `expected`, in order; every event id
/// is first seen in increasing order (no reorder), and a redelivery only
/// repeats an id already seen.
pub fn assert_in_order_at_least_once(
    accepted: &[(String, Event)],
    expected: &[(&'static str, u64, u64)],
) {
    let mut seen = std::collections::HashMap::new();
    let mut first: Vec<(String, Event)> = Vec::new();
    for (id, event) in accepted {
        if let Some(earlier) = seen.get(id) {
            assert_eq!(earlier, event, "a redelivery of {id} carried another event");
            continue;
        }
        seen.insert(id.clone(), event.clone());
        first.push((id.clone(), event.clone()));
    }
    let ids: Vec<&String> = first.iter().map(|(id, _)| id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "event ids out of order: {ids:?}"
    );
    let events: Vec<Event> = first.into_iter().map(|(_, event)| event).collect();
    assert_eq!(summary(&events), expected, "every event, once, in order");
}

/// A TCP port that was free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Names and rooms of events, for compact assertions.
pub fn summary(events: &[Event]) -> Vec<(&'static str, u64, u64)> {
    events
        .iter()
        .map(|event| {
            let user = match event {
                Event::VoiceJoined(p) => p.user_id.get(),
                Event::VoiceLeft(p) => p.user_id.get(),
                Event::VoiceState(p) => p.user_id.get(),
                Event::VoiceSpeaking(p) => p.user_id.get(),
                Event::RoomCreated(_) | Event::RoomDeleted(_) => 0,
            };
            (event.name(), event.channel_id().get(), user)
        })
        .collect()
}

/// A child process that is killed when dropped, so a failing test or benchmark
/// never leaves a worker running.
pub struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    pub fn new(child: std::process::Child) -> Self {
        Self(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("present until taken").id()
    }

    /// Gives the child back, e.g. to wait for its exit status.
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("present until taken")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
