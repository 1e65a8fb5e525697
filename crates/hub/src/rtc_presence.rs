//! Who is in which voice channel right now, as this hub knows it: what decides
//! whose webcam signalling the hub relays (docs/spec.md §12).
//!
//! Why its own feed: the hub already receives every `voice.joined` / `voice.left`
//! in order through its [`LocalStream`] (the in-process broker's or Redis's, so
//! every hub of a cluster knows the same). [`Presence`] observes that stream
//! through a [`Feed`], fed before any browser with the [`VoiceChange`] each event
//! frame carries (noted when the event was framed, so nothing is parsed back and
//! other events cost it nothing), and seeds itself from the worker's voice view (the snapshot's [`VoiceViewSource`]) once the first browser
//! signs in; every event received from the moment the view is asked for is applied
//! again over the view's answer, so an event that happened while the view was on
//! its way is not lost. A hub without a worker has no such view (the rooms backend
//! knows no members): its presence is what the events say.
//!
//! "At once": a lookup first drains the feed under the presence lock. The feed is
//! handed each event before any browser, so an event a browser has been handed is
//! already in the feed and is applied before the answer: a browser that saw `voice.left`
//! can never get a signal through to or from the user who left.
//!
//! [`LocalStream`]: crate::LocalStream

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coven_contract::{Event, Snowflake};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::fanout::Frame;
use crate::local_stream::Observer;
use crate::snapshot::VoiceViewSource;

/// Voice changes the feed may hold before it counts as lost (then it is
/// re-subscribed and re-seeded); 24 bytes each.
const FEED_LIMIT: usize = 100_000;
/// Events kept to re-apply over a voice view that is on its way; beyond, the
/// view is asked for again.
const PENDING_LIMIT: usize = 100_000;
/// How often the feed is drained in the background. A lookup drains it first
/// anyway ("at once", above); this only bounds what queues between lookups, so
/// the feed is not woken per event: a wake-up per event cost the webhook about
/// a fifth of its CPU (docs/benchmarks.md, "Ingest").
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// Retry pace of the seeding read: from `SEED_RETRY_MIN` doubling to `SEED_RETRY_MAX`.
const SEED_RETRY_MIN: Duration = Duration::from_millis(250);
const SEED_RETRY_MAX: Duration = Duration::from_secs(10);

/// The live voice presence of the primary guild.
pub(crate) struct Presence {
    guild: Snowflake,
    broker: Arc<dyn Broker>,
    state: Mutex<State>,
    /// Woken when the feed was lost and subscribed anew: the view is read again.
    reseed: tokio::sync::Notify,
    /// Woken by the first browser that signs in: the view is read only once
    /// someone may use the webcams.
    wanted: tokio::sync::Notify,
    asked: std::sync::atomic::AtomicBool,
}

struct State {
    /// The subscription events arrive through.
    feed: Arc<Feed>,
    /// Each user's voice channel.
    channels: HashMap<Snowflake, Snowflake>,
    /// While a voice view is on its way: the changes applied since it was asked for.
    pending: Option<Vec<VoiceChange>>,
    /// The feed's previous queue, emptied, swapped in at the next drain.
    spare: Vec<VoiceChange>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("guild", &self.guild)
            .finish_non_exhaustive()
    }
}

