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
//!
//! `seq` never goes backwards, also across a restart of the hub or a loss of
//! Redis's data: a new stream starts at [`stream_base`], derived from the clock
//! with room for a thousand events per millisecond, so it is above every `seq` an
//! earlier stream handed out and an old `lastSeq` is answered `resumed:false`
//! (see `docs/contract.md`).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coven_contract::{Event, EventEnvelope, ServerMessage, Snowflake, Version};
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::fanout::{Frame, Outbox};
use crate::idempotency::SeenSet;
use crate::local_stream::LocalStream;
use crate::once_key::OnceKey;
use crate::once_store::{OnceStoreError, RoomOnceStore};
use crate::redis_link::RedisLinkError;
use crate::rtc_presence::VoiceChange;

/// How many `seq` values a stream has room for per millisecond of wall clock.
///
/// A stream (one in-process hub's life, or a Redis `seq` key's) starts at
/// `unix_ms × SEQ_PER_MS` ([`stream_base`]); its first event gets that + 1. The
/// previous stream, started at `t0` ms and ended before `t1`, handed out values
/// below `t0 × 1000 + n + 1`, so the new base `t1 × 1000` is above all of them as
/// long as it published fewer than `(t1 − t0) × 1000` events: fewer than a million
/// per second on average over its whole life (a hub does thousands at most), and
/// as long as the clock did not step back across the restart by more than that
/// headroom (with Redis, the clock of the hub whose publish starts the stream). The values stay below 2^53 (JavaScript reads them exactly) until the
/// year 2255: 2026 is about 1.8 × 10^15, 2^53 about 9.0 × 10^15.
pub(crate) const SEQ_PER_MS: u64 = 1000;

