//! The own issuer's key set in Redis (`coven:{g}:hub:jwt-keys`), shared by every hub
//! of a guild (docs/scaling.md): stored sealed with `HUB_SECRET` ([`super::sealed`]),
//! written first-come (`SET NX`) and replaced only by compare-and-swap, so two hubs
//! rotating at once cannot lose each other's key.
//!
//! A value a hub can read but that is not sealed with its first secret (a plaintext set
//! written by an older hub, or one sealed with a secret later in the rotation list) is
//! rewritten sealed with the first secret, with the same compare-and-swap: after a
//! `HUB_SECRET` rotation the set follows the new secret without anyone rotating keys.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use coven_contract::Secret;

use super::KeyFile;
use super::sealed::{SealError, Sealer};
use crate::redis_link::RedisLink;

/// `KEYS[1]` the key set; `ARGV[1]` the value read before (`""`: none), `ARGV[2]` the
/// new value. Replaces the value only if nobody changed it meanwhile; returns 1 if so.
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

/// Why the shared set could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedKeysError {
    /// Redis did not answer.
    #[error("Redis is unreachable")]
    Unavailable,
    /// The value could not be opened (wrong secret, tampered with, unknown format).
    #[error(transparent)]
    Sealed(#[from] SealError),
    /// It opened, but is not a key set.
    #[error("the issuer's keys in Redis are not a key set")]
    Malformed,
}

impl From<SharedKeysError> for std::io::Error {
    fn from(error: SharedKeysError) -> Self {
        std::io::Error::other(error.to_string())
    }
}

/// The value read before a change, and what it holds.
pub(crate) struct Read {
    /// The raw value (for the compare-and-swap), `None` when Redis has none.
    pub(crate) raw: Option<String>,
    /// The key set it holds.
    pub(crate) set: Option<KeyFile>,
}

/// The key set shared through Redis, and this hub's bookkeeping about it.
pub(crate) struct SharedKeys {
    link: Arc<RedisLink>,
    key: String,
    sealer: Sealer,
    /// `kid`s this hub had before it first read the shared set (kept to verify the
    /// tokens it signed meanwhile); `None` until that first read.
    pub(crate) local_only: Mutex<Option<Vec<String>>>,
    /// When an unknown `kid` last made this hub re-read the set.
    pub(crate) last_lookup: Mutex<Option<Instant>>,
}

impl SharedKeys {
    /// The set of `guild` on `link`, sealed with `secrets` (the first one seals).
    pub(crate) fn new(
        link: Arc<RedisLink>,
        guild: coven_contract::Snowflake,
        secrets: &[Secret],
    ) -> Self {
        Self {
            link,
            key: RedisLink::key(guild, "jwt-keys"),
            sealer: Sealer::new(secrets),
            local_only: Mutex::new(None),
            last_lookup: Mutex::new(None),
        }
    }

    fn seal(&self, set: &KeyFile) -> Result<String, SharedKeysError> {
        let json = serde_json::to_vec(set).map_err(|_| SharedKeysError::Malformed)?;
        Ok(self.sealer.seal(&json, &self.key)?)
    }

    /// Opens `raw`; a stale value (plaintext, or another secret's) is rewritten sealed
    /// with the first secret unless someone changed it meanwhile.
    async fn open(&self, raw: &str) -> Result<KeyFile, SharedKeysError> {
        let opened = self.sealer.open(raw, &self.key)?;
        let set: KeyFile =
            serde_json::from_slice(&opened.plaintext).map_err(|_| SharedKeysError::Malformed)?;
        if opened.stale {
            match self.swap(Some(raw), &set).await {
                Ok(true) => tracing::info!(
                    "the issuer's keys in Redis are now sealed with the first HUB_SECRET"
                ),
                // Another hub changed it meanwhile: it wrote a sealed value.
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "the issuer's keys in Redis were not resealed");
                }
            }
        }
        Ok(set)
    }

    /// Stores `mine` when Redis has no set yet (the first hub's keys win), then reads
    /// the set every hub uses. `Ok(None)`: Redis has none even after the write.
    pub(crate) async fn store_or_read(
        &self,
        mine: &KeyFile,
    ) -> Result<Option<KeyFile>, SharedKeysError> {
        let sealed = self.seal(mine)?;
        let mut conn = self.link.conn();
        let result: redis::RedisResult<(Option<String>, Option<String>)> = redis::pipe()
            .cmd("SET")
            .arg(&self.key)
            .arg(&sealed)
            .arg("NX")
            .cmd("GET")
            .arg(&self.key)
            .query_async(&mut conn)
            .await;
        match self.link.record("jwt_keys", result) {
            Ok((_, Some(raw))) => self.open(&raw).await.map(Some),
            Ok((_, None)) => Ok(None),
            Err(_) => Err(SharedKeysError::Unavailable),
        }
    }

    /// The current value, for a compare-and-swap with [`Self::swap`].
    pub(crate) async fn read(&self) -> Result<Read, SharedKeysError> {
        let mut conn = self.link.conn();
        let result: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut conn)
            .await;
        let raw = self
            .link
            .record("jwt_keys", result)
            .map_err(|_| SharedKeysError::Unavailable)?;
        let set = match &raw {
            Some(raw) => Some(self.open(raw).await?),
            None => None,
        };
        Ok(Read { raw, set })
    }

    /// Replaces the value `before` (`None`: no value) with `after`, sealed; `false`
    /// when someone changed it meanwhile.
    pub(crate) async fn swap(
        &self,
        before: Option<&str>,
        after: &KeyFile,
    ) -> Result<bool, SharedKeysError> {
        let sealed = self.seal(after)?;
        let mut conn = self.link.conn();
        let result: redis::RedisResult<i64> = SWAP_KEYS
            .key(&self.key)
            .arg(before.unwrap_or(""))
            .arg(&sealed)
            .invoke_async(&mut conn)
            .await;
        self.link
            .record("jwt_keys", result)
            .map(|swapped| swapped == 1)
            .map_err(|_| SharedKeysError::Unavailable)
    }
}
