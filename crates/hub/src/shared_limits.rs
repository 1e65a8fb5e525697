//! The rooms API's memory: `Idempotency-Key` answers, per-user and per-client-IP
//! rate limits, kept in this process, or in Redis when several hubs serve one guild.
//!
//! In Redis, an `Idempotency-Key` is claimed with `SET NX` of `pending:<token>`
//! (expiring after [`PENDING_TTL`], so a hub that died mid-create does not block
//! the key forever); the hub that claimed it creates the room and stores
//! `done:<answer>`, and a retry on any hub waits for that answer. A failed create
//! releases the claim so the next try proceeds. The rate limits are GCRA in one Lua
//! script (same burst and period as the local token bucket, Redis's clock), keyed
//! `rate:<user>` and `rate-ip:<client IP>` (IPv6 per /64); each key expires when its
//! budget is full again, so Redis holds only the keys of recent clients.
//!
//! Redis down: a create with an `Idempotency-Key` answers 503 with `Retry-After`
//! (the key could not be honoured across hubs); the rate limit falls back to this
//! hub's own buckets, so ending rooms and bot commands keep working.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use coven_contract::Snowflake;
use tokio::sync::OwnedMutexGuard;

use crate::error::HubError;
use crate::idempotency::IdempotencyStore;
use crate::rate_limit::RateLimiter;
use crate::redis_link::RedisLink;
use crate::rooms::CreatedRoom;
use crate::settings::HubSettings;

/// How long a claimed key waits for its creator's answer before another try may
/// claim it (a create is a Discord call with a few retries).
const PENDING_TTL: Duration = Duration::from_secs(60);
/// How long a retry waits for another hub's answer before answering 503.
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// How often a waiting retry looks for the answer.
const ANSWER_POLL: Duration = Duration::from_millis(100);
/// `Retry-After` while Redis is unreachable or an answer is still pending.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// `KEYS[1]` the idempotency key; `ARGV[1]` `pending:<token>`, `ARGV[2]` its
/// lifetime (ms). Returns `""` when claimed, else the key's current value.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return ''
end
return redis.call('GET', KEYS[1])
",
    )
});

/// `KEYS[1]` the idempotency key; `ARGV[1]` our `pending:<token>`. Deletes the key
/// only while it is still our claim.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// GCRA. `KEYS[1]` the user's theoretical arrival time (ms); `ARGV[1]` period
/// (ms), `ARGV[2]` burst. Returns 0 when allowed, else the wait in ms.
static RATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat + period - burst * period
if now < allowed_at then
  return allowed_at - now
end
tat = tat + period
redis.call('SET', KEYS[1], tat, 'PX', tat - now)
return 0
",
    )
});

/// What a create with an `Idempotency-Key` should do.
pub(crate) enum Claim {
    /// An earlier request with this key already answered: send the same.
    Answered(CreatedRoom),
    /// This request creates the room, then calls [`Claimed::finish`] (or drops the
    /// claim on failure, so the next try proceeds).
    Mine(Claimed),
}

/// The right to answer one `Idempotency-Key`.
pub(crate) enum Claimed {
    Local(OwnedMutexGuard<Option<CreatedRoom>>),
    Shared {
        link: Arc<RedisLink>,
        key: String,
        pending: String,
        answer_ttl: Duration,
    },
}

impl Claimed {
    /// Stores the answer for every later request with this key.
    pub(crate) async fn finish(self, room: &CreatedRoom) {
        match self {
            Self::Local(mut slot) => *slot = Some(room.clone()),
            Self::Shared {
                link,
                key,
                answer_ttl,
                ..
            } => {
                let answer = format!("done:{}", serde_json::to_string(room).unwrap_or_default());
                let result: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&key)
                    .arg(answer)
                    .arg("PX")
                    .arg(millis(answer_ttl))
                    .query_async(&mut link.conn())
                    .await;
                if link.record("idempotency", result).is_err() {
                    tracing::warn!("a room was created but its Idempotency-Key answer not stored");
                }
            }
        }
    }

    /// Gives the key up after a failed create, so a retry may claim it at once.
    pub(crate) async fn release(self) {
        if let Self::Shared {
            link, key, pending, ..
        } = self
        {
            let result: redis::RedisResult<i64> = RELEASE
                .key(&key)
                .arg(&pending)
                .invoke_async(&mut link.conn())
                .await;
            // On failure the claim expires by itself after PENDING_TTL.
            let _ = link.record("idempotency", result);
        }
    }
}

/// The rooms API's idempotency answers and rate limits.
pub(crate) struct RoomsMemory {
    keys: IdempotencyStore<(String, String), CreatedRoom>,
    rate: RateLimiter,
    per_ip: RateLimiter,
    shared: Option<Shared>,
}

struct Shared {
    link: Arc<RedisLink>,
    guild: Snowflake,
    user: Budget,
    ip: Budget,
    answer_ttl: Duration,
}

/// One GCRA budget: `burst` at once, then one per `period`.
#[derive(Clone, Copy)]
struct Budget {
    burst: u32,
    period: Duration,
}

impl Budget {
    fn new(burst: u32, period: Duration) -> Self {
        Self {
            burst: burst.max(1),
            period: period.max(Duration::from_millis(1)),
        }
    }
}

