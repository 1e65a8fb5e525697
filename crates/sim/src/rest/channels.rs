//! Channel routes: list/create guild channels, get/modify/delete a channel, permission overwrites.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::{ApiError, FormErrors};
use super::{Caller, decoded_reason};
use crate::shapes;
use crate::state::{AuditEntry, Shared};
use crate::world::{Channel, Overwrite, WorldError, channel_type};

pub(crate) fn require_bot(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Bot => Ok(()),
        Caller::Bearer { .. } => Err(ApiError::unauthorized()),
    }
}

pub(crate) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        )
    })
}

pub(crate) fn snowflake(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn perm_bits(v: Option<&Value>) -> Result<u64, ()> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(v) => snowflake(v).ok_or(()),
    }
}

fn check_guild(shared: &Shared, guild: &str) -> Result<(), ApiError> {
    if guild.parse::<u64>().ok() == Some(shared.core().world.guild_id) {
        Ok(())
    } else {
        Err(ApiError::unknown_guild())
    }
}

fn check_channel(shared: &Shared, channel: &str) -> Result<u64, ApiError> {
    let id = channel
        .parse::<u64>()
        .map_err(|_| ApiError::unknown_channel())?;
    if shared.core().world.channels.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::unknown_channel())
    }
}

fn check_permission(shared: &Shared, channel: Option<u64>) -> Result<(), ApiError> {
    if shared.rest().forbidden(channel) {
        Err(ApiError::missing_permissions())
    } else {
        Ok(())
    }
}

fn audit(shared: &Shared, action: &str, target_id: u64, headers: &HeaderMap) {
    shared.core().audit_log.push(AuditEntry {
        action: action.to_owned(),
        target_id,
        reason: decoded_reason(headers),
    });
}

