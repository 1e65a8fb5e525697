//! The hub's own JWT issuer (issue 7), used when no external `JWT_PUBLIC_JWK_URL`
//! is configured.
//!
//! Ed25519 keys are generated on first start and kept in `<state_dir>/jwt-keys.json`
//! (mode 0600), newest last, each with a random `kid`. Tokens are signed with the
//! newest key (`EdDSA`); every kept key stays in `/.well-known/jwks.json` and in the
//! verifier, so [`HubIssuer::rotate`] logs nobody out: tokens signed with the
//! previous key stay valid until they expire. The hub rotates on its own when the
//! signing key is older than `HubSettings::jwt_key_max_age`
//! ([`HubIssuer::rotate_if_older_than`]).
//!
//! With Redis (several hubs), the key set lives in Redis (`coven:{g}:hub:jwt-keys`,
//! `shared_keys`): the first hub to reach Redis stores its keys there (`SET NX`),
//! every hub adopts that set, signs with its newest key and verifies all of them, so
//! a token issued by one hub verifies on every hub. A `kid` this hub does not know
//! makes it re-read the set (at most once a second), and it re-reads it every
//! [`SHARED_SYNC_INTERVAL`] anyway, so [`HubIssuer::rotate_shared`] on one hub reaches
//! the others. The set is sealed in Redis with a key derived from `HUB_SECRET`
//! (`sealed`), so a Redis read alone does not mint tokens; the key file then mirrors
//! the shared set, so a key retired there does not come back at a restart
//! (docs/security.md, "Keys and JWKS").

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use coven_contract::Secret;

use crate::jwt::{KeySource, VerifyingKey};
use crate::redis_link::RedisLink;
use crate::settings::HubSettings;
use shared_keys::{SharedKeys, SharedKeysError};

mod sealed;
mod shared_keys;

/// How often a hub re-reads the shared key set from Redis.
pub(crate) const SHARED_SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// An unknown `kid` re-reads the shared key set at most this often.
const SHARED_LOOKUP_INTERVAL: Duration = Duration::from_secs(1);

/// The key file's name inside the state directory.
pub const KEY_FILE_NAME: &str = "jwt-keys.json";
/// How many keys are kept (the signing key and the ones before it).
const KEPT_KEYS: usize = 3;
/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// One key as stored in the file (and, sealed, in Redis).
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: String,
    /// The Ed25519 seed, base64url.
    d: String,
    /// Unix seconds.
    created: u64,
    /// In the key file only: the key came from the shared set in Redis, so it is
    /// dropped once the shared set no longer has it (retired there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    shared: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// A loaded key.
struct IssuerKey {
    kid: String,
    seed: [u8; 32],
    created: u64,
    /// Taken from the shared set in Redis (see [`StoredKey::shared`]).
    shared: bool,
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
            shared: false,
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
            shared: self.shared,
        }
    }
}