impl RoomsMemory {
    /// In-process memory; shared through `link` when given.
    pub(crate) fn new(settings: &HubSettings, link: Option<Arc<RedisLink>>) -> Self {
        Self {
            keys: IdempotencyStore::new(
                settings.idempotency_capacity,
                settings.idempotency_max_age,
            ),
            rate: RateLimiter::new(settings.rooms_rate_burst, settings.rooms_rate_period),
            per_ip: RateLimiter::new(
                settings.api_rate_per_ip_burst,
                settings.api_rate_per_ip_period,
            ),
            shared: link.map(|link| Shared {
                link,
                guild: settings.primary_guild_id,
                user: Budget::new(settings.rooms_rate_burst, settings.rooms_rate_period),
                ip: Budget::new(
                    settings.api_rate_per_ip_burst,
                    settings.api_rate_per_ip_period,
                ),
                answer_ttl: settings.idempotency_max_age,
            }),
        }
    }

    /// Takes one request from `user`'s budget: 429 with `Retry-After` beyond it.
    pub(crate) async fn rate_limit(&self, user: &str) -> Result<(), HubError> {
        let wait = match &self.shared {
            Some(shared) => match shared
                .rate_limit(&format!("rate:{user}"), shared.user)
                .await
            {
                Ok(wait) => wait,
                // Redis is down: this hub's own buckets still stop a flood.
                Err(_) => self.rate.check(user).err(),
            },
            None => self.rate.check(user).err(),
        };
        match wait {
            None => Ok(()),
            Some(retry_after) => Err(HubError::RateLimited { retry_after }),
        }
    }

    /// Takes one request from client `ip`'s budget of the API (`ip` already
    /// reduced to its /64 for IPv6): 429 with `Retry-After` beyond it.
    pub(crate) async fn rate_limit_ip(&self, ip: IpAddr) -> Result<(), HubError> {
        let key = ip.to_string();
        let wait = match &self.shared {
            Some(shared) => match shared
                .rate_limit(&format!("rate-ip:{key}"), shared.ip)
                .await
            {
                Ok(wait) => wait,
                Err(_) => self.per_ip.check(&key).err(),
            },
            None => self.per_ip.check(&key).err(),
        };
        match wait {
            None => Ok(()),
            Some(retry_after) => Err(HubError::RateLimited { retry_after }),
        }
    }

    /// Claims `(user, key)`, or returns the answer an earlier request stored.
    pub(crate) async fn claim(&self, user: &str, key: &str) -> Result<Claim, HubError> {
        let Some(shared) = &self.shared else {
            // Concurrent retries with one key wait here for the first one's answer.
            let mut slot = self
                .keys
                .slot((user.to_owned(), key.to_owned()))
                .lock_owned()
                .await;
            return Ok(match slot.take() {
                Some(room) => {
                    *slot = Some(room.clone());
                    Claim::Answered(room)
                }
                None => Claim::Mine(Claimed::Local(slot)),
            });
        };
        shared.claim(user, key).await
    }
}

impl Shared {
    /// Takes one request from the GCRA budget under `name`; the wait when spent.
    async fn rate_limit(&self, name: &str, budget: Budget) -> redis::RedisResult<Option<Duration>> {
        let key = RedisLink::key(self.guild, name);
        let result: redis::RedisResult<u64> = RATE
            .key(key)
            .arg(millis(budget.period))
            .arg(budget.burst)
            .invoke_async(&mut self.link.conn())
            .await;
        let wait = self.link.record("rate_limit", result)?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }

    async fn claim(&self, user: &str, key: &str) -> Result<Claim, HubError> {
        let unavailable = || HubError::TryLater {
            message: "room creation is unavailable for a moment".into(),
            retry_after: RETRY_AFTER,
        };
        // The user's length keeps ("a:b", "c") and ("a", "b:c") apart.
        let name = RedisLink::key(self.guild, &format!("idem:{}:{user}:{key}", user.len()));
        let pending = format!("pending:{:032x}", rand::random::<u128>());
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            let result: redis::RedisResult<String> = CLAIM
                .key(&name)
                .arg(&pending)
                .arg(millis(PENDING_TTL))
                .invoke_async(&mut self.link.conn())
                .await;
            let value = self
                .link
                .record("idempotency", result)
                .map_err(|_| unavailable())?;
            if value.is_empty() {
                return Ok(Claim::Mine(Claimed::Shared {
                    link: self.link.clone(),
                    key: name,
                    pending,
                    answer_ttl: self.answer_ttl,
                }));
            }
            if let Some(answer) = value.strip_prefix("done:") {
                let room = serde_json::from_str(answer)
                    .map_err(|_| HubError::Internal("unreadable Idempotency-Key answer".into()))?;
                return Ok(Claim::Answered(room));
            }
            // Another request with this key is creating the room: wait for it.
            if tokio::time::Instant::now() >= deadline {
                return Err(HubError::TryLater {
                    message: "a request with this Idempotency-Key is still in progress".into(),
                    retry_after: RETRY_AFTER,
                });
            }
            tokio::time::sleep(ANSWER_POLL).await;
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
