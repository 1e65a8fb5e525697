//! The worker's state in Redis, shared by an active/standby pair of workers.
//!
//! With `REDIS_URL`, what the single worker keeps in its redb file ([`super::LocalStore`])
//! lives here instead, so that whichever worker holds the lease ([`super::Lease`])
//! can resume the same Discord session and go on delivering the same outbox:
//!
//! | key (`coven:{<guild>}:worker:…`) | type | holds |
//! |---|---|---|
//! | `lease` | string with a TTL | the active worker's lease value: `<token>:<nonce>` |
//! | `fence` | counter | the last fencing token handed out |
//! | `session` | string, JSON | the gateway session (id, sequence, resume URL, bot id) |
//! | `view` | string, JSON | the voice view (`/voice-view`) |
//! | `outbox` | stream, entry `<id>-0`, field `b` | undelivered webhook bodies, in id order |
//! | `next_id` | counter | the last outbox id handed out (unique across the pair) |
//! | `epoch` | string | the random prefix of event ids, set once |
//! | `dead` | stream, fields `i`, `b`, `r` | dead letters: id, body, reason; at most the dead-letter bound (oldest trimmed, counted) |
//!
//! The braces make the guild id a Redis Cluster hash tag: every key is in one
//! slot, so one script may touch them all. Every write — a commit of events,
//! view and session together, an ack, a burial, a session save, the one-time
//! import of a single worker's file ([`super::migrate`]) — is ONE Lua script
//! that first checks that the caller's lease value is still, whole, the one in
//! `lease`, and does nothing otherwise ([`StoreError::Fenced`]). A worker that
//! was paused or cut off while another took over can therefore never write again.
//! Reads need no lease: a standby serves `/voice-view` and its counts from here.
//!
//! The value is the fencing token and a random nonce, and a token is never below
//! the clock (the later of Redis' and the worker's, in unix ms) when it is handed
//! out: even if Redis loses its data (`FLUSHALL`, a failover to a replica that
//! missed writes) and `fence` starts again, the next token is still larger than
//! every earlier one, and no two acquisitions ever share a value (docs/worker.md).

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coven_contract::{Event, Secret, Snowflake};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::local::Snapshot;
use super::records::{DeadLetter, Pending, StoredSession, event_id};
use super::{Gauges, StoreError};
use crate::tracker::VoiceView;

/// `KEYS`: lease, fence. `ARGV`: TTL in ms, the worker's clock in unix ms, a
/// random nonce. Returns {token, value}, or nil when the lease is held. The token
/// is above both Redis' clock and the worker's, so it exceeds every earlier token
/// even when `fence` was lost; the value `<token>:<nonce>` is compared whole.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
local time = redis.call('TIME')
local clock = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
clock = math.max(clock, tonumber(ARGV[2]))
if token <= clock then
  token = clock + 1
  redis.call('SET', KEYS[2], string.format('%d', token))
end
local value = string.format('%d', token) .. ':' .. ARGV[3]
redis.call('SET', KEYS[1], value, 'PX', ARGV[1])
return {token, value}
",
    )
});

/// `KEYS`: lease. `ARGV`: lease value, TTL in ms. 1 when renewed, 0 when not ours.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

/// `KEYS`: lease. `ARGV`: lease value. 1 when deleted, 0 when not ours.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// `KEYS`: lease, `next_id`, outbox, dead, view, session, epoch. `ARGV`: lease value,
/// capacity, an epoch to set if none is, view JSON or '', session JSON or '',
/// the dead letters' bound, then the webhook bodies. Returns {1, overflowed,
/// depth, dead, dead letters dropped} or {0}.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[7], ARGV[3], 'NX')
local depth = redis.call('XLEN', KEYS[3])
local capacity = tonumber(ARGV[2])
local overflowed = 0
for i = 7, #ARGV do
  local id = redis.call('INCR', KEYS[2])
  if depth < capacity then
    redis.call('XADD', KEYS[3], id .. '-0', 'b', ARGV[i])
    depth = depth + 1
  else
    redis.call('XADD', KEYS[4], '*', 'i', id, 'b', ARGV[i], 'r', 'outbox full')
    overflowed = overflowed + 1
  end
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[5], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[6], ARGV[5]) end
local dead = redis.call('XLEN', KEYS[4])
local dropped = 0
if overflowed > 0 and dead > tonumber(ARGV[6]) then
  dropped = redis.call('XTRIM', KEYS[4], 'MAXLEN', ARGV[6])
  dead = dead - dropped
