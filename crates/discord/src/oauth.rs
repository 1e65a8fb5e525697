//! `DiscordOAuthClient`: Discord's OAuth2 authorization-code flow with PKCE S256 and
//! `state` (docs/spec.md §9) — the authorize URL, code exchange, refresh, revoke and the current
//! user — as a few form-encoded reqwest calls (see docs/discord-clients.md for why no
//! OAuth2 crate).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coven_contract::{Secret, Snowflake};
use rand::RngCore;
use reqwest::{RequestBuilder, Response};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::error::DiscordError;
use crate::origin;
use crate::pkce::PkceVerifier;
use crate::retry::RetryPolicy;

/// Largest response body read from the OAuth2 endpoints.
const BODY_MAX_BYTES: usize = 256 * 1024;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the OAuth2 client needs; built by the caller from its configuration.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The origin of Discord's OAuth2 pages and API (`DISCORD_API_URL`).
    pub api_url: Url,
    /// The application's client id (`DISCORD_CLIENT_ID`).
    pub client_id: Snowflake,
    /// The application's client secret (`DISCORD_CLIENT_SECRET`).
    pub client_secret: Secret,
    /// Where Discord sends the browser back (`OAUTH_REDIRECT_URI`).
    pub redirect_uri: Url,
}

/// A login to start: send the browser to `url`, and keep `state` and `verifier` bound
/// to that browser until the callback.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The authorize URL to redirect the browser to.
    pub url: Url,
    /// The `state` value (32 random bytes, base64url); the callback must carry it back.
    pub state: String,
    /// The PKCE verifier whose challenge is in `url`; needed for the code exchange.
    pub verifier: PkceVerifier,
}

/// Tokens Discord granted. `Debug` never shows the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The access token, for `Authorization: Bearer`.
    pub access_token: Secret,
    /// The refresh token, when Discord issued one.
    pub refresh_token: Option<Secret>,
    /// The token type, `Bearer`.
    pub token_type: String,
    /// How long the access token is valid.
    pub expires_in: Duration,
    /// The scopes granted.
    pub scopes: Vec<String>,
}

/// The user an access token belongs to (`GET /users/@me`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CurrentUser {
    /// The user's id.
    pub id: Snowflake,
    /// The unique username.
    pub username: String,
    /// The display name.
    #[serde(default)]
    pub global_name: Option<String>,
    /// The avatar hash.
    #[serde(default)]
    pub avatar: Option<String>,
    /// The email address (only with the `email` scope).
    #[serde(default)]
    pub email: Option<String>,
}

/// Discord's OAuth2 client for player login. Cheap to clone.
#[derive(Clone)]
pub struct DiscordOAuthClient {
    http: reqwest::Client,
    settings: OAuthSettings,
    retry: RetryPolicy,
}

