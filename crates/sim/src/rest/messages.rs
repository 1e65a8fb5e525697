//! Message and invite creation in a channel (`MESSAGE_CREATE`, `INVITE_CREATE`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

use super::Caller;
use super::channels::{parse_body, require_bot};
use super::error::{ApiError, FormErrors};
use crate::shapes::{self, InviteTerms};
use crate::snowflake::now_ms;
use crate::state::Shared;
use crate::world::{Dispatch, SentMessage, channel_type};

fn channel_id(shared: &Shared, channel: &str) -> Result<u64, ApiError> {
    let id = channel
        .parse::<u64>()
        .map_err(|_| ApiError::unknown_channel())?;
    if !shared.core().world.channels.contains_key(&id) {
        return Err(ApiError::unknown_channel());
    }
    if shared.rest().forbidden(Some(id)) {
        return Err(ApiError::missing_permissions());
    }
    Ok(id)
}

/// `POST /channels/{channel_id}/messages`.
pub(crate) async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let id = channel_id(&shared, &channel)?;
    let body = parse_body(&body)?;
    let content = body
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let embeds = body
        .get("embeds")
        .cloned()
        .filter(Value::is_array)
        .unwrap_or_else(|| json!([]));
    let tts = body.get("tts").and_then(Value::as_bool).unwrap_or(false);
    let mut errors = FormErrors::default();
    if content.chars().count() > 2000 {
        errors.add(
            &["content"],
            "BASE_TYPE_MAX_LENGTH",
            "Must be 2000 or fewer in length.",
        );
    }
    errors.into_result()?;
    if content.is_empty() && embeds.as_array().is_none_or(Vec::is_empty) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        ));
    }
    let mut core = shared.core();
    if core.world.channels[&id].kind == channel_type::CATEGORY {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            50008,
            "Cannot send messages in a non-text channel",
        ));
    }
    let bot = core.world.bot_user_id();
    let msg_id = core.world.ids.now();
    let json = shapes::message(&core.world, msg_id, id, bot, &content, tts, &embeds);
    if let Some(c) = core.world.channels.get_mut(&id) {
        c.last_message_id = Some(msg_id);
    }
    core.world.messages.push(SentMessage {
        id: msg_id,
        channel_id: id,
        author_id: bot,
        content,
        json: json.clone(),
    });
    let mut event = json.clone();
    event["guild_id"] = json!(core.world.guild_id.to_string());
    if let Some(m) = core.world.members.get(&bot) {
        let mut member = shapes::member(&core.world, m);
        if let Some(o) = member.as_object_mut() {
            o.remove("user");
        }
        event["member"] = member;
    }
    shared.publish(&mut core, vec![Dispatch::new("MESSAGE_CREATE", event)]);
    Ok(Json(json).into_response())
}

/// `POST /channels/{channel_id}/invites`.
pub(crate) async fn create_invite(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let id = channel_id(&shared, &channel)?;
    let body = parse_body(&body)?;
    let mut errors = FormErrors::default();
    let max_age = body
        .get("max_age")
        .and_then(Value::as_u64)
        .unwrap_or(86_400);
    if max_age > 604_800 {
        errors.add(
            &["max_age"],
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 604800.",
        );
    }
    let max_uses = body.get("max_uses").and_then(Value::as_u64).unwrap_or(0);
    if max_uses > 100 {
        errors.add(
            &["max_uses"],
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 100.",
        );
    }
    errors.into_result()?;
    let temporary = body
        .get("temporary")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let invite_code: String = {
        let mut rng = rand::rng();
        (0..8)
            .map(|_| {
                let chars = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
                char::from(chars[rng.random_range(0..chars.len())])
            })
            .collect()
    };
    let mut core = shared.core();
    let world = &core.world;
    let inviter = world.bot_user_id();
    let created = now_ms();
    let channel = &world.channels[&id];
    if channel.kind == channel_type::CATEGORY {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            50024,
            "Cannot execute action on this channel type",
        ));
    }
    let json = shapes::invite(
        world,
        &invite_code,
        channel,
        inviter,
        InviteTerms {
            max_age,
            max_uses,
            temporary,
            created_ms: created,
        },
    );
    let event = json!({
        "type": 0,
        "channel_id": id.to_string(),
        "code": invite_code,
        "created_at": json["created_at"],
        "expires_at": json["expires_at"],
        "guild_id": world.guild_id.to_string(),
        "inviter": json["inviter"],
        "max_age": max_age,
        "max_uses": max_uses,
        "temporary": temporary,
        "uses": 0,
    });
    shared.publish(&mut core, vec![Dispatch::new("INVITE_CREATE", event)]);
    Ok(Json(json).into_response())
}
