//! OAuth2: `/oauth2/authorize` (auto-consent, PKCE S256), `/api[/v10]/oauth2/token`
//! (`authorization_code` and `refresh_token` grants) and `/api[/v10]/oauth2/token/revoke`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::gateway_random_hex;
use crate::state::Shared;

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    user_id: u64,
    challenge: Option<String>,
    expires: Instant,
    used: bool,
}

struct Token {
    user_id: u64,
    scopes: Vec<String>,
    expires: Instant,
    refresh: String,
}

/// Codes, tokens and injected consent failures.
#[derive(Default)]
pub(crate) struct OAuthState {
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, Token>,
    refresh: HashMap<String, String>,
    /// Deny the next N authorizations with `error=access_denied`.
    pub deny_next: u32,
    /// Overrides the configured consenting user.
    pub consenting_user: Option<u64>,
}

impl OAuthState {
    /// The user and scopes of a live access token.
    pub fn access(&self, token: &str) -> Option<(u64, Vec<String>)> {
        self.access
            .get(token)
            .filter(|t| t.expires > Instant::now())
            .map(|t| (t.user_id, t.scopes.clone()))
    }

    fn issue(&mut self, user_id: u64, scopes: Vec<String>, ttl: Duration) -> serde_json::Value {
        let access = format!("sim_at_{}", gateway_random_hex(30));
        let refresh = format!("sim_rt_{}", gateway_random_hex(30));
        let scope = scopes.join(" ");
        self.refresh.insert(refresh.clone(), access.clone());
        self.access.insert(
            access.clone(),
            Token {
                user_id,
                scopes,
                expires: Instant::now() + ttl,
                refresh: refresh.clone(),
            },
        );
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "refresh_token": refresh,
            "scope": scope,
        })
    }

    fn revoke_pair(&mut self, access: &str) {
        if let Some(t) = self.access.remove(access) {
            self.refresh.remove(&t.refresh);
        }
    }
}

/// The OAuth2 routes.
pub(crate) fn router() -> Router<Arc<Shared>> {
    let mut r = Router::new().route("/oauth2/authorize", get(authorize));
    for prefix in ["/api", "/api/v9", "/api/v10"] {
        r = r
            .route(&format!("{prefix}/oauth2/token"), post(token))
            .route(&format!("{prefix}/oauth2/token/revoke"), post(revoke));
    }
    r
}

fn client_id(shared: &Shared) -> String {
    shared
        .config
        .oauth
        .client_id
        .clone()
        .unwrap_or_else(|| shared.core().world.bot_user_id().to_string())
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `GET /oauth2/authorize`: consents as the configured user and redirects with `code` and `state`.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str);
    if get("client_id") != Some(client_id(&shared).as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"client_id": ["Unknown application"]})),
        )
            .into_response();
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"redirect_uri": ["This field is required"]})),
        )
            .into_response();
    };
    let allowed = &shared.config.oauth.redirect_uris;
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"redirect_uri": ["Not a well formed URL."]})),
        )
            .into_response();
    };
    if !allowed.is_empty() && !allowed.iter().any(|a| a == redirect_uri) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"redirect_uri": ["Invalid OAuth2 redirect_uri"]})),
        )
            .into_response();
    }
    let state = get("state").map(str::to_owned);
    let mut finish = |pairs: &[(&str, &str)]| {
        {
            let mut qp = target.query_pairs_mut();
            for (k, v) in pairs {
                qp.append_pair(k, v);
            }
            if let Some(s) = &state {
                qp.append_pair("state", s);
            }
        }
        redirect(target.as_str())
    };
    if get("response_type") != Some("code") {
        return finish(&[
            ("error", "unsupported_response_type"),
            ("error_description", "response_type must be code"),
        ]);
    }
    let challenge = get("code_challenge").map(str::to_owned);
    if challenge.is_some() && get("code_challenge_method") != Some("S256") {
        return finish(&[
            ("error", "invalid_request"),
            ("error_description", "code_challenge_method must be S256"),
        ]);
    }
    let mut oauth = shared.oauth();
    if oauth.deny_next > 0 {
        oauth.deny_next -= 1;
        drop(oauth);
        return finish(&[
            ("error", "access_denied"),
            (
                "error_description",
                "The resource owner or authorization server denied the request",
            ),
        ]);
    }
    let user_id = oauth
        .consenting_user
        .or(shared.config.oauth.consenting_user)
        .unwrap_or_else(|| shared.core().world.seed.member_user_ids[0]);
    let scopes: Vec<String> = get("scope")
        .unwrap_or("identify")
        .split([' ', '+'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let code = gateway_random_hex(30);
    oauth.codes.insert(
        code.clone(),
        CodeGrant {
            client_id: client_id(&shared),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            user_id,
            challenge,
            expires: Instant::now() + shared.config.oauth.code_ttl,
            used: false,
        },
    );
    drop(oauth);
    finish(&[("code", &code)])
}

/// Client credentials from the form or HTTP Basic auth, checked against the config.
fn client_ok(shared: &Shared, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let (mut id, mut secret) = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    if let Some((i, s)) = basic
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())))
    {
        id = Some(i);
        secret = Some(s);
    }
    id.as_deref() == Some(client_id(shared).as_str())
        && secret.as_deref() == Some(shared.config.oauth.client_secret.as_str())
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The S256 challenge of a verifier: `BASE64URL(SHA256(verifier))`.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `POST /api/v10/oauth2/token`.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form(&body);
    if !client_ok(&shared, &headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client");
    }
    let ttl = shared.config.oauth.access_token_ttl;
    let mut oauth = shared.oauth();
    let response = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let bad = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
            let Some(code) = form.get("code") else {
                return bad("Invalid \"code\" in request.");
            };
            let Some(grant) = oauth.codes.get_mut(code) else {
                return bad("Invalid \"code\" in request.");
            };
            if grant.used
                || grant.expires <= Instant::now()
                || grant.client_id != client_id(&shared)
            {
                return bad("Invalid \"code\" in request.");
            }
            if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                return bad("Invalid \"redirect_uri\" in request.");
            }
            if let Some(challenge) = &grant.challenge {
                let ok = form.get("code_verifier").is_some_and(|v| {
                    (43..=128).contains(&v.len()) && &s256_challenge(v) == challenge
                });
                if !ok {
                    grant.used = true;
                    return bad("Invalid \"code_verifier\" in request.");
                }
            }
            grant.used = true;
            let (user_id, scopes) = (grant.user_id, grant.scopes.clone());
            oauth.issue(user_id, scopes, ttl)
        }
        Some("refresh_token") => {
            let Some(access) = form
                .get("refresh_token")
                .and_then(|r| oauth.refresh.get(r))
                .cloned()
            else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid \"refresh_token\" in request.",
                );
            };
            let Some(old) = oauth.access.get(&access) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid \"refresh_token\" in request.",
                );
            };
            let (user_id, scopes) = (old.user_id, old.scopes.clone());
            oauth.revoke_pair(&access);
            oauth.issue(user_id, scopes, ttl)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            );
        }
    };
    drop(oauth);
    shared.count(|c| c.oauth_tokens_issued += 1);
    Json(response).into_response()
}

/// `POST /api/v10/oauth2/token/revoke`: revokes the access/refresh pair of either token.
async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form(&body);
    if !client_ok(&shared, &headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client");
    }
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing token");
    };
    let mut oauth = shared.oauth();
    let access = oauth
        .refresh
        .get(token)
        .cloned()
        .unwrap_or_else(|| token.clone());
    oauth.revoke_pair(&access);
    Json(json!({})).into_response()
}
