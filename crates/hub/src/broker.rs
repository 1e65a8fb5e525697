//! Sequencing, replay and publication of events behind one narrow interface.
//!
//! The [`Broker`] assigns each event the next `seq` of its guild, serialises it once,
//! keeps it in a replay ring (bounded by count and age) and hands it to every
//! subscribed socket's outbox. Subscribing registers the outbox and snapshots the
//! missed events in one step under the same lock as publication, so a resuming
//! browser gets every event after its `lastSeq` exactly once: no gap between replay
//! and live, no duplicate. It also owns "publish at most once per key" (webhook event
//! ids, one `room.created` per channel), because with several hubs (a later Redis
//! broker) that memory must be shared exactly like `seq`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coven_contract::{Event, EventEnvelope, ServerMessage, Snowflake, Version};
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::fanout::{Frame, Outbox};
use crate::idempotency::SeenSet;

/// Why the broker could not do its job (an in-process broker never fails; a
/// networked one can, e.g. while Redis is unreachable).
#[derive(Debug, thiserror::Error)]
#[error("broker unavailable: {0}")]
pub struct BrokerError(pub String);

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

/// Assigns `seq`, retains events for replay and publishes them to subscribers.
pub trait Broker: Send + Sync + 'static {
    /// Publishes `event` unless one of `once_keys` was already published within the
    /// dedupe window (then returns `Ok(None)` and publishes nothing). Every key is
    /// remembered. Returns the assigned `seq`.
    fn publish(
        &self,
        event: Event,
        once_keys: Vec<String>,
    ) -> BoxFuture<'_, Result<Option<u64>, BrokerError>>;

    /// Registers `outbox` for `guild`'s live events and returns, atomically with the
    /// registration, the retained events after `last_seq`.
    fn subscribe(
        &self,
        guild: Snowflake,
        last_seq: Option<u64>,
        outbox: Arc<Outbox>,
    ) -> BoxFuture<'_, Result<Subscription, BrokerError>>;

    /// The replay ring of `guild`, for health reporting.
    fn ring_state(&self, guild: Snowflake) -> RingState;

    /// Whether the shared store behind the broker is reachable: `None` for a
    /// broker without one (the in-process broker), for health reporting.
    fn redis_up(&self) -> Option<bool> {
        None
    }
}

/// Limits of an [`InProcessBroker`].
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

/// The single-process broker: one mutex over each guild's stream.
#[derive(Debug)]
pub struct InProcessBroker {
    limits: BrokerLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    streams: HashMap<Snowflake, Stream>,
    seen: SeenSet<String>,
}

#[derive(Debug, Default)]
struct Stream {
    head_seq: u64,
    ring: VecDeque<(u64, Instant, Frame)>,
    subscribers: Vec<Arc<Outbox>>,
}

impl Stream {
    fn prune(&mut self, limits: &BrokerLimits, now: Instant) {
        while self.ring.len() > limits.replay_capacity
            || self.ring.front().is_some_and(|(_, at, _)| {
                now.saturating_duration_since(*at) > limits.replay_max_age
            })
        {
            self.ring.pop_front();
        }
    }
}

impl InProcessBroker {
    /// A broker with the given limits.
    pub fn new(limits: BrokerLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner {
                streams: HashMap::new(),
                seen: SeenSet::new(limits.dedupe_capacity, limits.dedupe_max_age),
            }),
        }
    }

    fn publish_now(&self, event: Event, once_keys: Vec<String>) -> Option<u64> {
        let now = Instant::now();
        let ts = unix_millis();
        let guild = event.guild_id();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if once_keys.iter().any(|key| inner.seen.contains(key, now)) {
            for key in once_keys {
                inner.seen.insert(key, now);
            }
            return None;
        }
        for key in once_keys {
            inner.seen.insert(key, now);
        }
        let stream = inner.streams.entry(guild).or_default();
        stream.head_seq += 1;
        let seq = stream.head_seq;
        let frame = event_frame(event, ts, seq);
        stream.ring.push_back((seq, now, frame.clone()));
        stream.prune(&self.limits, now);
        let before = stream.subscribers.len();
        stream.subscribers.retain(|outbox| outbox.deliver(&frame));
        let delivered = stream.subscribers.len();
        drop(inner);
        metrics::counter!("hub_events_out_total").increment(1);
        metrics::counter!("hub_deliveries_total").increment(delivered as u64);
        if delivered < before {
            tracing::debug!(dropped = before - delivered, "subscribers left the stream");
        }
        Some(seq)
    }

    fn subscribe_now(
        &self,
        guild: Snowflake,
        last_seq: Option<u64>,
        outbox: Arc<Outbox>,
    ) -> Subscription {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = inner.streams.entry(guild).or_default();
        stream.prune(&self.limits, now);
        let (resumed, replay) = match last_seq {
            None => (None, Vec::new()),
            Some(last) if last >= stream.head_seq => (Some(last == stream.head_seq), Vec::new()),
            Some(last) => match stream.ring.front() {
                Some((oldest, _, _)) if *oldest <= last + 1 => {
                    let replay = stream
                        .ring
                        .iter()
                        .filter(|(seq, _, _)| *seq > last)
                        .map(|(_, _, frame)| frame.clone())
                        .collect();
                    (Some(true), replay)
                }
                _ => (Some(false), Vec::new()),
            },
        };
        stream.subscribers.retain(|o| o.is_open());
        stream.subscribers.push(outbox);
        Subscription { resumed, replay }
    }
}

