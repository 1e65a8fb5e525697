//! A [`Broker`] shared by several hubs through Redis (`REDIS_URL`).
//!
//! Why: behind a load balancer a browser may talk to any hub and the worker may
//! deliver to any hub, yet every browser must see the same events with the same
//! `seq`, and resume on any hub. So the order is decided in one place, Redis:
//!
//! * publish: one Lua script checks and sets the once-keys (`SET NX` with the
//!   dedupe window as expiry), `INCR`s the guild's `seq` and `XADD`s the event to
//!   the guild's stream with id `<seq>-0` (`MAXLEN ~` the replay capacity). Atomic,
//!   so two hubs never hand out one `seq` twice or announce one room twice.
//! * fan-out: every hub runs one reader task per guild (`XREAD BLOCK` from its last
//!   id) that turns each entry into an envelope frame once and hands it to this
//!   hub's sockets, keeping a local replay ring like [`InProcessBroker`]'s. The hub
//!   that published learns of its own event the same way, so every hub delivers
//!   in stream order.
//! * resume: the subscriber is registered under the local lock and the local head
//!   `H` remembered; `(lastSeq, H]` comes from the ring when it covers the gap, else
//!   from the stream (`XRANGE`); events after `H` arrive live. A gap older than the
//!   stream or the age limit answers `resumed:false`.
//!
//! When Redis is unreachable, publishing fails (the webhook answers 503 and the
//! worker retries), connected sockets keep their live stream from memory, new
//! sockets subscribe locally and resume from the ring when it covers the gap. The
//! reader reconnects with backoff and continues from its last id, so nothing that
//! Redis acknowledged is skipped.
//!
//! [`InProcessBroker`]: crate::InProcessBroker

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use coven_contract::{Event, Secret, Snowflake};
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::broker::{
    Broker, BrokerError, BrokerLimits, RingState, Subscription, event_frame, unix_millis,
};
use crate::fanout::{Frame, Outbox};
use crate::metrics::{PUBLISH_LATENCY, REPLAY_GAPS};
use crate::redis_link::RedisLink;

/// How long one `XREAD` blocks: also how quickly a silent outage is noticed.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries read at most per `XREAD`.
const READ_COUNT: usize = 512;
/// The reader's backoff after a failure: from `BACKOFF_MIN` doubling to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a resume waits for this hub's reader to reach the browser's `lastSeq`
/// (the browser came from a hub that read an event before this one did).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// `KEYS[1]` seq, `KEYS[2]` stream, `KEYS[3..]` once-keys; `ARGV[1]` event JSON,
/// `ARGV[2]` ts (ms), `ARGV[3]` stream length, `ARGV[4]` once-key lifetime (ms).
/// Returns the new `seq`, or 0 when a once-key was already set (every key given
/// is remembered either way, like the in-process broker).
static PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local seen = false
for i = 3, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[4]) == false then
    seen = true
  end
end
if seen then
  return 0
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'e', ARGV[1], 'ts', ARGV[2])
return seq
",
    )
});

/// The Redis-backed broker.
pub struct RedisBroker {
    link: Arc<RedisLink>,
    limits: BrokerLimits,
    streams: Mutex<HashMap<Snowflake, Arc<LocalStream>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("link", &self.link)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// This hub's view of one guild's stream.
#[derive(Debug)]
struct LocalStream {
    guild: Snowflake,
    inner: Mutex<Local>,
    /// The local head, for resumes waiting on the reader.
    head: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Local {
    /// The last `seq` this hub delivered.
    head_seq: u64,
    /// Recent events: `(seq, ts, frame)`.
    ring: VecDeque<(u64, u64, Frame)>,
    subscribers: Vec<Arc<Outbox>>,
    reader_started: bool,
}

impl Local {
    fn prune(&mut self, limits: &BrokerLimits, now_ms: u64) {
        let oldest_ms = now_ms.saturating_sub(millis(limits.replay_max_age));
        while self.ring.len() > limits.replay_capacity
            || self.ring.front().is_some_and(|(_, ts, _)| *ts < oldest_ms)
        {
            self.ring.pop_front();
        }
    }

