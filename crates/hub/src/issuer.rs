//! The hub's own JWT issuer (issue 7), used when no external `JWT_PUBLIC_JWK_URL`
//! is configured.
//!
//! Ed25519 keys are generated on first start and kept in `<state_dir>/jwt-keys.json`
//! (mode 0600), newest last, each with a random `kid`. Tokens are signed with the
//! newest key (`EdDSA`); every kept key stays in `/.well-known/jwks.json` and in the
//! verifier, so [`HubIssuer::rotate`] logs nobody out: tokens signed with the
//! previous key stay valid until they expire.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::jwt::{KeySource, VerifyingKey};
use crate::settings::HubSettings;

/// The key file's name inside the state directory.
pub const KEY_FILE_NAME: &str = "jwt-keys.json";
/// How many keys are kept (the signing key and the ones before it).
const KEPT_KEYS: usize = 3;
/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// One key as stored in the file.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: String,
    /// The Ed25519 seed, base64url.
    d: String,
    /// Unix seconds.
    created: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// A loaded key.
struct IssuerKey {
    kid: String,
    seed: [u8; 32],
    created: u64,
    encoding: EncodingKey,
    jwk: Value,
    verifying: Arc<VerifyingKey>,
}

impl IssuerKey {
    fn from_seed(kid: String, seed: [u8; 32], created: u64) -> io::Result<Self> {
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public),
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        });
        let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(io::Error::other)?;
        let verifying = VerifyingKey::from_jwk(&parsed)
            .ok_or_else(|| io::Error::other("generated key is not a usable JWK"))?;
        Ok(Self {
            kid,
            seed,
            created,
            encoding: EncodingKey::from_ed_der(&der),
            jwk,
            verifying: Arc::new(verifying),
        })
    }

    fn generate() -> io::Result<Self> {
        let seed: [u8; 32] = rand::random();
        let kid = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>());
        Self::from_seed(kid, seed, unix_now())
    }

    fn stored(&self) -> StoredKey {
        StoredKey {
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            d: URL_SAFE_NO_PAD.encode(self.seed),
            created: self.created,
        }
    }
}

/// Who a token is for: the Discord user and what the page shows of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    /// The Discord user id (`sub`).
    pub user_id: String,
    /// The display name (`name`).
    pub name: String,
    /// The avatar URL (`avatar`), if the user has one.
    pub avatar_url: Option<String>,
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    name: &'a str,
    avatar: Option<&'a str>,
}

/// The hub's own issuer: signs tokens, serves its JWKS, verifies its tokens.
pub struct HubIssuer {
    path: Option<PathBuf>,
    issuer: String,
    audience: String,
    ttl: Duration,
    /// Oldest first; the last one signs.
    keys: RwLock<Vec<IssuerKey>>,
    rotating: Mutex<()>,
}

impl std::fmt::Debug for HubIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubIssuer")
            .field("path", &self.path)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl HubIssuer {
    /// The issuer for `settings`: `jwt_issuer`, `jwt_audience`, `jwt_ttl`, and its
    /// keys in `<state_dir>/jwt-keys.json` (in memory only without a state dir).
    pub fn open(settings: &HubSettings) -> io::Result<Self> {
        Self::with_key_file(
            settings.state_dir.as_deref().map(|d| d.join(KEY_FILE_NAME)),
            settings.jwt_issuer.clone(),
            settings.jwt_audience.clone(),
            settings.jwt_ttl,
        )
    }

    /// An issuer keeping its keys in `path` (created with a new key when missing;
    /// `None`: one key in memory).
    pub fn with_key_file(
        path: Option<PathBuf>,
        issuer: String,
        audience: String,
        ttl: Duration,
    ) -> io::Result<Self> {
        let keys = match &path {
            Some(path) => load(path)?,
            None => Vec::new(),
        };
        let this = Self {
            path,
            issuer,
            audience,
            ttl,
            keys: RwLock::new(keys),
            rotating: Mutex::new(()),
        };
        if this.read().is_empty() {
            this.rotate()?;
        }
        Ok(this)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<IssuerKey>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> String {
        self.read()
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    /// Every kept `kid`, oldest first.
    pub fn kids(&self) -> Vec<String> {
        self.read().iter().map(|k| k.kid.clone()).collect()
    }

    /// Generates a new signing key, keeps the previous ones (up to three keys in
    /// all) and saves the file; returns the new `kid`. Tokens signed with the kept
    /// previous keys stay valid.
    pub fn rotate(&self) -> io::Result<String> {
        let _rotating = self.rotating.lock().unwrap_or_else(PoisonError::into_inner);
        let key = IssuerKey::generate()?;
        let kid = key.kid.clone();
        let stored: Vec<StoredKey> = {
            let current = self.read();
            let skip = (current.len() + 1).saturating_sub(KEPT_KEYS);
            current
                .iter()
                .skip(skip)
                .map(IssuerKey::stored)
                .chain(std::iter::once(key.stored()))
                .collect()
        };
        if let Some(path) = &self.path {
            save(path, &KeyFile { keys: stored })?;
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.push(key);
        let excess = keys.len().saturating_sub(KEPT_KEYS);
        keys.drain(..excess);
        tracing::info!(kid, "JWT signing key rotated");
        Ok(kid)
    }

    /// The public JWKS, newest key first.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.read().iter().rev().map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys })
    }

    /// Signs a token for `subject`, valid from now for the configured lifetime.
    pub fn issue(&self, subject: &TokenSubject) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_at(subject, unix_now())
    }

    /// Signs a token for `subject` as if issued at `issued_at` (Unix seconds).
    pub fn issue_at(
        &self,
        subject: &TokenSubject,
        issued_at: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let keys = self.read();
        let key = keys
            .last()
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidEddsaKey)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let claims = IssuedClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &subject.user_id,
            iat: issued_at,
            nbf: issued_at,
            exp: issued_at + self.ttl.as_secs().max(1),
            name: &subject.name,
            avatar: subject.avatar_url.as_deref(),
        };
        jsonwebtoken::encode(&header, &claims, &key.encoding)
    }
}

impl KeySource for HubIssuer {
    fn key(&self, kid: &str) -> BoxFuture<'_, Option<Arc<VerifyingKey>>> {
        let found = self
            .read()
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.verifying.clone());
        Box::pin(async move { found })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn load(path: &Path) -> io::Result<Vec<IssuerKey>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|_| bad("not a key file"))?;
    file.keys
        .into_iter()
        .map(|stored| {
            if stored.alg != "EdDSA" {
                return Err(bad("unsupported key algorithm"));
            }
            let seed: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&stored.d)
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| bad("malformed key"))?;
            IssuerKey::from_seed(stored.kid, seed, stored.created)
        })
        .collect()
}

/// Writes the file atomically (temporary file, then rename), readable by the owner only.
fn save(path: &Path, file: &KeyFile) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    {
        use std::io::Write;
        let mut out = options.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        out.write_all(&body)?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_tokens_its_own_key_verifies() {
        let issuer =
            HubIssuer::with_key_file(None, "iss".into(), "aud".into(), Duration::from_secs(60))
                .unwrap();
        let token = issuer
            .issue(&TokenSubject {
                user_id: "42".into(),
                name: "Alice".into(),
                avatar_url: None,
            })
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(issuer.kid().as_str()));
        let keys = issuer.read();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["aud"]);
        let data =
            jsonwebtoken::decode::<Value>(&token, &keys[0].verifying.key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "42");
        assert_eq!(data.claims["name"], "Alice");
        assert_eq!(data.claims["avatar"], Value::Null);
    }
}
