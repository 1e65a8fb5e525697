//! This hub's copy of each guild's event stream: the replay ring and the sockets
//! subscribed to it, shared by both brokers.
//!
//! Why one place: whether events are sequenced in this process or in Redis, what a
//! hub does with a sequenced event is the same, and so is the hard part of a
//! resume (see `docs/contract.md`). A subscriber is registered and the ring's
//! missed events are taken under ONE lock, the same lock under which events are
//! appended and handed to the subscribers, so no event falls between the replay
//! and the live stream and none comes twice. The brokers ([`crate::Broker`]) only
//! decide the order (`seq`) and keep history beyond the ring; like centrifuge's
//! node-local hub, this registry is what they feed.
//!
//! The ring is bounded by count and by age (the envelope's `ts`), pruned on every
//! append and registration, so memory stays bounded whatever the traffic.
//!
//! Where a stream starts: one that sequences here ([`LocalStream::new`], the
//! in-process broker) begins each guild at the clock-derived base
//! ([`crate::broker::stream_base`]), so after a restart every `seq` is above those
//! the previous process handed out and an old `lastSeq` is never mistaken for a
//! position in the new stream (see `docs/contract.md`). One that follows a shared
//! store ([`LocalStream::following`], Redis) starts at 0 and takes its position
//! from the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coven_contract::Snowflake;
use tokio::sync::watch;

use crate::broker::{BrokerLimits, RingState, stream_base, unix_millis};
use crate::fanout::{Frame, Outbox};
use crate::metrics::REPLAY_GAPS;
use crate::ws_writer::Audience;

/// A sequenced event: `(seq, ts in ms, envelope frame)`.
pub(crate) type Entry = (u64, u64, Frame);

/// The replay rings and subscribers of every guild this hub serves.
#[derive(Debug)]
pub struct LocalStream {
    limits: BrokerLimits,
    /// Whether a guild's stream starts at the clock-derived base (it sequences
    /// here) or at 0 (it follows a shared store).
    from_clock: bool,
    guilds: Mutex<HashMap<Snowflake, Arc<Guild>>>,
}

/// One guild's stream on this hub.
#[derive(Debug)]
struct Guild {
    ring: Mutex<Ring>,
    /// The last `seq` delivered, for resumes waiting on a reader to catch up.
    head: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Ring {
    /// The last `seq` this hub delivered (before any, the stream's base: no event
    /// of this stream has it or anything below).
    head_seq: u64,
    /// Recent events, oldest first.
    events: VecDeque<Entry>,
    /// The browsers' sockets, one audience per writer shard: an event is handed
    /// to each audience once, and its shard writes it to every socket.
    audiences: Vec<Arc<Audience>>,
    /// Subscribers without a socket (drained by their owner): given each event here.
    direct: Vec<Arc<Outbox>>,
    /// The hub's own listeners (the webcams' voice presence, `crate::rtc_presence`):
    /// fed before the browsers, not counted as subscribers.
    observers: Vec<Arc<dyn Observer>>,
}

/// One of the hub's own listeners of a guild's events (the webcams' voice
/// presence, `crate::rtc_presence`): handed each event's frame, in `seq` order,
/// under the stream's lock and before any browser, so it reads what it needs of
/// the event ([`Frame::voice`]) without a queue of frames or a parse.
pub(crate) trait Observer: Send + Sync + std::fmt::Debug {
    /// Takes the next event; `false` when it no longer listens (it is forgotten).
    fn observe(&self, frame: &Frame) -> bool;
    /// The stream lost events or started over: what the observer knows may be
    /// stale, and it no longer listens.
    fn lost(&self);
    /// Whether it still listens.
    fn is_open(&self) -> bool;
}

impl Ring {
    fn prune(&mut self, limits: &BrokerLimits, now_ms: u64) {
        let max_age = u64::try_from(limits.replay_max_age.as_millis()).unwrap_or(u64::MAX);
        let oldest_ms = now_ms.saturating_sub(max_age);
        while self.events.len() > limits.replay_capacity
            || self
                .events
                .front()
                .is_some_and(|(_, ts, _)| *ts < oldest_ms)
        {
            self.events.pop_front();
        }
    }

    /// Adds `outbox` to the subscribers: it gets the events after the head.
    fn add(&mut self, outbox: Arc<Outbox>) {
        outbox.follow_after(self.head_seq);
        let Some(shard) = outbox.shard() else {
            self.direct.retain(|o| o.is_open());
            self.direct.push(outbox);
            return;
        };
        if !self.audiences.iter().any(|a| a.is_on(shard)) {
            self.audiences.push(Arc::new(Audience::new(shard)));
        }
        let audience = self.audiences.iter().find(|a| a.is_on(shard));
        audience.expect("just added").join(outbox);
    }