    /// Forgets the ring and closes every subscriber with 1013, so their browsers
    /// reconnect and resume (or learn `resumed:false`) instead of missing events.
    fn drop_subscribers(&mut self) {
        for outbox in self.subscribers.drain(..) {
            outbox.overflow();
        }
        self.ring.clear();
    }
}

impl RedisBroker {
    /// A broker on the Redis at `url`. Connects lazily: fails only on a malformed
    /// URL, never because Redis is down.
    pub fn new(url: &Secret, limits: BrokerLimits) -> Result<Self, BrokerError> {
        let link = RedisLink::new(url).map_err(BrokerError)?;
        Ok(Self::with_link(Arc::new(link), limits))
    }

    pub(crate) fn with_link(link: Arc<RedisLink>, limits: BrokerLimits) -> Self {
        Self {
            link,
            limits,
            streams: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        }
    }

    /// Starts following `guild`'s stream now (it otherwise starts on first use).
    /// Needs a Tokio runtime.
    pub fn follow(&self, guild: Snowflake) {
        self.stream(guild);
    }

    /// Whether the last Redis command succeeded.
    pub fn redis_up(&self) -> bool {
        self.link.is_up()
    }

    /// The guild's local stream, its reader started when a runtime is available.
    fn stream(&self, guild: Snowflake) -> Arc<LocalStream> {
        let stream = self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(guild)
            .or_insert_with(|| {
                Arc::new(LocalStream {
                    guild,
                    inner: Mutex::new(Local::default()),
                    head: watch::channel(0).0,
                })
            })
            .clone();
        let start = {
            let mut local = stream.lock();
            let start = !local.reader_started && tokio::runtime::Handle::try_current().is_ok();
            local.reader_started |= start;
            start
        };
        if start {
            let reader = Reader {
                stream: Arc::downgrade(&stream),
                link: self.link.clone(),
                limits: self.limits,
                stream_key: RedisLink::key(guild, "events"),
                seq_key: RedisLink::key(guild, "seq"),
            };
            tokio::spawn(reader.run(self.stop.clone()));
        }
        stream
    }

    async fn publish_event(
        &self,
        event: Event,
        once_keys: Vec<String>,
    ) -> Result<Option<u64>, BrokerError> {
        let started = Instant::now();
        let guild = event.guild_id();
        self.stream(guild);
        let body = serde_json::to_string(&event).map_err(|e| BrokerError(e.to_string()))?;
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(RedisLink::key(guild, "seq"))
            .key(RedisLink::key(guild, "events"));
        for key in &once_keys {
            invocation.key(RedisLink::key(guild, &format!("once:{key}")));
        }
        invocation
            .arg(body)
            .arg(unix_millis())
            .arg(self.limits.replay_capacity.max(1))
            .arg(millis(self.limits.dedupe_max_age).max(1));
        let result: redis::RedisResult<u64> = invocation.invoke_async(&mut self.link.conn()).await;
        let seq = self
            .link
            .record("publish", result)
            .map_err(|e| BrokerError(format!("Redis: {e}")))?;
        metrics::histogram!(PUBLISH_LATENCY).record(started.elapsed().as_secs_f64());
        Ok((seq > 0).then_some(seq))
    }