fn parse_overwrites(v: &Value, errors: &mut FormErrors) -> Vec<Overwrite> {
    let Some(list) = v.as_array() else {
        errors.add(
            &["permission_overwrites"],
            "BASE_TYPE_ARRAY",
            "Must be an array.",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let idx = i.to_string();
        let id = o.get("id").and_then(snowflake);
        let kind = o.get("type").and_then(|t| match t {
            Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
            Value::String(s) if s == "role" => Some(0),
            Value::String(s) if s == "member" => Some(1),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        if id.is_none() {
            errors.add(
                &["permission_overwrites", &idx, "id"],
                "BASE_TYPE_REQUIRED",
                "This field is required",
            );
        }
        if !matches!(kind, Some(0 | 1)) {
            errors.add(
                &["permission_overwrites", &idx, "type"],
                "BASE_TYPE_CHOICES",
                "Value must be one of {0, 1}.",
            );
        }
        let (Ok(allow), Ok(deny)) = (perm_bits(o.get("allow")), perm_bits(o.get("deny"))) else {
            errors.add(
                &["permission_overwrites", &idx, "allow"],
                "BASE_TYPE_BAD_INT",
                "Invalid permissions value.",
            );
            continue;
        };
        if let (Some(id), Some(kind)) = (id, kind) {
            out.push(Overwrite {
                id,
                kind,
                allow,
                deny,
            });
        }
    }
    out
}

/// Validates and applies the editable channel fields in `body` to `c`.
fn apply_fields(
    shared: &Shared,
    c: &mut Channel,
    body: &Value,
    creating: bool,
    errors: &mut FormErrors,
) {
    match body.get("name") {
        Some(Value::String(n)) if (1..=100).contains(&n.chars().count()) => c.name.clone_from(n),
        Some(Value::String(_)) => errors.add(
            &["name"],
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        ),
        None if !creating => {}
        _ => errors.add(&["name"], "BASE_TYPE_REQUIRED", "This field is required"),
    }
    if let Some(v) = body.get("user_limit").filter(|v| !v.is_null()) {
        match v.as_u64() {
            Some(n) if n <= 99 => c.user_limit = u32::try_from(n).unwrap_or(0),
            Some(_) => errors.add(
                &["user_limit"],
                "NUMBER_TYPE_MAX",
                "int value should be less than or equal to 99.",
            ),
            None => errors.add(&["user_limit"], "NUMBER_TYPE_COERCE", "Value is not int."),
        }
    }
    if let Some(v) = body.get("bitrate").filter(|v| !v.is_null()) {
        match v.as_u64() {
            Some(n) if (8000..=96_000).contains(&n) => {
                c.bitrate = u32::try_from(n).unwrap_or(64_000);
            }
            _ => errors.add(
                &["bitrate"],
                "NUMBER_TYPE_MIN",
                "int value should be between 8000 and 96000.",
            ),
        }
    }
    match body.get("parent_id") {
        None => {}
        Some(Value::Null) => c.parent_id = None,
        Some(v) => {
            let parent = snowflake(v);
            let ok = parent.is_some_and(|p| {
                shared
                    .core()
                    .world
                    .channels
                    .get(&p)
                    .is_some_and(|pc| pc.kind == channel_type::CATEGORY)
            });
            if ok && c.kind != channel_type::CATEGORY {
                c.parent_id = parent;
            } else {
                errors.add(
                    &["parent_id"],
                    "CHANNEL_PARENT_INVALID",
                    "Category does not exist.",
                );
            }
        }
    }
    if let Some(v) = body.get("permission_overwrites").filter(|v| !v.is_null()) {
        c.permission_overwrites = parse_overwrites(v, errors);
    }
    if let Some(v) = body.get("topic") {
        c.topic = v.as_str().map(str::to_owned);
    }
    if let Some(v) = body.get("nsfw").and_then(Value::as_bool) {
        c.nsfw = v;
    }
    if let Some(v) = body.get("position").and_then(Value::as_i64) {
        c.position = v;
    }
    if let Some(v) = body.get("rate_limit_per_user").and_then(Value::as_u64) {
        c.rate_limit_per_user = u32::try_from(v.min(21_600)).unwrap_or(0);
    }
    if let Some(v) = body.get("rtc_region") {
        c.rtc_region = v.as_str().map(str::to_owned);
    }
}

/// `GET /guilds/{guild_id}/channels`.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(guild): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    check_guild(&shared, &guild)?;
    let core = shared.core();
    let list: Vec<Value> = core
        .world
        .channels
        .values()
        .map(|c| shapes::channel(&core.world, c))
        .collect();
    Ok(Json(list).into_response())
}

/// `POST /guilds/{guild_id}/channels`: 201 with the channel, `CHANNEL_CREATE`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(guild): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    check_guild(&shared, &guild)?;
    check_permission(&shared, None)?;
    let body = parse_body(&body)?;
    let mut errors = FormErrors::default();
    let kind = match body.get("type") {
        None | Some(Value::Null) => channel_type::TEXT,
        Some(v) => {
            if let Some(k @ (0 | 2 | 4 | 5 | 13 | 15)) =
                v.as_u64().and_then(|k| u8::try_from(k).ok())
            {
                k
            } else {
                errors.add(
                    &["type"],
                    "BASE_TYPE_CHOICES",
                    "Value must be one of {0, 2, 4, 5, 13, 15}.",
                );
                0
            }
        }
    };
    let mut c = Channel::new(0, kind, "", None);
    apply_fields(&shared, &mut c, &body, true, &mut errors);
    errors.into_result()?;
    let id = shared.mutate(|w| w.create_channel(c)).map_err(|_| {
        ApiError::invalid_form({
            let mut e = FormErrors::default();
            e.add(
                &["parent_id"],
                "CHANNEL_PARENT_INVALID",
                "Category does not exist.",
            );
            e
        })
    })?;
    audit(&shared, "CHANNEL_CREATE", id, &headers);
    let core = shared.core();
    let json = shapes::channel(&core.world, &core.world.channels[&id]);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

/// `GET /channels/{channel_id}`.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let id = check_channel(&shared, &channel)?;
    let core = shared.core();
    Ok(Json(shapes::channel(&core.world, &core.world.channels[&id])).into_response())
}

/// `PATCH /channels/{channel_id}`: `CHANNEL_UPDATE`.
pub(crate) async fn modify(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let id = check_channel(&shared, &channel)?;
    check_permission(&shared, Some(id))?;
    let body = parse_body(&body)?;
    let mut c = shared.core().world.channels[&id].clone();
    let mut errors = FormErrors::default();
    apply_fields(&shared, &mut c, &body, false, &mut errors);
    errors.into_result()?;
    shared
        .mutate(|w| {
            w.channels.insert(id, c);
            Ok(((), w.channel_updated(id)?))
        })
        .map_err(|_: WorldError| ApiError::unknown_channel())?;
    audit(&shared, "CHANNEL_UPDATE", id, &headers);
    let core = shared.core();
    Ok(Json(shapes::channel(&core.world, &core.world.channels[&id])).into_response())
}

/// `DELETE /channels/{channel_id}`: 200 with the deleted channel, `CHANNEL_DELETE`.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let id = check_channel(&shared, &channel)?;
    check_permission(&shared, Some(id))?;
    let deleted = shared
        .mutate(|w| w.delete_channel(id))
        .map_err(|_| ApiError::unknown_channel())?;
    audit(&shared, "CHANNEL_DELETE", id, &headers);
    let core = shared.core();
    Ok(Json(shapes::channel(&core.world, &deleted)).into_response())
}

