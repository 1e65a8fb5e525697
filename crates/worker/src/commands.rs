//! Signed commands from the hub: the bot joins or leaves a room, or plays a cue.
//!
//! `POST /commands/join`, `/commands/leave` and `/commands/cue` on the health port,
//! with a JSON body `{"channelId": "…", "cue"?: "…"}`, signed over the method, the
//! path, a timestamp, a unique id and the body (docs/spec.md §8, any `HUB_SECRET`):
//! a captured command cannot be sent again, nor re-aimed at another command. The
//! paths, the body and the signature check (with its cache of the ids already
//! accepted) are the contract's (`coven_contract::internal`), shared with the hub.
//! A bad or replayed signature gets 403; a full id cache gets 503. The hub
//! has already checked the caller and that the channel is a room; the worker checks
//! the signature, the body and the bot's own state, and answers `{"ok":true}` or
//! `{"message","code"}`.
//!
//! A standby of an active/standby pair does not hold the Discord session, so it
//! answers every signed command with 503 `{"message":"standby","code":"INTERNAL_ERROR"}`:
//! the caller should send it to the other worker (`/health` tells which is active).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use coven_contract::internal::{
    BotCommand, BotCommandBody, RequestError, RequestVerifier, verify_request,
};
use coven_contract::signature::Verifier;
use coven_contract::{ApiError, Cue, ErrorCode, OkBody, Snowflake};
use coven_discord::{DiscordRtcClient, RtcError, RtcStatus};

use crate::voice::BotVoice;

/// Largest accepted command body.
const COMMAND_BODY_MAX_BYTES: usize = 4 * 1024;

#[derive(Clone)]
struct CommandState {
    verifier: Arc<RequestVerifier>,
    voice: BotVoice,
}

/// The command routes, to merge into the health port's router.
pub fn router(verifier: Verifier, voice: BotVoice) -> Router {
    Router::new()
        .route(BotCommand::Join.path(), post(join))
        .route(BotCommand::Leave.path(), post(leave))
        .route(BotCommand::Cue.path(), post(cue))
        .with_state(CommandState {
            verifier: Arc::new(RequestVerifier::new(verifier)),
            voice,
        })
}

/// A refusal: status, code and a message safe to show in a browser.
struct Refusal(StatusCode, ErrorCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = ApiError {
            message: self.2,
            code: self.1,
            details: None,
        };
        (self.0, Json(body)).into_response()
    }
}

impl From<RtcError> for Refusal {
    fn from(error: RtcError) -> Self {
        let status = match error {
            RtcError::NotConnected => StatusCode::CONFLICT,
            RtcError::VideoUnsupported => StatusCode::BAD_REQUEST,
            RtcError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        let code = match error {
            RtcError::NotConnected | RtcError::VideoUnsupported => ErrorCode::ValidationFailed,
            _ => ErrorCode::InternalError,
        };
        Self(status, code, error.to_string())
    }
}

/// Verifies the signature of `command`'s request, then parses the body; returns
/// the bot's voice client.
fn accept(
    state: &CommandState,
    command: BotCommand,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(DiscordRtcClient, BotCommandBody), Refusal> {
    if body.len() > COMMAND_BODY_MAX_BYTES {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::ValidationFailed,
            "command too large".into(),
        ));
    }
    // The router only sends POSTs here: the method checked is the one received.
    let verified = verify_request(
        &state.verifier,
        &Method::POST,
        command.path(),
        headers,
        body,
    )
    .map_err(|error| {
        tracing::warn!(
            reason = error.reason(),
            command = command.name(),
            "refused a voice command"
        );
        if error == RequestError::Busy {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::InternalError,
                "too many commands, retry shortly".into(),
            )
        } else {
            Refusal(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "forbidden".into(),
            )
        }
    })?;
    let command: BotCommandBody = serde_json::from_slice(verified.body()).map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            "body must be {\"channelId\": \"<snowflake>\"}".into(),
        )
    })?;
    if state.voice.is_standby() {
        return Err(Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError,
            "standby".into(),
        ));
    }
    let client = state.voice.client().ok_or_else(|| {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError,
            "the bot's gateway session is not ready yet".into(),
        )
    })?;
    Ok((client, command))
}

/// The room the bot is in (or joining) now.
fn current_room(client: &DiscordRtcClient) -> Option<Snowflake> {
    match client.status() {
        RtcStatus::Ready { channel_id, .. }
        | RtcStatus::Connecting { channel_id }
        | RtcStatus::Reconnecting { channel_id } => Some(channel_id),
        RtcStatus::Disconnected | RtcStatus::Failed { .. } => None,
    }
}

fn not_in(channel_id: Snowflake) -> Refusal {
    Refusal(
        StatusCode::CONFLICT,
        ErrorCode::ValidationFailed,
        format!("the bot is not in room {channel_id}"),
    )
}

async fn join(
    State(state): State<CommandState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<OkBody>, Refusal> {
    let (client, command) = accept(&state, BotCommand::Join, &headers, &body)?;
    client.connect(command.channel_id).await?;
    tracing::info!(channel = %command.channel_id, "the bot joined a room");
    Ok(Json(OkBody { ok: true }))
}

async fn leave(
    State(state): State<CommandState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<OkBody>, Refusal> {
    let (client, command) = accept(&state, BotCommand::Leave, &headers, &body)?;
    if current_room(&client) != Some(command.channel_id) {
        return Err(not_in(command.channel_id));
    }
    client.disconnect().await?;
    tracing::info!(channel = %command.channel_id, "the bot left a room");
    Ok(Json(OkBody { ok: true }))
}

async fn cue(
    State(state): State<CommandState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<OkBody>, Refusal> {
    let (client, command) = accept(&state, BotCommand::Cue, &headers, &body)?;
    let Some(cue) = command.known_cue() else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            format!("cue must be one of {}", Cue::names()),
        ));
    };
    if current_room(&client) != Some(command.channel_id) {
        return Err(not_in(command.channel_id));
    }
    client.play_cue(cue).await?;
    Ok(Json(OkBody { ok: true }))
}