    async fn subscribe_outbox(
        &self,
        guild: Snowflake,
        last_seq: Option<u64>,
        outbox: Arc<Outbox>,
    ) -> Subscription {
        let stream = self.stream(guild);
        let Some(last) = last_seq else {
            stream.register(&self.limits, outbox);
            return Subscription {
                resumed: None,
                replay: Vec::new(),
            };
        };
        // The browser may have seen events (on another hub) that this hub's reader
        // has not read yet: wait briefly for it, so they are not sent twice.
        if last > *stream.head.borrow() && self.seq_in_redis(guild).await.is_some_and(|s| s >= last)
        {
            let mut head = stream.head.subscribe();
            let _ = tokio::time::timeout(CATCH_UP_WAIT, head.wait_for(|h| *h >= last)).await;
        }
        let (head, from_ring) = stream.register_resuming(&self.limits, last, outbox);
        if let Some(replay) = from_ring {
            return Subscription {
                resumed: Some(true),
                replay,
            };
        }
        if last >= head {
            // Ahead of the stream: Redis lost its data (or the browser is confused).
            return Subscription {
                resumed: Some(last == head),
                replay: Vec::new(),
            };
        }
        match self.replay_from_redis(guild, last, head).await {
            Some(replay) => Subscription {
                resumed: Some(true),
                replay,
            },
            None => Subscription {
                resumed: Some(false),
                replay: Vec::new(),
            },
        }
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
        let oldest_ms = unix_millis().saturating_sub(millis(self.limits.replay_max_age));
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

impl LocalStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, limits: &BrokerLimits, outbox: Arc<Outbox>) {
        let mut local = self.lock();
        local.prune(limits, unix_millis());
        local.subscribers.retain(|o| o.is_open());
        local.subscribers.push(outbox);
    }

    /// Registers `outbox` and returns the local head `H` and, when the ring covers
    /// `(last, H]`, those events.
    fn register_resuming(
        &self,
        limits: &BrokerLimits,
        last: u64,
        outbox: Arc<Outbox>,
    ) -> (u64, Option<Vec<Frame>>) {
        let mut local = self.lock();
        local.prune(limits, unix_millis());
        local.subscribers.retain(|o| o.is_open());
        local.subscribers.push(outbox);
        let head = local.head_seq;
        let covered = last < head
            && local
                .ring
                .front()
                .is_some_and(|(oldest, _, _)| *oldest <= last + 1);
        let replay = covered.then(|| {
            local
                .ring
                .iter()
                .filter(|(seq, _, _)| *seq > last)
                .map(|(_, _, frame)| frame.clone())
                .collect()
        });
        (head, replay)
    }

    /// Delivers entries read from the stream, in order.
    fn deliver(&self, limits: &BrokerLimits, entries: Vec<(u64, u64, Frame)>) {
        let mut local = self.lock();
        let before = local.subscribers.len();
        let mut delivered = 0;
        let mut published = 0;
        for (seq, ts, frame) in entries {
            if seq <= local.head_seq {
                continue;
            }
            if seq != local.head_seq + 1 {
                metrics::counter!(REPLAY_GAPS).increment(1);
                tracing::warn!(
                    guild = %self.guild,
                    from = local.head_seq + 1,
                    to = seq - 1,
                    "events left the Redis stream before this hub read them: its browsers must resume"
                );
                local.drop_subscribers();
            }
            local.head_seq = seq;
            local.ring.push_back((seq, ts, frame.clone()));
            local.subscribers.retain(|outbox| outbox.deliver(&frame));
            delivered += local.subscribers.len();
            published += 1;
        }
        local.prune(limits, unix_millis());
        let head = local.head_seq;
        let left = before.saturating_sub(local.subscribers.len());
        drop(local);
        self.head.send_replace(head);
        metrics::counter!("hub_events_out_total").increment(published);
        metrics::counter!("hub_deliveries_total").increment(delivered as u64);
        if left > 0 {
            tracing::debug!(dropped = left, "subscribers left the stream");
        }
    }

    /// Redis holds fewer events than this hub delivered: its data was lost (a
    /// restart without persistence). Start over from Redis's `seq`.
    fn reset(&self, seq: u64) {
        let mut local = self.lock();
        tracing::warn!(
            guild = %self.guild,
            local = local.head_seq,
            redis = seq,
            "Redis lost events this hub delivered; browsers must resync"
        );
        local.drop_subscribers();
        local.head_seq = seq;
        drop(local);
        self.head.send_replace(seq);
    }
}

impl Broker for RedisBroker {
    fn publish(
        &self,
        event: Event,
        once_keys: Vec<String>,
    ) -> BoxFuture<'_, Result<Option<u64>, BrokerError>> {
        Box::pin(self.publish_event(event, once_keys))
    }