/// The base of a stream started at `unix_ms`: its first event gets this + 1.
pub(crate) fn stream_base(unix_ms: u64) -> u64 {
    unix_ms.saturating_mul(SEQ_PER_MS)
}

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
    /// The file of announced rooms could not be read or written.
    #[error("broker unavailable: {0}")]
    Store(#[from] OnceStoreError),
    /// The broker is shutting down: its publishing task has stopped.
    #[error("broker unavailable: shutting down")]
    Stopped,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RingState {
    /// The last `seq` assigned; before any event, the stream's base (the
    /// in-process broker) or 0 (Redis, until this hub read the shared `seq`).
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
    /// gap, else from [`Self::history`]. A gap neither covers (it is older than
    /// the replay window, or `last_seq` is of an earlier stream: below this one's
    /// first event), or a `last_seq` ahead of the stream, answers `resumed:false`.
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

/// The single-process broker: `seq` and event once-keys live in this hub's
/// memory (each guild's stream starts at a clock-derived base when first used,
/// see `docs/contract.md`); the keys of announced rooms live in
/// `<state_dir>/once-keys.redb` when the hub has a state dir, so a room is
/// announced once across restarts.
#[derive(Debug)]
pub struct InProcessBroker {
    local: LocalStream,
    seen: Mutex<SeenSet<OnceKey>>,
    rooms: RoomOnceStore,
}

impl InProcessBroker {
    /// A broker with the given limits, remembering announced rooms in memory.
    pub fn new(limits: BrokerLimits) -> Self {
        Self::with_rooms(limits, RoomOnceStore::in_memory(limits.dedupe_max_age))
    }

    /// A broker that remembers announced rooms in `state_dir` (in memory without
    /// one, or when the file cannot be opened: that is logged).
    pub fn open(limits: BrokerLimits, state_dir: Option<&Path>) -> Self {
        let Some(dir) = state_dir else {
            return Self::new(limits);
        };
        match Self::try_open(limits, dir) {
            Ok(broker) => broker,
            Err(error) => {
                tracing::error!(%error, "announced rooms kept in memory only: a restart may announce a room twice");
                Self::new(limits)
            }
        }
    }

    /// A broker that remembers announced rooms in `state_dir`; fails when the file
    /// cannot be opened (e.g. another hub holds it).
    pub fn try_open(limits: BrokerLimits, state_dir: &Path) -> Result<Self, BrokerError> {
        let rooms = RoomOnceStore::open(state_dir, limits.dedupe_max_age)?;
        Ok(Self::with_rooms(limits, rooms))
    }

    fn with_rooms(limits: BrokerLimits, rooms: RoomOnceStore) -> Self {
        Self {
            local: LocalStream::new(limits),
            seen: Mutex::new(SeenSet::new(limits.dedupe_capacity, limits.dedupe_max_age)),
            rooms,
        }
    }

    /// Publishes unless a once-key was seen; every key is remembered either way.
    /// A room's key is committed to the store before the event is sequenced.
    fn publish_now(
        &self,
        event: Event,
        once_keys: Vec<OnceKey>,
    ) -> Result<Option<u64>, BrokerError> {
        let now = Instant::now();
        let ts = unix_millis();
        let mut duplicate = false;
        // Rooms first (they may fail), then the event keys, moved into the set.
        for key in &once_keys {
            if let OnceKey::RoomCreated(channel) = key {
                duplicate |= self.rooms.announce(*channel, ts)?;
            }
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for key in once_keys {
            if let key @ OnceKey::Event(_) = key {
                // Remembered either way; seen before means a duplicate.
                duplicate |= !seen.insert(key, now);
            }
        }
        drop(seen);
        if let Some(OnceKey::RoomCreated(channel)) = OnceKey::released_by(&event) {
            self.rooms.release(channel, ts)?;
        }
        if duplicate {
            return Ok(None);
        }
        let guild = event.guild_id();
        Ok(Some(
            self.local
                .append(guild, ts, |seq| event_frame(event, ts, seq)),
        ))
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
        Box::pin(async move { seq })
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
/// The frame notes the event's voice change for the hub's voice presence
/// (`crate::rtc_presence`), which reads it instead of parsing the envelope.
pub(crate) fn event_frame(event: Event, ts: u64, seq: u64) -> Frame {
    let voice = VoiceChange::of(&event);
    Frame::event(
        &ServerMessage::Event(EventEnvelope {
            v: Version,
            event,
            ts,
            seq,
        }),
        voice,
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

    fn publish(b: &InProcessBroker, event: Event, keys: Vec<OnceKey>) -> Option<u64> {
        b.publish_now(event, keys).unwrap()
    }

    #[test]
    fn seq_is_strictly_plus_one_from_the_clock_and_once_keys_dedupe() {
        let clock = stream_base(unix_millis());
        let b = broker(10);
        let first = publish(&b, joined(3), vec![key("a")]).unwrap();
        assert!(first > clock, "{first} starts above {clock}");
        assert_eq!(publish(&b, joined(3), vec![key("a")]), None);
        assert_eq!(
            publish(&b, joined(4), vec![key("b"), key("c")]),
            Some(first + 1)
        );
        assert_eq!(publish(&b, joined(4), vec![key("d"), key("c")]), None);
        assert_eq!(
            publish(&b, joined(4), vec![key("d")]),
            None,
            "d was remembered"
        );
        let other_guild = Event::VoiceLeft(VoiceLeft {
            guild_id: id(9),
            channel_id: id(2),
            user_id: id(3),
        });
        let other = publish(&b, other_guild, vec![]).unwrap();
        assert!(other > clock && other != first + 2, "seq is per guild");
        assert_eq!(publish(&b, joined(5), vec![]), Some(first + 2));
    }

    #[test]
    fn resume_replays_exactly_the_missed_events() {
        let b = broker(3);
        let base = b.ring_state(id(1)).head_seq;
        for user in 3..8 {
            publish(&b, joined(user), vec![]);
        }
        // Ring holds base + 3, 4, 5.
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(base + 2), Arc::new(outbox));
        assert_eq!(s.resumed, Some(true));
        assert_eq!(
            s.replay.iter().map(seq_of).collect::<Vec<_>>(),
            vec![base + 3, base + 4, base + 5]
        );
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(base + 1), Arc::new(outbox));
        assert_eq!(s.resumed, Some(false));
        assert!(s.replay.is_empty());
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(base + 5), Arc::new(outbox));
        assert_eq!((s.resumed, s.replay.len()), (Some(true), 0));
        let outbox = Outbox::new(1 << 20);
        let s = subscribe(&b, Some(base + 50), Arc::new(outbox));
        assert_eq!(s.resumed, Some(false), "ahead of the hub: it restarted");
    }

    #[test]
    fn after_a_restart_seq_goes_on_above_and_an_old_last_seq_is_not_resumed() {
        let before = broker(100);
        let base = before.ring_state(id(1)).head_seq;
        for user in 3..8 {
            publish(&before, joined(user), vec![]);
        }
        let old_head = base + 5;
        let outbox = Arc::new(Outbox::new(1 << 20));
        assert_eq!(
            subscribe(&before, Some(base + 3), outbox).resumed,
            Some(true)
        );
        drop(before);
        std::thread::sleep(Duration::from_millis(2)); // the clock moves on
        let after = broker(100);
        let mut seqs = Vec::new();
        for user in 3..13 {
            seqs.push(publish(&after, joined(user), vec![]).unwrap());
        }
        assert!(seqs[0] > old_head, "{} > {old_head}", seqs[0]);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        // An old lastSeq, whether the new stream's head is above it or not.
        for last in [base + 3, old_head, 0, 1, 3] {
            let outbox = Arc::new(Outbox::new(1 << 20));
            let s = subscribe(&after, Some(last), outbox);
            assert_eq!((s.resumed, s.replay.len()), (Some(false), 0), "{last}");
        }
        let outbox = Arc::new(Outbox::new(1 << 20));
        let s = subscribe(&after, Some(seqs[7]), outbox);
        let replayed: Vec<u64> = s.replay.iter().map(seq_of).collect();
        assert_eq!((s.resumed, replayed), (Some(true), seqs[8..].to_vec()));
    }

    #[test]
    fn a_room_is_announced_once_across_a_restart_on_the_same_state_dir() {
        let dir = std::env::temp_dir().join(format!("coven-broker-{:016x}", rand::random::<u64>()));
        let room = |channel: u64| {
            Event::RoomCreated(coven_contract::RoomCreated {
                channel_id: id(channel),
                name: coven_contract::RoomName::try_from("Table").unwrap(),
                guild_id: id(1),
                parent_id: None,
                user_limit: coven_contract::UserLimit::UNLIMITED,
            })
        };
        let deleted = |channel: u64| {
            Event::RoomDeleted(coven_contract::RoomDeleted {
                channel_id: id(channel),
                guild_id: id(1),
            })
        };
        let limits = *broker(10).local.limits();
        let api = InProcessBroker::try_open(limits, &dir).unwrap();
        assert!(publish(&api, room(50), vec![OnceKey::RoomCreated(id(50))]).is_some());
        drop(api);
        let restarted = InProcessBroker::try_open(limits, &dir).unwrap();
        let webhook = OnceKey::for_webhook("evt-50", &room(50));
        assert_eq!(
            publish(&restarted, room(50), webhook),
            None,
            "announced before the restart"
        );
        let webhook = OnceKey::for_webhook("evt-51", &room(51));
        assert!(
            publish(&restarted, room(51), webhook).is_some(),
            "another room"
        );
        let gone = OnceKey::for_webhook("evt-52", &deleted(50));
        assert!(publish(&restarted, deleted(50), gone).is_some());
        let late = OnceKey::for_webhook("evt-50b", &room(50));
        assert_eq!(
            publish(&restarted, room(50), late),
            None,
            "late, within the window"
        );
        drop(restarted);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn live_events_follow_the_replay_without_gap() {
        let b = broker(10);
        let first = publish(&b, joined(3), vec![]).unwrap();
        let outbox = Arc::new(Outbox::new(1 << 20));
        let s = subscribe(&b, Some(first - 1), outbox.clone());
        publish(&b, joined(4), vec![]);
        assert_eq!(s.replay.iter().map(seq_of).collect::<Vec<_>>(), vec![first]);
        let mut live = Vec::new();
        outbox.take(&mut live, 64);
        assert_eq!(live.iter().map(seq_of).collect::<Vec<_>>(), vec![first + 1]);
    }
}
