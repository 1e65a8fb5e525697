//! A stand-in for the hub's webhook ingest (`/api/internal/events`): it verifies
//! every delivery's signature with the contract's `Verifier`, answers as the
//! test's [`Policy`] says, and records what it accepted, so worker tests can
//! assert exactly what reached "the hub".

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use coven_contract::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, Verifier};
use coven_contract::{Event, Secret};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{SECRET, WAIT, now_secs};

/// How the fake hub answers one delivery: the event and the attempt number
/// (counting every attempt so far, from 1).
pub type Policy = Box<dyn Fn(&Event, usize) -> StatusCode + Send + Sync>;

/// Every delivery attempt the hub saw, and the events it accepted in order.
#[derive(Default)]
pub struct Received {
    /// Deliveries with a valid signature, accepted or not.
    pub attempts: usize,
    /// Accepted deliveries in arrival order: event id and event.
    pub accepted: Vec<(String, Event)>,
    /// When each accepted delivery arrived (same order as `accepted`).
    pub accepted_at: Vec<Instant>,
}

#[derive(Clone)]
struct HubState {
    verifier: Verifier,
    received: Arc<Mutex<Received>>,
    changed: watch::Sender<usize>,
    policy: Arc<Policy>,
}

/// A stand-in for the hub's `/api/internal/events`, verifying [`SECRET`].
pub struct FakeHub {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    changed: watch::Receiver<usize>,
    _task: JoinHandle<()>,
}

impl FakeHub {
    /// Listens on a port of its own, answering as `policy` says.
    pub async fn start(policy: Policy) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, policy)
    }

    /// Serves on `listener`, answering as `policy` says.
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

    /// A policy accepting every delivery.
    pub fn accepting() -> Policy {
        Box::new(|_, _| StatusCode::OK)
    }

    /// The webhook URL to give a worker.
    pub fn endpoint(&self) -> url::Url {
        format!("http://{}/api/internal/events", self.addr)
            .parse()
            .unwrap()
    }

    /// The accepted events, with duplicates (same event id) collapsed.
    pub fn events(&self) -> Vec<Event> {
        let received = self.received.lock().unwrap();
        let mut seen = HashSet::new();
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
    pub fn accepted_at(&self, index: usize) -> Instant {
        self.received.lock().unwrap().accepted_at[index]
    }

    /// Deliveries with a valid signature so far, accepted or not.
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
    let Ok(verified) = state.verifier.verify(
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        now_secs(),
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
            received.accepted_at.push(Instant::now());
        }
        status
    };
    state.changed.send_modify(|n| *n += 1);
    status
}
