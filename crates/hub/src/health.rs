//! `GET /health`: liveness and readiness as JSON, for load balancers and operators.
//!
//! 200 while the hub serves; 503 while it cannot verify JWTs yet (its JWKS was
//! never fetched) and once it is shutting down (so a balancer stops sending
//! browsers here during the drain). The body shows the socket count and the
//! replay ring, the two things an operator asks first about a fan-out hub.
//!
//! With `REDIS_URL` the body also says `"redis":"up"|"down"`, but an unreachable
//! Redis does NOT turn the status to 503: every hub shares that one Redis, so a
//! balancer would pull all of them at once, while each still serves its connected
//! browsers from memory (watch `hub_redis_up` in `/metrics` to alert).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::broker::RingState;
use crate::state::HealthState;

/// `GET /health` body.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Health {
    /// `ok`, `starting` (503) or `shutting_down` (503).
    #[schemars(with = "HealthStatus")]
    status: &'static str,
    /// Open connections.
    connections: usize,
    /// The replay ring of the primary guild.
    replay: RingState,
    /// JWT key sources configured.
    jwt_key_sources: usize,
    /// `"up"`/`"down"` with `REDIS_URL`; absent without.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'static str>,
}

/// The values of [`Health::status`], for the schema.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used: `status` is written as text.
enum HealthStatus {
    /// Serving, with keys to verify tokens.
    Ok,
    /// The JWKS was never fetched yet.
    Starting,
    /// Draining for shutdown.
    ShuttingDown,
}

/// The handler.
pub(crate) async fn health(State(state): State<HealthState>) -> (StatusCode, Json<impl Serialize>) {
    let serving = state.lifecycle.serving();
    let keys = state.lifecycle.keys_ready();
    let ready = serving && keys;
    let body = Health {
        status: match (serving, keys) {
            (false, _) => "shutting_down",
            (true, false) => "starting",
            (true, true) => "ok",
        },
        connections: state.lifecycle.connections(),
        replay: state.broker.ring_state(state.settings.primary_guild_id),
        jwt_key_sources: state.key_sources,
        redis: state
            .redis
            .as_ref()
            .map(|link| if link.is_up() { "up" } else { "down" }),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
