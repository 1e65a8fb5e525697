//! Decoded audio per speaking user (docs/spec.md §9, "receive audio per user (decoded PCM,
//! 48 kHz, per speaking user)"): each user's Opus is decoded (`decode.rs`) and this module
//! hands every 20 ms of it to consumers as mono 48 kHz PCM, one bounded queue per user and
//! subscriber.
//!
//! Opt-in ([`PcmSettings`] in `RtcSettings::pcm`), because decoding costs CPU on every
//! received packet (figures in `docs/discord-clients.md`, "Received audio as PCM").
//! A slow consumer never grows memory: each user's queue holds at most
//! [`PcmSettings::queue_frames`] frames and, when full, **drops the oldest** frame (counted in
//! [`UserPcm::dropped`]), so a consumer that catches up hears the latest audio, not audio from
//! seconds ago. [`PcmFrame::index`] numbers a user's frames, so gaps are visible.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use coven_contract::Snowflake;
use tokio::sync::{Notify, mpsc};

/// Samples per second of the delivered PCM.
pub const PCM_SAMPLE_RATE: u32 = 48_000;

/// Samples (mono) in one 20 ms frame at [`PCM_SAMPLE_RATE`].
pub const PCM_FRAME_SAMPLES: usize = 960;

/// New users' streams waiting to be taken by [`PcmAudio::next_user`] (past this, a new
/// user's stream is offered again on their next frame).
const NEW_USERS: usize = 64;

/// How decoded audio is received (the presence of these settings turns decoding on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcmSettings {
    /// Frames (20 ms each) buffered per user and subscriber before the oldest is dropped;
    /// default 50 (one second, 96 KB). 0 is taken as 1.
    pub queue_frames: usize,
}

impl Default for PcmSettings {
    fn default() -> Self {
        Self { queue_frames: 50 }
    }
}

/// 20 ms of one user's decoded audio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcmFrame {
    /// Who spoke.
    pub user_id: Snowflake,
    /// The user's SSRC on the bot's connection.
    pub ssrc: u32,
    /// This frame's number in the user's stream (0, 1, 2 …; a gap means frames were dropped
    /// because the queue was full).
    pub index: u64,
    /// Mono signed 16-bit samples at 48 kHz: [`PCM_FRAME_SAMPLES`] for a 20 ms packet (more
    /// when the sender packs longer Opus frames).
    pub samples: Arc<[i16]>,
    /// The packet was lost: the audio is Opus packet-loss concealment, not what was sent.
    pub concealed: bool,
}

/// The streams of users as they start speaking (from [`super::DiscordRtcClient::pcm_audio`]).
#[derive(Debug)]
pub struct PcmAudio {
    rx: mpsc::Receiver<UserPcm>,
}

impl PcmAudio {
    /// The next user heard for the first time by this subscription (or again after they left
    /// and came back, or after the bot changed channel). `None` once the client is dropped.
    pub async fn next_user(&mut self) -> Option<UserPcm> {
        self.rx.recv().await
    }

    /// [`Self::next_user`] without waiting: `None` when no new user is pending.
    pub fn try_next_user(&mut self) -> Option<UserPcm> {
        self.rx.try_recv().ok()
    }
}

/// One user's decoded audio, in order, for one subscriber. It ends (`recv` → `None`, after
/// the buffered frames) when the user leaves the channel or the bot leaves or changes channel.
/// Dropping it stops the copying for this subscriber; frames are not offered again until the
/// user leaves and returns.
#[derive(Debug)]
pub struct UserPcm {
    user_id: Snowflake,
    queue: Arc<Queue>,
}

impl UserPcm {
    /// Whose audio this is.
    pub fn user_id(&self) -> Snowflake {
        self.user_id
    }

    /// The next frame, waiting for it; `None` when the stream has ended and is drained.
    pub async fn recv(&mut self) -> Option<PcmFrame> {
        loop {
            {
                let mut q = self.queue.lock();
                if let Some(frame) = q.frames.pop_front() {
                    return Some(frame);
                }
                if q.closed {
                    return None;
                }
            }
            // One consumer per queue: a `notify_one` before this point left a permit.
            self.queue.notify.notified().await;
        }
    }

    /// The next frame if one is buffered.
    pub fn try_recv(&mut self) -> Option<PcmFrame> {
        self.queue.lock().frames.pop_front()
    }

    /// Frames dropped so far because this stream's queue was full (the oldest go first).
    pub fn dropped(&self) -> u64 {
        self.queue.lock().dropped
    }

    /// Whether the stream has ended (more frames may still be buffered).
    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }
}

#[derive(Debug, Default)]
struct QueueState {
    frames: VecDeque<PcmFrame>,
    dropped: u64,
    next_index: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, capacity: usize, mut frame: PcmFrame) {
        {
            let mut q = self.lock();
            frame.index = q.next_index;
            q.next_index += 1;
            if q.frames.len() >= capacity {
                q.frames.pop_front();
                q.dropped += 1;
            }
            q.frames.push_back(frame);
        }
        self.notify.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }
}

/// One [`PcmAudio`] subscription: its new-user channel and the streams it was given.
struct Subscription {
    new_users: mpsc::Sender<UserPcm>,
    /// Per user: the stream handed out (dead once the consumer dropped it).
    streams: HashMap<Snowflake, Weak<Queue>>,
}

impl Subscription {
    fn alive(&self) -> bool {
        !self.new_users.is_closed() || self.streams.values().any(|w| w.strong_count() > 0)
    }
}