impl Presence {
    /// Subscribes to `guild`'s events on `broker` at once (before any browser can).
    pub(crate) fn new(broker: Arc<dyn Broker>, guild: Snowflake) -> Self {
        let feed = Self::subscribe(broker.as_ref(), guild);
        Self {
            guild,
            broker,
            state: Mutex::new(State {
                feed,
                channels: HashMap::new(),
                pending: None,
                spare: Vec::new(),
            }),
            reseed: tokio::sync::Notify::new(),
            wanted: tokio::sync::Notify::new(),
            asked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn subscribe(broker: &dyn Broker, guild: Snowflake) -> Arc<Feed> {
        let feed = Arc::new(Feed::default());
        broker.local().observe(guild, feed.clone());
        feed
    }

    /// Seeds from `view` (retrying until it answers; without one, presence is
    /// what the events say) and drains the feed every [`DRAIN_EVERY`], until
    /// `stop`. Needs a Tokio runtime.
    pub(crate) fn run(
        self: &Arc<Self>,
        view: Option<Arc<dyn VoiceViewSource>>,
        stop: CancellationToken,
    ) {
        let presence = self.clone();
        tokio::spawn(async move {
            let seeding = presence.seed_from(view.as_deref());
            tokio::pin!(seeding);
            let mut seeded = view.is_none();
            let mut drain = tokio::time::interval(DRAIN_EVERY);
            drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = &mut seeding, if !seeded => seeded = true,
                    () = presence.reseed.notified(), if view.is_some() => {
                        seeding.set(presence.seed_from(view.as_deref()));
                        seeded = false;
                    }
                    _ = drain.tick() => presence.lock().drain(),
                }
            }
        });
    }

    /// Says a browser signed in: the voice view is read (once) from now on.
    pub(crate) fn wanted(&self) {
        if !self.asked.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.wanted.notify_one();
        }
    }

    /// [`Self::seed`] from `view` once [`Self::wanted`], or never without a view.
    async fn seed_from(&self, view: Option<&dyn VoiceViewSource>) {
        let Some(view) = view else {
            return std::future::pending().await;
        };
        if !self.asked.load(std::sync::atomic::Ordering::Relaxed) {
            self.wanted.notified().await;
        }
        self.seed(view).await;
    }

    /// Reads the voice view until it answers, then applies it and the events
    /// queued since the feed was subscribed.
    async fn seed(&self, view: &dyn VoiceViewSource) {
        let mut wait = SEED_RETRY_MIN;
        loop {
            {
                let mut state = self.lock();
                state.drain();
                state.pending = Some(Vec::new());
            }
            match view.fetch().await {
                Ok(view) => {
                    let mut state = self.lock();
                    state.drain();
                    let Some(pending) = state.pending.take() else {
                        // Too much happened meanwhile: ask again.
                        continue;
                    };
                    state.channels = view
                        .members
                        .into_iter()
                        .map(|(user, member)| (user, member.channel_id))
                        .collect();
                    for change in &pending {
                        apply(&mut state.channels, *change);
                    }
                    tracing::debug!(members = state.channels.len(), "voice presence seeded");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "voice presence: cannot read the voice view yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(SEED_RETRY_MAX);
                }
            }
        }
    }

    /// Whether `a` and `b` are both in `channel` right now.
    pub(crate) fn both_in(&self, a: Snowflake, b: Snowflake, channel: Snowflake) -> bool {
        let mut state = self.lock();
        state.drain();
        state.channels.get(&a) == Some(&channel) && state.channels.get(&b) == Some(&channel)
    }

    fn lock(&self) -> PresenceGuard<'_> {
        PresenceGuard {
            presence: self,
            state: self.state.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }
}

/// The locked state, able to re-subscribe its feed.
struct PresenceGuard<'a> {
    presence: &'a Presence,
    state: std::sync::MutexGuard<'a, State>,
}

impl std::ops::Deref for PresenceGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for PresenceGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl PresenceGuard<'_> {
    /// Applies every queued event. When the feed had overflowed (or its stream was
    /// reset) it is subscribed anew, keeping what is known until the view is read
    /// again.
    fn drain(&mut self) {
        let state = &mut *self.state;
        let mut batch = std::mem::take(&mut state.spare);
        state.feed.take(&mut batch);
        for change in &batch {
            apply(&mut state.channels, *change);
        }
        if let Some(pending) = &mut state.pending {
            pending.extend_from_slice(&batch);
            if pending.len() > PENDING_LIMIT {
                state.pending = None;
            }
        }
        batch.clear();
        state.spare = batch;
        if state.feed.lost.load(Ordering::Acquire) {
            tracing::warn!("voice presence fell behind its feed: re-reading the voice view");
            state.feed.close();
            state.feed = Presence::subscribe(self.presence.broker.as_ref(), self.presence.guild);
            self.presence.reseed.notify_one();
        }
    }
}

