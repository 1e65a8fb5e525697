//! `DiscordRtcClient`: the bot's own voice connection on songbird 0.6's `Driver`.
//!
//! Flow: [`DiscordRtcClient::connect`] asks the worker's gateway session for op 4; the worker
//! feeds the bot's `VOICE_STATE_UPDATE` (session id) and `VOICE_SERVER_UPDATE` (endpoint,
//! token) back through [`DiscordRtcClient::on_voice_state_update`] /
//! [`DiscordRtcClient::on_voice_server_update`]; once both are known the driver runs the voice
//! handshake (voice gateway v4 over TLS, IP discovery, transport encryption, DAVE when the
//! server offers it). A later `VOICE_SERVER_UPDATE` with another endpoint or token reconnects
//! to the new server; a dropped voice socket is resumed (and, failing that, re-identified) by
//! the driver itself.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use coven_contract::Snowflake;
use songbird::driver::{CryptoMode, DecodeMode, Driver};
use songbird::events::{CoreEvent, Event, EventContext, EventHandler};
use songbird::{Config, ConnectionInfo};
use tokio::sync::{broadcast, watch};
use twilight_model::gateway::payload::incoming::VoiceServerUpdate;
use twilight_model::voice::VoiceState;

use super::cue::{Cue, CueSound};
use super::error::RtcError;
use super::gateway::VoiceGatewaySender;
use super::pcm::{PcmAudio, PcmSettings};
use super::receive::{ReceiveHandler, ReceivedAudio, Receiver, SpeakingUpdate};

/// The transport encryption mode the client prefers (the server offers the list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportPreference {
    /// `aead_aes256_gcm_rtpsize` (Discord's preferred mode).
    #[default]
    Aes256Gcm,
    /// `aead_xchacha20_poly1305_rtpsize`.
    XChaCha20Poly1305,
}

/// Settings of a [`DiscordRtcClient`].
#[derive(Clone, Debug)]
pub struct RtcSettings {
    /// How long `connect` waits for the voice connection to be ready (default 10 s).
    pub connect_timeout: Duration,
    /// Preferred transport encryption mode.
    pub transport: TransportPreference,
    /// Decode received audio into per-user PCM streams ([`DiscordRtcClient::pcm_audio`]).
    /// `None` (the default): packets are only decrypted — enough for speaking updates and
    /// [`DiscordRtcClient::received_audio`], and no Opus decoding cost.
    pub pcm: Option<PcmSettings>,
}

impl Default for RtcSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            transport: TransportPreference::default(),
            pcm: None,
        }
    }
}

/// Where the voice connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtcStatus {
    /// Not in voice.
    Disconnected,
    /// Waiting for the voice state/server updates or the voice handshake.
    Connecting {
        /// The channel being joined.
        channel_id: Snowflake,
    },
    /// Connected: audio can flow.
    Ready {
        /// The channel the bot is in.
        channel_id: Snowflake,
        /// The voice server (`host:port`).
        endpoint: String,
    },
    /// Moving to a new voice server after a `VOICE_SERVER_UPDATE`.
    Reconnecting {
        /// The channel the bot is in.
        channel_id: Snowflake,
    },
    /// The handshake failed or the connection died for good.
    Failed {
        /// The channel that was being joined.
        channel_id: Snowflake,
        /// Why.
        reason: String,
    },
}

/// Counters of the voice connection's life (since the client was built).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcCounters {
    /// Successful full handshakes (`IDENTIFY` … `SESSION_DESCRIPTION`), including moves.
    pub connects: u64,
    /// Successful resumes after the voice socket dropped.
    pub resumes: u64,
    /// Voice server moves followed (new `VOICE_SERVER_UPDATE` while connected).
    pub server_moves: u64,
    /// Connections lost for good (not requested).
    pub failures: u64,
    /// The bot's SSRC on its current connection.
    pub ssrc: u32,
}

#[derive(Default)]
struct Pending {
    target: Option<Snowflake>,
    session_id: Option<String>,
    endpoint: Option<String>,
    token: Option<String>,
    /// The info of the connection the driver has (or is making).
    active: Option<(String, String, String)>,
}

struct Inner {
    guild_id: Snowflake,
    bot_user_id: Snowflake,
    gateway: Arc<dyn VoiceGatewaySender>,
    settings: RtcSettings,
    driver: tokio::sync::Mutex<Driver>,
    pending: Mutex<Pending>,
    generation: AtomicU64,
    status: watch::Sender<RtcStatus>,
    counters: watch::Sender<RtcCounters>,
    receiver: Arc<Receiver>,
    runtime: tokio::runtime::Handle,
}