/// `keys` as a set for Redis (without the file's `shared` marks).
fn for_redis(keys: impl IntoIterator<Item = StoredKey>) -> KeyFile {
    KeyFile {
        keys: keys
            .into_iter()
            .map(|key| StoredKey {
                shared: false,
                ..key
            })
            .collect(),
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
    /// `HUB_SECRET`: seals the key set in Redis (the first one; any one opens it).
    secrets: Vec<Secret>,
    shared: Option<SharedKeys>,
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
        let mut this = Self::with_key_file(
            settings.state_dir.as_deref().map(|d| d.join(KEY_FILE_NAME)),
            settings.jwt_issuer.clone(),
            settings.jwt_audience.clone(),
            settings.jwt_ttl,
        )?;
        this.secrets.clone_from(&settings.hub_secrets);
        Ok(this)
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
            secrets: Vec::new(),
            shared: None,
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

    /// Keeps the key set in Redis, shared with every hub on `link`
    /// (see the module docs); [`Self::sync_shared`] adopts it.
    pub(crate) fn share_through(
        mut self,
        link: Arc<RedisLink>,
        guild: coven_contract::Snowflake,
    ) -> Self {
        self.shared = Some(SharedKeys::new(link, guild, &self.secrets));
        self
    }

    /// Whether the key set is shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Reads the shared key set (storing this hub's keys first when Redis has none)
    /// and adopts it. `true` when this hub now signs with the shared set (always
    /// `true` without Redis).
    pub(crate) async fn sync_shared(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let mine = for_redis(self.read().iter().map(IssuerKey::stored));
        let adopted = match shared.store_or_read(&mine).await {
            Ok(Some(set)) => self.adopt(shared, set),
            Ok(None) | Err(SharedKeysError::Unavailable) => return false,
            Err(error) => Err(error.into()),
        };
        match adopted {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "the shared JWT key set in Redis is unusable");
                false
            }
        }
    }

    /// Replaces the keys with the shared `set`, keeping this hub's keys from before
    /// its first read of the set (to verify tokens it signed meanwhile) but not the
    /// ones the shared set has retired; the key file then holds the shared set.
    fn adopt(&self, shared: &SharedKeys, set: KeyFile) -> io::Result<()> {
        let mut local_only = shared
            .local_only
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let shared_kids: Vec<&str> = set.keys.iter().map(|k| k.kid.as_str()).collect();
        // A key the file got from the shared set and the set no longer has was
        // retired there: it is not kept.
        let kept = local_only.get_or_insert_with(|| {
            keys.iter()
                .filter(|k| !k.shared && !shared_kids.contains(&k.kid.as_str()))
                .map(|k| k.kid.clone())
                .collect()
        });
        let current: Vec<(&str, bool)> = keys.iter().map(|k| (k.kid.as_str(), k.shared)).collect();
        let wanted: Vec<(&str, bool)> = kept
            .iter()
            .map(|kid| (kid.as_str(), false))
            .chain(shared_kids.iter().map(|kid| (*kid, true)))
            .collect();
        if current == wanted {
            return Ok(());
        }
        let mut adopted = Vec::with_capacity(wanted.len());
        for kid in kept.iter() {
            if let Some(key) = keys.iter().find(|k| &k.kid == kid) {
                adopted.push(IssuerKey::from_seed(
                    key.kid.clone(),
                    key.seed,
                    key.created,
                )?);
            }
        }
        let marked: Vec<StoredKey> = set
            .keys
            .into_iter()
            .map(|key| StoredKey {
                shared: true,
                ..key
            })
            .collect();
        for stored in &marked {
            adopted.push(
                from_stored(stored.clone()).map_err(|what| io::Error::other(what.to_owned()))?,
            );
        }
        if adopted.is_empty() {
            return Err(io::Error::other("the shared key set is empty"));
        }
        // The file follows the shared set, so that a restart does not bring back a
        // key retired there (this hub's own earlier keys live on in memory only).
        if let Some(path) = &self.path
            && let Err(error) = save(path, &KeyFile { keys: marked })
        {
            tracing::error!(%error, path = %path.display(), "the JWT key file was not updated");
        }
        *keys = adopted;
        tracing::info!(
            kid = keys.last().map(|k| k.kid.as_str()),
            "JWT keys taken from Redis"
        );
        Ok(())
    }

    /// Like [`Self::rotate`], for every hub sharing the key set through Redis: the
    /// new key is added to the set in Redis (keeping the previous ones, three keys
    /// in all), adopted here at once and by the other hubs within
    /// 30 seconds (or at once when they see a token signed with it).
    /// Without Redis it is [`Self::rotate`].
    pub async fn rotate_shared(&self) -> io::Result<String> {
        self.rotate_shared_if(|_| true)
            .await?
            .ok_or_else(|| io::Error::other("not rotated"))
    }

    /// Rotates (like [`Self::rotate_shared`]) when the signing key is older than
    /// `max_age`; returns the new `kid`, or `None` when the key is young enough.
    /// With Redis the age is that of the newest key in the shared set, checked in
    /// the same compare-and-swap as the rotation, so when several hubs find the key
    /// due at once, one rotates and the others adopt its key.
    pub async fn rotate_if_older_than(&self, max_age: Duration) -> io::Result<Option<String>> {
        let due = |created: u64| unix_now().saturating_sub(created) >= max_age.as_secs();
        // The adopted set is at most a sync interval old: no Redis call until due.
        if !self.read().last().is_none_or(|newest| due(newest.created)) {
            return Ok(None);
        }
        self.rotate_shared_if(|keys| keys.last().is_none_or(|newest| due(newest.created)))
            .await
    }

    async fn rotate_shared_if(
        &self,
        due: impl Fn(&[StoredKey]) -> bool,
    ) -> io::Result<Option<String>> {
        let Some(shared) = &self.shared else {
            let current: Vec<StoredKey> = self.read().iter().map(IssuerKey::stored).collect();
            return if due(&current) {
                self.rotate().map(Some)
            } else {
                Ok(None)
            };
        };
        let redis_error = |error| match error {
            SharedKeysError::Unavailable => {
                io::Error::other("Redis is unreachable: the key was not rotated")
            }
            other => other.into(),
        };
        for _ in 0..5 {
            let before = shared.read().await.map_err(redis_error)?;
            let mut stored: Vec<StoredKey> = match &before.set {
                Some(set) => set.keys.clone(),
                None => for_redis(self.read().iter().map(IssuerKey::stored)).keys,
            };
            if !due(&stored) {
                if let Some(set) = before.set {
                    self.adopt(shared, set)?;
                }
                return Ok(None);
            }
            let key = IssuerKey::generate()?;
            let kid = key.kid.clone();
            stored.push(key.stored());
            let excess = stored.len().saturating_sub(KEPT_KEYS);
            stored.drain(..excess);
            let after = KeyFile { keys: stored };
            if shared
                .swap(before.raw.as_deref(), &after)
                .await
                .map_err(redis_error)?
            {
                self.adopt(shared, after)?;
                tracing::info!(kid, "shared JWT signing key rotated");
                return Ok(Some(kid));
            }
        }
        Err(io::Error::other(
            "the shared key set kept changing: not rotated",
        ))
    }

    /// Generates a new signing key, keeps the previous ones (up to three keys in
    /// all) and saves the file; returns the new `kid`. Tokens signed with the kept
    /// previous keys stay valid. With Redis this rotates this hub's keys only: use
    /// [`Self::rotate_shared`].
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

