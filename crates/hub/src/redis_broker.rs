//! A [`Broker`] shared by several hubs through Redis (`REDIS_URL`).
//!
//! Why: behind a load balancer a browser may talk to any hub and the worker may
//! deliver to any hub, yet every browser must see the same events with the same
//! `seq`, and resume on any hub. So the order is decided in one place, Redis:
//!
//! * publish: one Lua script checks and sets the once-keys (`SET NX`, expiring
//!   after the dedupe window, a room's after its lifetime), `INCR`s the guild's
//!   `seq` and `XADD`s the event to the guild's stream with id `<seq>-0`
//!   (`MAXLEN ~` the replay capacity). Atomic, so two hubs never hand out one
//!   `seq` twice or announce one room twice. A missing `seq` key (Redis lost its
//!   data) starts a new stream at the clock-derived base, above every `seq`
//!   handed out before, so `seq` never goes backwards and an old `lastSeq` is
//!   answered `resumed:false` (see `docs/contract.md`).
//! * group commit: the webhooks that arrive while a script call is on its way
//!   wait in a queue ([`PUBLISH_QUEUE`] at most) and go together in the next
//!   call, one script call (one round trip) for the lot, in the order they
//!   arrived; each is acknowledged when its call returned, so only once its
//!   event is in the stream. One call at a time per hub: what it sends is all
//!   that queued meanwhile, so the batch grows with the load and one event alone
//!   goes at once (docs/benchmarks.md, "Ingest").
//! * fan-out: every hub runs one reader task per guild (`XREAD BLOCK` from its last
//!   id) that turns each entry into an envelope frame once and hands it to this
//!   hub's sockets through the [`LocalStream`] (ring and subscribers, the same as
//!   [`InProcessBroker`]'s). Every hub delivers in stream order: the hub that
//!   published hands its own events to its sockets as soon as Redis answered
//!   when they directly follow what it delivered last, and otherwise learns of
//!   them from the stream like the others. While it publishes, its reader keeps
//!   out of a blocking `XREAD` that its own `XADD`s would wake for nothing, and
//!   reads when a call's events did not follow the head
//!   ([`crate::publish_activity`]).
//! * resume ([`Broker::subscribe`]): `(lastSeq, H]` comes from the local ring when
//!   it covers the gap, else from the stream (`XRANGE`, [`Broker::history`]);
//!   events after `H` arrive live. A gap older than the stream or the age limit
//!   answers `resumed:false`.
//!
//! When Redis is unreachable, publishing fails (the webhook answers 503 and the
//! worker retries), connected sockets keep their live stream from memory, new
//! sockets subscribe locally and resume from the ring when it covers the gap. The
//! reader reconnects with backoff and continues from its last id, so nothing that
//! Redis acknowledged is skipped.
//!
//! [`InProcessBroker`]: crate::InProcessBroker
//! [`LocalStream`]: crate::LocalStream

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use coven_contract::{Event, Secret, Snowflake};
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, BrokerLimits, event_frame, stream_base, unix_millis};
use crate::fanout::Frame;
use crate::local_stream::{Entry, LocalStream};
use crate::once_key::OnceKey;
use crate::publish_activity::{Activities, Activity, Turn};
use crate::redis_link::RedisLink;

/// How long one `XREAD` blocks: also how quickly a silent outage is noticed.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries a stream may hold beyond its `MAXLEN ~` (Redis trims whole nodes of
/// `stream-node-max-entries`, 100 by default).
const STREAM_SLACK: u64 = 1024;
/// Entries read at most per `XREAD`.
const READ_COUNT: usize = 512;
/// The reader's backoff after a failure: from `BACKOFF_MIN` doubling to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Events waiting for the next publish call, at most; a publish beyond waits
/// for room (each is a webhook request in flight, already bounded by the
/// connection limits).
const PUBLISH_QUEUE: usize = 1024;
/// Events sent in one publish call, at most: bounds how long the script holds
/// Redis (a few µs per event).
const BATCH_MAX: usize = 128;

