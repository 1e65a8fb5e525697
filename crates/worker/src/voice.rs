//! The bot's own voice connection, on the worker's gateway session.
//!
//! `DiscordRtcClient` (songbird's driver) needs three things from the gateway: a way
//! to send op 4 (join/leave a voice channel), the bot's own `VOICE_STATE_UPDATE`s and
//! every `VOICE_SERVER_UPDATE`. The gateway loop provides them through [`BotVoice`];
//! the speaking updates the client hears become `voice.speaking` events that go
//! back to the gateway loop, which commits them like its own (fenced, retried,
//! in order with the dispatches' events), so they reach browsers on the same
//! ordered, durable path as the rest.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coven_contract::{Event, Snowflake, VoiceSpeaking};
use coven_discord::{DiscordRtcClient, VoiceGatewayError, VoiceGatewaySender};
use tokio::sync::mpsc;
use twilight_gateway::MessageSender;
use twilight_model::gateway::payload::incoming::VoiceServerUpdate;
use twilight_model::gateway::payload::outgoing::UpdateVoiceState;
use twilight_model::id::Id;
use twilight_model::voice::VoiceState;

/// Sends op 4 through the shard's message channel.
struct ShardVoiceSender {
    sender: MessageSender,
    guild_id: Snowflake,
}

impl VoiceGatewaySender for ShardVoiceSender {
    fn update_voice_state(
        &self,
        channel_id: Option<Snowflake>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<(), VoiceGatewayError> {
        let command = UpdateVoiceState::new(
            Id::new(self.guild_id.get()),
            channel_id.map(|id| Id::new(id.get())),
            self_deaf,
            self_mute,
        );
        self.sender
            .command(&command)
            .map_err(VoiceGatewayError::new)
    }
}

/// What building the voice client needs, known from READY (or a stored session) on.
struct Parts {
    guild_id: Snowflake,
    bot_user_id: Snowflake,
    sender: MessageSender,
    /// Where the events the client produces go: the gateway loop.
    produced: mpsc::Sender<Event>,
}

/// The bot's voice connection. The session provides its parts on READY (or on
/// RESUMED, from the stored session); the client (and songbird's driver with it)
/// is only built by the first voice command, so a worker whose bot never joins a
/// room runs no audio machinery. A standby of a pair has none, and refuses commands.
#[derive(Clone, Default)]
pub struct BotVoice {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    standby: bool,
    parts: Option<Parts>,
    client: Option<DiscordRtcClient>,
    speaking: Option<tokio::task::JoinHandle<()>>,
}

impl BotVoice {
    /// The voice client, built on first use once the session's parts are known.
    /// Must be called inside the Tokio runtime.
    pub fn client(&self) -> Option<DiscordRtcClient> {
        let mut inner = self.lock();
        if inner.standby {
            return None;
        }
        if let Some(client) = &inner.client {
            return Some(client.clone());
        }
        let parts = inner.parts.as_ref()?;
        let gateway = Arc::new(ShardVoiceSender {
            sender: parts.sender.clone(),
            guild_id: parts.guild_id,
        });
        // The session may carry a voice state from before this client: after a
        // resume across a restart or a takeover, Discord still has the bot in the
        // room it was in, and asking to join that same room again only updates
        // its flags, with no VOICE_SERVER_UPDATE to connect with. So a new client
        // first leaves whatever room the session is in (a no-op when it is in
        // none); the echo of that leave is ignored by the connecting client.
        if let Err(error) = gateway.update_voice_state(None, false, false) {
            tracing::warn!(%error, "could not clear the bot's previous voice state");
        }
        let client = DiscordRtcClient::new(parts.guild_id, parts.bot_user_id, gateway);
        let speaking = tokio::spawn(speaking_events(client.clone(), parts.produced.clone()));
        inner.speaking = Some(speaking);
        inner.client = Some(client.clone());
        Some(client)
    }

    /// Called on READY (or RESUMED) with what the client will need, and where
    /// the events it produces go (`produced`, read by the gateway loop). The
    /// shard's message channel survives reconnects, so the first parts stay
    /// valid until the session is handed to another worker ([`BotVoice::standby`]).
    pub fn ready(
        &self,
        guild_id: Snowflake,
        bot_user_id: Snowflake,
        sender: MessageSender,
        produced: &mpsc::Sender<Event>,
    ) {
        let mut inner = self.lock();
        inner.standby = false;
        if inner.parts.is_none() {
            inner.parts = Some(Parts {
                guild_id,
                bot_user_id,
                sender,
                produced: produced.clone(),
            });
        }
    }

    /// This worker no longer holds the session: forget the client and its parts
    /// (they belong to a closed shard) and refuse commands until the next READY.
    pub fn standby(&self) {
        let mut inner = self.lock();
        inner.standby = true;
        inner.parts = None;
        if let Some(speaking) = inner.speaking.take() {
            speaking.abort();
        }
        if let Some(client) = inner.client.take() {
            // Best effort: the op 4 cannot go out any more, but the voice
            // connection itself is ours to close.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), client.disconnect()).await;
            });
        }
    }

    /// This worker holds the session now: accept commands again (the client
    /// is built once the parts are known).
    pub fn activate(&self) {
        self.lock().standby = false;
    }

    /// Whether this worker is a standby (voice commands answer 503 `standby`).
    pub fn is_standby(&self) -> bool {
        self.lock().standby
    }

    /// Feeds a `VOICE_STATE_UPDATE` (the client keeps only the bot's own).
    pub fn voice_state(&self, state: &VoiceState) {
        let client = self.lock().client.clone();
        if let Some(client) = client {
            client.on_voice_state_update(state);
        }
    }

    /// Feeds a `VOICE_SERVER_UPDATE`.
    pub fn voice_server(&self, update: &VoiceServerUpdate) {
        let client = self.lock().client.clone();
        if let Some(client) = client {
            client.on_voice_server_update(update);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Sends every speaking change the bot hears, as a `voice.speaking` event, to
/// the gateway loop that commits it; stops when that loop has ended.
async fn speaking_events(client: DiscordRtcClient, produced: mpsc::Sender<Event>) {
    let mut updates = client.speaking_updates();
    loop {
        let update = match updates.recv().await {
            Ok(update) => update,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "speaking updates arrived faster than they were stored"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let event = Event::VoiceSpeaking(VoiceSpeaking {
            guild_id: update.guild_id,
            channel_id: update.channel_id,
            user_id: update.user_id,
            speaking: update.speaking,
        });
        if produced.send(event).await.is_err() {
            return;
        }
    }
}
