//! Discord login (issue 7): `GET /auth/login` and `GET /auth/callback`, plus the
//! own issuer's `GET /.well-known/jwks.json`.
//!
//! `/auth/login` draws a `state` and a PKCE verifier, keeps them server-side under a
//! random id for `flow_ttl`, binds that id to the browser with an `HttpOnly`,
//! `SameSite=Lax`, `Path=/auth` cookie, and redirects to Discord's authorize page
//! (scopes `identify guilds.join`). `/auth/callback` takes the flow for the cookie
//! (once: a replayed callback finds nothing), compares `state` in constant time,
//! exchanges the code with the verifier, reads the user, adds them to the primary
//! guild when they are not a member, signs the app JWT with the hub's own issuer and
//! redirects to `/#token=<jwt>`: a fragment never reaches a server log. Every failure
//! ends on a small HTML page ([`LoginFailure`]) that links back to `/`.
//!
//! Only a member of the guild gets a token (docs/spec.md §7, docs/security.md
//! "Sign-in"): when Discord refuses to add the user (banned, guild full, the user in
//! 100 guilds already, or any other refusal) the page says why, with status 403
//! (502 for a refusal that is the server's fault), and no token or cookie is issued.
//!
//! A stranger cannot make the hub keep state without a bound (docs/spec.md §7.2):
//! `/auth/login` is rate-limited per client IP (IPv6 per /64; 429 with
//! `Retry-After`), and the logins in progress are capped at `max_flows`, in memory
//! and in Redis alike, dropping the oldest (docs/scaling.md gives the size).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coven_contract::Snowflake;
use coven_discord::{CurrentUser, DiscordError, PkceVerifier};
use serde::Deserialize;

use crate::client_ip::ClientIp;
use crate::conn_limits::ip_key;
use crate::error::{HubError, retry_after_secs};
use crate::issuer::TokenSubject;
use crate::lobby::page_headers;
use crate::rate_limit::RateLimiter;
use crate::redis_link::RedisLink;
use crate::rooms::MemberProfile;
use crate::settings::LoginSettings;
use crate::state::LoginState;

/// The cookie binding a login in progress to the browser.
const COOKIE: &str = "coven_login";
/// The scopes a login asks for.
const SCOPES: &[&str] = &["identify", "guilds.join"];
/// How long a login flow lives without login settings (never used then).
const DEFAULT_FLOW_TTL: Duration = Duration::from_secs(600);
/// Length of a login cookie id: 32 random bytes in base64url without padding.
const FLOW_ID_LEN: usize = 43;

/// Why a login failed; rendered as an HTML page, never with upstream text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginFailure {
    /// Login is not configured on this hub (503).
    #[error("Sign-in with Discord is not configured on this server.")]
    NotConfigured,
    /// The user declined on Discord's consent page (400).
    #[error("You cancelled the sign-in on Discord, so you are not signed in.")]
    Denied,
    /// Discord answered with another OAuth2 error (400).
    #[error("Discord did not complete the sign-in.")]
    AuthorizeFailed,
    /// The `state` or the login cookie is missing, expired, reused or wrong (400).
    #[error(
        "This sign-in link is not valid any more (it expired, was already used, or was opened in another browser). Please start again."
    )]
    BadState,
    /// The callback carried no code (400).
    #[error("Discord sent no authorization code. Please start again.")]
    MissingCode,
    /// Discord refused the code: expired or already used (400).
    #[error(
        "Discord refused the sign-in code: it expired or was already used. Please start again."
    )]
    CodeRejected,
    /// Discord could not be reached or failed (502).
    #[error("Discord could not be reached to finish the sign-in. Please try again in a moment.")]
    Upstream,
    /// Signing the token failed (500).
    #[error("The server could not create your session. Please try again.")]
    Internal,
    /// Discord refused to add the user to the guild: they are banned (403).
    #[error(
        "You are banned from this Discord server, so you cannot sign in here. If you think this is a mistake, ask the server's moderators."
    )]
    Banned,
    /// Discord refused to add the user: the guild has reached its member limit (403).
    #[error(
        "This Discord server is full: it has reached Discord's limit of members, so you could not join it and cannot sign in. Please ask the server's moderators."
    )]
    GuildFull,
    /// Discord refused to add the user: they are in 100 guilds already (403).
    #[error(
        "You are already in as many Discord servers as Discord allows. Leave one, then sign in again."
    )]
    TooManyGuilds,
    /// Discord refused to add the user for another reason, e.g. the bot lacks a
    /// permission (502).
    #[error(
        "Discord did not let this server add you as a member, so you cannot sign in. Please try again later or ask the server's moderators."
    )]
    NotAdded,
    /// Too many sign-ins from this network (429 with `Retry-After`).
    #[error("Too many sign-in attempts from your network. Please wait a minute and try again.")]
    TooManyAttempts,
}