/// Fans decoded frames out to the subscriptions (owned by the receive side).
pub(crate) struct PcmHub {
    capacity: usize,
    subs: Mutex<Vec<Subscription>>,
}

impl PcmHub {
    pub fn new(settings: PcmSettings) -> Self {
        Self {
            capacity: settings.queue_frames.max(1),
            subs: Mutex::new(Vec::new()),
        }
    }

    fn subs(&self) -> MutexGuard<'_, Vec<Subscription>> {
        self.subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn subscribe(&self) -> PcmAudio {
        let (tx, rx) = mpsc::channel(NEW_USERS);
        let mut subs = self.subs();
        subs.retain(Subscription::alive);
        subs.push(Subscription {
            new_users: tx,
            streams: HashMap::new(),
        });
        PcmAudio { rx }
    }

    /// Whether anyone listens (no subscriber: nothing needs decoding).
    pub fn has_subscribers(&self) -> bool {
        let mut subs = self.subs();
        subs.retain(Subscription::alive);
        !subs.is_empty()
    }

    /// Hands one tick's decoded audio of `user` (mono, 48 kHz) to every subscription.
    pub fn push(&self, user_id: Snowflake, ssrc: u32, samples: &[i16], concealed: bool) {
        let mut subs = self.subs();
        subs.retain(Subscription::alive);
        if subs.is_empty() || samples.is_empty() {
            return;
        }
        let frame = PcmFrame {
            user_id,
            ssrc,
            index: 0,
            samples: samples.into(),
            concealed,
        };
        for sub in subs.iter_mut() {
            let queue = if let Some(weak) = sub.streams.get(&user_id) {
                weak.upgrade()
            } else {
                let queue = Arc::new(Queue::default());
                let stream = UserPcm {
                    user_id,
                    queue: queue.clone(),
                };
                // Full or gone: offer the stream again with the user's next frame.
                if sub.new_users.try_send(stream).is_err() {
                    continue;
                }
                sub.streams.insert(user_id, Arc::downgrade(&queue));
                Some(queue)
            };
            if let Some(queue) = queue {
                queue.push(self.capacity, frame.clone());
            }
        }
    }

    /// Ends `user`'s streams (they left); a return gives new streams.
    pub fn end_user(&self, user_id: Snowflake) {
        for sub in self.subs().iter_mut() {
            if let Some(queue) = sub.streams.remove(&user_id).and_then(|w| w.upgrade()) {
                queue.close();
            }
        }
    }

    /// Ends every stream (the bot left or changed channel).
    pub fn end_all(&self) {
        for sub in self.subs().iter_mut() {
            for (_, weak) in sub.streams.drain() {
                if let Some(queue) = weak.upgrade() {
                    queue.close();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u64) -> Snowflake {
        Snowflake::new(n).expect("non-zero")
    }

    fn tick(hub: &PcmHub, u: u64, value: i16) {
        hub.push(user(u), 7, &[value; PCM_FRAME_SAMPLES], false);
    }

    #[tokio::test]
    async fn each_user_gets_a_stream_of_mono_frames() {
        let hub = PcmHub::new(PcmSettings::default());
        let mut audio = hub.subscribe();
        tick(&hub, 1, 100);
        tick(&hub, 2, 200);
        tick(&hub, 1, 101);
        let mut a = audio.next_user().await.expect("user 1");
        let mut b = audio.next_user().await.expect("user 2");
        assert!(audio.try_next_user().is_none(), "one stream per user");
        assert_eq!((a.user_id(), b.user_id()), (user(1), user(2)));
        let f0 = a.recv().await.expect("frame");
        assert_eq!((f0.index, f0.samples.len(), f0.samples[0]), (0, 960, 100));
        assert_eq!(a.recv().await.expect("frame").samples[0], 101);
        assert_eq!(b.recv().await.expect("frame").samples[0], 200);
        hub.end_user(user(1));
        assert!(a.recv().await.is_none(), "ended after leaving");
        assert!(!b.is_closed());
        tick(&hub, 1, 102);
        let mut again = audio.next_user().await.expect("user 1 back");
        assert_eq!(again.recv().await.expect("frame").index, 0);
    }

    #[tokio::test]
    async fn a_slow_consumer_loses_the_oldest_frames_not_memory() {
        let hub = PcmHub::new(PcmSettings { queue_frames: 4 });
        let mut audio = hub.subscribe();
        for v in 0..10 {
            tick(&hub, 1, v);
        }
        let mut a = audio.next_user().await.expect("user");
        assert_eq!(a.dropped(), 6);
        let kept: Vec<(u64, i16)> = std::iter::from_fn(|| a.try_recv())
            .map(|f| (f.index, f.samples[0]))
            .collect();
        assert_eq!(kept, vec![(6, 6), (7, 7), (8, 8), (9, 9)]);
    }

    #[tokio::test]
    async fn dropped_subscribers_cost_nothing() {
        let hub = PcmHub::new(PcmSettings::default());
        let audio = hub.subscribe();
        drop(audio);
        tick(&hub, 1, 1);
        assert!(hub.subs().is_empty());
        let mut audio = hub.subscribe();
        tick(&hub, 1, 1);
        drop(audio.next_user().await.expect("user"));
        tick(&hub, 1, 2);
        assert!(audio.try_next_user().is_none(), "not offered again");
        drop(audio);
        tick(&hub, 1, 3);
        assert!(hub.subs().is_empty());
    }
}
