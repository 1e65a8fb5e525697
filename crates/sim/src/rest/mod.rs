//! REST API under `/api/v10`: authentication, rate limits, fault injection and request
//! recording around Discord-shaped handlers.

mod channels;
mod error;
mod guilds;
mod messages;
mod meta;
pub(crate) mod ratelimit;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};

use crate::state::Shared;
use error::ApiError;
use ratelimit::{Limiter, Taken, add_headers, bucket_hash, too_many};

/// The route key of channel creation, for bucket configuration and fault injection.
pub const CHANNEL_CREATE_ROUTE: &str = "POST /guilds/{guild_id}/channels";

/// One REST request as the simulator received it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path as sent, e.g. `/api/v10/guilds/1/channels`.
    pub path: String,
    /// Route key, e.g. `POST /guilds/{guild_id}/channels`.
    pub route: String,
    /// Request body as text.
    pub body: String,
    /// Decoded `X-Audit-Log-Reason`.
    pub audit_log_reason: Option<String>,
}

/// A response to inject instead of the real one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InjectedResponse {
    /// A 5xx (or any status) with `{"message", "code": 0}`.
    Status {
        /// HTTP status.
        status: u16,
    },
    /// A 429 with `X-RateLimit-Scope: shared`.
    Shared429 {
        /// Seconds to wait.
        retry_after_secs: u16,
    },
}

/// Mutable REST state: limits, injected faults, recorded requests, permissions.
#[derive(Default)]
pub(crate) struct RestState {
    pub limiter: Limiter,
    pub injected: HashMap<String, VecDeque<InjectedResponse>>,
    pub recorded: Vec<RecordedRequest>,
    pub forbid_all: bool,
    pub forbidden_channels: HashSet<u64>,
}

impl RestState {
    /// Whether managing this channel (or the guild, `None`) is forbidden.
    pub fn forbidden(&self, channel: Option<u64>) -> bool {
        self.forbid_all || channel.is_some_and(|c| self.forbidden_channels.contains(&c))
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    Bot,
    Bearer { user_id: u64, scopes: Vec<String> },
}

/// The REST router (mounted at `/api/v10`, `/api/v9` and `/api`).
pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/gateway/bot", get(meta::gateway_bot))
        .route("/users/@me", get(meta::current_user))
        .route(
            "/guilds/{guild_id}/channels",
            get(channels::list).post(channels::create),
        )
        .route(
            "/channels/{channel_id}",
            get(channels::get_one)
                .patch(channels::modify)
                .delete(channels::delete),
        )
        .route(
            "/channels/{channel_id}/permissions/{overwrite_id}",
            put(channels::put_overwrite).delete(channels::delete_overwrite),
        )
        .route(
            "/channels/{channel_id}/messages",
            post(messages::create_message),
        )
        .route(
            "/channels/{channel_id}/invites",
            post(messages::create_invite),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}",
            get(guilds::get_member).put(guilds::add_member),
        )
        .route("/guilds/{guild_id}", get(guilds::get_guild))
        .route("/guilds/{guild_id}/roles", get(guilds::get_roles))
        .route_layer(middleware::from_fn_with_state(shared, guard))
        .route("/gateway", get(meta::gateway))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, 0, "404: Not Found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed")
        })
}

fn route_key(method: &str, matched: &str) -> String {
    let path = ["/api/v10", "/api/v9", "/api"]
        .iter()
        .find_map(|p| matched.strip_prefix(p))
        .unwrap_or(matched);
    format!("{method} {path}")
}

/// The major parameter (guild or channel id) of a path, for per-resource buckets.
fn major(path: &str) -> u64 {
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .windows(2)
        .find(|w| w[0] == "guilds" || w[0] == "channels")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(0)
}

fn audit_reason(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("x-audit-log-reason")?.to_str().ok()?;
    let decoded = url::form_urlencoded::parse(format!("r={}", raw.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned());
    decoded.or_else(|| Some(raw.to_owned()))
}

pub(crate) use channels::snowflake as snowflake_value;

pub(crate) fn decoded_reason(headers: &HeaderMap) -> Option<String> {
    audit_reason(headers)
}

fn caller(shared: &Shared, headers: &HeaderMap) -> Option<Caller> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    if let Some(token) = auth.strip_prefix("Bot ") {
        return (token == shared.config.bot_token).then_some(Caller::Bot);
    }
    let token = auth.strip_prefix("Bearer ")?;
    let (user_id, scopes) = shared.oauth().access(token)?;
    Some(Caller::Bearer { user_id, scopes })
}

/// Authentication, recording, global and route limits and injected faults.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    shared.count(|c| c.rest_requests += 1);
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |m| m.as_str().to_owned());
    let route = route_key(&method, &matched);
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, 8 << 20).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            40005,
            "Request entity too large",
        )
        .into_response();
    };
    let reason = audit_reason(&parts.headers);
    shared.rest().recorded.push(RecordedRequest {
        method,
        path: path.clone(),
        route: route.clone(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        audit_log_reason: reason,
    });
    let Some(who) = caller(&shared, &parts.headers) else {
        return ApiError::unauthorized().into_response();
    };
    let taken: Taken;
    {
        let mut rest = shared.rest();
        if matches!(who, Caller::Bot)
            && let Err(retry) = rest.limiter.global(shared.config.global_per_second)
        {
            drop(rest);
            shared.count(|c| c.rest_429s += 1);
            return too_many("global", retry, None);
        }
        if let Some(injected) = rest.injected.get_mut(&route).and_then(VecDeque::pop_front) {
            drop(rest);
            return match injected {
                InjectedResponse::Status { status } => {
                    shared.count(|c| c.rest_5xx_injected += 1);
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let msg = format!(
                        "{}: {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("Error")
                    );
                    ApiError::new(status, 0, &msg).into_response()
                }
                InjectedResponse::Shared429 { retry_after_secs } => {
                    shared.count(|c| c.rest_429s += 1);
                    let d = Duration::from_secs(retry_after_secs.into());
                    let t = Taken {
                        bucket: bucket_hash(&route),
                        limit: 0,
                        remaining: 0,
                        reset_after: d,
                    };
                    too_many("shared", d, Some(&t))
                }
            };
        }
        let cfg = match shared.config.route_buckets.get(&route) {
            Some(b) => *b,
            None if route == CHANNEL_CREATE_ROUTE => shared.config.channel_create_bucket,
            None => shared.config.default_bucket,
        };
        match rest.limiter.take(&route, major(&path), cfg) {
            Ok(t) => taken = t,
            Err(t) => {
                drop(rest);
                shared.count(|c| c.rest_429s += 1);
                return too_many("user", t.reset_after, Some(&t));
            }
        }
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(who);
    let mut resp = next.run(req).await;
    add_headers(resp.headers_mut(), &taken);
    resp
}