    /// Retains the event and hands it to every subscriber: to each audience once
    /// (its writer shard writes it to the sockets), to the others here; one that is
    /// closed or fell behind (its outbox overflowed) is dropped. Returns how many
    /// subscribers without a socket got it (the shards count their own).
    fn push(&mut self, (seq, ts, frame): Entry) -> usize {
        self.head_seq = seq;
        self.observers.retain(|observer| observer.observe(&frame));
        self.direct.retain(|outbox| outbox.deliver(&frame));
        for audience in &self.audiences {
            audience.publish(seq, &frame);
        }
        self.events.push_back((seq, ts, frame));
        self.direct.len()
    }

    /// The subscribers still open.
    fn subscribers(&self) -> usize {
        let sockets: usize = self.audiences.iter().map(|a| a.open()).sum();
        sockets + self.direct.iter().filter(|o| o.is_open()).count()
    }

    /// Forgets the ring and closes every subscriber with 1013, so their browsers
    /// reconnect and resume (or learn `resumed:false`) instead of missing events.
    /// The audiences are replaced, so events already handed to a shard reach none
    /// of the sockets that register from now on.
    fn drop_subscribers(&mut self) {
        for audience in self.audiences.drain(..) {
            audience.overflow_all();
        }
        for outbox in self.direct.drain(..) {
            outbox.overflow();
        }
        for observer in self.observers.drain(..) {
            observer.lost();
        }
        self.events.clear();
    }
}

impl LocalStream {
    /// An empty stream that sequences its events itself (the in-process broker): each
    /// guild's first `seq` is one above the clock-derived base taken when the
    /// guild's stream is first used.
    pub fn new(limits: BrokerLimits) -> Self {
        Self {
            limits,
            from_clock: true,
            guilds: Mutex::new(HashMap::new()),
        }
    }

    /// An empty stream that delivers events sequenced elsewhere (a shared store):
    /// each guild's head is 0 until it is aligned with the store's `seq`.
    pub fn following(limits: BrokerLimits) -> Self {
        Self {
            from_clock: false,
            ..Self::new(limits)
        }
    }

    /// The limits this stream was made with.
    pub fn limits(&self) -> &BrokerLimits {
        &self.limits
    }

    /// The replay ring of `guild`, for `/health`.
    pub fn ring_state(&self, guild: Snowflake) -> RingState {
        let stream = self.guild(guild);
        let ring = stream.lock();
        RingState {
            head_seq: ring.head_seq,
            oldest_seq: ring.events.front().map(|(seq, _, _)| *seq),
            len: ring.events.len(),
            subscribers: ring.subscribers(),
        }
    }

    /// The last `seq` delivered for `guild` (before any, the stream's base).
    pub(crate) fn head(&self, guild: Snowflake) -> u64 {
        *self.guild(guild).head.borrow()
    }

    /// Waits up to `timeout` until `guild`'s head reaches `seq`.
    pub(crate) async fn wait_for_head(&self, guild: Snowflake, seq: u64, timeout: Duration) {
        let mut head = self.guild(guild).head.subscribe();
        let _ = tokio::time::timeout(timeout, head.wait_for(|h| *h >= seq)).await;
    }

    /// Registers one of the hub's own listeners for `guild`'s live events: it gets
    /// each event before any browser does and is not counted as a subscriber.
    pub(crate) fn observe(&self, guild: Snowflake, observer: Arc<dyn Observer>) {
        let stream = self.guild(guild);
        let mut ring = stream.lock();
        ring.observers.retain(|o| o.is_open());
        ring.observers.push(observer);
    }

    /// Registers `outbox` for `guild`'s live events.
    pub(crate) fn register(&self, guild: Snowflake, outbox: Arc<Outbox>) {
        let stream = self.guild(guild);
        let mut ring = stream.lock();
        ring.prune(&self.limits, unix_millis());
        ring.add(outbox);
    }

    /// Registers `outbox` and returns, under the same lock, the head `H` and, when
    /// the ring covers `(last, H]`, those events: later events reach the outbox.
    /// A `last` below the ring's oldest event (older than the ring, or of an
    /// earlier stream: it is below this stream's base) is not covered.
    pub(crate) fn register_resuming(
        &self,
        guild: Snowflake,
        last: u64,
        outbox: Arc<Outbox>,
    ) -> (u64, Option<Vec<Frame>>) {
        let stream = self.guild(guild);
        let mut ring = stream.lock();
        ring.prune(&self.limits, unix_millis());
        ring.add(outbox);
        let head = ring.head_seq;
        let covered = last < head
            && ring
                .events
                .front()
                .is_some_and(|(oldest, _, _)| *oldest <= last + 1);
        let replay = covered.then(|| {
            ring.events
                .iter()
                .filter(|(seq, _, _)| *seq > last)
                .map(|(_, _, frame)| frame.clone())
                .collect()
        });
        (head, replay)
    }