/// The bot's voice connection in one guild (docs/spec.md §9). Cheap to clone; clones share it.
#[derive(Clone)]
pub struct DiscordRtcClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DiscordRtcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordRtcClient")
            .field("guild_id", &self.inner.guild_id)
            .field("status", &*self.inner.status.borrow())
            .finish_non_exhaustive()
    }
}

fn nz(id: Snowflake) -> NonZeroU64 {
    NonZeroU64::new(id.get()).unwrap_or(NonZeroU64::MIN)
}

impl DiscordRtcClient {
    /// A client with default settings. Must be called inside a Tokio runtime.
    pub fn new(
        guild_id: Snowflake,
        bot_user_id: Snowflake,
        gateway: Arc<dyn VoiceGatewaySender>,
    ) -> Self {
        Self::with_settings(guild_id, bot_user_id, gateway, RtcSettings::default())
    }

    /// A client with these settings. Must be called inside a Tokio runtime.
    pub fn with_settings(
        guild_id: Snowflake,
        bot_user_id: Snowflake,
        gateway: Arc<dyn VoiceGatewaySender>,
        settings: RtcSettings,
    ) -> Self {
        // songbird's TLS (tokio-websockets + rustls) needs a process-wide CryptoProvider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let crypto = match settings.transport {
            TransportPreference::Aes256Gcm => CryptoMode::Aes256Gcm,
            TransportPreference::XChaCha20Poly1305 => CryptoMode::XChaCha20Poly1305,
        };
        // Decrypt only, also with `pcm`: the client decodes received Opus itself (`decode.rs`
        // says why songbird's `DecodeMode::Decode` is not used).
        let config = Config::default()
            .crypto_mode(crypto)
            .decode_mode(DecodeMode::Decrypt)
            .driver_timeout(Some(settings.connect_timeout));
        let mut driver = Driver::new(config);
        let receiver = Receiver::new(guild_id, settings.pcm);
        for ev in [
            CoreEvent::SpeakingStateUpdate,
            CoreEvent::VoiceTick,
            CoreEvent::ClientDisconnect,
        ] {
            driver.add_global_event(Event::Core(ev), ReceiveHandler(receiver.clone()));
        }
        let (status, _) = watch::channel(RtcStatus::Disconnected);
        let (counters, _) = watch::channel(RtcCounters::default());
        let inner = Arc::new(Inner {
            guild_id,
            bot_user_id,
            gateway,
            settings,
            driver: tokio::sync::Mutex::new(driver),
            pending: Mutex::new(Pending::default()),
            generation: AtomicU64::new(0),
            status,
            counters,
            receiver,
            runtime: tokio::runtime::Handle::current(),
        });
        let lifecycle = Lifecycle(Arc::downgrade(&inner));
        if let Ok(mut d) = inner.driver.try_lock() {
            for ev in [
                CoreEvent::DriverConnect,
                CoreEvent::DriverReconnect,
                CoreEvent::DriverDisconnect,
            ] {
                d.add_global_event(Event::Core(ev), lifecycle.clone());
            }
        }
        Self { inner }
    }

    /// The guild this client is for.
    pub fn guild_id(&self) -> Snowflake {
        self.inner.guild_id
    }

    /// The connection's status now.
    pub fn status(&self) -> RtcStatus {
        self.inner.status.borrow().clone()
    }

    /// Watches the status (for waiting on a state without polling).
    pub fn watch_status(&self) -> watch::Receiver<RtcStatus> {
        self.inner.status.subscribe()
    }

    /// Lifetime counters (connects, resumes, server moves, failures, SSRC).
    pub fn counters(&self) -> RtcCounters {
        *self.inner.counters.borrow()
    }

    /// Watches the counters.
    pub fn watch_counters(&self) -> watch::Receiver<RtcCounters> {
        self.inner.counters.subscribe()
    }

    /// Speaking updates of the users in the bot's channel (`voice.speaking`). Each receiver
    /// sees every update sent after it subscribed (it lags, losing the oldest, past 256).
    pub fn speaking_updates(&self) -> broadcast::Receiver<SpeakingUpdate> {
        self.inner.receiver.subscribe()
    }

    /// Audio received per user since the bot joined its current channel.
    pub fn received_audio(&self) -> HashMap<Snowflake, ReceivedAudio> {
        self.inner.receiver.stats()
    }

    /// A new subscription to the decoded audio of the users in the bot's channel: one
    /// [`UserPcm`](super::UserPcm) stream per user as they start speaking (mono, 48 kHz,
    /// 20 ms frames; bounded, dropping the oldest frame when the consumer falls behind).
    /// [`RtcError::PcmDisabled`] unless the client was built with [`RtcSettings::pcm`].
    pub fn pcm_audio(&self) -> Result<PcmAudio, RtcError> {
        self.inner
            .receiver
            .subscribe_pcm()
            .ok_or(RtcError::PcmDisabled)
    }

    /// Joins `channel_id` (or moves there) and waits until the voice connection is ready,
    /// at most `connect_timeout`. On a timeout or failure the bot leaves voice again.
    pub async fn connect(&self, channel_id: Snowflake) -> Result<(), RtcError> {
        let inner = &self.inner;
        if matches!(&*inner.status.borrow(), RtcStatus::Ready { channel_id: c, .. } if *c == channel_id)
        {
            return Ok(());
        }
        let mut status = inner.status.subscribe();
        {
            let mut p = inner.pending();
            p.target = Some(channel_id);
            p.endpoint = None;
            p.token = None;
            p.active = None;
        }
        inner.generation.fetch_add(1, Ordering::SeqCst);
        inner
            .status
            .send_replace(RtcStatus::Connecting { channel_id });
        inner
            .gateway
            .update_voice_state(Some(channel_id), false, false)
            .map_err(RtcError::Gateway)?;
        let outcome: Result<Result<RtcStatus, _>, _> =
            tokio::time::timeout(inner.settings.connect_timeout, async {
                status
                    .wait_for(|s| match s {
                        RtcStatus::Ready { channel_id: c, .. }
                        | RtcStatus::Failed { channel_id: c, .. } => *c == channel_id,
                        RtcStatus::Connecting { channel_id: c }
                        | RtcStatus::Reconnecting { channel_id: c } => *c != channel_id,
                        RtcStatus::Disconnected => true,
                    })
                    .await
                    .map(|s| s.clone())
            })
            .await;
        let result = match outcome {
            Err(_) => Err(RtcError::Timeout(inner.settings.connect_timeout)),
            Ok(Ok(RtcStatus::Ready { .. })) => Ok(()),
            Ok(Ok(RtcStatus::Failed { reason, .. })) => Err(RtcError::Connection(reason)),
            Ok(_) => Err(RtcError::Superseded),
        };
        if matches!(result, Err(RtcError::Timeout(_) | RtcError::Connection(_))) {
            let _ = self.disconnect().await;
        }
        result
    }

    /// Leaves voice: drops the voice connection and sends op 4 with no channel.
    pub async fn disconnect(&self) -> Result<(), RtcError> {
        let inner = &self.inner;
        inner.generation.fetch_add(1, Ordering::SeqCst);
        {
            let mut p = inner.pending();
            let session_id = p.session_id.take();
            *p = Pending {
                session_id,
                ..Pending::default()
            };
        }
        inner.driver.lock().await.leave();
        inner.receiver.set_channel(None);
        inner.status.send_replace(RtcStatus::Disconnected);
        inner
            .gateway
            .update_voice_state(None, false, false)
            .map_err(RtcError::Gateway)
    }

    /// Plays `cue` into the channel (replacing a cue still playing). Returns when the cue is
    /// queued; it plays for [`Cue::duration`].
    pub async fn play_cue(&self, cue: Cue) -> Result<(), RtcError> {
        let ready = matches!(&*self.inner.status.borrow(), RtcStatus::Ready { .. });
        if !ready {
            return Err(RtcError::NotConnected);
        }
        self.inner.driver.lock().await.play_only_input(cue.input());
        Ok(())
    }

    /// Camera video: always [`RtcError::VideoUnsupported`] — Discord does not allow bots to
    /// send camera video or Go Live streams.
    pub fn send_video(&self) -> Result<(), RtcError> {
        Err(RtcError::VideoUnsupported)
    }

    /// Receiving a user's camera video: always [`RtcError::VideoUnsupported`] — Discord does
    /// not deliver video to bots.
    pub fn receive_video(&self, _user_id: Snowflake) -> Result<(), RtcError> {
        Err(RtcError::VideoUnsupported)
    }

    /// Feed every `VOICE_STATE_UPDATE` of the guild; only the bot's own is used.
    pub fn on_voice_state_update(&self, state: &VoiceState) {
        let inner = &self.inner;
        if state.user_id.get() != inner.bot_user_id.get()
            || state
                .guild_id
                .is_some_and(|g| g.get() != inner.guild_id.get())
        {
            return;
        }
        let channel = state.channel_id.and_then(|c| Snowflake::new(c.get()));
        // A leave while connecting is the echo of an earlier `disconnect`; only a leave of an
        // established connection means someone else disconnected the bot.
        let established = matches!(
            &*inner.status.borrow(),
            RtcStatus::Ready { .. } | RtcStatus::Reconnecting { .. }
        );
        {
            let mut p = inner.pending();
            p.session_id = Some(state.session_id.clone());
            match channel {
                // Moved by someone else: follow (Discord sends a VOICE_SERVER_UPDATE too).
                Some(c) if p.target.is_some() && p.target != Some(c) => p.target = Some(c),
                // Disconnected by someone else while we wanted to be in voice.
                None if p.target.is_some() && established => {
                    p.target = None;
                    p.active = None;
                    drop(p);
                    inner.generation.fetch_add(1, Ordering::SeqCst);
                    let this = self.clone();
                    inner.runtime.spawn(async move {
                        this.inner.driver.lock().await.leave();
                        this.inner.receiver.set_channel(None);
                        this.inner.status.send_replace(RtcStatus::Disconnected);
                    });
                    return;
                }
                _ => {}
            }
        }
        self.try_start();
    }

    /// Feed `VOICE_SERVER_UPDATE`s of the guild (they are only ever the bot's own).
    pub fn on_voice_server_update(&self, update: &VoiceServerUpdate) {
        let inner = &self.inner;
        if update.guild_id.get() != inner.guild_id.get() {
            return;
        }
        {
            let mut p = inner.pending();
            // `endpoint: null` means the voice server went away; a new update follows.
            p.endpoint.clone_from(&update.endpoint);
            p.token = Some(update.token.clone());
        }
        self.try_start();
    }

    /// Starts the voice handshake when the session, endpoint and token are known and differ
    /// from the connection the driver has.
    fn try_start(&self) {
        let inner = &self.inner;
        let (channel_id, info, is_move) = {
            let mut p = inner.pending();
            let (Some(channel_id), Some(session), Some(endpoint), Some(token)) = (
                p.target,
                p.session_id.clone(),
                p.endpoint.clone(),
                p.token.clone(),
            ) else {
                return;
            };
            let key = (session.clone(), endpoint.clone(), token.clone());
            if p.active.as_ref() == Some(&key) {
                return;
            }
            let is_move = p.active.is_some();
            p.active = Some(key);
            let info = ConnectionInfo {
                channel_id: nz(channel_id).into(),
                endpoint,
                guild_id: nz(inner.guild_id).into(),
                session_id: session,
                token,
                user_id: nz(inner.bot_user_id).into(),
            };
            (channel_id, info, is_move)
        };
        let generation = inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let was_ready = matches!(&*inner.status.borrow(), RtcStatus::Ready { .. });
        if was_ready || is_move {
            inner
                .status
                .send_replace(RtcStatus::Reconnecting { channel_id });
        }
        let this = self.clone();
        inner.runtime.spawn(async move {
            let inner = &this.inner;
            let endpoint = info.endpoint.clone();
            let connecting = inner.driver.lock().await.connect(info);
            let result = connecting.await;
            if inner.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            match result {
                Ok(()) => {
                    inner.receiver.set_channel(Some(channel_id));
                    inner.counters.send_modify(|c| {
                        c.connects += 1;
                        if was_ready || is_move {
                            c.server_moves += 1;
                        }
                    });
                    inner.status.send_replace(RtcStatus::Ready {
                        channel_id,
                        endpoint,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "voice connection failed");
                    inner.pending().active = None;
                    inner.status.send_replace(RtcStatus::Failed {
                        channel_id,
                        reason: e.to_string(),
                    });
                }
            }
        });
    }
}