impl Broker for InProcessBroker {
    fn publish(
        &self,
        event: Event,
        once_keys: Vec<String>,
    ) -> BoxFuture<'_, Result<Option<u64>, BrokerError>> {
        let seq = self.publish_now(event, once_keys);
        Box::pin(async move { Ok(seq) })
    }

    fn subscribe(
        &self,
        guild: Snowflake,
        last_seq: Option<u64>,
        outbox: Arc<Outbox>,
    ) -> BoxFuture<'_, Result<Subscription, BrokerError>> {
        let subscription = self.subscribe_now(guild, last_seq, outbox);
        Box::pin(async move { Ok(subscription) })
    }

    fn ring_state(&self, guild: Snowflake) -> RingState {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .streams
            .get(&guild)
            .map(|s| RingState {
                head_seq: s.head_seq,
                oldest_seq: s.ring.front().map(|(seq, _, _)| *seq),
                len: s.ring.len(),
                subscribers: s.subscribers.iter().filter(|o| o.is_open()).count(),
            })
            .unwrap_or_default()
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

    fn seq_of(frame: &Frame) -> u64 {
        match ServerMessage::parse(frame).unwrap() {
            ServerMessage::Event(e) => e.seq,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seq_is_strictly_plus_one_and_once_keys_dedupe() {
        let b = broker(10);
        assert_eq!(b.publish_now(joined(3), vec!["a".into()]), Some(1));
        assert_eq!(b.publish_now(joined(3), vec!["a".into()]), None);
        assert_eq!(
            b.publish_now(joined(4), vec!["b".into(), "c".into()]),
            Some(2)
        );
        assert_eq!(b.publish_now(joined(4), vec!["d".into(), "c".into()]), None);
        assert_eq!(
            b.publish_now(joined(4), vec!["d".into()]),
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
        let s = b.subscribe_now(id(1), Some(2), Arc::new(outbox));
        assert_eq!(s.resumed, Some(true));
        assert_eq!(
            s.replay.iter().map(seq_of).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let outbox = Outbox::new(1 << 20);
        let s = b.subscribe_now(id(1), Some(1), Arc::new(outbox));
        assert_eq!(s.resumed, Some(false));
        assert!(s.replay.is_empty());
        let outbox = Outbox::new(1 << 20);
        let s = b.subscribe_now(id(1), Some(5), Arc::new(outbox));
        assert_eq!((s.resumed, s.replay.len()), (Some(true), 0));
        let outbox = Outbox::new(1 << 20);
        let s = b.subscribe_now(id(1), Some(50), Arc::new(outbox));
        assert_eq!(s.resumed, Some(false), "ahead of the hub: it restarted");
    }

    #[test]
    fn live_events_follow_the_replay_without_gap() {
        let b = broker(10);
        b.publish_now(joined(3), vec![]);
        let outbox = Arc::new(Outbox::new(1 << 20));
        let s = b.subscribe_now(id(1), Some(0), outbox.clone());
        b.publish_now(joined(4), vec![]);
        assert_eq!(s.replay.iter().map(seq_of).collect::<Vec<_>>(), vec![1]);
        let mut live = Vec::new();
        outbox.take(&mut live, 64);
        assert_eq!(live.iter().map(seq_of).collect::<Vec<_>>(), vec![2]);
    }
}
