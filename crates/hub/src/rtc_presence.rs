//! Who is in which voice channel right now, as this hub knows it: what decides
//! whose webcam signalling the hub relays (docs/spec.md §12).
//!
//! Why its own feed: the hub already receives every `voice.joined` / `voice.left`
//! in order through its [`LocalStream`] (the in-process broker's or Redis's, so
//! every hub of a cluster knows the same). [`Presence`] observes that stream
//! through one outbox, like a browser's but fed first, and seeds itself from the
//! worker's voice view (the snapshot's [`VoiceViewSource`]) once the first browser
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

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coven_contract::Snowflake;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::fanout::{Frame, Outbox};
use crate::snapshot::VoiceViewSource;

/// Unsent bytes the feed may hold before it counts as lost (then it is
/// re-subscribed and re-seeded).
const FEED_LIMIT: usize = 8 * 1024 * 1024;
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
    feed: Arc<Outbox>,
    /// Each user's voice channel.
    channels: HashMap<Snowflake, Snowflake>,
    /// While a voice view is on its way: the events applied since it was asked for.
    pending: Option<Vec<Frame>>,
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
            }),
            reseed: tokio::sync::Notify::new(),
            wanted: tokio::sync::Notify::new(),
            asked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn subscribe(broker: &dyn Broker, guild: Snowflake) -> Arc<Outbox> {
        let feed = Arc::new(Outbox::new(FEED_LIMIT));
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
                    for frame in &pending {
                        apply(&mut state.channels, frame);
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
        let mut batch: Vec<Frame> = Vec::new();
        let state = &mut *self.state;
        loop {
            let bytes = state.feed.take(&mut batch, 256);
            if batch.is_empty() {
                break;
            }
            state.feed.sent(bytes);
            for frame in batch.drain(..) {
                apply(&mut state.channels, &frame);
                if let Some(pending) = &mut state.pending {
                    pending.push(frame);
                }
            }
            if state
                .pending
                .as_ref()
                .is_some_and(|p| p.len() > PENDING_LIMIT)
            {
                state.pending = None;
            }
        }
        if state.feed.is_overloaded() {
            tracing::warn!("voice presence fell behind its feed: re-reading the voice view");
            state.feed.close();
            state.feed = Presence::subscribe(self.presence.broker.as_ref(), self.presence.guild);
            self.presence.reseed.notify_one();
        }
    }
}

/// Applies one event envelope to `channels`.
///
/// It reads only what presence needs: the message type, the event name and the
/// payload's `channelId` / `userId`. The frames are the hub's own envelopes of
/// events it already validated, and the contract's [`ServerMessage::parse`] (an
/// internally tagged enum around a flattened one) buffers the whole message twice
/// through serde's generic `Content` before typing it: for every event of the guild,
/// on the webhook's path (docs/benchmarks.md, "Ingest").
///
/// [`ServerMessage::parse`]: coven_contract::ServerMessage::parse
fn apply(channels: &mut HashMap<Snowflake, Snowflake>, frame: &Frame) {
    let Ok(message) = serde_json::from_str::<Peek<'_>>(frame) else {
        return;
    };
    let (true, Some(event), Some(payload)) =
        (message.kind == "event", message.event, message.payload)
    else {
        return;
    };
    match (&*event, payload.user_id) {
        ("voice.joined", Some(user)) => {
            channels.insert(user, payload.channel_id);
        }
        ("voice.left", Some(user)) if channels.get(&user) == Some(&payload.channel_id) => {
            channels.remove(&user);
        }
        ("room.deleted", _) => channels.retain(|_, channel| *channel != payload.channel_id),
        _ => {}
    }
}

/// What [`apply`] reads of a server message; every other field is skipped.
#[derive(serde::Deserialize)]
struct Peek<'a> {
    /// `event` for an event envelope (docs/spec.md §4).
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// The event's name.
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    payload: Option<PeekPayload>,
}

/// The ids [`apply`] reads of an event's payload (every event has `channelId`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekPayload {
    channel_id: Snowflake,
    user_id: Option<Snowflake>,
}

#[cfg(test)]
mod tests {
    use coven_contract::{
        ErrorBody, ErrorCode, ErrorEnvelope, Event, EventEnvelope, RoomDeleted, ServerMessage,
        Version, VoiceJoined, VoiceLeft, VoiceSpeaking,
    };

    use super::*;

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    /// The frame the local stream hands the feed for `event`.
    fn frame(event: Event) -> Frame {
        Frame::text(
            &ServerMessage::Event(EventEnvelope {
                v: Version,
                event,
                ts: 1,
                seq: 7,
            })
            .to_json(),
        )
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

    #[test]
    fn the_envelopes_move_users_between_channels() {
        let mut channels = HashMap::new();
        for event in [joined(10, 2), joined(11, 2), joined(12, 3)] {
            apply(&mut channels, &frame(event));
        }
        assert_eq!(channels.len(), 3);
        assert_eq!(channels[&id(10)], id(2));

        // A move: joined the new room, then left the old one (which keeps it).
        apply(&mut channels, &frame(joined(10, 3)));
        apply(&mut channels, &frame(left(10, 2)));
        assert_eq!(channels[&id(10)], id(3));
        apply(&mut channels, &frame(left(11, 2)));
        assert!(!channels.contains_key(&id(11)));

        // Other events and other messages change nothing.
        let speaking = Event::VoiceSpeaking(VoiceSpeaking {
            guild_id: id(1),
            channel_id: id(3),
            user_id: id(12),
            speaking: true,
        });
        apply(&mut channels, &frame(speaking));
        let error = ServerMessage::Error(ErrorEnvelope {
            v: Version,
            error: ErrorBody {
                code: ErrorCode::InternalError,
                message: "x".into(),
            },
            ts: 1,
        });
        apply(&mut channels, &Frame::text(&error.to_json()));
        apply(&mut channels, &Frame::text("not json"));
        assert_eq!(channels.len(), 2);

        // A deleted room empties.
        let deleted = Event::RoomDeleted(RoomDeleted {
            guild_id: id(1),
            channel_id: id(3),
        });
        apply(&mut channels, &frame(deleted));
        assert!(channels.is_empty());
    }
}
