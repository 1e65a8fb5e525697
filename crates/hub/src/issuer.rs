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
//! the same JSON as the file): the first hub to reach Redis stores its keys there
//! (`SET NX`), every hub adopts that set, signs with its newest key and verifies
//! all of them, so a token issued by one hub verifies on every hub. A `kid` this
//! hub does not know makes it re-read the set (at most once a second), and it
//! re-reads it every [`SHARED_SYNC_INTERVAL`] anyway, so [`HubIssuer::rotate_shared`]
//! on one hub reaches the others. Redis then holds private keys: protect it (and
//! `REDIS_URL`) like a secret store.

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

use crate::jwt::{KeySource, VerifyingKey};
use crate::redis_link::RedisLink;
use crate::settings::HubSettings;

/// How often a hub re-reads the shared key set from Redis.
pub(crate) const SHARED_SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// An unknown `kid` re-reads the shared key set at most this often.
const SHARED_LOOKUP_INTERVAL: Duration = Duration::from_secs(1);

/// `KEYS[1]` the key set; `ARGV[1]` the set read before (`""`: none), `ARGV[2]` the
/// new set. Replaces the set only if nobody changed it meanwhile; returns 1 if so.
static SWAP_KEYS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
",
    )
});

/// The key set shared through Redis.
struct SharedKeys {
    link: Arc<RedisLink>,
    key: String,
    /// `kid`s this hub had before it first read the shared set (kept to verify the
    /// tokens it signed meanwhile); `None` until that first read.
    local_only: Mutex<Option<Vec<String>>>,
    last_lookup: Mutex<Option<Instant>>,
}

/// The key file's name inside the state directory.
pub const KEY_FILE_NAME: &str = "jwt-keys.json";
/// How many keys are kept (the signing key and the ones before it).
const KEPT_KEYS: usize = 3;
/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// One key as stored in the file.
#[derive(Clone, Serialize, Deserialize)]
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
        self.shared = Some(SharedKeys {
            link,
            key: RedisLink::key(guild, "jwt-keys"),
            local_only: Mutex::new(None),
            last_lookup: Mutex::new(None),
        });
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
        let mut conn = shared.link.conn();
        let mine = serde_json::to_string(&KeyFile {
            keys: self.read().iter().map(IssuerKey::stored).collect(),
        })
        .unwrap_or_default();
        // SET NX then GET: the first hub's keys win; everyone reads the winner.
        let result: redis::RedisResult<(Option<String>, Option<String>)> = redis::pipe()
            .cmd("SET")
            .arg(&shared.key)
            .arg(&mine)
            .arg("NX")
            .cmd("GET")
            .arg(&shared.key)
            .query_async(&mut conn)
            .await;
        match shared.link.record("jwt_keys", result) {
            Ok((_, Some(set))) => match self.adopt(shared, &set) {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(%error, "the shared JWT key set in Redis is unusable");
                    false
                }
            },
            Ok((_, None)) | Err(_) => false,
        }
    }

    /// Replaces the keys with the shared set `json`, keeping this hub's keys from
    /// before its first read of the set (to verify tokens it signed meanwhile).
    fn adopt(&self, shared: &SharedKeys, json: &str) -> io::Result<()> {
        let file: KeyFile = serde_json::from_str(json).map_err(io::Error::other)?;
        let mut local_only = shared
            .local_only
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let shared_kids: Vec<&str> = file.keys.iter().map(|k| k.kid.as_str()).collect();
        let kept = local_only.get_or_insert_with(|| {
            keys.iter()
                .filter(|k| !shared_kids.contains(&k.kid.as_str()))
                .map(|k| k.kid.clone())
                .collect()
        });
        let current: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        let wanted: Vec<&str> = kept
            .iter()
            .map(String::as_str)
            .chain(shared_kids.iter().copied())
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
        for stored in file.keys {
            adopted.push(from_stored(stored).map_err(|what| io::Error::other(what.to_owned()))?);
        }
        if adopted.is_empty() {
            return Err(io::Error::other("the shared key set is empty"));
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
        let unavailable = |_| io::Error::other("Redis is unreachable: the key was not rotated");
        let mut conn = shared.link.conn();
        for _ in 0..5 {
            let result: redis::RedisResult<Option<String>> = redis::cmd("GET")
                .arg(&shared.key)
                .query_async(&mut conn)
                .await;
            let before = shared
                .link
                .record("jwt_keys", result)
                .map_err(unavailable)?;
            let mut stored: Vec<StoredKey> = match &before {
                Some(json) => {
                    serde_json::from_str::<KeyFile>(json)
                        .map_err(io::Error::other)?
                        .keys
                }
                None => self.read().iter().map(IssuerKey::stored).collect(),
            };
            if !due(&stored) {
                if let Some(json) = &before {
                    self.adopt(shared, json)?;
                }
                return Ok(None);
            }
            let key = IssuerKey::generate()?;
            let kid = key.kid.clone();
            stored.push(key.stored());
            let excess = stored.len().saturating_sub(KEPT_KEYS);
            stored.drain(..excess);
            let after =
                serde_json::to_string(&KeyFile { keys: stored }).map_err(io::Error::other)?;
            let result: redis::RedisResult<i64> = SWAP_KEYS
                .key(&shared.key)
                .arg(before.as_deref().unwrap_or(""))
                .arg(&after)
                .invoke_async(&mut conn)
                .await;
            if shared
                .link
                .record("jwt_keys", result)
                .map_err(unavailable)?
                == 1
            {
                self.adopt(shared, &after)?;
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
    IssuerKey::from_seed(stored.kid, seed, stored.created).map_err(|_| "unusable key")
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
