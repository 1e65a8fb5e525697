//! Operations endpoints on `HEALTH_CHECK_PORT`: `/health` and `/metrics`.
//!
//! `/health` answers 200 while the worker does its job and 503 otherwise, with
//! the same body either way, so an orchestrator can both probe and explain:
//! `{status, role, state, sessionAgeSecs, outboxDepth, outboxNearFull,
//! deadLetters, lastEventAt}`. `role` is `"active"` (it holds the Discord session:
//! healthy while the session is live) or, in a `REDIS_URL` pair, `"standby"`
//! (waiting to take over: healthy while it reaches Redis, `state` is
//! `"standby"`). A healthy standby answers 200 so that an orchestrator keeps it
//! running; route on `role`, not on the status code, to find the active one.
//!
//! `/voice-view` gives the hub the tracker's current view (who is in which room)
//! so browsers can start from a snapshot. It is signed over method, path, timestamp,
//! a unique id and the empty body, each id accepted once (docs/spec.md §8): the
//! view is guild data and is only for the hub. A standby serves
//! the view the active committed to Redis, so the hub may point at either worker.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use coven_contract::internal::{
    RequestError, RequestVerifier, VOICE_VIEW_PATH, VoiceView, verify_request,
};
use coven_contract::signature::Verifier;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::store::Store;

/// The gateway session's state as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GatewayState {
    /// Not connected yet, or reconnecting.
    Disconnected,
    /// Connected, waiting for READY.
    Identifying,
    /// Connected, replaying missed events.
    Resuming,
    /// Live.
    Active,
    /// Discord refused us for good (e.g. a bad token).
    FatallyClosed,
    /// Another worker of the pair holds the session; this one waits.
    Standby,
}

/// Which part a worker plays in an active/standby pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// It holds the lease and the Discord session (a single worker always does).
    Active,
    /// It waits to take the lease over.
    Standby,
}

/// Live status shared by the gateway task and the health endpoint.
#[derive(Debug)]
pub struct Status {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    view: Arc<VoiceView>,
    role: Role,
    redis_reachable: bool,
    state: GatewayState,
    session_started: Option<Instant>,
    last_event_at: Option<u64>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                view: Arc::default(),
                role: Role::Active,
                redis_reachable: false,
                state: GatewayState::Disconnected,
                session_started: None,
                last_event_at: None,
            }),
        }
    }
}

impl Status {
    /// Records the gateway's state.
    pub fn set_state(&self, state: GatewayState) {
        self.lock().state = state;
    }

    /// Records the worker's role; a standby's gateway state is [`GatewayState::Standby`].
    pub fn set_role(&self, role: Role) {
        let mut inner = self.lock();
        inner.role = role;
        if role == Role::Standby {
            inner.state = GatewayState::Standby;
            inner.session_started = None;
        }
    }

    /// The worker's role.
    pub fn role(&self) -> Role {
        self.lock().role
    }

    /// Whether a standby's last Redis call succeeded.
    pub fn set_redis_reachable(&self, reachable: bool) {
        self.lock().redis_reachable = reachable;
    }

    /// The tracker's view after the last commit.
    pub fn set_view(&self, view: Arc<VoiceView>) {
        self.lock().view = view;
    }

    /// A new session began (READY).
    pub fn session_started(&self) {
        self.lock().session_started = Some(Instant::now());
    }

    /// A contract event was produced now.
    pub fn event_produced(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.lock().last_event_at = Some(now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The body of `/health`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    role: Role,
    state: GatewayState,
    session_age_secs: Option<u64>,
    outbox_depth: u64,
    outbox_near_full: bool,
    dead_letters: u64,
    last_event_at: Option<u64>,
}

#[derive(Clone)]
struct HealthState {
    status: Arc<Status>,
    store: Store,
    prometheus: PrometheusHandle,
    verifier: Arc<RequestVerifier>,
}

/// The router serving `/health`, `/metrics` and the signed `/voice-view`.
pub fn router(
    status: Arc<Status>,
    store: Store,
    prometheus: PrometheusHandle,
    verifier: Verifier,
) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .route(VOICE_VIEW_PATH, get(voice_view))
        .with_state(HealthState {
            status,
            store,
            prometheus,
            verifier: Arc::new(RequestVerifier::new(verifier)),
        })
}

async fn voice_view(
    State(state): State<HealthState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    // GET or HEAD (the router serves both): the method signed must be the one sent.
    if let Err(error) = verify_request(&state.verifier, &method, VOICE_VIEW_PATH, &headers, b"") {
        tracing::warn!(reason = error.reason(), "refused a /voice-view request");
        if error == RequestError::Busy {
            let body = serde_json::json!({"message": "too many requests, retry shortly"});
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
        let body = serde_json::json!({"message": "forbidden"});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    // A standby's own view is stale: it serves what the active committed.
    if state.status.role() == Role::Standby {
        return match state.store.load_view().await {
            Ok(view) => Json(view.unwrap_or_default()).into_response(),
            Err(error) => {
                tracing::warn!(%error, "standby could not read the voice view from redis");
                let body = serde_json::json!({"message": "voice view unavailable"});
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
            }
        };
    }
    let view = state.status.lock().view.clone();
    Json(view.as_ref().clone()).into_response()
}

async fn health(State(state): State<HealthState>) -> impl IntoResponse {
    let inner = state.status.lock();
    let live = match inner.role {
        Role::Active => inner.state == GatewayState::Active,
        Role::Standby => inner.redis_reachable,
    };
    let body = Health {
        status: if live { "ok" } else { "unavailable" },
        role: inner.role,
        state: inner.state,
        session_age_secs: inner.session_started.map(|at| at.elapsed().as_secs()),
        outbox_depth: state.store.gauges().depth(),
        outbox_near_full: state.store.gauges().near_full(),
        dead_letters: state.store.gauges().dead_letter_count(),
        last_event_at: inner.last_event_at,
    };
    drop(inner);
    let code = if live {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn render_metrics(State(state): State<HealthState>) -> impl IntoResponse {
    crate::metrics::outbox_gauges(&state.store);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.prometheus.render(),
    )
}