/// Applies one voice change to `channels`.
fn apply(channels: &mut HashMap<Snowflake, Snowflake>, change: VoiceChange) {
    match change {
        VoiceChange::Joined { user, channel } => {
            channels.insert(user, channel);
        }
        VoiceChange::Left { user, channel } if channels.get(&user) == Some(&channel) => {
            channels.remove(&user);
        }
        VoiceChange::Left { .. } => {}
        VoiceChange::RoomDeleted { channel: deleted } => {
            channels.retain(|_, channel| *channel != deleted);
        }
    }
}

/// The presence's observer of its guild's stream: the voice changes of the
/// events, queued until a drain takes them.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    changes: Mutex<Vec<VoiceChange>>,
    /// Changes were lost (the stream started over, or [`FEED_LIMIT`] were queued):
    /// presence re-subscribes and re-reads the voice view.
    lost: AtomicBool,
    /// Replaced by a new feed: the stream forgets it.
    closed: AtomicBool,
}

impl Feed {
    /// Moves the queued changes into `into` (empty), leaving `into`'s buffer.
    fn take(&self, into: &mut Vec<VoiceChange>) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *changes, into);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl Observer for Feed {
    fn observe(&self, frame: &Frame) -> bool {
        if !self.is_open() {
            return false;
        }
        let Some(change) = frame.voice() else {
            return true;
        };
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        if changes.len() >= FEED_LIMIT {
            self.lost.store(true, Ordering::Release);
            return false;
        }
        changes.push(change);
        true
    }

    fn lost(&self) {
        self.lost.store(true, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
    }
}

/// What presence reads of an event: who joined or left which voice channel, or
/// which room was deleted (then everyone in it is out). It is noted on the event's
/// frame when the event is framed (`crate::broker::event_frame`, for the
/// in-process broker's events and those read from Redis alike) and read back with
/// [`Frame::voice`], so presence never parses an envelope: the contract's
/// `ServerMessage::parse` (an internally tagged enum around a flattened one)
/// buffered each message twice through serde's generic `Content`, and even a
/// narrow read of every event of the guild cost the webhook's path
/// (docs/benchmarks.md, "Ingest").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VoiceChange {
    /// `voice.joined`.
    Joined {
        /// Who.
        user: Snowflake,
        /// The voice channel joined.
        channel: Snowflake,
    },
    /// `voice.left`.
    Left {
        /// Who.
        user: Snowflake,
        /// The voice channel left.
        channel: Snowflake,
    },
    /// `room.deleted`.
    RoomDeleted {
        /// The room's voice channel.
        channel: Snowflake,
    },
}

/// Bytes of a frame's note ([`VoiceChange::note`]): a kind byte, two ids.
pub(crate) const NOTE_LEN: usize = 17;

impl VoiceChange {
    /// The change `event` makes, if any.
    pub(crate) fn of(event: &Event) -> Option<Self> {
        match event {
            Event::VoiceJoined(e) => Some(Self::Joined {
                user: e.user_id,
                channel: e.channel_id,
            }),
            Event::VoiceLeft(e) => Some(Self::Left {
                user: e.user_id,
                channel: e.channel_id,
            }),
            Event::RoomDeleted(room) => Some(Self::RoomDeleted {
                channel: room.channel_id,
            }),
            _ => None,
        }
    }