    fn subscribe(
        &self,
        guild: Snowflake,
        last_seq: Option<u64>,
        outbox: Arc<Outbox>,
    ) -> BoxFuture<'_, Result<Subscription, BrokerError>> {
        Box::pin(async move { Ok(self.subscribe_outbox(guild, last_seq, outbox).await) })
    }

    fn ring_state(&self, guild: Snowflake) -> RingState {
        let Some(stream) = self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&guild)
            .cloned()
        else {
            return RingState::default();
        };
        let local = stream.lock();
        RingState {
            head_seq: local.head_seq,
            oldest_seq: local.ring.front().map(|(seq, _, _)| *seq),
            len: local.ring.len(),
            subscribers: local.subscribers.iter().filter(|o| o.is_open()).count(),
        }
    }

    fn redis_up(&self) -> Option<bool> {
        Some(self.link.is_up())
    }
}

/// One guild's reader task: follows the stream and delivers to the local stream.
struct Reader {
    stream: Weak<LocalStream>,
    link: Arc<RedisLink>,
    limits: BrokerLimits,
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
        let options = StreamReadOptions::default()
            .block(usize::try_from(READ_BLOCK.as_millis()).unwrap_or(1000))
            .count(READ_COUNT);
        let mut synced = false;
        let mut backoff = BACKOFF_MIN;
        loop {
            let Some(stream) = self.stream.upgrade() else {
                return;
            };
            let step = async {
                if !synced {
                    self.sync(&stream).await?;
                    synced = true;
                }
                let last_id = format!("{}-0", *stream.head.borrow());
                let result: redis::RedisResult<Option<redis::streams::StreamReadReply>> = conn
                    .xread_options(&[&self.stream_key], &[&last_id], &options)
                    .await;
                let reply = self.link.record("read", result)?;
                let entries: Vec<(u64, u64, Frame)> = reply
                    .into_iter()
                    .flat_map(|reply| reply.keys)
                    .flat_map(|key| key.ids)
                    .filter_map(|entry| {
                        let frame = entry_frame(&entry);
                        if frame.is_none() {
                            tracing::error!(
                                id = entry.id,
                                "unreadable entry in the Redis stream skipped"
                            );
                        }
                        frame
                    })
                    .collect();
                if !entries.is_empty() {
                    stream.deliver(&self.limits, entries);
                }
                Ok::<(), redis::RedisError>(())
            };
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                result = step => result,
            };
            drop(stream);
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
    /// an outage, continue from the local head unless Redis lost its data.
    ///
    /// It reads through the shared connection on purpose: that connection only
    /// reconnects when a command fails, so this makes it reconnect before Redis is
    /// reported up again and the next publish succeeds.
    async fn sync(&self, stream: &LocalStream) -> redis::RedisResult<()> {
        let result: redis::RedisResult<Option<u64>> = self.link.conn().get(&self.seq_key).await;
        let seq = self.link.record("sync", result)?.unwrap_or(0);
        let (head, fresh) = {
            let local = stream.lock();
            (local.head_seq, local.head_seq == 0 && local.ring.is_empty())
        };
        if fresh {
            stream.lock().head_seq = seq;
            stream.head.send_replace(seq);
        } else if seq < head {
            stream.reset(seq);
        }
        Ok(())
    }
}

/// `(seq, ts, envelope frame)` of a stream entry, `None` when malformed.
fn entry_frame(entry: &StreamId) -> Option<(u64, u64, Frame)> {
    let seq: u64 = entry.id.strip_suffix("-0")?.parse().ok()?;
    let ts: u64 = entry.get::<String>("ts")?.parse().ok()?;
    let body: String = entry.get("e")?;
    let event: Event = serde_json::from_str(&body).ok()?;
    Some((seq, ts, event_frame(event, ts, seq)))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
