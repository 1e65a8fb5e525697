//! Sequencing and publication of events behind one narrow interface.
//!
//! A [`Broker`] decides each event's `seq` in its guild (strictly +1), remembers
//! "publish at most once" keys ([`OnceKey`]) and keeps history beyond this hub's
//! ring; with several hubs (the Redis broker) that order and memory must be shared.
//! What a hub does with a sequenced event is the same for every broker and lives in
//! [`LocalStream`]: the replay ring (bounded by count and age) and the subscribed
//! sockets' outboxes, with registration and replay under the lock of publication,
//! so a resuming browser gets every event after its `lastSeq` exactly once: no gap
//! between replay and live, no duplicate. The resume itself ([`Broker::subscribe`])
//! is written once, here, on top of the three things brokers differ in.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coven_contract::{Event, EventEnvelope, ServerMessage, Snowflake, Version};
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::fanout::{Frame, Outbox};
use crate::idempotency::SeenSet;
use crate::local_stream::LocalStream;
use crate::once_key::OnceKey;
use crate::redis_link::RedisLinkError;

/// How long a resume waits for this hub to reach the browser's `lastSeq` (the
/// browser came from a hub that read an event before this one did).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// Why the broker could not do its job (an in-process broker never fails; a
/// networked one can, e.g. while Redis is unreachable).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Redis refused the command or could not be reached.
    #[error("broker unavailable: Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The link to Redis could not be set up (a malformed `REDIS_URL`).
    #[error("broker unavailable: {0}")]
    Link(#[from] RedisLinkError),
    /// The event could not be serialised for the shared stream.
    #[error("broker unavailable: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What a subscriber gets when it registers.
#[derive(Debug)]
pub struct Subscription {
    /// `None` without `lastSeq`; otherwise whether every missed event is in `replay`.
    pub resumed: Option<bool>,
    /// The missed events, in `seq` order, to send before anything from the outbox.
    pub replay: Vec<Frame>,
}

/// The replay ring's state, for `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RingState {
    /// The last `seq` assigned (0 before any event).
    pub head_seq: u64,
    /// The oldest `seq` still replayable, if any.
    pub oldest_seq: Option<u64>,
    /// Events retained.
    pub len: usize,
    /// Sockets subscribed.
    pub subscribers: usize,
}

/// Assigns `seq` and feeds this hub's [`LocalStream`]; subscribing and the ring
/// are the local stream's, the same for every broker.
pub trait Broker: Send + Sync + 'static {
    /// This hub's stream, which the broker feeds with sequenced events.
    fn local(&self) -> &LocalStream;

    /// Publishes `event` unless one of `once_keys` was already published within the
    /// dedupe window (then returns `Ok(None)` and publishes nothing). Every key is
    /// remembered. Returns the assigned `seq`.
    fn publish(
        &self,
        event: Event,
        once_keys: Vec<OnceKey>,
    ) -> BoxFuture<'_, Result<Option<u64>, BrokerError>>;

    /// The last `seq` assigned to `guild` by the whole cluster, when a store beyond
    /// this hub knows it (`None` for the in-process broker, or when unreachable).
    fn seq(&self, guild: Snowflake) -> BoxFuture<'_, Option<u64>>;

    /// Events `(after, upto]` of `guild` from history beyond the local ring, when
    /// all of them are there and within the age limit.
    fn history(&self, guild: Snowflake, after: u64, upto: u64)
    -> BoxFuture<'_, Option<Vec<Frame>>>;

    /// Starts receiving `guild`'s events from the cluster (a no-op for a broker
    /// that sequences in this process). Needs a Tokio runtime to start anything.
    fn follow(&self, guild: Snowflake) {
        let _ = guild;
    }

    /// Whether the shared store behind the broker is reachable: `None` for a
    /// broker without one (the in-process broker), for health reporting.
    fn redis_up(&self) -> Option<bool> {
        None
    }

    /// Registers `outbox` for `guild`'s live events and returns, atomically with the
    /// registration, the events after `last_seq`: from the ring when it covers the
    /// gap, else from [`Self::history`]. A gap neither covers, or a `last_seq`
    /// ahead of the stream (it restarted or lost its data), answers `resumed:false`.
    fn subscribe(
        &self,
        guild: Snowflake,
        last_seq: Option<u64>,
        outbox: Arc<Outbox>,
    ) -> BoxFuture<'_, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            self.follow(guild);
            let local = self.local();
            let Some(last) = last_seq else {
                local.register(guild, outbox);
                return Ok(Subscription {
                    resumed: None,
                    replay: Vec::new(),
                });
            };
            // The browser may have seen events (on another hub) that this hub has
            // not read yet: wait briefly for them, so they are not sent twice.
            if last > local.head(guild) && self.seq(guild).await.is_some_and(|s| s >= last) {
                local.wait_for_head(guild, last, CATCH_UP_WAIT).await;
            }
            let (head, from_ring) = local.register_resuming(guild, last, outbox);
            let (resumed, replay) = match from_ring {
                Some(replay) => (true, replay),
                None if last >= head => (last == head, Vec::new()),
                None => match self.history(guild, last, head).await {
                    Some(replay) => (true, replay),
                    None => (false, Vec::new()),
                },
            };
            Ok(Subscription {
                resumed: Some(resumed),
                replay,
            })
        })
    }

    /// The replay ring of `guild`, for health reporting.
    fn ring_state(&self, guild: Snowflake) -> RingState {
        self.local().ring_state(guild)
    }
}

