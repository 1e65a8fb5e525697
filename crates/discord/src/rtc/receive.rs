//! What the bot hears: SSRC → user mapping (from SPEAKING and client-disconnect events),
//! speaking on/off per user (from songbird's 20 ms voice ticks, with a short hang-over so a
//! lost packet does not flicker), per-user received-audio statistics and, when decoding is
//! on, each user's decoded audio handed to the PCM streams (`pcm.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use coven_contract::Snowflake;
use songbird::events::context_data::VoiceData;
use songbird::events::{Event, EventContext, EventHandler};
use tokio::sync::broadcast;

use super::decode::Decoders;
use super::pcm::{PcmAudio, PcmHub, PcmSettings};

/// Silent ticks (20 ms each) before a speaking user is reported as stopped.
const HANGOVER_TICKS: u32 = 5;

/// A user started or stopped speaking in the bot's voice channel (feeds `voice.speaking`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeakingUpdate {
    /// The guild.
    pub guild_id: Snowflake,
    /// The voice channel the bot is in.
    pub channel_id: Snowflake,
    /// Who.
    pub user_id: Snowflake,
    /// Started (`true`) or stopped (`false`).
    pub speaking: bool,
}

/// Audio the bot received from one user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceivedAudio {
    /// The user's SSRC.
    pub ssrc: u32,
    /// RTP packets (20 ms Opus frames) received and decrypted.
    pub frames: u64,
    /// When the last frame was played out.
    pub last_frame_at: Option<Instant>,
    /// Whether the user is speaking now.
    pub speaking: bool,
}

#[derive(Default)]
struct Track {
    user: Option<Snowflake>,
    stats: ReceivedAudio,
    silent_ticks: u32,
}

#[derive(Default)]
struct State {
    by_ssrc: HashMap<u32, Track>,
    channel: Option<Snowflake>,
}

/// Shared between the client and songbird's event handlers.
pub(crate) struct Receiver {
    guild_id: Snowflake,
    state: Mutex<State>,
    tx: broadcast::Sender<SpeakingUpdate>,
    /// Decoded audio streams (`None`: decoding is off).
    pcm: Option<Pcm>,
}

/// Decoding of received audio and its subscribers.
struct Pcm {
    hub: PcmHub,
    decoders: Mutex<Decoders>,
}

impl Pcm {
    fn decoders(&self) -> MutexGuard<'_, Decoders> {
        self.decoders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decodes the tick's audio of known users for the PCM subscribers (none: no work).
    fn decode(
        &self,
        ticks: &[(Snowflake, u32, &VoiceData)],
        speaking: &HashMap<u32, VoiceData>,
        silent: &HashSet<u32>,
    ) {
        let mut decoders = self.decoders();
        let live: HashSet<u32> = speaking.keys().chain(silent).copied().collect();
        decoders.retain(&live);
        if !self.hub.has_subscribers() {
            return;
        }
        for (user, ssrc, data) in ticks {
            if let Some(d) = decoders.decode(*ssrc, data) {
                self.hub.push(*user, *ssrc, d.samples, d.concealed);
            }
        }
    }
}

impl Receiver {
    pub fn new(guild_id: Snowflake, pcm: Option<PcmSettings>) -> Arc<Self> {
        let (tx, _) = broadcast::channel(256);
        Arc::new(Self {
            guild_id,
            state: Mutex::new(State::default()),
            tx,
            pcm: pcm.map(|settings| Pcm {
                hub: PcmHub::new(settings),
                decoders: Mutex::new(Decoders::new()),
            }),
        })
    }