/// Lua run first by both scripts: when the guild's `seq` key is missing (a new
/// cluster, or Redis lost its data: a restart without persistence, `FLUSHALL`),
/// a new stream starts at `ARGV[1]`, the clock-derived base ([`stream_base`]),
/// or above the stream's last entry if that is higher. `ARGV[1]` is the hub's
/// clock when it sent the call, which may have waited out a Redis outage, so
/// Redis's own clock at the start (`TIME`, the same Unix ms × 1000) is taken too,
/// whichever is higher. `KEYS[1]` seq, `KEYS[2]` stream. Values are handled as
/// strings: Lua's numbers print 16 digits badly.
const START_STREAM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  local base = ARGV[1]
  local t = redis.call('TIME')
  local now = t[1] .. string.sub(string.format('%06d', tonumber(t[2])), 1, 3) .. '000'
  if tonumber(now) > tonumber(base) then
    base = now
  end
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
  if top then
    local last = string.match(top[1], '^%d+')
    if tonumber(last) > tonumber(base) then
      base = last
    end
  end
  redis.call('SET', KEYS[1], base)
end
";

/// Publishes a batch of events of one guild, in order. `KEYS[1]` seq, `KEYS[2]`
/// stream, then for each event its once-keys and the keys of rooms it deletes;
/// `ARGV[1]` stream base, `ARGV[2]` ts (ms), `ARGV[3]` stream length, `ARGV[4]`
/// the dedupe window (ms), `ARGV[5]` the number of events, then for each event:
/// its number of once-keys `n`, of deleted rooms' keys `r`, its JSON, and each
/// once-key's lifetime (ms). Returns one `seq` per event, or 0 when one of its
/// once-keys was already set (also by an earlier event of the batch). Every key
/// given is remembered either way, like the in-process broker; a room's key is
/// refreshed when seen again, and a deleted room's is kept for the dedupe window
/// only. The new events take the next `seq`s in their order with one `INCRBY`
/// (the values stay below 2^53, where Lua's numbers are exact and `%d` prints
/// them whole), and the keys and stream entries are those that one event at a
/// time would make, so hubs of a rolling deploy agree.
static PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{START_STREAM}{}",
        r"
local ts = ARGV[2]
local maxlen = ARGV[3]
local window = tonumber(ARGV[4])
local events = tonumber(ARGV[5])
local k = 3
local a = 6
local fresh = {}
local bodies = {}
local count = 0
for e = 1, events do
  local n, r = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  bodies[e] = ARGV[a + 2]
  a = a + 3
  local seen = false
  for i = 1, n do
    local key, life = KEYS[k], ARGV[a]
    k = k + 1
    a = a + 1
    if redis.call('SET', key, '1', 'NX', 'PX', life) == false then
      seen = true
      if tonumber(life) > window then
        redis.call('PEXPIRE', key, life)
      end
    end
  end
  for i = 1, r do
    local ttl = redis.call('PTTL', KEYS[k])
    if ttl == -1 or ttl > window then
      redis.call('PEXPIRE', KEYS[k], window)
    end
    k = k + 1
  end
  if not seen then
    count = count + 1
    fresh[e] = true
  end
end
local seqs = {}
local seq = 0
if count > 0 then
  seq = redis.call('INCRBY', KEYS[1], count) - count
end
for e = 1, events do
  if fresh[e] then
    seq = seq + 1
    local id = string.format('%d', seq)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, id .. '-0', 'e', bodies[e], 'ts', ts)
    seqs[e] = id
  else
    seqs[e] = '0'
  end
end
return seqs
"
    ))
});

/// `KEYS[1]` seq, `KEYS[2]` stream, `ARGV[1]` stream base: the guild's current
/// `seq` (as a string), starting a stream when there is none.
static CURRENT_SEQ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!("{START_STREAM}return redis.call('GET', KEYS[1])"))
});

/// The Redis-backed broker.
pub struct RedisBroker {
    link: Arc<RedisLink>,
    local: Arc<LocalStream>,
    /// Guilds whose reader runs.
    followed: Mutex<HashSet<Snowflake>>,
    /// The queue of the publishing task, started by the first publish.
    publisher: OnceLock<mpsc::Sender<Pending>>,
    /// Each guild's publish calls, which its reader keeps out of the way of.
    activities: Arc<Activities>,
    stop: CancellationToken,
}

/// One event waiting for the next publish call.
struct Pending {
    guild: Snowflake,
    event: Event,
    /// The event's JSON, as stored in the stream.
    body: String,
    /// Its once-keys' Redis names and lifetimes (ms).
    once_keys: Vec<(String, u64)>,
    /// The Redis name of the room key it releases, if any.
    released: Option<String>,
    /// Its `seq`, 0 for a duplicate, once the call returned.
    done: oneshot::Sender<redis::RedisResult<u64>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("link", &self.link)
            .field("limits", self.local.limits())
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A broker on the Redis at `url`. Connects lazily: fails only on a malformed
    /// URL, never because Redis is down.
    pub fn new(url: &Secret, limits: BrokerLimits) -> Result<Self, BrokerError> {
        let link = RedisLink::new(url)?;
        Ok(Self::with_link(Arc::new(link), limits))
    }