    /// Sequences an event here (the in-process broker): its `seq` is the head + 1,
    /// `frame` builds its envelope for that `seq`. Returns the `seq`.
    pub(crate) fn append(
        &self,
        guild: Snowflake,
        ts: u64,
        frame: impl FnOnce(u64) -> Frame,
    ) -> u64 {
        let stream = self.guild(guild);
        let mut ring = stream.lock();
        let seq = ring.head_seq + 1;
        let delivered = ring.push((seq, ts, frame(seq)));
        // `ts` is now: the broker stamps an event as it appends it.
        ring.prune(&self.limits, ts);
        drop(ring);
        stream.head.send_replace(seq);
        delivered_metrics(1, delivered);
        seq
    }

    /// Delivers events sequenced elsewhere (read from Redis), in order. Events at
    /// or below the head were delivered already; a gap means events left the shared
    /// stream before this hub read them, so its subscribers must resume.
    pub(crate) fn deliver(&self, guild: Snowflake, entries: Vec<Entry>) {
        let stream = self.guild(guild);
        let mut ring = stream.lock();
        let mut delivered = 0;
        let mut published = 0;
        for entry in entries {
            let seq = entry.0;
            if seq <= ring.head_seq {
                continue;
            }
            // Head 0: nothing delivered or synced yet, any first `seq` starts it.
            if ring.head_seq != 0 && seq != ring.head_seq + 1 {
                metrics::counter!(REPLAY_GAPS).increment(1);
                tracing::warn!(
                    %guild,
                    from = ring.head_seq + 1,
                    to = seq - 1,
                    "events left the Redis stream before this hub read them: its browsers must resume"
                );
                ring.drop_subscribers();
            }
            delivered += ring.push(entry);
            published += 1;
        }
        ring.prune(&self.limits, unix_millis());
        let head = ring.head_seq;
        drop(ring);
        stream.head.send_replace(head);
        delivered_metrics(published, delivered);
    }

    /// Aligns `guild`'s head with the shared store's `seq`: a stream that never
    /// delivered anything starts from it (older events are history); one that
    /// delivered more than the store holds starts over from it, closing its
    /// subscribers (the store lost its data, e.g. a restart without persistence).
    /// A store that lost its data and started a new stream is ahead of the head:
    /// the gap shows when its first event is delivered ([`Self::deliver`]).
    pub(crate) fn sync(&self, guild: Snowflake, seq: u64) {
        let stream = self.guild(guild);
        let mut ring = stream.lock();
        if ring.head_seq == 0 && ring.events.is_empty() {
            ring.head_seq = seq;
        } else if seq < ring.head_seq {
            tracing::warn!(
                %guild,
                local = ring.head_seq,
                redis = seq,
                "Redis lost events this hub delivered; browsers must resync"
            );
            ring.drop_subscribers();
            ring.head_seq = seq;
        } else {
            return;
        }
        drop(ring);
        stream.head.send_replace(seq);
    }

    fn guild(&self, guild: Snowflake) -> Arc<Guild> {
        self.lock_guilds()
            .entry(guild)
            .or_insert_with(|| {
                let base = if self.from_clock {
                    stream_base(unix_millis())
                } else {
                    0
                };
                Arc::new(Guild {
                    ring: Mutex::new(Ring {
                        head_seq: base,
                        ..Ring::default()
                    }),
                    head: watch::channel(base).0,
                })
            })
            .clone()
    }