    /// `change` as a frame's note: kind (0 for none), user id, channel id.
    pub(crate) fn note(change: Option<Self>) -> [u8; NOTE_LEN] {
        let (kind, user, channel) = match change {
            None => (0, 0, 0),
            Some(Self::Joined { user, channel }) => (1, user.get(), channel.get()),
            Some(Self::Left { user, channel }) => (2, user.get(), channel.get()),
            Some(Self::RoomDeleted { channel }) => (3, 0, channel.get()),
        };
        let mut note = [0; NOTE_LEN];
        note[0] = kind;
        note[1..9].copy_from_slice(&u64::to_le_bytes(user));
        note[9..].copy_from_slice(&u64::to_le_bytes(channel));
        note
    }

    /// The change a frame's note holds ([`Self::note`]).
    pub(crate) fn from_note(note: &[u8; NOTE_LEN]) -> Option<Self> {
        let id = |bytes: &[u8]| Snowflake::new(u64::from_le_bytes(bytes.try_into().ok()?));
        let (user, channel) = (id(&note[1..9]), id(&note[9..]));
        match note[0] {
            1 => Some(Self::Joined {
                user: user?,
                channel: channel?,
            }),
            2 => Some(Self::Left {
                user: user?,
                channel: channel?,
            }),
            3 => Some(Self::RoomDeleted { channel: channel? }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use coven_contract::{
        ErrorBody, ErrorCode, ErrorEnvelope, Event, RoomDeleted, ServerMessage, Version,
        VoiceJoined, VoiceLeft, VoiceSpeaking,
    };
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::broker::{BrokerError, BrokerLimits, InProcessBroker, event_frame, unix_millis};
    use crate::local_stream::LocalStream;
    use crate::once_key::OnceKey;

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    fn joined(user: u64, channel: u64) -> Event {
        Event::VoiceJoined(VoiceJoined {
            guild_id: id(1),
            channel_id: id(channel),
            user_id: id(user),
        })
    }

    fn left(user: u64, channel: u64) -> Event {
        Event::VoiceLeft(VoiceLeft {
            guild_id: id(1),
            channel_id: id(channel),
            user_id: id(user),
        })
    }

    fn deleted(channel: u64) -> Event {
        Event::RoomDeleted(RoomDeleted {
            guild_id: id(1),
            channel_id: id(channel),
        })
    }

    /// The change the local stream's frame of `event` carries.
    fn change(event: Event) -> Option<VoiceChange> {
        event_frame(event, 1, 7).voice()
    }

    #[test]
    fn the_event_frames_move_users_between_channels() {
        let mut channels = HashMap::new();
        let apply_event = |channels: &mut HashMap<_, _>, event| {
            apply(channels, change(event).expect("a voice change"));
        };
        for event in [joined(10, 2), joined(11, 2), joined(12, 3)] {
            apply_event(&mut channels, event);
        }
        assert_eq!(channels.len(), 3);
        assert_eq!(channels[&id(10)], id(2));

        // A move: joined the new room, then left the old one (which keeps it).
        apply_event(&mut channels, joined(10, 3));
        apply_event(&mut channels, left(10, 2));
        assert_eq!(channels[&id(10)], id(3));
        apply_event(&mut channels, left(11, 2));
        assert!(!channels.contains_key(&id(11)));

        // A deleted room empties.
        apply_event(&mut channels, deleted(3));
        assert!(channels.is_empty());
    }

    #[test]
    fn only_voice_events_carry_a_change() {
        let speaking = Event::VoiceSpeaking(VoiceSpeaking {
            guild_id: id(1),
            channel_id: id(3),
            user_id: id(12),
            speaking: true,
        });
        assert_eq!(change(speaking), None);
        let error = ServerMessage::Error(ErrorEnvelope {
            v: Version,
            error: ErrorBody {
                code: ErrorCode::InternalError,
                message: "x".into(),
            },
            ts: 1,
        });
        assert_eq!(Frame::text(&error.to_json()).voice(), None);
        assert_eq!(Frame::text("not json").voice(), None);
        assert_eq!(Frame::ping().voice(), None);
        // The note does not change what browsers get.
        let frame = event_frame(joined(10, 2), 1, 7);
        let envelope = ServerMessage::parse(&frame).unwrap();
        assert_eq!(frame.wire(), Frame::text(&envelope.to_json()).wire());
        for change in [
            VoiceChange::Joined {
                user: id(u64::MAX),
                channel: id(2),
            },
            VoiceChange::Left {
                user: id(10),
                channel: id(1 << 60),
            },
            VoiceChange::RoomDeleted { channel: id(3) },
        ] {
            assert_eq!(
                VoiceChange::from_note(&VoiceChange::note(Some(change))),
                Some(change)
            );
        }
        assert_eq!(VoiceChange::from_note(&VoiceChange::note(None)), None);
    }

    fn limits() -> BrokerLimits {
        BrokerLimits {
            replay_capacity: 16,
            replay_max_age: Duration::from_secs(60),
            dedupe_capacity: 16,
            dedupe_max_age: Duration::from_secs(60),
        }
    }

    /// A broker whose stream is fed from elsewhere, as the Redis broker's reader
    /// feeds it ([`LocalStream::deliver`] of entries framed by `event_frame`).
    struct Following(LocalStream);

    impl Broker for Following {
        fn local(&self) -> &LocalStream {
            &self.0
        }
        fn publish(
            &self,
            _: Event,
            _: Vec<OnceKey>,
        ) -> BoxFuture<'_, Result<Option<u64>, BrokerError>> {
            Box::pin(async { Err(BrokerError::Stopped) })
        }
        fn seq(&self, _: Snowflake) -> BoxFuture<'_, Option<u64>> {
            Box::pin(async { None })
        }
        fn history(&self, _: Snowflake, _: u64, _: u64) -> BoxFuture<'_, Option<Vec<Frame>>> {
            Box::pin(async { None })
        }
    }