/// `PUT /channels/{channel_id}/permissions/{overwrite_id}`: 204, `CHANNEL_UPDATE`.
pub(crate) async fn put_overwrite(
    State(shared): State<Arc<Shared>>,
    Path((channel, overwrite)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let id = check_channel(&shared, &channel)?;
    check_permission(&shared, Some(id))?;
    let body = parse_body(&body)?;
    let mut errors = FormErrors::default();
    let target = overwrite.parse::<u64>().ok();
    let kind = body
        .get("type")
        .and_then(Value::as_u64)
        .and_then(|k| u8::try_from(k).ok());
    if !matches!(kind, Some(0 | 1)) {
        errors.add(
            &["type"],
            "BASE_TYPE_CHOICES",
            "Value must be one of {0, 1}.",
        );
    }
    let (allow, deny) = (perm_bits(body.get("allow")), perm_bits(body.get("deny")));
    if allow.is_err() {
        errors.add(
            &["allow"],
            "BASE_TYPE_BAD_INT",
            "Invalid permissions value.",
        );
    }
    if deny.is_err() {
        errors.add(&["deny"], "BASE_TYPE_BAD_INT", "Invalid permissions value.");
    }
    errors.into_result()?;
    let (Some(target), Some(kind), Ok(allow), Ok(deny)) = (target, kind, allow, deny) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            10009,
            "Unknown Overwrite",
        ));
    };
    shared
        .mutate(|w| {
            let c = w
                .channels
                .get_mut(&id)
                .ok_or(WorldError::UnknownChannel(id))?;
            let ow = Overwrite {
                id: target,
                kind,
                allow,
                deny,
            };
            match c.permission_overwrites.iter_mut().find(|o| o.id == target) {
                Some(o) => *o = ow,
                None => c.permission_overwrites.push(ow),
            }
            Ok(((), w.channel_updated(id)?))
        })
        .map_err(|_| ApiError::unknown_channel())?;
    audit(&shared, "CHANNEL_OVERWRITE_UPDATE", id, &headers);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /channels/{channel_id}/permissions/{overwrite_id}`: 204, `CHANNEL_UPDATE`.
pub(crate) async fn delete_overwrite(
    State(shared): State<Arc<Shared>>,
    Path((channel, overwrite)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let id = check_channel(&shared, &channel)?;
    check_permission(&shared, Some(id))?;
    let target = overwrite.parse::<u64>().unwrap_or(0);
    shared
        .mutate(|w| {
            let c = w
                .channels
                .get_mut(&id)
                .ok_or(WorldError::UnknownChannel(id))?;
            let before = c.permission_overwrites.len();
            c.permission_overwrites.retain(|o| o.id != target);
            let changed = before != c.permission_overwrites.len();
            Ok((
                (),
                if changed {
                    w.channel_updated(id)?
                } else {
                    Vec::new()
                },
            ))
        })
        .map_err(|_| ApiError::unknown_channel())?;
    audit(&shared, "CHANNEL_OVERWRITE_DELETE", id, &headers);
    Ok(StatusCode::NO_CONTENT.into_response())
}