    /// A new subscription to decoded audio, `None` when decoding is off.
    pub fn subscribe_pcm(&self) -> Option<PcmAudio> {
        self.pcm.as_ref().map(|p| p.hub.subscribe())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SpeakingUpdate> {
        self.tx.subscribe()
    }

    /// The channel the bot is in now (`None`: reset everything, reporting stops).
    pub fn set_channel(&self, channel: Option<Snowflake>) {
        let mut st = self.state();
        if st.channel == channel {
            return;
        }
        let old = st.channel;
        let stopped: Vec<Snowflake> = st
            .by_ssrc
            .values()
            .filter(|t| t.stats.speaking)
            .filter_map(|t| t.user)
            .collect();
        st.by_ssrc.clear();
        st.channel = channel;
        drop(st);
        if let Some(pcm) = &self.pcm {
            pcm.decoders().clear();
            pcm.hub.end_all();
        }
        if let Some(old) = old {
            for user in stopped {
                self.emit(old, user, false);
            }
        }
    }

    fn emit(&self, channel_id: Snowflake, user_id: Snowflake, speaking: bool) {
        let _ = self.tx.send(SpeakingUpdate {
            guild_id: self.guild_id,
            channel_id,
            user_id,
            speaking,
        });
    }

    pub fn stats(&self) -> HashMap<Snowflake, ReceivedAudio> {
        self.state()
            .by_ssrc
            .values()
            .filter_map(|t| Some((t.user?, t.stats)))
            .collect()
    }

    fn on_speaking_op(&self, ssrc: u32, user: Option<u64>) {
        let Some(user) = user.and_then(Snowflake::new) else {
            return;
        };
        let mut st = self.state();
        let track = st.by_ssrc.entry(ssrc).or_default();
        track.user = Some(user);
        track.stats.ssrc = ssrc;
    }

    fn on_client_disconnect(&self, user: u64) {
        let Some(user) = Snowflake::new(user) else {
            return;
        };
        let mut st = self.state();
        let channel = st.channel;
        let mut was_speaking = false;
        st.by_ssrc.retain(|_, t| {
            if t.user == Some(user) {
                was_speaking |= t.stats.speaking;
                false
            } else {
                true
            }
        });
        drop(st);
        if let Some(pcm) = &self.pcm {
            pcm.hub.end_user(user);
        }
        if let (true, Some(channel)) = (was_speaking, channel) {
            self.emit(channel, user, false);
        }
    }

    fn on_tick(&self, speaking: &HashMap<u32, VoiceData>, silent: &HashSet<u32>) {
        let now = Instant::now();
        let mut changes = Vec::new();
        let mut decoded = Vec::new();
        let mut st = self.state();
        let channel = st.channel;
        for (ssrc, data) in speaking {
            let track = st.by_ssrc.entry(*ssrc).or_default();
            track.stats.ssrc = *ssrc;
            // Audio of a user not yet known by SPEAKING (op 5) cannot be attributed: dropped.
            if let (Some(user), Some(_)) = (track.user, &self.pcm) {
                decoded.push((user, *ssrc, data));
            }
            if data.packet.is_none() {
                continue;
            }
            track.stats.frames += 1;
            track.stats.last_frame_at = Some(now);
            track.silent_ticks = 0;
            if !track.stats.speaking {
                track.stats.speaking = true;
                if let Some(user) = track.user {
                    changes.push((user, true));
                }
            }
        }
        for ssrc in silent {
            if let Some(track) = st.by_ssrc.get_mut(ssrc) {
                track.silent_ticks += 1;
                if track.stats.speaking && track.silent_ticks >= HANGOVER_TICKS {
                    track.stats.speaking = false;
                    if let Some(user) = track.user {
                        changes.push((user, false));
                    }
                }
            }
        }
        drop(st);
        if let Some(pcm) = &self.pcm {
            pcm.decode(&decoded, speaking, silent);
        }
        if let Some(channel) = channel {
            for (user, speaking) in changes {
                self.emit(channel, user, speaking);
            }
        }
    }
}

/// songbird event handler feeding a [`Receiver`].
pub(crate) struct ReceiveHandler(pub Arc<Receiver>);

#[async_trait]
impl EventHandler for ReceiveHandler {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        match ctx {
            EventContext::SpeakingStateUpdate(s) => {
                self.0.on_speaking_op(s.ssrc, s.user_id.map(|u| u.0));
            }
            EventContext::ClientDisconnect(c) => self.0.on_client_disconnect(c.user_id.0),
            EventContext::VoiceTick(t) => self.0.on_tick(&t.speaking, &t.silent),
            _ => {}
        }
        None
    }
}