impl HubIssuer {
    fn local_key(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.read()
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.verifying.clone())
    }
}

impl KeySource for HubIssuer {
    fn key(&self, kid: &str) -> BoxFuture<'_, Option<Arc<VerifyingKey>>> {
        let found = self.local_key(kid);
        let kid = kid.to_owned();
        Box::pin(async move {
            if found.is_some() {
                return found;
            }
            // Another hub may have rotated the shared set: re-read it, rarely.
            let shared = self.shared.as_ref()?;
            {
                let mut last = shared
                    .last_lookup
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if last.is_some_and(|at| at.elapsed() < SHARED_LOOKUP_INTERVAL) {
                    return None;
                }
                *last = Some(Instant::now());
            }
            self.sync_shared().await;
            self.local_key(&kid)
        })
    }

    fn warm_up(&self) -> BoxFuture<'_, bool> {
        // With Redis, ready once this hub signs with the shared keys, so that every
        // token it issues verifies on every hub.
        Box::pin(self.sync_shared())
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
        .map(|stored| from_stored(stored).map_err(bad))
        .collect()
}

/// A stored key, loaded; the error says what is wrong with it.
fn from_stored(stored: StoredKey) -> Result<IssuerKey, &'static str> {
    if stored.alg != "EdDSA" {
        return Err("unsupported key algorithm");
    }
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&stored.d)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("malformed key")?;
    let mut key =
        IssuerKey::from_seed(stored.kid, seed, stored.created).map_err(|_| "unusable key")?;
    key.shared = stored.shared;
    Ok(key)
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

    #[tokio::test]
    async fn the_signing_key_is_replaced_when_due_and_the_old_one_kept() {
        let issuer =
            HubIssuer::with_key_file(None, "iss".into(), "aud".into(), Duration::from_secs(60))
                .unwrap();
        let first = issuer.kid();
        let month = Duration::from_secs(30 * 24 * 60 * 60);
        assert_eq!(issuer.rotate_if_older_than(month).await.unwrap(), None);
        assert_eq!(issuer.kid(), first);
        let second = issuer
            .rotate_if_older_than(Duration::ZERO)
            .await
            .unwrap()
            .expect("a key of age 0 is due at max age 0");
        assert_eq!(issuer.kid(), second);
        assert_eq!(
            issuer.kids(),
            vec![first, second],
            "the old key still verifies"
        );
    }
}
