//! Verification of the app's JWTs (docs/spec.md §7): who a browser or API caller is.
//!
//! The algorithm is decided by the KEY, never by the token: each key a
//! [`KeySource`] yields carries the one algorithm it may verify (RSA → RS256,
//! P-256 → ES256, Ed25519 → `EdDSA`; nothing symmetric), and a token whose header
//! names another algorithm is refused. So `alg: none` and "HS256 keyed with the
//! RSA public key" cannot work. `iss`, `aud` and `exp` are required, with a 60 s
//! leeway. Keys are looked up by `kid` across sources in order: the external
//! issuer's JWKS today ([`JwksKeySource`]), the hub's own issuer later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use url::Url;

/// Longest token accepted; real ones are well under 2 KiB.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A public key and the single algorithm it verifies.
pub struct VerifyingKey {
    /// The key material.
    pub key: DecodingKey,
    /// The one algorithm this key may verify, decided by the key's type.
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The verifying key for a JWK, or `None` when the key is not usable for an
    /// allowed asymmetric signature algorithm.
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let (algorithm, declared) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
            }
            _ => return None,
        };
        if jwk.common.key_algorithm.is_some_and(|alg| alg != declared) {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self { key, algorithm })
    }
}

/// Where verification keys come from, looked up by `kid`.
pub trait KeySource: Send + Sync + 'static {
    /// The key named `kid`, if this source has (or can fetch) it.
    fn key(&self, kid: &str) -> BoxFuture<'_, Option<Arc<VerifyingKey>>>;

    /// Loads keys ahead of the first token; answers whether the source can verify
    /// tokens now. The hub reports not ready (`/health` 503) until every source can.
    fn warm_up(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// Keys from a JWKS URL: cached, refetched on an unknown `kid` at most once per
/// `refresh_interval`, so a flood of made-up `kid`s cannot hammer the issuer.
#[derive(Debug)]
pub struct JwksKeySource {
    url: Url,
    client: reqwest::Client,
    refresh_interval: Duration,
    keys: RwLock<HashMap<String, Arc<VerifyingKey>>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    loaded: AtomicBool,
}

impl JwksKeySource {
    /// A source reading `url`, refreshing at most once per `refresh_interval`.
    pub fn new(url: Url, refresh_interval: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            url,
            client,
            refresh_interval,
            keys: RwLock::new(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            loaded: AtomicBool::new(false),
        }
    }

    fn cached(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), url = %self.url, "JWKS refreshed");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
                self.loaded.store(true, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, url = %self.url, "JWKS fetch failed"),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<VerifyingKey>>, String> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?;
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err("JWKS too large".into());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("JWKS too large".into());
        }
        let set: RawSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        // One unusable key must not hide the others.
        Ok(set
            .keys
            .into_iter()
            .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                VerifyingKey::from_jwk(&jwk).map(|key| (kid, Arc::new(key)))
            })
            .collect())
    }
}

impl KeySource for JwksKeySource {
    fn key(&self, kid: &str) -> BoxFuture<'_, Option<Arc<VerifyingKey>>> {
        let kid = kid.to_owned();
        Box::pin(async move {
            if let Some(key) = self.cached(&kid) {
                return Some(key);
            }
            self.refresh().await;
            self.cached(&kid)
        })
    }

    fn warm_up(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if !self.loaded.load(Ordering::Relaxed) {
                self.refresh().await;
            }
            self.loaded.load(Ordering::Relaxed)
        })
    }
}

/// Why a token was refused; `reason()` labels the auth-failure metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a parseable JWT, or over the size limit.
    #[error("malformed token")]
    Malformed,
    /// The header has no `kid`.
    #[error("token has no key id")]
    MissingKid,
    /// No source knows the `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The header's `alg` is not the key's algorithm.
    #[error("algorithm not allowed")]
    Algorithm,
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss`, `aud`, `exp` or `sub` missing, mistyped or wrong.
    #[error("invalid token claims")]
    Claims,
}

impl JwtError {
    /// A short label for metrics and logs.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::MissingKid => "missing_kid",
            Self::UnknownKey => "unknown_kid",
            Self::Algorithm => "algorithm",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Claims => "claims",
        }
    }
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The `sub` claim (the Discord user id for the hub's own tokens).
    pub subject: String,
    /// The `exp` claim (Unix seconds): a socket is closed when it passes.
    pub expires_at: u64,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Verifies tokens against an ordered list of key sources.
pub(crate) struct JwtVerifier {
    sources: Vec<Arc<dyn KeySource>>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl JwtVerifier {
    pub(crate) fn new(issuer: String, audience: String, leeway: Duration) -> Self {
        Self {
            sources: Vec::new(),
            issuer,
            audience,
            leeway,
        }
    }

    pub(crate) fn add_source(&mut self, source: Arc<dyn KeySource>) {
        self.sources.push(source);
    }

    /// Warms every source; whether all of them can verify tokens now.
    pub(crate) async fn warm_up(&self) -> bool {
        let mut ready = true;
        for source in &self.sources {
            ready &= source.warm_up().await;
        }
        ready
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<VerifiedUser, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        let kid = header.kid.ok_or(JwtError::MissingKid)?;
        let mut key = None;
        for source in &self.sources {
            if let Some(found) = source.key(&kid).await {
                key = Some(found);
                break;
            }
        }
        let key = key.ok_or(JwtError::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(JwtError::Algorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => JwtError::Expired,
                    ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                    ErrorKind::InvalidSignature => JwtError::Signature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                        JwtError::Algorithm
                    }
                    ErrorKind::InvalidIssuer
                    | ErrorKind::InvalidAudience
                    | ErrorKind::InvalidSubject
                    | ErrorKind::MissingRequiredClaim(_)
                    | ErrorKind::InvalidClaimFormat(_) => JwtError::Claims,
                    _ => JwtError::Malformed,
                }
            })?;
        if data.claims.sub.is_empty() {
            return Err(JwtError::Claims);
        }
        Ok(VerifiedUser {
            subject: data.claims.sub,
            expires_at: data.claims.exp,
        })
    }
}