impl Inner {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Follows the driver's connect / resume / disconnect events.
#[derive(Clone)]
struct Lifecycle(std::sync::Weak<Inner>);

#[async_trait]
impl EventHandler for Lifecycle {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        let inner = self.0.upgrade()?;
        match ctx {
            EventContext::DriverConnect(c) => {
                let ssrc = c.ssrc;
                inner.counters.send_modify(|k| k.ssrc = ssrc);
            }
            EventContext::DriverReconnect(c) => {
                let ssrc = c.ssrc;
                inner.counters.send_modify(|k| {
                    k.resumes += 1;
                    k.ssrc = ssrc;
                });
            }
            EventContext::DriverDisconnect(d) => {
                let requested = matches!(
                    d.reason,
                    Some(songbird::events::context_data::DisconnectReason::Requested)
                );
                let ready_channel = match &*inner.status.borrow() {
                    RtcStatus::Ready { channel_id, .. } => Some(*channel_id),
                    _ => None,
                };
                if !requested && let Some(channel_id) = ready_channel {
                    {
                        tracing::warn!(reason = ?d.reason, kind = ?d.kind, "voice connection lost");
                        inner.pending().active = None;
                        inner.counters.send_modify(|k| k.failures += 1);
                        inner.status.send_replace(RtcStatus::Failed {
                            channel_id,
                            reason: format!("voice connection lost: {:?}", d.reason),
                        });
                    }
                }
            }
            _ => {}
        }
        None
    }
}