/// Limits of a broker's ring and dedupe memory.
#[derive(Debug, Clone, Copy)]
pub struct BrokerLimits {
    /// Events retained per guild.
    pub replay_capacity: usize,
    /// Oldest event retained.
    pub replay_max_age: Duration,
    /// Once-keys remembered.
    pub dedupe_capacity: usize,
    /// Once-keys remembered for this long.
    pub dedupe_max_age: Duration,
}

/// The single-process broker: `seq` and once-keys live in this hub's memory.
#[derive(Debug)]
pub struct InProcessBroker {
    local: LocalStream,
    seen: Mutex<SeenSet<OnceKey>>,
}

impl InProcessBroker {
    /// A broker with the given limits.
    pub fn new(limits: BrokerLimits) -> Self {
        Self {
            local: LocalStream::new(limits),
            seen: Mutex::new(SeenSet::new(limits.dedupe_capacity, limits.dedupe_max_age)),
        }
    }

    fn publish_now(&self, event: Event, once_keys: Vec<OnceKey>) -> Option<u64> {
        let now = Instant::now();
        let ts = unix_millis();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let duplicate = once_keys.iter().any(|key| seen.contains(key, now));
        for key in once_keys {
            seen.insert(key, now);
        }
        drop(seen);
        if duplicate {
            return None;
        }
        let guild = event.guild_id();
        Some(
            self.local
                .append(guild, ts, |seq| event_frame(event, ts, seq)),
        )
    }
}

impl Broker for InProcessBroker {
    fn local(&self) -> &LocalStream {
        &self.local
    }

    fn publish(
        &self,
        event: Event,
        once_keys: Vec<OnceKey>,
    ) -> BoxFuture<'_, Result<Option<u64>, BrokerError>> {
        let seq = self.publish_now(event, once_keys);
        Box::pin(async move { Ok(seq) })
    }

    fn seq(&self, _guild: Snowflake) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async { None })
    }

    fn history(
        &self,
        _guild: Snowflake,
        _after: u64,
        _upto: u64,
    ) -> BoxFuture<'_, Option<Vec<Frame>>> {
        Box::pin(async { None })
    }
}

/// The v1 envelope of `event`, serialised once for every socket.
pub(crate) fn event_frame(event: Event, ts: u64, seq: u64) -> Frame {
    Frame::from(
        ServerMessage::Event(EventEnvelope {
            v: Version,
            event,
            ts,
            seq,
        })
        .to_json(),
    )
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coven_contract::{VoiceJoined, VoiceLeft};

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    fn joined(user: u64) -> Event {
        Event::VoiceJoined(VoiceJoined {
            guild_id: id(1),
            channel_id: id(2),
            user_id: id(user),
        })
    }

    fn broker(capacity: usize) -> InProcessBroker {
        InProcessBroker::new(BrokerLimits {
            replay_capacity: capacity,
            replay_max_age: Duration::from_secs(60),
            dedupe_capacity: 100,
            dedupe_max_age: Duration::from_secs(60),
        })
    }

    fn key(id: &str) -> OnceKey {
        OnceKey::Event(id.into())
    }

    /// Subscribes through the broker's one resume path.
    fn subscribe(b: &InProcessBroker, last_seq: Option<u64>, outbox: Arc<Outbox>) -> Subscription {
        futures_util::FutureExt::now_or_never(b.subscribe(id(1), last_seq, outbox))
            .expect("the in-process broker never waits")
            .unwrap()
    }

    fn seq_of(frame: &Frame) -> u64 {
        match ServerMessage::parse(frame).unwrap() {
            ServerMessage::Event(e) => e.seq,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seq_is_strictly_plus_one_and_once_keys_dedupe() {
        let b = broker(10);
        assert_eq!(b.publish_now(joined(3), vec![key("a")]), Some(1));
        assert_eq!(b.publish_now(joined(3), vec![key("a")]), None);
        assert_eq!(b.publish_now(joined(4), vec![key("b"), key("c")]), Some(2));
        assert_eq!(b.publish_now(joined(4), vec![key("d"), key("c")]), None);
        assert_eq!(
            b.publish_now(joined(4), vec![key("d")]),
            None,
            "d was remembered"
        );
        let other_guild = Event::VoiceLeft(VoiceLeft {
            guild_id: id(9),
            channel_id: id(2),
            user_id: id(3),
        });
        assert_eq!(
            b.publish_now(other_guild, vec![]),
            Some(1),
            "seq is per guild"
        );
    }

    #[test]
    fn resume_replays_exactly_the_missed_events() {
        let b = broker(3);
        for user in 3..8 {
            b.publish_now(joined(user), vec![]);
        }
        // Ring holds 3, 4, 5.
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(2), Arc::new(outbox));
        assert_eq!(s.resumed, Some(true));
        assert_eq!(
            s.replay.iter().map(seq_of).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(1), Arc::new(outbox));
        assert_eq!(s.resumed, Some(false));
        assert!(s.replay.is_empty());
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(5), Arc::new(outbox));
        assert_eq!((s.resumed, s.replay.len()), (Some(true), 0));
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(50), Arc::new(outbox));
        assert_eq!(s.resumed, Some(false), "ahead of the hub: it restarted");
    }

    #[test]
    fn live_events_follow_the_replay_without_gap() {
        let b = broker(10);
        b.publish_now(joined(3), vec![]);
        let outbox = Arc::new(Outbox::new(1 << 20));
        let s = subscribe(&b, Some(0), outbox.clone());
        b.publish_now(joined(4), vec![]);
        assert_eq!(s.replay.iter().map(seq_of).collect::<Vec<_>>(), vec![1]);
        let mut live = Vec::new();
        outbox.take(&mut live, 64);
        assert_eq!(live.iter().map(seq_of).collect::<Vec<_>>(), vec![2]);
    }
}
