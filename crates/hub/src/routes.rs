//! Every HTTP route of the hub and the layers around them: request ids and
//! request tracing (every route but the worker's webhook), CORS for the
//! configured web origin, and the per-client-IP budget of the API routes
//! (docs/spec.md §7.2).
//!
//! This file is the map of the hub's HTTP surface (docs/contract.md): one line per
//! route, naming the handler; each handler extracts its own sub-state
//! (`crate::state`) from the one [`AppState`] the router carries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use tower_http::cors::CorsLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use url::Url;

use crate::client_ip::ClientIp;
use crate::conn_limits::ip_key;
use crate::error::HubError;
use crate::shared_limits::RoomsMemory;
use crate::state::{AppState, Hub};
use crate::{
    bot, demo_seat, health, ingest, lobby, login, metrics, openapi, rooms, snapshot, socket,
};

/// Largest accepted `POST /api/create-room` body.
const CREATE_BODY_MAX_BYTES: usize = 16 * 1024;

impl Hub {
    /// The full router, with CORS, request ids and request tracing.
    pub fn router(&self) -> Router {
        router(self.app.clone(), self.settings.web_origin.as_ref())
    }
}

/// The routes over `app`, with request ids, tracing and, for `web_origin`, CORS.
fn router(app: AppState, web_origin: Option<&Url>) -> Router {
    let app_ingest = app.ingest.clone();
    // The browser-facing API: each request first spends one of its client IP's
    // budget, before its token is even verified.
    let limited = Router::new()
        .route(
            "/api/create-room",
            // A create body is a few dozen bytes; refuse megabytes before reading.
            post(rooms::create_room).layer(DefaultBodyLimit::max(CREATE_BODY_MAX_BYTES)),
        )
        .route("/api/end-room/{channel_id}", delete(rooms::end_room))
        .route(
            "/api/rooms/{channel_id}/bot",
            post(bot::join).delete(bot::leave),
        )
        .route("/api/rooms/{channel_id}/cue", post(bot::cue))
        .route("/api/cues", get(bot::cues))
        .route("/api/rooms", get(snapshot::rooms))
        .route(
            "/api/demo/sit/{channel_id}",
            get(demo_seat::available).post(demo_seat::sit),
        )
        .route_layer(middleware::from_fn_with_state(
            app.rooms.rooms_memory.clone(),
            per_ip_limit,
        ));
    // The socket has its own per-IP limits (docs/spec.md §6.6), `/auth/login` its own.
    let api = Router::new()
        .route("/api/ws", get(socket::upgrade))
        .merge(limited)
        .route("/.well-known/jwks.json", get(login::jwks))
        .route("/auth/login", get(login::login))
        .route("/auth/callback", get(login::callback))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .fallback(lobby::serve)
        .with_state(app);
    // The worker's webhook: signed, never throttled, and the hub's busiest route.
    // It carries only its own small state (not a clone of `AppState` per request),
    // no tracing span and hence no request id (nothing would log it; the handler
    // logs what matters, with the event, and a 503 while Redis is down is
    // expected, not an error to log per request); docs/benchmarks.md, "Ingest".
    let internal = Router::new()
        .route("/api/internal/events", post(ingest::ingest))
        .with_state(app_ingest);
    let request_id = HeaderName::from_static("x-request-id");
    let router = api
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RequestIds::default()))
        .merge(internal);
    match web_origin.and_then(cors) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Spends one request of the client IP's API budget: 429 `RATE_LIMITED` with
/// `Retry-After` beyond it. A request without a known IP (a router served
/// without the accept loop, in tests) is not limited per IP.
async fn per_ip_limit(
    State(memory): State<Arc<RoomsMemory>>,
    client: ClientIp,
    request: axum::extract::Request,
    next: Next,
) -> Result<Response, HubError> {
    if let Some(ip) = client.ip
        && let Err(error) = memory.rate_limit_ip(ip_key(ip)).await
    {
        tracing::debug!(ip = %ip, "API: per-IP rate limit");
        return Err(error);
    }
    Ok(next.run(request).await)
}

/// CORS for the web app at `origin`: the rooms API's methods and headers, and
/// `Retry-After` readable by the page.
fn cors(origin: &Url) -> Option<CorsLayer> {
    let origin = HeaderValue::from_str(&origin.origin().ascii_serialization()).ok()?;
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// Request ids: a random per-process prefix and a counter, cheap and unique enough
/// to follow one request through the logs.
#[derive(Clone)]
struct RequestIds {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self {
            prefix: rand::random(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