    fn lock_guilds(&self) -> MutexGuard<'_, HashMap<Snowflake, Arc<Guild>>> {
        self.guilds.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Guild {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts published events, and their deliveries to subscribers without a
/// socket (the writer shards count the sockets').
fn delivered_metrics(published: u64, delivered: usize) {
    let metrics = crate::metrics::stream();
    metrics.events_out.increment(published);
    if delivered > 0 {
        metrics.deliveries.increment(delivered as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guild() -> Snowflake {
        Snowflake::new(1).unwrap()
    }

    fn limits(capacity: usize) -> BrokerLimits {
        BrokerLimits {
            replay_capacity: capacity,
            replay_max_age: Duration::from_secs(60),
            dedupe_capacity: 10,
            dedupe_max_age: Duration::from_secs(60),
        }
    }

    /// A stream fed from a shared store (Redis).
    fn stream(capacity: usize) -> LocalStream {
        LocalStream::following(limits(capacity))
    }

    fn entry(seq: u64) -> Entry {
        (seq, unix_millis(), Frame::from(format!("{seq}")))
    }

    fn taken(outbox: &Outbox) -> Vec<Frame> {
        let mut frames = Vec::new();
        outbox.take(&mut frames, 64);
        frames
    }

    #[test]
    fn delivered_entries_skip_what_was_seen_and_a_gap_closes_subscribers() {
        let local = stream(10);
        let outbox = Arc::new(Outbox::new(1 << 20));
        local.register(guild(), outbox.clone());
        local.deliver(
            guild(),
            vec![entry(1), entry(2), entry(2), entry(1), entry(3)],
        );
        assert_eq!(
            taken(&outbox).len(),
            3,
            "duplicates are not delivered again"
        );
        assert_eq!(local.head(guild()), 3);
        local.deliver(guild(), vec![entry(5)]);
        assert!(outbox.is_overloaded(), "a gap closes the subscriber (1013)");
        let state = local.ring_state(guild());
        assert_eq!(
            (state.head_seq, state.oldest_seq, state.len),
            (5, Some(5), 1)
        );
    }

    #[test]
    fn sync_adopts_the_shared_seq_when_fresh_and_starts_over_when_it_fell_back() {
        let local = stream(10);
        local.sync(guild(), 7);
        assert_eq!(
            local.head(guild()),
            7,
            "a fresh stream follows from the shared seq"
        );
        local.deliver(guild(), vec![entry(8)]);
        let outbox = Arc::new(Outbox::new(1 << 20));
        local.register(guild(), outbox.clone());
        local.sync(guild(), 9);
        assert_eq!(
            local.head(guild()),
            8,
            "ahead of the hub: the reader catches up"
        );
        assert!(outbox.is_open());
        local.sync(guild(), 2);
        assert_eq!(local.head(guild()), 2);
        assert!(
            outbox.is_overloaded(),
            "the store lost events: browsers resync"
        );
        assert_eq!(local.ring_state(guild()).len, 0);
    }

    #[test]
    fn the_ring_is_bounded_by_count_and_age() {
        let local = LocalStream::new(limits(2));
        let base = local.head(guild());
        for n in 1..=4 {
            let seq = local.append(guild(), unix_millis(), |seq| Frame::from(format!("{seq}")));
            assert_eq!((seq, local.head(guild())), (base + n, base + n));
        }
        let state = local.ring_state(guild());
        assert_eq!((state.oldest_seq, state.len), (Some(base + 3), 2));
        let old = stream(2);
        old.deliver(guild(), vec![(1, 0, Frame::from("old"))]);
        let state = old.ring_state(guild());
        assert_eq!(
            (state.head_seq, state.len),
            (1, 0),
            "older than the age limit"
        );
    }

    #[test]
    fn a_sequencing_stream_starts_above_the_clock_and_a_following_one_at_zero() {
        let before = stream_base(unix_millis());
        let local = LocalStream::new(limits(2));
        let base = local.ring_state(guild()).head_seq;
        assert!(base >= before, "{base} < {before}");
        assert!(base < 1 << 53, "JavaScript reads {base} exactly");
        assert_eq!(
            local.append(guild(), unix_millis(), |seq| Frame::from(format!("{seq}"))),
            base + 1
        );
        assert_eq!(stream(2).ring_state(guild()).head_seq, 0);
    }

    #[test]
    fn a_last_seq_of_an_earlier_stream_is_not_covered() {
        let local = LocalStream::new(limits(10));
        let base = local.head(guild());
        for _ in 0..3 {
            local.append(guild(), unix_millis(), |seq| Frame::from(format!("{seq}")));
        }
        let outbox = || Arc::new(Outbox::new(1 << 20));
        for last in [0, 1, 3, base - 1] {
            assert_eq!(
                local.register_resuming(guild(), last, outbox()),
                (base + 3, None),
                "lastSeq {last} is of an earlier stream"
            );
        }
        let (head, replay) = local.register_resuming(guild(), base, outbox());
        assert_eq!((head, replay.map(|r| r.len())), (base + 3, Some(3)));
    }

    #[test]
    fn a_following_stream_accepts_any_first_seq() {
        let local = stream(10);
        let outbox = Arc::new(Outbox::new(1 << 20));
        local.register(guild(), outbox.clone());
        local.deliver(guild(), vec![entry(1_700_000_000_000_001)]);
        assert!(outbox.is_open(), "no gap before the first event");
        assert_eq!(taken(&outbox).len(), 1);
    }
}
