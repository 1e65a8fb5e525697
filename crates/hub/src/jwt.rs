//! Verification of the app's JWTs (docs/spec.md §7): who a browser or API caller is.
//!
//! The algorithm is decided by the KEY, never by the token: each key a
//! [`KeySource`] yields carries the one algorithm it may verify (RSA → RS256,
//! P-256 → ES256, Ed25519 → `EdDSA`; nothing symmetric), and a token whose header
//! names another algorithm is refused. So `alg: none` and "HS256 keyed with the
//! RSA public key" cannot work. `iss`, `aud` and `exp` are required, with a 60 s
//! leeway. Keys are looked up by `kid` across sources in order: the external
//! issuer's JWKS ([`JwksKeySource`], fetched only over `https` or from loopback,
//! refreshed periodically, docs/security.md "Keys and JWKS"), then the hub's own
//! issuer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

mod jwks;

pub use jwks::{DEFAULT_JWKS_MAX_AGE, JwksKeySource, JwksUrlError, check_jwks_url};

/// Longest token accepted; real ones are well under 2 KiB.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

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
