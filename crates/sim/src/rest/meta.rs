//! `GET /gateway`, `GET /gateway/bot` and `GET /users/@me` (bot or OAuth2 bearer).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Caller;
use super::error::ApiError;
use crate::shapes;
use crate::state::Shared;

/// `GET /gateway` (no auth).
pub(crate) async fn gateway(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"url": shared.gateway_url()})).into_response()
}

/// `GET /gateway/bot`.
pub(crate) async fn gateway_bot(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    super::channels::require_bot(&caller)?;
    let used = shared.counters.borrow().identifies;
    Ok(Json(json!({
        "url": shared.gateway_url(),
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 1000u64.saturating_sub(used),
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        },
    }))
    .into_response())
}

/// `GET /users/@me`: the bot, or the OAuth2 user (needs `identify`; `email` adds the email).
pub(crate) async fn current_user(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let core = shared.core();
    let world = &core.world;
    let body = match caller {
        Caller::Bot => shapes::current_user(&world.users[&world.bot_user_id()], false),
        Caller::Bearer { user_id, scopes } => {
            if !scopes.iter().any(|s| s == "identify") {
                return Err(ApiError::unauthorized());
            }
            let u = world
                .users
                .get(&user_id)
                .ok_or_else(ApiError::unknown_user)?;
            shapes::current_user(u, scopes.iter().any(|s| s == "email"))
        }
    };
    Ok(Json(body).into_response())
}