end
return {1, overflowed, depth, dead, dropped}
",
    )
});

/// `KEYS`: lease, session, view, outbox, epoch, `next_id`, dead. `ARGV`: lease value,
/// epoch, last id handed out, session JSON or '', view JSON or '', number of
/// events, then id and body of each event, then id, body and reason of each
/// dead letter. {1, depth, dead}, {2} when the pair already has state, or {0}.
static IMPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5]) > 0 or redis.call('XLEN', KEYS[4]) > 0 then
  return {2}
end
redis.call('SET', KEYS[5], ARGV[2])
redis.call('SET', KEYS[6], ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5]) end
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  redis.call('XADD', KEYS[4], ARGV[i] .. '-0', 'b', ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('XADD', KEYS[7], '*', 'i', ARGV[i], 'b', ARGV[i + 1], 'r', ARGV[i + 2])
  i = i + 3
end
return {1, redis.call('XLEN', KEYS[4]), redis.call('XLEN', KEYS[7])}
",
    )
});

/// `KEYS`: lease, session. `ARGV`: lease value, session JSON. {1} or {0}.
static SAVE_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[2], ARGV[2])
return {1}
",
    )
});

/// `KEYS`: lease, outbox. `ARGV`: lease value, id. {1, depth} or {0}.
static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('XDEL', KEYS[2], ARGV[2] .. '-0')
return {1, redis.call('XLEN', KEYS[2])}
",
    )
});

/// `KEYS`: lease, outbox, dead. `ARGV`: lease value, id, body, reason, the dead
/// letters' bound. {1, depth, dead, dropped} or {0}.
static BURY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('XDEL', KEYS[2], ARGV[2] .. '-0')
redis.call('XADD', KEYS[3], '*', 'i', ARGV[2], 'b', ARGV[3], 'r', ARGV[4])
local dropped = redis.call('XTRIM', KEYS[3], 'MAXLEN', ARGV[5])
return {1, redis.call('XLEN', KEYS[2]), redis.call('XLEN', KEYS[3]), dropped}
",
    )
});

/// `KEYS`: lease, `next_id`, dead. `ARGV`: lease value, body, reason, the dead
/// letters' bound. A dead letter under a new id. {1, dead, dropped} or {0}.
static BURY_RAW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local id = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], '*', 'i', id, 'b', ARGV[2], 'r', ARGV[3])
local dropped = redis.call('XTRIM', KEYS[3], 'MAXLEN', ARGV[4])
return {1, redis.call('XLEN', KEYS[3]), dropped}
",
    )
});

/// `KEYS`: outbox, epoch. The oldest entry as {entry id, body, epoch}, or nil.
static PEEK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local entry = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if not entry then return false end
return {entry[1], entry[2][2], redis.call('GET', KEYS[2]) or ''}
",
    )
});

/// `KEYS`: dead, epoch. {epoch, id, body, reason, id, body, reason, …}.
static DEAD_LETTERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {redis.call('GET', KEYS[2]) or ''}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local f = entry[2]
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
  out[#out + 1] = f[6]
end
return out
",
    )
});

/// The names of the pair's keys for one guild.
#[derive(Debug)]
struct Keys {
    lease: String,
    fence: String,
    session: String,
    view: String,
    outbox: String,
    next_id: String,
    epoch: String,
    dead: String,
}

impl Keys {
    fn new(guild_id: Snowflake) -> Self {
        let key = |name: &str| format!("coven:{{{guild_id}}}:worker:{name}");
        Self {
            lease: key("lease"),
            fence: key("fence"),
            session: key("session"),
            view: key("view"),
            outbox: key("outbox"),
            next_id: key("next_id"),
            epoch: key("epoch"),
            dead: key("dead"),
        }
    }
}

