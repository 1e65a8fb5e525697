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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
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

use crate::error::HubError;
use crate::issuer::TokenSubject;
use crate::lobby::page_headers;
use crate::redis_link::RedisLink;
use crate::rooms::MemberProfile;
use crate::state::LoginState;

/// The cookie binding a login in progress to the browser.
const COOKIE: &str = "coven_login";
/// The scopes a login asks for.
const SCOPES: &[&str] = &["identify", "guilds.join"];
/// Logins in progress kept at most (the oldest are dropped beyond).
const MAX_FLOWS: usize = 10_000;
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
}

impl LoginFailure {
    /// The HTTP status of the page.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream => StatusCode::BAD_GATEWAY,
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

/// Logins in progress by cookie id: in this hub's memory, and with `REDIS_URL`
/// in Redis (`coven:{<guild>}:hub:login:<id>`, expiring with the flow), so that the
/// callback may reach another hub than the login did — a load balancer in front of
/// several hubs needs no sticky sessions. While Redis is down a flow stays in this
/// hub's memory: the login still completes when the callback comes back here.
pub(crate) struct Flows {
    ttl: Duration,
    local: Mutex<HashMap<String, Flow>>,
    shared: Option<(Arc<RedisLink>, Snowflake)>,
}

impl Flows {
    pub(crate) fn new(ttl: Duration, shared: Option<(Arc<RedisLink>, Snowflake)>) -> Self {
        Self {
            ttl,
            local: Mutex::new(HashMap::new()),
            shared,
        }
    }

    /// Stores a flow; returns the cookie id.
    async fn start(&self, state: String, verifier: PkceVerifier) -> String {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        if let Some((link, guild)) = &self.shared {
            // `state` is base64url: a space cannot occur in it.
            let value = format!("{state} {}", verifier.expose());
            let result: redis::RedisResult<()> = redis::cmd("SET")
                .arg(RedisLink::key(*guild, &format!("login:{id}")))
                .arg(value)
                .arg("PX")
                .arg(
                    u64::try_from(self.ttl.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                )
                .query_async(&mut link.conn())
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
        if flows.len() >= MAX_FLOWS
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
        let result: redis::RedisResult<Option<String>> = redis::cmd("GETDEL")
            .arg(RedisLink::key(*guild, &format!("login:{id}")))
            .query_async(&mut link.conn())
            .await;
        let value = link.record("login", result).ok()??;
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
pub(crate) async fn login(State(state): State<LoginState>) -> Result<Response, HubError> {
    let (Some(login), Some(_)) = (&state.login, &state.issuer) else {
        return Err(LoginFailure::NotConfigured.into());
    };
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
            Err(
                error @ (DiscordError::Server { .. }
                | DiscordError::Transport(_)
                | DiscordError::RateLimited { .. }),
            ) => return Err(discord_failure("add_guild_member", &error).into()),
            // Banned, too many guilds, …: the lobby still works for them.
            Err(error) => {
                tracing::warn!(user = %user.id, %error, "login: not added to the guild");
            }
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
        let flows = Flows::new(Duration::from_secs(60), None);
        let id = flows.start("s".into(), PkceVerifier::generate()).await;
        assert_eq!(id.len(), FLOW_ID_LEN);
        assert!(flows.take(&id).await.is_some());
        assert!(flows.take(&id).await.is_none());
        let expired = Flows::new(Duration::ZERO, None);
        let id = expired.start("s".into(), PkceVerifier::generate()).await;
        assert!(expired.take(&id).await.is_none());
        assert!(flows.take("not-an-id").await.is_none());
    }
}