impl LoginFailure {
    /// The HTTP status of the page.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream | Self::NotAdded => StatusCode::BAD_GATEWAY,
            Self::Banned | Self::GuildFull | Self::TooManyGuilds => StatusCode::FORBIDDEN,
            Self::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short label for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Denied => "denied",
            Self::AuthorizeFailed => "authorize_failed",
            Self::BadState => "bad_state",
            Self::MissingCode => "missing_code",
            Self::CodeRejected => "code_rejected",
            Self::Upstream => "upstream",
            Self::Internal => "internal",
            Self::Banned => "banned",
            Self::GuildFull => "guild_full",
            Self::TooManyGuilds => "too_many_guilds",
            Self::NotAdded => "not_added",
            Self::TooManyAttempts => "too_many_attempts",
        }
    }

    /// The HTML page (the message is static text: nothing from the request or
    /// from Discord is echoed).
    pub(crate) fn page(self) -> Response {
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Sign-in failed · Spell Coven</title>\
             <link rel=\"stylesheet\" href=\"/style.css\"></head>\
             <body><main class=\"login-error\"><h1>Sign-in failed</h1><p>{self}</p>\
             <p><a href=\"/\">Back to the lobby</a></p></main></body></html>\n"
        );
        let mut response = (
            self.status(),
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response();
        page_headers(response.headers_mut());
        response.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("coven_login=; HttpOnly; SameSite=Lax; Path=/auth; Max-Age=0"),
        );
        response
    }
}

/// A login in progress.
struct Flow {
    state: String,
    verifier: PkceVerifier,
    expires: Instant,
}

/// `KEYS[1]` the flow index (a sorted set of ids by expiry), `KEYS[2]` the new
/// flow's key; `ARGV[1]` its value, `ARGV[2]` its lifetime (ms), `ARGV[3]` the cap,
/// `ARGV[4]` its id, `ARGV[5]` the prefix of flow keys. Drops expired ids, then the
/// oldest flows beyond the cap, then stores the new one. The dropped keys share
/// `KEYS[1]`'s hash tag, so they live in the same cluster slot.
static START: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3]) + 1
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[1], over)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[5] .. oldest[i])
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
return 0
",
    )
});

/// Logins in progress by cookie id: in this hub's memory, and with `REDIS_URL`
/// in Redis (`coven:{<guild>}:hub:login:<id>`, expiring with the flow, indexed by
/// expiry in `coven:{<guild>}:hub:logins` so that their count is capped), so that the
/// callback may reach another hub than the login did — a load balancer in front of
/// several hubs needs no sticky sessions. While Redis is down a flow stays in this
/// hub's memory: the login still completes when the callback comes back here.
/// Also `/auth/login`'s per-IP rate limit (in this hub's memory).
pub(crate) struct Flows {
    ttl: Duration,
    cap: usize,
    per_ip: RateLimiter,
    local: Mutex<HashMap<String, Flow>>,
    shared: Option<(Arc<RedisLink>, Snowflake)>,
}

impl Flows {
    /// Flows with `login`'s lifetime, cap and per-IP limit (defaults without).
    pub(crate) fn new(
        login: Option<&LoginSettings>,
        shared: Option<(Arc<RedisLink>, Snowflake)>,
    ) -> Self {
        let (ttl, max_flows, burst, period) =
            login.map_or((DEFAULT_FLOW_TTL, 1, 1, Duration::from_secs(1)), |l| {
                (
                    l.flow_ttl,
                    l.max_flows,
                    l.rate_per_ip_burst,
                    l.rate_per_ip_period,
                )
            });
        Self {
            ttl,
            cap: max_flows.max(1),
            per_ip: RateLimiter::new(burst, period),
            local: Mutex::new(HashMap::new()),
            shared,
        }
    }

    /// Takes one `/auth/login` from `client`'s budget; the wait when it is spent.
    /// A request that did not come through the accept loop has no IP: no limit.
    fn rate_limit(&self, client: ClientIp) -> Result<(), Duration> {
        match client.ip {
            Some(ip) => self.per_ip.check(&ip_key(ip).to_string()),
            None => Ok(()),
        }
    }

