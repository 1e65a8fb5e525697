//! The bot's own voice connection, on the worker's gateway session.
//!
//! `DiscordRtcClient` (songbird's driver) needs three things from the gateway: a way
//! to send op 4 (join/leave a voice channel), the bot's own `VOICE_STATE_UPDATE`s and
//! every `VOICE_SERVER_UPDATE`. The gateway loop provides them through [`BotVoice`];
//! the speaking updates the client hears become `voice.speaking` events in the
//! outbox, so they reach browsers on the same ordered, durable path as the rest.

use std::sync::{Arc, OnceLock};

use coven_contract::{Event, Snowflake, VoiceSpeaking};
use coven_discord::{DiscordRtcClient, VoiceGatewaySender};
use twilight_gateway::MessageSender;
use twilight_model::gateway::payload::incoming::VoiceServerUpdate;
use twilight_model::gateway::payload::outgoing::UpdateVoiceState;
use twilight_model::id::Id;
use twilight_model::voice::VoiceState;

use crate::outbox::Outbox;

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
    ) -> Result<(), String> {
        let command = UpdateVoiceState::new(
            Id::new(self.guild_id.get()),
            channel_id.map(|id| Id::new(id.get())),
            self_deaf,
            self_mute,
        );
        self.sender
            .command(&command)
            .map_err(|error| error.to_string())
    }
}

/// What building the voice client needs, known from READY on.
struct Parts {
    guild_id: Snowflake,
    bot_user_id: Snowflake,
    sender: MessageSender,
    outbox: Outbox,
}

/// The bot's voice connection. The session provides its parts on READY; the
/// client (and songbird's driver with it) is only built by the first voice
/// command, so a worker whose bot never joins a room runs no audio machinery.
#[derive(Clone, Default)]
pub struct BotVoice {
    parts: Arc<OnceLock<Parts>>,
    client: Arc<OnceLock<DiscordRtcClient>>,
}

impl BotVoice {
    /// The voice client, built on first use once READY has been seen. Must be
    /// called inside the Tokio runtime.
    pub fn client(&self) -> Option<&DiscordRtcClient> {
        let parts = self.parts.get()?;
        Some(self.client.get_or_init(|| {
            let gateway = Arc::new(ShardVoiceSender {
                sender: parts.sender.clone(),
                guild_id: parts.guild_id,
            });
            let client = DiscordRtcClient::new(parts.guild_id, parts.bot_user_id, gateway);
            tokio::spawn(speaking_to_outbox(client.clone(), parts.outbox.clone()));
            client
        }))
    }

    /// Called on READY with what the client will need. The shard's message
    /// channel survives reconnects, so the first READY's parts stay valid.
    pub fn ready(
        &self,
        guild_id: Snowflake,
        bot_user_id: Snowflake,
        sender: MessageSender,
        outbox: &Outbox,
    ) {
        let _ = self.parts.set(Parts {
            guild_id,
            bot_user_id,
            sender,
            outbox: outbox.clone(),
        });
    }

    /// Feeds a `VOICE_STATE_UPDATE` (the client keeps only the bot's own).
    pub fn voice_state(&self, state: &VoiceState) {
        if let Some(client) = self.client.get() {
            client.on_voice_state_update(state);
        }
    }

    /// Feeds a `VOICE_SERVER_UPDATE`.
    pub fn voice_server(&self, update: &VoiceServerUpdate) {
        if let Some(client) = self.client.get() {
            client.on_voice_server_update(update);
        }
    }
}

/// Commits every speaking change the bot hears as a `voice.speaking` event.
async fn speaking_to_outbox(client: DiscordRtcClient, outbox: Outbox) {
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
        let queue = outbox.clone();
        let stored = tokio::task::spawn_blocking(move || queue.commit(&[event], None, None)).await;
        match stored {
            Ok(Ok(_)) => crate::metrics::event_produced("voice.speaking"),
            Ok(Err(error)) => tracing::error!(%error, "could not store a voice.speaking event"),
            Err(error) => tracing::error!(%error, "storing a voice.speaking event panicked"),
        }
    }
}