/// The shared state of a worker pair in Redis. Cheap to clone; writes carry the
/// value of the lease this worker holds (none: every write is refused).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    timeout: Duration,
    /// The lease value writes carry; empty when none (Redis never holds '').
    fence: Arc<Mutex<String>>,
    gauges: Gauges,
}

impl std::fmt::Debug for RedisStore {
    // The connection's own Debug would show the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys.lease)
            .field("capacity", &self.gauges.capacity())
            .field("fence", &*self.fence())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `guild_id`'s worker pair at `url`, holding at most `capacity`
    /// undelivered events; every Redis call fails after `timeout`. It connects
    /// lazily (and reconnects by itself), so Redis may be down when it opens.
    /// Must be called inside the Tokio runtime.
    pub fn open(
        url: &Secret,
        guild_id: Snowflake,
        capacity: u64,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        // `rediss://` (TLS) builds its rustls config from the process-wide provider:
        // ring, as everywhere in the workspace. Roots: the system's, or only
        // `SSL_CERT_FILE`'s when set (docs/scaling.md).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(url.expose()).map_err(|_| StoreError::InvalidRedisUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            keys: Arc::new(Keys::new(guild_id)),
            timeout,
            fence: Arc::new(Mutex::new(String::new())),
            gauges: Gauges::new(capacity, 0, 0),
        })
    }

    /// Keeps at most `capacity` dead letters (default 10,000): beyond, each write
    /// drops the oldest.
    #[must_use]
    pub fn with_dead_letter_capacity(self, capacity: u64) -> Self {
        self.gauges.set_dead_letter_capacity(capacity);
        self
    }

    /// Runs one Redis call with the store's timeout.
    async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::RedisTimeout(self.timeout)),
        }
    }

    fn fence(&self) -> std::sync::MutexGuard<'_, String> {
        self.fence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lease value this store's writes carry ('' when none).
    fn token(&self) -> String {
        self.fence().clone()
    }

    /// Sets the lease value writes carry.
    pub(crate) fn set_fence(&self, value: &str) {
        value.clone_into(&mut self.fence());
    }

    /// Stops carrying `value` (every write is refused from here), unless the
    /// store already carries a newer lease's value.
    pub(crate) fn clear_fence(&self, value: &str) {
        let mut fence = self.fence();
        if *fence == value {
            fence.clear();
        }
    }

    /// Takes the lease if nobody holds it: the new fencing token and the lease
    /// value (`<token>:<nonce>`), or `None`.
    pub(crate) async fn acquire(&self, ttl: Duration) -> Result<Option<(u64, String)>, StoreError> {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis);
        let nonce = format!("{:032x}", rand::random::<u128>());
        let mut conn = self.conn.clone();
        self.call(
            ACQUIRE
                .key(&self.keys.lease)
                .key(&self.keys.fence)
                .arg(millis(ttl))
                .arg(clock)
                .arg(nonce)
                .invoke_async(&mut conn),
        )
        .await
    }

    /// Extends the lease if `value` still holds it.
    pub(crate) async fn renew(&self, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.call(
            RENEW
                .key(&self.keys.lease)
                .arg(value)
                .arg(millis(ttl))
                .invoke_async(&mut conn),
        )
        .await
    }

    /// Deletes the lease if `value` still holds it.
    pub(crate) async fn release(&self, value: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.call(
            RELEASE
                .key(&self.keys.lease)
                .arg(value)
                .invoke_async(&mut conn),
        )
        .await
    }

    /// The stored session and voice view, if any.
    pub async fn load(&self) -> Result<(Option<StoredSession>, Option<VoiceView>), StoreError> {
        let mut conn = self.conn.clone();
        let (session, view): (Option<String>, Option<String>) = self
            .call(
                redis::cmd("MGET")
                    .arg(&self.keys.session)
                    .arg(&self.keys.view)
                    .query_async(&mut conn),
            )
            .await?;
        let session = session.map(|s| serde_json::from_str(&s)).transpose()?;
        let view = view.map(|v| serde_json::from_str(&v)).transpose()?;
        Ok((session, view))
    }

    /// The stored voice view, if any.
    pub(crate) async fn load_view(&self) -> Result<Option<VoiceView>, StoreError> {
        let mut conn = self.conn.clone();
        let view: Option<String> = self
            .call(
                redis::cmd("GET")
                    .arg(&self.keys.view)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(view.map(|v| serde_json::from_str(&v)).transpose()?)
    }

    /// Appends `events` and records `view` and `session`, all in one script, if
    /// this worker still holds the lease. Returns how many events had to be
    /// dead-lettered because the outbox was full.
    pub async fn commit(
        &self,
        events: &[Event],
        view: Option<&VoiceView>,
        session: Option<&StoredSession>,
    ) -> Result<usize, StoreError> {
        let view = view.map(serde_json::to_string).transpose()?;
        let session = session.map(serde_json::to_string).transpose()?;
        let mut invocation = COMMIT.prepare_invoke();
        invocation
            .key(&self.keys.lease)
            .key(&self.keys.next_id)
            .key(&self.keys.outbox)
            .key(&self.keys.dead)
            .key(&self.keys.view)
            .key(&self.keys.session)
            .key(&self.keys.epoch)
            .arg(self.token())
            .arg(self.gauges.capacity())
            .arg(format!("{:016x}", rand::random::<u64>()))
            .arg(view.unwrap_or_default())
            .arg(session.unwrap_or_default())
            .arg(self.gauges.dead_letter_capacity());
        for event in events {
            invocation.arg(event.to_webhook_body());
        }
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = self.call(invocation.invoke_async(&mut conn)).await?;
        let [1, overflowed, depth, dead, dropped] = reply[..] else {
            return Err(StoreError::Fenced);
        };
        self.gauges.set_depth(depth);
        if overflowed > 0 {
            self.gauges.dead_letters_trimmed(dead, dropped);
        }
        if overflowed < events.len() as u64 {
            self.gauges.wake();
        }
        Ok(usize::try_from(overflowed).unwrap_or(usize::MAX))
    }

    /// Writes a single worker's state file into this pair's keys — session,
    /// view, undelivered events and dead letters with their ids and epoch, so
    /// their event ids do not change — in one script, if this worker holds the
    /// lease and the pair has no state yet (no session, view or epoch, empty
    /// outbox). `Ok(false)` when it has: nothing was written.
    pub(crate) async fn import(&self, local: &Snapshot) -> Result<bool, StoreError> {
        let session = local
            .session
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let view = local.view.as_ref().map(serde_json::to_string).transpose()?;
        let mut invocation = IMPORT.prepare_invoke();
        invocation
            .key(&self.keys.lease)
            .key(&self.keys.session)
            .key(&self.keys.view)
            .key(&self.keys.outbox)
            .key(&self.keys.epoch)
            .key(&self.keys.next_id)
            .key(&self.keys.dead)
            .arg(self.token())
            .arg(&local.epoch)
            .arg(local.next_id.saturating_sub(1))
            .arg(session.unwrap_or_default())
            .arg(view.unwrap_or_default())
            .arg(local.pending.len());
        for event in &local.pending {
            invocation.arg(event.id).arg(event.body.as_slice());
        }
        for (id, letter) in &local.dead {
            invocation.arg(id).arg(&letter.body).arg(&letter.reason);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = self.call(invocation.invoke_async(&mut conn)).await?;
        match reply[..] {
            [1, depth, dead] => {
                self.gauges.set(depth, dead);
                self.gauges.wake();
                Ok(true)
            }
            [2] => Ok(false),
            _ => Err(StoreError::Fenced),
        }
    }

    /// Records the session alone, if this worker still holds the lease.
    pub async fn save_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = self
            .call(
                SAVE_SESSION
                    .key(&self.keys.lease)
                    .key(&self.keys.session)
                    .arg(self.token())
                    .arg(serde_json::to_string(session)?)
                    .invoke_async(&mut conn),
            )
            .await?;
        match reply[..] {
            [1] => Ok(()),
            _ => Err(StoreError::Fenced),
        }
    }

    /// The oldest undelivered event.
    pub async fn peek(&self) -> Result<Option<Pending>, StoreError> {
        let mut conn = self.conn.clone();
        let head: Option<(String, Vec<u8>, String)> = self
            .call(
                PEEK.key(&self.keys.outbox)
                    .key(&self.keys.epoch)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(head.and_then(|(entry, body, epoch)| {
            let id = entry.split('-').next()?.parse().ok()?;
            Some(Pending {
                id,
                event_id: event_id(&epoch, id),
                body,
            })
        }))
    }

    /// Removes a delivered event, if this worker still holds the lease.
    pub async fn ack(&self, id: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = self
            .call(
                ACK.key(&self.keys.lease)
                    .key(&self.keys.outbox)
                    .arg(self.token())
                    .arg(id)
                    .invoke_async(&mut conn),
            )
            .await?;
        let [1, depth] = reply[..] else {
            return Err(StoreError::Fenced);
        };
        self.gauges.set_depth(depth);
        Ok(())
    }

    /// Moves an event the hub refused for good to the dead letters, if this
    /// worker still holds the lease.
    pub async fn bury(&self, pending: &Pending, reason: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = self
            .call(
                BURY.key(&self.keys.lease)
                    .key(&self.keys.outbox)
                    .key(&self.keys.dead)
                    .arg(self.token())
                    .arg(pending.id)
                    .arg(pending.body.as_slice())
                    .arg(reason)
                    .arg(self.gauges.dead_letter_capacity())
                    .invoke_async(&mut conn),
            )
            .await?;
        let [1, depth, dead, dropped] = reply[..] else {
            return Err(StoreError::Fenced);
        };
        self.gauges.set_depth(depth);
        self.gauges.dead_letters_trimmed(dead, dropped);
        Ok(())
    }

    /// Keeps `body`, something the worker received but could not turn into
    /// events (a gateway payload it could not read), as a dead letter with
    /// `reason` under a new id, if this worker still holds the lease.
    pub async fn bury_raw(&self, body: &str, reason: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = self
            .call(
                BURY_RAW
                    .key(&self.keys.lease)
                    .key(&self.keys.next_id)
                    .key(&self.keys.dead)
                    .arg(self.token())
                    .arg(body)
                    .arg(reason)
                    .arg(self.gauges.dead_letter_capacity())
                    .invoke_async(&mut conn),
            )
            .await?;
        let [1, dead, dropped] = reply[..] else {
            return Err(StoreError::Fenced);
        };
        self.gauges.dead_letters_trimmed(dead, dropped);
        Ok(())
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .call(
                DEAD_LETTERS
                    .key(&self.keys.dead)
                    .key(&self.keys.epoch)
                    .invoke_async(&mut conn),
            )
            .await?;
        let Some((epoch, entries)) = flat.split_first() else {
            return Ok(Vec::new());
        };
        Ok(entries
            .chunks_exact(3)
            .map(|entry| DeadLetter {
                event_id: event_id(epoch, entry[0].parse().unwrap_or(0)),
                body: entry[1].clone(),
                reason: entry[2].clone(),
            })
            .collect())
    }

    /// Reads the outbox depth and the dead-letter count afresh (a standby has no
    /// writes of its own to learn them from).
    pub async fn refresh_counts(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let (depth, dead): (u64, u64) = self
            .call(
                redis::pipe()
                    .cmd("XLEN")
                    .arg(&self.keys.outbox)
                    .cmd("XLEN")
                    .arg(&self.keys.dead)
                    .query_async(&mut conn),
            )
            .await?;
        self.gauges.set(depth, dead);
        Ok(())
    }

    /// The outbox's length, dead-letter count, bound and wake-up, as of the last
    /// write or refresh.
    pub fn gauges(&self) -> &Gauges {
        &self.gauges
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
