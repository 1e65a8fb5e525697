//! HTTP control API under `/_sim/...` (not part of Discord) for black-box tests and the demo.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gateway::Fault;
use crate::handle::SimHandle;
use crate::rest::InjectedResponse;
use crate::state::Shared;
use crate::world::{VoiceFlags, WorldError, channel_type};

/// The control routes.
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim", get(state))
        .route("/_sim/state", get(state))
        .route("/_sim/counters", get(counters))
        .route("/_sim/gateway/fault", post(fault))
        .route(
            "/_sim/gateway/reconnect",
            post(|State(s): State<Arc<Shared>>| async move { inject_fault(&s, &Fault::Reconnect) }),
        )
        .route(
            "/_sim/gateway/drop",
            post(|State(s): State<Arc<Shared>>| async move { inject_fault(&s, &Fault::DropTcp) }),
        )
        .route(
            "/_sim/gateway/zombie",
            post(|State(s): State<Arc<Shared>>| async move { inject_fault(&s, &Fault::Zombie) }),
        )
        .route(
            "/_sim/gateway/heartbeat-request",
            post(|State(s): State<Arc<Shared>>| async move {
                inject_fault(&s, &Fault::RequestHeartbeat)
            }),
        )
        .route("/_sim/users", post(add_user))
        .route("/_sim/users/{user_id}/join", post(join))
        .route("/_sim/users/{user_id}/move", post(move_user))
        .route("/_sim/users/{user_id}/leave", post(leave))
        .route("/_sim/users/{user_id}/flags", post(flags))
        .route("/_sim/channels", post(create_channel))
        .route("/_sim/channels/{channel_id}/delete", post(delete_channel))
        .route("/_sim/rest/inject", post(inject_rest))
        .route("/_sim/rest/requests", get(requests).delete(clear_requests))
        .route("/_sim/rest/forbid", post(forbid))
        .route("/_sim/audit-log", get(audit_log))
        .route("/_sim/oauth", post(oauth))
}

fn handle(shared: Arc<Shared>) -> SimHandle {
    SimHandle { shared }
}

fn world_result(r: Result<Value, WorldError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let status = match e {
                WorldError::UnknownUser(_) | WorldError::UnknownChannel(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            (status, Json(json!({"error": e.to_string()}))).into_response()
        }
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let core = shared.core();
    let w = &core.world;
    Json(json!({
        "gateway_url": shared.gateway_url(),
        "api_url": shared.api_url(),
        "guild_id": w.guild_id.to_string(),
        "config": shared.config.describe(),
        "seed": w.seed,
        "users": w.users.values().map(|u| json!({"id": u.id.to_string(), "username": u.username, "member": w.members.contains_key(&u.id)})).collect::<Vec<_>>(),
        "channels": w.channels.values().map(|c| crate::shapes::channel(w, c)).collect::<Vec<_>>(),
        "voice_states": w.voice_states.values().map(|v| crate::shapes::voice_state(w, v, false)).collect::<Vec<_>>(),
        "sessions": core.sessions.len(),
    }))
    .into_response()
}

async fn counters(State(shared): State<Arc<Shared>>) -> Response {
    Json(handle(shared).counters()).into_response()
}

async fn fault(State(shared): State<Arc<Shared>>, Json(f): Json<Fault>) -> Response {
    inject_fault(&shared, &f)
}

fn inject_fault(shared: &Arc<Shared>, f: &Fault) -> Response {
    let n = handle(shared.clone()).inject(f);
    Json(json!({"connections": n})).into_response()
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
}

async fn add_user(State(shared): State<Arc<Shared>>, Json(b): Json<NewUser>) -> Response {
    let id = handle(shared).add_user(&b.username);
    Json(json!({"id": id.to_string()})).into_response()
}

#[derive(Deserialize)]
struct Target {
    #[serde(deserialize_with = "de_snowflake")]
    channel_id: u64,
}

fn de_snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    crate::rest::snowflake_value(&v).ok_or_else(|| serde::de::Error::custom("expected a snowflake"))
}

/// An optional snowflake, as a string (what the control API sends) or a number; `null` or
/// absent is `None`.
fn de_opt_snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => crate::rest::snowflake_value(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected a snowflake")),
    }
}

async fn join(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<u64>,
    Json(t): Json<Target>,
) -> Response {
    world_result(
        handle(shared)
            .user_join(user, t.channel_id)
            .map(|()| json!({"ok": true})),
    )
}

async fn move_user(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<u64>,
    Json(t): Json<Target>,
) -> Response {
    world_result(
        handle(shared)
            .user_move(user, t.channel_id)
            .map(|()| json!({"ok": true})),
    )
}

async fn leave(State(shared): State<Arc<Shared>>, Path(user): Path<u64>) -> Response {
    world_result(
        handle(shared)
            .user_leave(user)
            .map(|()| json!({"ok": true})),
    )
}

async fn flags(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<u64>,
    Json(f): Json<VoiceFlags>,
) -> Response {
    world_result(
        handle(shared)
            .user_set_flags(user, f)
            .map(|()| json!({"ok": true})),
    )
}

#[derive(Deserialize)]
struct NewChannel {
    name: String,
    #[serde(default = "voice")]
    r#type: u8,
    #[serde(default, deserialize_with = "de_opt_snowflake")]
    parent_id: Option<u64>,
}

fn voice() -> u8 {
    channel_type::VOICE
}

async fn create_channel(State(shared): State<Arc<Shared>>, Json(b): Json<NewChannel>) -> Response {
    world_result(
        handle(shared)
            .create_channel(&b.name, b.r#type, b.parent_id)
            .map(|id| json!({"id": id.to_string()})),
    )
}

async fn delete_channel(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    world_result(
        handle(shared)
            .delete_channel(id)
            .map(|()| json!({"ok": true})),
    )
}

#[derive(Deserialize)]
struct Inject {
    route: String,
    #[serde(default = "one")]
    count: u32,
    response: InjectedResponse,
}

fn one() -> u32 {
    1
}

async fn inject_rest(State(shared): State<Arc<Shared>>, Json(b): Json<Inject>) -> Response {
    handle(shared).inject_rest(&b.route, &b.response, b.count);
    Json(json!({"ok": true})).into_response()
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    Json(handle(shared).requests()).into_response()
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> Response {
    handle(shared).clear_requests();
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct Forbid {
    #[serde(default, deserialize_with = "de_opt_snowflake")]
    channel_id: Option<u64>,
    forbid: bool,
}

async fn forbid(State(shared): State<Arc<Shared>>, Json(b): Json<Forbid>) -> Response {
    let h = handle(shared);
    match b.channel_id {
        Some(c) => h.forbid_channel(c, b.forbid),
        None => h.forbid_all(b.forbid),
    }
    Json(json!({"ok": true})).into_response()
}

async fn audit_log(State(shared): State<Arc<Shared>>) -> Response {
    Json(handle(shared).audit_log()).into_response()
}

#[derive(Deserialize)]
struct OAuthControl {
    #[serde(default)]
    deny_next: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_snowflake")]
    consenting_user: Option<u64>,
}

async fn oauth(State(shared): State<Arc<Shared>>, Json(b): Json<OAuthControl>) -> Response {
    let h = handle(shared);
    if let Some(n) = b.deny_next {
        h.oauth_deny_next(n);
    }
    if let Some(u) = b.consenting_user {
        h.set_consenting_user(u);
    }
    Json(json!({"ok": true})).into_response()
}
