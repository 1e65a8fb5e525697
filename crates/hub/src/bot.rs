//! The bot's voice commands (docs/spec.md §7): `POST`/`DELETE /api/rooms/{id}/bot` make the
//! bot join or leave a room's voice channel, `POST /api/rooms/{id}/cue` plays a
//! short audio cue there, one of those `GET /api/cues` lists (an unknown name is
//! refused here, 400, before the worker is contacted).
//!
//! The hub owns no Discord session; it checks the caller (JWT, rate limit), checks
//! that the channel is a room of the guild and that the caller may act on it
//! (`crate::permissions`: its creator or a member who manages channels), and forwards the command to the
//! worker's `WORKER_ENDPOINT` as a request signed over its method, path, a timestamp,
//! a unique id and its body (docs/spec.md §8), which the worker accepts once. With
//! an active/standby pair listed there, `worker_link` finds the active (the standby
//! answers 503). The worker's answer (`{"ok":true}` or `{"message","code"}`) is
//! passed back; when every endpoint fails, the last 503 answer, or 503 when none
//! could be reached.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coven_contract::internal::{BotCommand, BotCommandBody};
use coven_contract::{ApiError, Cue, CueList, Snowflake};
use reqwest::Method;
use serde::Deserialize;

use crate::auth::{AuthUser, rate_limit};
use crate::error::HubError;
use crate::jwt::VerifiedUser;
use crate::rooms::{field_error, voice_room};
use crate::state::BotState;
use crate::worker_link::{LinkError, WorkerLink};

/// Largest accepted cue request body.
const CUE_BODY_MAX_BYTES: usize = 1024;

/// How long one endpoint may take to carry out a command (a join waits for the
/// voice connection).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Signed requests to the worker's command endpoint (any of `WORKER_ENDPOINT`,
/// the active of a pair answering).
#[derive(Debug)]
pub(crate) struct WorkerCommands {
    link: WorkerLink,
}

impl WorkerCommands {
    pub(crate) fn new(link: WorkerLink) -> Self {
        Self { link }
    }

    /// Posts `body` to the worker's path for `command` and relays the answer.
    async fn send(&self, command: BotCommand, body: &BotCommandBody) -> Result<Response, HubError> {
        let body = serde_json::to_vec(body).expect("a command body serialises");
        let response = match self
            .link
            .send(Method::POST, command.path(), body.into(), COMMAND_TIMEOUT)
            .await
        {
            Ok(response) | Err(LinkError::Unavailable(response)) => response,
            Err(LinkError::Unreachable(error)) => {
                tracing::warn!(
                    error = %error.without_url(),
                    command = command.name(),
                    "worker command failed"
                );
                return Err(HubError::Unavailable(
                    "the bot's voice service is not reachable".into(),
                ));
            }
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let text = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok((status, Json(serde_json::json!({"ok": true}))).into_response());
        }
        // Relay only a well-formed error body of ours; anything else is generic.
        match serde_json::from_slice::<ApiError>(&text) {
            Ok(error) => Ok((status, Json(error)).into_response()),
            Err(_) => Err(HubError::Upstream(format!("worker answered {status}"))),
        }
    }
}

/// The configured worker, or 503.
fn worker(state: &BotState) -> Result<&WorkerCommands, HubError> {
    state.worker_commands.as_deref().ok_or_else(|| {
        HubError::Unavailable("bot voice commands are not configured (WORKER_ENDPOINT)".into())
    })
}

/// Auth, rate limit, and the room check shared by every command.
async fn room_command(
    state: &BotState,
    user: &VerifiedUser,
    channel_id: &str,
) -> Result<Snowflake, HubError> {
    let channel_id: Snowflake = channel_id
        .parse()
        .map_err(|_| field_error("channelId must be a snowflake", "channelId"))?;
    rate_limit(&state.rooms.rooms_memory, user).await?;
    worker(state)?;
    voice_room(&state.rooms, channel_id).await?;
    state.rooms.access.authorize(user, channel_id).await?;
    tracing::info!(channel = %channel_id, user = %user.subject, "bot voice command");
    Ok(channel_id)
}

/// `POST /api/rooms/{channelId}/bot`: the bot joins the room.
pub(crate) async fn join(
    State(state): State<BotState>,
    Path(channel_id): Path<String>,
    AuthUser(user): AuthUser,
) -> Result<Response, HubError> {
    presence(&state, &user, &channel_id, BotCommand::Join).await
}

/// `DELETE /api/rooms/{channelId}/bot`: the bot leaves the room.
pub(crate) async fn leave(
    State(state): State<BotState>,
    Path(channel_id): Path<String>,
    AuthUser(user): AuthUser,
) -> Result<Response, HubError> {
    presence(&state, &user, &channel_id, BotCommand::Leave).await
}

/// Forwards `join` or `leave` for the room.
async fn presence(
    state: &BotState,
    user: &VerifiedUser,
    channel_id: &str,
    command: BotCommand,
) -> Result<Response, HubError> {
    let channel_id = room_command(state, user, channel_id).await?;
    worker(state)?
        .send(command, &BotCommandBody::room(channel_id))
        .await
}

/// `POST /api/rooms/{channelId}/cue` body.
#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct CueRequest {
    /// A name listed by `GET /api/cues`.
    #[schemars(with = "Cue")]
    cue: String,
}

/// `GET /api/cues`: the cues the bot can play, `{"cues":[{"name","label","durationMs"},…]}`
/// (docs/contract.md). The same list for everyone; a signed-in caller only.
pub(crate) async fn cues(_user: AuthUser) -> Json<CueList> {
    Json(CueList::all())
}

/// `POST /api/rooms/{channelId}/cue` with `{"cue": "<name>"}`, a name of `GET /api/cues`.
pub(crate) async fn cue(
    State(state): State<BotState>,
    Path(channel_id): Path<String>,
    // Applied after the body's checks: a bad body is 400 whoever sends it.
    user: Result<AuthUser, HubError>,
    body: Bytes,
) -> Result<Response, HubError> {
    if body.len() > CUE_BODY_MAX_BYTES {
        return Err(HubError::PayloadTooLarge {
            limit: CUE_BODY_MAX_BYTES,
        });
    }
    let request: CueRequest = serde_json::from_slice(&body)
        .map_err(|_| field_error("body must be {\"cue\": \"<name>\"}", "cue"))?;
    // Only a listed cue reaches the worker.
    let Some(cue) = Cue::from_name(&request.cue) else {
        return Err(field_error(
            &format!("cue must be one of {}", Cue::names()),
            "cue",
        ));
    };
    let AuthUser(user) = user?;
    let channel_id = room_command(&state, &user, &channel_id).await?;
    worker(&state)?
        .send(BotCommand::Cue, &BotCommandBody::cue(channel_id, cue))
        .await
}
