//! `coven demo` only: "Sit at this table" in the lobby moves the signed-in user
//! into a room through the Discord simulator's control API, so a newcomer sees
//! their own camera tile with zero setup (docs/lobby.md, webcams).
//!
//! Why through the hub: the page may only talk to its own origin (the CSP's
//! `connect-src 'self'`), and the simulator's control API is on another port.
//! Only a hub started by `coven demo` has [`crate::HubSettings::demo_sim_url`];
//! every other hub answers 404, so this never moves anyone in real Discord.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use coven_contract::{OkBody, Snowflake};

use crate::auth::AuthUser;
use crate::error::HubError;
use crate::state::SnapshotState;

/// How long the simulator may take to answer.
const SIM_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /api/demo/sit/{channelId}`: 200 where "Sit at this table" works (a demo).
pub(crate) async fn available(
    State(state): State<SnapshotState>,
    Path(_channel): Path<Snowflake>,
) -> Result<Json<OkBody>, HubError> {
    state
        .settings
        .demo_sim_url
        .as_ref()
        .map(|_| Json(OkBody { ok: true }))
        .ok_or_else(not_a_demo)
}

/// `POST /api/demo/sit/{channelId}`: the caller joins that voice channel in the simulator.
pub(crate) async fn sit(
    State(state): State<SnapshotState>,
    AuthUser(user): AuthUser,
    Path(channel): Path<Snowflake>,
) -> Result<Json<OkBody>, HubError> {
    let sim = state
        .settings
        .demo_sim_url
        .as_ref()
        .ok_or_else(not_a_demo)?;
    let user: Snowflake = user
        .subject
        .parse()
        .map_err(|_| HubError::Forbidden("your account has no Discord user id".into()))?;
    let url = sim
        .join(&format!("_sim/users/{user}/join"))
        .map_err(|e| HubError::Upstream(format!("simulator URL: {e}")))?;
    let response = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({ "channel_id": channel.to_string() }))
        .timeout(SIM_TIMEOUT)
        .send()
        .await
        .map_err(|e| HubError::Upstream(format!("simulator: {}", e.without_url())))?;
    match response.status().as_u16() {
        200..=299 => Ok(Json(OkBody { ok: true })),
        404 => Err(HubError::NotFound(
            "no such room or user in the simulator".into(),
        )),
        status => Err(HubError::Upstream(format!("simulator answered {status}"))),
    }
}

fn not_a_demo() -> HubError {
    HubError::NotFound("only `coven demo` seats you at a table".into())
}