    /// Stores a flow; returns the cookie id.
    async fn start(&self, state: String, verifier: PkceVerifier) -> String {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        if let Some((link, guild)) = &self.shared {
            // `state` is base64url: a space cannot occur in it.
            let value = format!("{state} {}", verifier.expose());
            let result: redis::RedisResult<i64> = START
                .key(RedisLink::key(*guild, "logins"))
                .key(RedisLink::key(*guild, &format!("login:{id}")))
                .arg(value)
                .arg(
                    u64::try_from(self.ttl.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                )
                .arg(self.cap)
                .arg(&id)
                .arg(RedisLink::key(*guild, "login:"))
                .invoke_async(&mut link.conn())
                .await;
            if link.record("login", result).is_ok() {
                return id;
            }
        }
        self.keep(id.clone(), state, verifier);
        id
    }

    fn keep(&self, id: String, state: String, verifier: PkceVerifier) {
        let now = Instant::now();
        let mut flows = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        flows.retain(|_, f| f.expires > now);
        if flows.len() >= self.cap
            && let Some(oldest) = flows
                .iter()
                .min_by_key(|(_, f)| f.expires)
                .map(|(k, _)| k.clone())
        {
            flows.remove(&oldest);
        }
        flows.insert(
            id,
            Flow {
                state,
                verifier,
                expires: now + self.ttl,
            },
        );
    }

    /// Takes (once) the live flow of `id`, from this hub's memory or from Redis.
    async fn take(&self, id: &str) -> Option<Flow> {
        if id.len() != FLOW_ID_LEN {
            return None;
        }
        let local = self
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .filter(|f| f.expires > Instant::now());
        if local.is_some() {
            return local;
        }
        let (link, guild) = self.shared.as_ref()?;
        let result: redis::RedisResult<(Option<String>,)> = redis::pipe()
            .atomic()
            .cmd("GETDEL")
            .arg(RedisLink::key(*guild, &format!("login:{id}")))
            .cmd("ZREM")
            .arg(RedisLink::key(*guild, "logins"))
            .arg(id)
            .ignore()
            .query_async(&mut link.conn())
            .await;
        let value = link.record("login", result).ok()?.0?;
        let (state, verifier) = value.split_once(' ')?;
        Some(Flow {
            state: state.to_owned(),
            verifier: PkceVerifier::new(verifier).ok()?,
            expires: Instant::now() + self.ttl,
        })
    }
}

/// Byte-wise comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn login_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// `GET /.well-known/jwks.json`: the own issuer's public keys.
pub(crate) async fn jwks(State(state): State<LoginState>) -> Result<Response, HubError> {
    let issuer = state
        .issuer
        .as_ref()
        .ok_or_else(|| HubError::NotFound("this hub issues no tokens".into()))?;
    let mut response = Json(issuer.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// `GET /auth/login`.
pub(crate) async fn login(
    State(state): State<LoginState>,
    client: ClientIp,
) -> Result<Response, HubError> {
    let (Some(login), Some(_)) = (&state.login, &state.issuer) else {
        return Err(LoginFailure::NotConfigured.into());
    };
    if let Err(wait) = state.flows.rate_limit(client) {
        tracing::info!(ip = ?client.ip, "login: per-IP rate limit");
        let mut page = LoginFailure::TooManyAttempts.page();
        page.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(wait)),
        );
        return Ok(page);
    }
    let request = login.oauth.authorize(SCOPES);
    let id = state.flows.start(request.state, request.verifier).await;
    let secure = if login.secure_cookie { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/auth; Max-Age={}{secure}",
        state.flows.ttl.as_secs()
    );
    let mut response = (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, request.url.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response();
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| HubError::Internal(e.to_string()))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The callback's query.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn discord_failure(step: &str, error: &DiscordError) -> LoginFailure {
    tracing::warn!(step, error = %error, "login: Discord call failed");
    match error {
        DiscordError::InvalidGrant { .. } | DiscordError::Validation { .. } => {
            LoginFailure::CodeRejected
        }
        _ => LoginFailure::Upstream,
    }
}

/// Why a user who could not be added to the guild gets no token.
fn membership_failure(user: Snowflake, error: &DiscordError) -> LoginFailure {
    let failure = match error {
        DiscordError::BannedFromGuild => LoginFailure::Banned,
        DiscordError::GuildFull => LoginFailure::GuildFull,
        DiscordError::TooManyGuilds => LoginFailure::TooManyGuilds,
        DiscordError::Server { .. }
        | DiscordError::Transport(_)
        | DiscordError::RateLimited { .. } => LoginFailure::Upstream,
        _ => LoginFailure::NotAdded,
    };
    tracing::warn!(%user, %error, reason = failure.reason(), "login: not a member, no token");
    failure
}

fn avatar_url(user: &CurrentUser) -> Option<String> {
    user.avatar
        .as_deref()
        .filter(|hash| hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|hash| format!("https://cdn.discordapp.com/avatars/{}/{hash}.png", user.id))
}

/// `GET /auth/callback`.
pub(crate) async fn callback(
    State(state): State<LoginState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, HubError> {
    let (Some(login), Some(issuer)) = (&state.login, &state.issuer) else {
        return Err(LoginFailure::NotConfigured.into());
    };
    let flow = match login_cookie(&headers) {
        Some(id) => state.flows.take(&id).await,
        None => None,
    };
    if let Some(error) = query.error.as_deref() {
        tracing::info!(error, "login: Discord returned an error");
        return Err(if error == "access_denied" {
            LoginFailure::Denied
        } else {
            LoginFailure::AuthorizeFailed
        }
        .into());
    }
    let flow = flow.ok_or(LoginFailure::BadState)?;
    let given = query.state.as_deref().unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), flow.state.as_bytes()) {
        return Err(LoginFailure::BadState.into());
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(LoginFailure::MissingCode)?;
    let grant = login
        .oauth
        .exchange_code(code, &flow.verifier)
        .await
        .map_err(|e| discord_failure("exchange_code", &e))?;
    let user = login
        .oauth
        .current_user(&grant.access_token)
        .await
        .map_err(|e| discord_failure("current_user", &e))?;
    // Only a member of the guild gets a token (docs/spec.md §7). Without a REST
    // client (tests that build a hub without Discord) there is nobody to ask.
    if let Some(rest) = &login.rest {
        match rest
            .add_guild_member(
                state.settings.primary_guild_id,
                user.id,
                &grant.access_token,
            )
            .await
        {
            Ok(added) => tracing::info!(user = %user.id, added, "login: guild membership"),
            Err(error) => return Err(membership_failure(user.id, &error).into()),
        }
    }
    let name = user
        .global_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| user.username.clone());
    let avatar_url = avatar_url(&user);
    state.profiles.remember(
        user.id,
        MemberProfile {
            name: name.clone(),
            avatar_url: avatar_url.clone(),
        },
    );
    let token = issuer
        .issue(&TokenSubject {
            user_id: user.id.to_string(),
            name,
            avatar_url,
        })
        .map_err(|e| {
            tracing::error!(error = %e, "login: token not signed");
            LoginFailure::Internal
        })?;
    tracing::info!(user = %user.id, "login: signed in");
    let mut response = (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("/#token={token}")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("coven_login=; HttpOnly; SameSite=Lax; Path=/auth; Max-Age=0"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_and_compare() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; coven_login=xyz; b=2"),
        );
        assert_eq!(login_cookie(&headers).as_deref(), Some("xyz"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn flows_are_single_use() {
        let settings = |ttl| LoginSettings {
            flow_ttl: ttl,
            ..LoginSettings::new(coven_discord::OAuthSettings {
                api_url: "http://127.0.0.1:1".parse().unwrap(),
                client_id: Snowflake::new(1).unwrap(),
                client_secret: coven_contract::Secret::new("s"),
                redirect_uri: "http://127.0.0.1:2/auth/callback".parse().unwrap(),
            })
        };
        let flows = Flows::new(Some(&settings(Duration::from_secs(60))), None);
        let id = flows.start("s".into(), PkceVerifier::generate()).await;
        assert_eq!(id.len(), FLOW_ID_LEN);
        assert!(flows.take(&id).await.is_some());
        assert!(flows.take(&id).await.is_none());
        let expired = Flows::new(Some(&settings(Duration::ZERO)), None);
        let id = expired.start("s".into(), PkceVerifier::generate()).await;
        assert!(expired.take(&id).await.is_none());
        assert!(flows.take("not-an-id").await.is_none());
        let capped = Flows::new(
            Some(&LoginSettings {
                max_flows: 2,
                ..settings(Duration::from_secs(60))
            }),
            None,
        );
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(capped.start("s".into(), PkceVerifier::generate()).await);
        }
        assert_eq!(capped.local.lock().unwrap().len(), 2);
        assert!(
            capped.take(&ids[0]).await.is_none(),
            "the oldest went first"
        );
        assert!(capped.take(&ids[4]).await.is_some());
    }
}