    #[tokio::test]
    async fn presence_follows_the_in_process_and_the_redis_fed_stream() {
        // In process: events published by the broker.
        let broker = Arc::new(InProcessBroker::new(limits()));
        let presence = Presence::new(broker.clone(), id(1));
        let publish = |event| {
            futures_util::FutureExt::now_or_never(broker.publish(event, Vec::new()))
                .unwrap()
                .unwrap()
                .unwrap()
        };
        publish(joined(10, 2));
        publish(joined(11, 2));
        assert!(presence.both_in(id(10), id(11), id(2)));
        publish(joined(11, 3));
        assert!(!presence.both_in(id(10), id(11), id(2)), "moved away");
        publish(joined(10, 3));
        publish(left(10, 2));
        assert!(presence.both_in(id(10), id(11), id(3)));
        publish(deleted(3));
        assert!(!presence.both_in(id(10), id(11), id(3)), "the room is gone");

        // Fed from Redis: entries delivered in stream order, a duplicate skipped.
        let broker = Arc::new(Following(LocalStream::following(limits())));
        let presence = Presence::new(broker.clone(), id(1));
        let entry = |seq, event| (seq, unix_millis(), event_frame(event, unix_millis(), seq));
        let local = broker.local();
        local.deliver(
            id(1),
            vec![entry(5, joined(10, 2)), entry(6, joined(11, 2))],
        );
        assert!(presence.both_in(id(10), id(11), id(2)));
        local.deliver(id(1), vec![entry(6, joined(11, 2)), entry(7, left(11, 2))]);
        assert!(!presence.both_in(id(10), id(11), id(2)), "left");

        // A gap in the stream: presence re-subscribes (and would re-read the view).
        let stale = presence.lock().feed.clone();
        local.deliver(id(1), vec![entry(9, joined(11, 2))]);
        assert!(!stale.is_open(), "the lost feed no longer listens");
        presence.lock().drain();
        let feed = presence.lock().feed.clone();
        assert!(
            feed.is_open() && !Arc::ptr_eq(&feed, &stale),
            "a new feed took its place"
        );
        local.deliver(id(1), vec![entry(10, joined(12, 2))]);
        assert!(presence.both_in(id(10), id(12), id(2)));
    }
}