    pub(crate) fn with_link(link: Arc<RedisLink>, limits: BrokerLimits) -> Self {
        Self {
            link,
            local: Arc::new(LocalStream::following(limits)),
            followed: Mutex::new(HashSet::new()),
            publisher: OnceLock::new(),
            activities: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    /// Whether the last Redis command succeeded.
    pub fn redis_up(&self) -> bool {
        self.link.is_up()
    }

    fn limits(&self) -> &BrokerLimits {
        self.local.limits()
    }

    async fn publish_event(
        &self,
        event: Event,
        once_keys: Vec<OnceKey>,
    ) -> Result<Option<u64>, BrokerError> {
        let started = Instant::now();
        let guild = event.guild_id();
        self.follow(guild);
        let window = self.limits().dedupe_max_age;
        let (done, result) = oneshot::channel();
        let pending = Pending {
            guild,
            body: serde_json::to_string(&event)?,
            once_keys: once_keys
                .iter()
                .map(|key| (once_key(guild, key), millis(key.lifetime(window)).max(1)))
                .collect(),
            released: OnceKey::released_by(&event).map(|key| once_key(guild, &key)),
            event,
            done,
        };
        self.publisher()
            .send(pending)
            .await
            .map_err(|_| BrokerError::Stopped)?;
        let seq = result.await.map_err(|_| BrokerError::Stopped)??;
        crate::metrics::ingest()
            .publish_latency
            .record(started.elapsed().as_secs_f64());
        Ok((seq > 0).then_some(seq))
    }

    /// The publishing task's queue, starting the task on first use.
    fn publisher(&self) -> &mpsc::Sender<Pending> {
        self.publisher.get_or_init(|| {
            let (queue, pending) = mpsc::channel(PUBLISH_QUEUE);
            let publisher = Publisher {
                link: self.link.clone(),
                local: Arc::downgrade(&self.local),
                activities: self.activities.clone(),
                limits: *self.limits(),
                pending,
            };
            tokio::spawn(publisher.run(self.stop.clone()));
            queue
        })
    }

    async fn seq_in_redis(&self, guild: Snowflake) -> Option<u64> {
        let result: redis::RedisResult<Option<u64>> =
            self.link.conn().get(RedisLink::key(guild, "seq")).await;
        self.link
            .record("seq", result)
            .ok()
            .map(Option::unwrap_or_default)
    }

    /// Events `(last, head]` from the stream, when the stream still holds all of
    /// them and the oldest is within the age limit.
    async fn replay_from_redis(
        &self,
        guild: Snowflake,
        last: u64,
        head: u64,
    ) -> Option<Vec<Frame>> {
        // The stream holds at most its capacity plus one node that `MAXLEN ~` did
        // not trim yet: a longer gap (e.g. a `lastSeq` of an earlier stream) cannot
        // be filled, and is refused without reading the whole stream.
        let most = self.limits().replay_capacity as u64 + STREAM_SLACK;
        if head.saturating_sub(last) > most {
            return None;
        }
        let result: redis::RedisResult<StreamRangeReply> = self
            .link
            .conn()
            .xrange(
                RedisLink::key(guild, "events"),
                format!("{}-0", last + 1),
                format!("{head}-0"),
            )
            .await;
        let reply = self.link.record("replay", result).ok()?;
        let oldest_ms = unix_millis().saturating_sub(millis(self.limits().replay_max_age));
        let mut frames = Vec::with_capacity(reply.ids.len());
        for (expected, entry) in (last + 1..=head).zip(&reply.ids) {
            let (seq, ts, frame) = entry_frame(entry)?;
            if seq != expected || (expected == last + 1 && ts < oldest_ms) {
                return None;
            }
            frames.push(frame);
        }
        (frames.len() as u64 == head - last).then_some(frames)
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Broker for RedisBroker {
    fn local(&self) -> &LocalStream {
        &self.local
    }

    fn publish(
        &self,
        event: Event,
        once_keys: Vec<OnceKey>,
    ) -> BoxFuture<'_, Result<Option<u64>, BrokerError>> {
        Box::pin(self.publish_event(event, once_keys))
    }

    fn seq(&self, guild: Snowflake) -> BoxFuture<'_, Option<u64>> {
        Box::pin(self.seq_in_redis(guild))
    }

    fn history(
        &self,
        guild: Snowflake,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'_, Option<Vec<Frame>>> {
        Box::pin(self.replay_from_redis(guild, after, upto))
    }

    /// Starts the guild's reader when a runtime is available (it otherwise starts
    /// on the next use).
    fn follow(&self, guild: Snowflake) {
        if tokio::runtime::Handle::try_current().is_err()
            || !self
                .followed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(guild)
        {
            return;
        }
        let reader = Reader {
            local: Arc::downgrade(&self.local),
            guild,
            activity: self.activities.of(guild),
            link: self.link.clone(),
            stream_key: RedisLink::key(guild, "events"),
            seq_key: RedisLink::key(guild, "seq"),
        };
        tokio::spawn(reader.run(self.stop.clone()));
    }

    fn redis_up(&self) -> Option<bool> {
        Some(self.link.is_up())
    }
}

/// One guild's reader task: follows the stream and delivers to the local stream.
struct Reader {
    local: Weak<LocalStream>,
    guild: Snowflake,
    /// This hub's publish calls to the guild (`crate::publish_activity`).
    activity: Arc<Activity>,
    link: Arc<RedisLink>,
    stream_key: String,
    seq_key: String,
}

impl Reader {
    async fn run(self, cancel: CancellationToken) {
        let mut conn = match self.link.blocking_conn(READ_BLOCK) {
            Ok(conn) => conn,
            Err(error) => {
                tracing::error!(%error, "the Redis stream reader cannot start");
                return;
            }
        };
        let count = StreamReadOptions::default().count(READ_COUNT);
        let blocking = StreamReadOptions::default()
            .count(READ_COUNT)
            .block(usize::try_from(READ_BLOCK.as_millis()).unwrap_or(1000));
        let mut synced = false;
        let mut backoff = BACKOFF_MIN;
        loop {
            let Some(local) = self.local.upgrade() else {
                return;
            };
            let step = async {
                if !synced {
                    self.sync(&local).await?;
                    synced = true;
                }
                // While this hub publishes, a blocking read would be woken by its
                // own events only to skip them: wait for a call that needs a read.
                let options = match self.activity.turn() {
                    Turn::Block => &blocking,
                    Turn::Wait(until) => {
                        tokio::select! {
                            () = self.activity.read_now() => &count,
                            () = tokio::time::sleep_until(until) => return Ok(()),
                        }
                    }
                };
                let last_id = format!("{}-0", local.head(self.guild));
                let result: redis::RedisResult<redis::Value> = conn
                    .xread_options(&[&self.stream_key], &[&last_id], options)
                    .await;
                let reply = self.link.record("read", result)?;
                let entries = new_entries(reply, local.head(self.guild))?;
                if !entries.is_empty() {
                    local.deliver(self.guild, entries);
                }
                Ok::<(), redis::RedisError>(())
            };
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                result = step => result,
            };
            drop(local);
            if result.is_ok() {
                backoff = BACKOFF_MIN;
                continue;
            }
            // Reconnecting: check on the way back that Redis still has our events.
            synced = false;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Aligns the local head with Redis: on first start, follow from Redis's
    /// current `seq` (older events are replayed from the stream on demand); after
    /// an outage, continue from the local head unless Redis lost its data. A
    /// missing `seq` key starts the new stream here already (at its clock-derived
    /// base), so a snapshot taken before the first event names a position in it.
    ///
    /// It reads through the shared connection on purpose: that connection only
    /// reconnects when a command fails, so this makes it reconnect before Redis is
    /// reported up again and the next publish succeeds.
    async fn sync(&self, local: &LocalStream) -> redis::RedisResult<()> {
        let result: redis::RedisResult<Option<u64>> = CURRENT_SEQ
            .key(&self.seq_key)
            .key(&self.stream_key)
            .arg(stream_base(unix_millis()))
            .invoke_async(&mut self.link.conn())
            .await;
        let seq = self.link.record("sync", result)?.unwrap_or(0);
        local.sync(self.guild, seq);
        Ok(())
    }
}

/// The publishing task: sends what queued up as one script call, one call at a
/// time, and answers each event with its `seq`.
struct Publisher {
    link: Arc<RedisLink>,
    /// Where the batch's events go at once when they follow the local head.
    local: Weak<LocalStream>,
    /// What the guilds' readers learn of each call.
    activities: Arc<Activities>,
    limits: BrokerLimits,
    pending: mpsc::Receiver<Pending>,
}

impl Publisher {
    async fn run(mut self, cancel: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let mut next = None;
        loop {
            let first = if let Some(first) = next.take() {
                first
            } else {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    first = self.pending.recv() => match first {
                        Some(first) => first,
                        None => return,
                    },
                }
            };
            // Everything of the same guild that queued meanwhile, in order (a
            // script call touches one guild's keys).
            let guild = first.guild;
            batch.push(first);
            while batch.len() < BATCH_MAX {
                match self.pending.try_recv() {
                    Ok(more) if more.guild == guild => batch.push(more),
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let activity = self.activities.of(guild);
            activity.start();
            tokio::select! {
                () = cancel.cancelled() => return,
                delivered = self.publish(guild, &mut batch) => activity.end(!delivered),
            }
        }
    }

    /// One script call for `batch`; answers (and empties) it. Returns whether its
    /// events were delivered here (else the reader must read them).
    async fn publish(&self, guild: Snowflake, batch: &mut Vec<Pending>) -> bool {
        let ts = unix_millis();
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(RedisLink::key(guild, "seq"))
            .key(RedisLink::key(guild, "events"))
            .arg(stream_base(ts))
            .arg(ts)
            .arg(self.limits.replay_capacity.max(1))
            .arg(millis(self.limits.dedupe_max_age).max(1))
            .arg(batch.len());
        for event in batch.iter() {
            invocation
                .arg(event.once_keys.len())
                .arg(usize::from(event.released.is_some()))
                .arg(&event.body);
            for (key, life) in &event.once_keys {
                invocation.key(key).arg(life);
            }
            if let Some(released) = &event.released {
                invocation.key(released);
            }
        }
        let result: redis::RedisResult<Vec<u64>> =
            invocation.invoke_async(&mut self.link.conn()).await;
        let result = self.link.record("publish", result);
        match result {
            Ok(seqs) if seqs.len() == batch.len() => {
                // Delivered before answering: a webhook's own hub has its event
                // in its stream by the time the worker hears "ok".
                let mut entries = Vec::with_capacity(batch.len());
                let mut answers = Vec::with_capacity(batch.len());
                for (pending, seq) in batch.drain(..).zip(seqs) {
                    if seq > 0 {
                        entries.push((seq, ts, event_frame(pending.event, ts, seq)));
                    }
                    answers.push((pending.done, seq));
                }
                let delivered = self.deliver(guild, entries);
                for (done, seq) in answers {
                    let _ = done.send(Ok(seq));
                }
                delivered
            }
            Ok(seqs) => {
                tracing::error!(
                    events = batch.len(),
                    answers = seqs.len(),
                    "the publish script answered the wrong number of seqs"
                );
                for event in batch.drain(..) {
                    let _ = event.done.send(Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "the publish script answered the wrong number of seqs",
                    ))));
                }
                false
            }
            Err(error) => {
                for event in batch.drain(..) {
                    let _ = event.done.send(Err(error.clone()));
                }
                false
            }
        }
    }

    /// Hands the batch's published events (consecutive `seq`s, in order) to this
    /// hub's stream at once when nothing comes between them and what it delivered
    /// last: then they are the stream's next events, and the reader, which reads
    /// them too, skips them (its head is past them). Otherwise (events of other
    /// hubs not read yet, or the reader not started) the reader delivers them in
    /// stream order. The head only grows meanwhile, so [`LocalStream::deliver`]
    /// at worst skips some that the reader delivered first. Returns whether it
    /// delivered them (a batch of duplicates only has nothing to deliver).
    fn deliver(&self, guild: Snowflake, entries: Vec<Entry>) -> bool {
        let Some(local) = self.local.upgrade() else {
            return false;
        };
        let Some((first, _, _)) = entries.first() else {
            return true;
        };
        let head = local.head(guild);
        if head != 0 && head + 1 >= *first {
            local.deliver(guild, entries);
            return true;
        }
        false
    }
}

/// The entries of an `XREAD` answer above `head`, in order. The publishing hub
/// delivered its own events already (see [`Publisher::deliver`]), so an entry is
/// read as far as its id first and converted only when it is new; the raw reply
/// is walked rather than converted whole, which would build a map per entry.
fn new_entries(reply: redis::Value, head: u64) -> redis::RedisResult<Vec<Entry>> {
    use redis::Value;
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        // RESP2: [[key, entries]]; RESP3: {key: entries}.
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        other => {
            // Not a shape seen in practice: the redis crate's own conversion.
            let reply: Option<redis::streams::StreamReadReply> = redis::from_redis_value(other)?;
            return Ok(reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
                .filter(|entry| entry_seq(entry).is_none_or(|seq| seq > head))
                .filter_map(|entry| readable(&entry.id, entry_frame(&entry)))
                .collect());
        }
    };
    let mut entries = Vec::new();
    for stream in streams {
        let Value::Array(items) = stream else {
            continue;
        };
        for item in items {
            let Value::Array(mut parts) = item else {
                continue;
            };
            let (Some(fields), Some(Value::BulkString(id))) = (parts.pop(), parts.pop()) else {
                continue;
            };
            let id = String::from_utf8_lossy(&id);
            let seq = id
                .strip_suffix("-0")
                .and_then(|seq| seq.parse::<u64>().ok());
            if seq.is_some_and(|seq| seq <= head) {
                continue;
            }
            let entry = seq.and_then(|seq| raw_entry(seq, fields));
            if let Some(entry) = readable(&id, entry) {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

/// `(seq, ts, frame)` from an entry's raw fields (`e` the event JSON, `ts`).
fn raw_entry(seq: u64, fields: redis::Value) -> Option<Entry> {
    use redis::Value;
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            let mut flat = flat.into_iter();
            std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    let (mut event, mut ts) = (None, None);
    for (name, value) in pairs {
        let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else {
            continue;
        };
        match name.as_slice() {
            b"e" => event = serde_json::from_slice::<Event>(&value).ok(),
            b"ts" => ts = std::str::from_utf8(&value).ok()?.parse::<u64>().ok(),
            _ => {}
        }
    }
    let (event, ts) = (event?, ts?);
    Some((seq, ts, event_frame(event, ts, seq)))
}

/// `entry`, or a logged skip when it could not be read.
fn readable(id: &str, entry: Option<Entry>) -> Option<Entry> {
    if entry.is_none() {
        tracing::error!(id, "unreadable entry in the Redis stream skipped");
    }
    entry
}

/// `(seq, ts, envelope frame)` of a stream entry, `None` when malformed.
fn entry_frame(entry: &StreamId) -> Option<Entry> {
    let seq = entry_seq(entry)?;
    let ts: u64 = entry.get::<String>("ts")?.parse().ok()?;
    let body: String = entry.get("e")?;
    let event: Event = serde_json::from_str(&body).ok()?;
    Some((seq, ts, event_frame(event, ts, seq)))
}

/// The `seq` of a stream entry (its id is `<seq>-0`), `None` when malformed.
fn entry_seq(entry: &StreamId) -> Option<u64> {
    entry.id.strip_suffix("-0")?.parse().ok()
}

/// The Redis key of a once-key of `guild`.
fn once_key(guild: Snowflake, key: &OnceKey) -> String {
    RedisLink::key(guild, &format!("once:{key}"))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use coven_contract::{ServerMessage, VoiceJoined};
    use redis::Value;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn body(user: u64) -> String {
        let id = |n| Snowflake::new(n).unwrap();
        serde_json::to_string(&Event::VoiceJoined(VoiceJoined {
            guild_id: id(1),
            channel_id: id(2),
            user_id: id(user),
        }))
        .unwrap()
    }

    /// A RESP2 entry: `[id, [e, <json>, ts, <ms>]]`.
    fn entry(id: &str, event: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![bulk("e"), bulk(event), bulk("ts"), bulk("1700")]),
        ])
    }

    fn seqs(entries: &[Entry]) -> Vec<u64> {
        entries
            .iter()
            .map(|(seq, ts, frame)| {
                assert_eq!(*ts, 1700);
                match ServerMessage::parse(frame).unwrap() {
                    ServerMessage::Event(envelope) => assert_eq!(envelope.seq, *seq),
                    other => panic!("{other:?}"),
                }
                *seq
            })
            .collect()
    }

    #[test]
    fn an_xread_answer_yields_the_readable_entries_above_the_head() {
        let entries = Value::Array(vec![
            entry("10-0", "not even json"),
            entry("11-0", &body(3)),
            entry("12-0", "{}"),
            entry("garbage", &body(4)),
            entry("13-0", &body(5)),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("stream"), entries.clone()])]);
        assert_eq!(
            seqs(&new_entries(resp2, 10).unwrap()),
            [11, 13],
            "at or below the head: not read; unreadable: skipped"
        );
        let resp3 = Value::Map(vec![(bulk("stream"), entries)]);
        assert_eq!(seqs(&new_entries(resp3, 11).unwrap()), [13]);
        assert!(new_entries(Value::Nil, 0).unwrap().is_empty(), "timed out");
    }
}