impl fmt::Debug for DiscordOAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordOAuthClient")
            .field("api_url", &self.settings.api_url.as_str())
            .field("client_id", &self.settings.client_id)
            .field("redirect_uri", &self.settings.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

impl DiscordOAuthClient {
    /// Builds a client. Fails with [`DiscordError::Validation`] when the API URL is not a
    /// bare `http(s)` origin, the redirect URI is not `http(s)`, or the secret is empty.
    pub fn new(settings: OAuthSettings) -> Result<Self, DiscordError> {
        origin::check(&settings.api_url)?;
        if !matches!(settings.redirect_uri.scheme(), "http" | "https") {
            return Err(DiscordError::validation(
                "redirectUri",
                "must be an http or https URL",
            ));
        }
        if settings.client_secret.expose().trim().is_empty() {
            return Err(DiscordError::validation(
                "clientSecret",
                "must not be empty",
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT / 2)
            // Credentials travel in these requests: never follow a redirect elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DiscordError::Transport(e.without_url().to_string()))?;
        Ok(Self {
            http,
            settings,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces how 5xx and network errors of the idempotent calls (current user, revoke)
    /// are retried. Code exchange and refresh are never retried: their grants are single-use.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Starts a login: a fresh `state` and PKCE verifier, and the authorize URL for `scopes`
    /// (e.g. `["identify", "guilds.join"]`).
    pub fn authorize(&self, scopes: &[&str]) -> AuthorizationRequest {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let state = URL_SAFE_NO_PAD.encode(bytes);
        let verifier = PkceVerifier::generate();
        let url = self.authorize_url(scopes, &state, &verifier);
        AuthorizationRequest {
            url,
            state,
            verifier,
        }
    }

    /// The authorize URL `{api_url}/oauth2/authorize?response_type=code&client_id=…
    /// &redirect_uri=…&scope=…&state=…&code_challenge=…&code_challenge_method=S256`.
    pub fn authorize_url(&self, scopes: &[&str], state: &str, verifier: &PkceVerifier) -> Url {
        let mut url = origin::join(&self.settings.api_url, "/oauth2/authorize");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id.to_string())
            .append_pair("redirect_uri", self.settings.redirect_uri.as_str())
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", state)
            .append_pair("code_challenge", &verifier.challenge())
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges an authorization code for tokens: `POST /api/v10/oauth2/token` with
    /// `grant_type=authorization_code`, the code, the redirect URI and the `code_verifier`.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &PkceVerifier,
    ) -> Result<TokenGrant, DiscordError> {
        if code.is_empty() || code.len() > 512 {
            return Err(DiscordError::validation(
                "code",
                "must be 1 to 512 characters",
            ));
        }
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_uri.as_str()),
            ("code_verifier", verifier.expose()),
        ];
        self.token_request(&form).await
    }

    /// Exchanges a refresh token for new tokens: `grant_type=refresh_token`.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, DiscordError> {
        if refresh_token.expose().is_empty() {
            return Err(DiscordError::validation(
                "refreshToken",
                "must not be empty",
            ));
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        self.token_request(&form).await
    }

    /// Revokes an access or refresh token: `POST /api/v10/oauth2/token/revoke`.
    pub async fn revoke(&self, token: &Secret) -> Result<(), DiscordError> {
        if token.expose().is_empty() {
            return Err(DiscordError::validation("token", "must not be empty"));
        }
        let url = origin::join(&self.settings.api_url, "/api/v10/oauth2/token/revoke");
        self.retry
            .run("oauth_revoke", || async {
                let request = self
                    .client_auth(self.http.post(url.clone()))
                    .form(&[("token", token.expose())]);
                let response = send(request).await?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(error_of(response).await)
                }
            })
            .await
    }

    /// The user an access token belongs to: `GET /api/v10/users/@me` with `Bearer`.
    pub async fn current_user(&self, access_token: &Secret) -> Result<CurrentUser, DiscordError> {
        if access_token.expose().is_empty() {
            return Err(DiscordError::validation("accessToken", "must not be empty"));
        }
        let url = origin::join(&self.settings.api_url, "/api/v10/users/@me");
        self.retry
            .run("oauth_current_user", || async {
                let response = send(
                    self.http
                        .get(url.clone())
                        .bearer_auth(access_token.expose()),
                )
                .await?;
                if !response.status().is_success() {
                    return Err(error_of(response).await);
                }
                let body = read_body(response).await?;
                serde_json::from_slice(&body)
                    .map_err(|e| DiscordError::Decode(format!("current user: {e}")))
            })
            .await
    }

    /// Authenticates the application with HTTP Basic (`client_secret_basic`).
    fn client_auth(&self, request: RequestBuilder) -> RequestBuilder {
        request.basic_auth(
            self.settings.client_id.to_string(),
            Some(self.settings.client_secret.expose()),
        )
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenGrant, DiscordError> {
        let url = origin::join(&self.settings.api_url, "/api/v10/oauth2/token");
        let response = send(self.client_auth(self.http.post(url)).form(form)).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        let body = read_body(response).await?;
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| DiscordError::Decode(format!("token response: {}", e.classify_text())))?;
        Ok(TokenGrant {
            access_token: Secret::new(token.access_token),
            refresh_token: token.refresh_token.map(Secret::new),
            token_type: token.token_type.unwrap_or_else(|| "Bearer".to_owned()),
            expires_in: Duration::from_secs(token.expires_in.unwrap_or(0)),
            scopes: token
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// The category of a JSON error, without the input text (a token response must never
/// be echoed into an error).
trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "missing or mistyped fields",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

async fn send(request: RequestBuilder) -> Result<Response, DiscordError> {
    request
        .send()
        .await
        .map_err(|e| DiscordError::Transport(e.without_url().to_string()))
}

async fn read_body(mut response: Response) -> Result<Vec<u8>, DiscordError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| DiscordError::Transport(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > BODY_MAX_BYTES {
            return Err(DiscordError::Decode("response body too large".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Maps an OAuth2 error response (`{"error", "error_description"}`) or a Discord API
/// error response (`{"code", "message"}`) onto [`DiscordError`].
async fn error_of(response: Response) -> DiscordError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let body = match read_body(response).await {
        Ok(body) => body,
        Err(e) if status >= 500 => {
            tracing::debug!(error = %e, "unreadable 5xx body");
            Vec::new()
        }
        Err(e) => return e,
    };
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let oauth_error = json
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str);
    match (status, oauth_error) {
        (429 | 500..=599, _) | (_, None) => DiscordError::from_response(status, &body, retry_after),
        (_, Some(error)) => {
            let description = json
                .as_ref()
                .and_then(|v| v.get("error_description"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if error == "invalid_grant" {
                DiscordError::InvalidGrant { description }
            } else {
                DiscordError::OAuth {
                    status,
                    error: error.to_owned(),
                    description,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> DiscordOAuthClient {
        DiscordOAuthClient::new(OAuthSettings {
            api_url: Url::parse("http://127.0.0.1:4000").unwrap(),
            client_id: Snowflake::new(1_234_567_890).unwrap(),
            client_secret: Secret::new("oauth-client-secret-value"),
            redirect_uri: Url::parse("http://localhost:3000/auth/callback").unwrap(),
        })
        .unwrap()
    }

    #[test]
    fn authorize_url_has_every_parameter() {
        let client = client();
        let verifier = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        let url = client.authorize_url(&["identify", "guilds.join"], "st4te", &verifier);
        assert_eq!(url.origin().ascii_serialization(), "http://127.0.0.1:4000");
        assert_eq!(url.path(), "/oauth2/authorize");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let expected = [
            ("response_type", "code"),
            ("client_id", "1234567890"),
            ("redirect_uri", "http://localhost:3000/auth/callback"),
            ("scope", "identify guilds.join"),
            ("state", "st4te"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ];
        assert_eq!(
            pairs,
            expected.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
        assert!(
            url.as_str().contains("scope=identify+guilds.join")
                || url.as_str().contains("scope=identify%20guilds.join")
        );
    }

    #[test]
    fn authorize_draws_fresh_state_and_verifier() {
        let client = client();
        let a = client.authorize(&["identify"]);
        let b = client.authorize(&["identify"]);
        assert_ne!(a.state, b.state);
        assert_eq!(a.state.len(), 43);
        assert_ne!(a.verifier, b.verifier);
        let challenge = a
            .url
            .query_pairs()
            .find(|(k, _)| k == "code_challenge")
            .unwrap()
            .1
            .into_owned();
        assert_eq!(challenge, a.verifier.challenge());
    }

    #[test]
    fn debug_hides_secrets() {
        let client = client();
        let grant = TokenGrant {
            access_token: Secret::new("access-token-value"),
            refresh_token: Some(Secret::new("refresh-token-value")),
            token_type: "Bearer".into(),
            expires_in: Duration::from_secs(1),
            scopes: vec![],
        };
        let printed = format!("{client:?} {grant:?} {:?}", client.authorize(&["identify"]));
        for secret in [
            "oauth-client-secret-value",
            "access-token-value",
            "refresh-token-value",
        ] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
