//! Guild routes: the guild (with `owner_id`), its roles (with their permissions), get a
//! member (with their role ids), add a member with an OAuth2 `guilds.join` token.
//! Adding answers as Discord does when it refuses: a banned user 403 with code 40007,
//! a full guild 400 with code 30019 (see `SimHandle::ban_user` / `set_guild_full`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Caller;
use super::channels::{parse_body, require_bot};
use super::error::{ApiError, FormErrors};
use crate::shapes;
use crate::state::Shared;
use crate::world::WorldError;

fn ids(shared: &Shared, guild: &str, user: &str) -> Result<u64, ApiError> {
    if guild.parse::<u64>().ok() != Some(shared.core().world.guild_id) {
        return Err(ApiError::unknown_guild());
    }
    user.parse::<u64>().map_err(|_| ApiError::unknown_user())
}

fn guild_id(shared: &Shared, guild: &str) -> Result<(), ApiError> {
    if guild.parse::<u64>().ok() == Some(shared.core().world.guild_id) {
        Ok(())
    } else {
        Err(ApiError::unknown_guild())
    }
}

/// `GET /guilds/{guild_id}`: the guild object, `owner_id` and `roles` included.
pub(crate) async fn get_guild(
    State(shared): State<Arc<Shared>>,
    Path(guild): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    guild_id(&shared, &guild)?;
    Ok(Json(shapes::guild(&shared.core().world)).into_response())
}

/// `GET /guilds/{guild_id}/roles`: every role, `@everyone` (id = guild id) first.
pub(crate) async fn get_roles(
    State(shared): State<Arc<Shared>>,
    Path(guild): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    guild_id(&shared, &guild)?;
    Ok(Json(shapes::roles(&shared.core().world)).into_response())
}

/// `GET /guilds/{guild_id}/members/{user_id}`.
pub(crate) async fn get_member(
    State(shared): State<Arc<Shared>>,
    Path((guild, user)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let user = ids(&shared, &guild, &user)?;
    let core = shared.core();
    let m = core
        .world
        .members
        .get(&user)
        .ok_or_else(ApiError::unknown_member)?;
    Ok(Json(shapes::member(&core.world, m)).into_response())
}

/// `PUT /guilds/{guild_id}/members/{user_id}`: 201 + `GUILD_MEMBER_ADD`, or 204 if already
/// a member; 403 40007 for a banned user, 400 30019 when the guild is full.
pub(crate) async fn add_member(
    State(shared): State<Arc<Shared>>,
    Path((guild, user)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_bot(&caller)?;
    let user = ids(&shared, &guild, &user)?;
    let body = parse_body(&body)?;
    let Some(token) = body.get("access_token").and_then(Value::as_str) else {
        let mut e = FormErrors::default();
        e.add(
            &["access_token"],
            "BASE_TYPE_REQUIRED",
            "This field is required",
        );
        return Err(ApiError::invalid_form(e));
    };
    let grant = shared.oauth().access(token);
    let valid =
        grant.is_some_and(|(uid, scopes)| uid == user && scopes.iter().any(|s| s == "guilds.join"));
    if !valid {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            50025,
            "Invalid OAuth2 access token",
        ));
    }
    let nick = body.get("nick").and_then(Value::as_str).map(str::to_owned);
    let added = shared.mutate(|w| {
        Ok(w.add_member(user, nick)?
            .map_or((false, Vec::new()), |ds| (true, ds)))
    });
    match added {
        Ok(true) => {
            let core = shared.core();
            Ok((
                StatusCode::CREATED,
                Json(shapes::member(&core.world, &core.world.members[&user])),
            )
                .into_response())
        }
        Ok(false) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(WorldError::Banned(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            40007,
            "The user is banned from this guild",
        )),
        Err(WorldError::GuildFull) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            30019,
            "Maximum number of server members reached",
        )),
        Err(_) => Err(ApiError::unknown_user()),
    }
}
