//! The bot's own voice connection, on the worker's gateway session.
//!
//! `DiscordRtcClient` (songbird's driver) needs three things from the gateway: a way
//! to send op 4 (join/leave a voice channel), the bot's own `VOICE_STATE_UPDATE`s and
//! every `VOICE_SERVER_UPDATE`. The gateway loop provides them through [`BotVoice`];
//! the speaking updates the client hears become `voice.speaking` events that go
//! back to the gateway loop, which commits them like its own (fenced, retried,
//! in order with the dispatches' events), so they reach browsers on the same
//! ordered, durable path as the rest.
//!
//! The client hands speaking changes out through a bounded broadcast channel,
//! which drops the oldest when this task falls behind. A dropped `speaking:false`
//! would leave a player's ring lit forever, so on a lag [`SpeakingRelay`] reads
//! who is speaking now from the client and emits the difference from what it
//! last emitted: `false` for those who stopped, `true` for new speakers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coven_contract::{Event, Snowflake, VoiceSpeaking};
use coven_discord::{
    DiscordRtcClient, RtcStatus, SpeakingUpdate, VoiceGatewayError, VoiceGatewaySender,
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
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
    let updates = client.speaking_updates();
    relay_speaking(updates, || speaking_now(&client), produced).await;
}

/// Who is speaking now, as the client knows it: `(channel, user)` pairs.
fn speaking_now(client: &DiscordRtcClient) -> Vec<(Snowflake, Snowflake)> {
    let (RtcStatus::Ready {
        channel_id: channel,
        ..
    }
    | RtcStatus::Reconnecting {
        channel_id: channel,
    }) = client.status()
    else {
        return Vec::new();
    };
    client
        .received_audio()
        .into_iter()
        .filter(|(_, audio)| audio.speaking)
        .map(|(user, _)| (channel, user))
        .collect()
}

/// Forwards `updates` to `produced`; after a lag, skips what is still queued
/// and emits the difference between what it emitted and `now()` (who speaks at
/// that moment, newer than anything queued).
async fn relay_speaking(
    mut updates: broadcast::Receiver<SpeakingUpdate>,
    now: impl Fn() -> Vec<(Snowflake, Snowflake)>,
    produced: mpsc::Sender<Event>,
) {
    let mut relay = SpeakingRelay::default();
    loop {
        let events = match updates.recv().await {
            Ok(update) => vec![relay.update(update)],
            Err(RecvError::Lagged(missed)) => {
                // What is still queued is older than what `now()` says: skip it.
                while let Ok(_) | Err(TryRecvError::Lagged(_)) = updates.try_recv() {}
                let events = relay.resync(now());
                tracing::warn!(
                    missed,
                    corrected = events.len(),
                    "speaking updates arrived faster than they were stored; re-read who is speaking"
                );
                events
            }
            Err(RecvError::Closed) => return,
        };
        for event in events {
            if produced.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// What the relay last emitted: the users it last reported speaking, with the
/// channel and guild of that report.
#[derive(Debug, Default)]
struct SpeakingRelay {
    lit: BTreeMap<Snowflake, (Snowflake, Snowflake)>,
    guild_id: Option<Snowflake>,
}

impl SpeakingRelay {
    /// One update as it came: the event to emit.
    fn update(&mut self, update: SpeakingUpdate) -> Event {
        self.guild_id = Some(update.guild_id);
        if update.speaking {
            self.lit
                .insert(update.user_id, (update.guild_id, update.channel_id));
        } else {
            self.lit.remove(&update.user_id);
        }
        speaking(
            update.guild_id,
            update.channel_id,
            update.user_id,
            update.speaking,
        )
    }

    /// After lost updates: `false` for each user reported speaking who is not in
    /// `now`, then `true` for each in `now` not reported (or reported in another
    /// channel).
    fn resync(&mut self, now: Vec<(Snowflake, Snowflake)>) -> Vec<Event> {
        let now: BTreeMap<Snowflake, Snowflake> = now
            .into_iter()
            .map(|(channel, user)| (user, channel))
            .collect();
        let mut events = Vec::new();
        self.lit.retain(|&user, &mut (guild, channel)| {
            let still = now.get(&user) == Some(&channel);
            if !still {
                events.push(speaking(guild, channel, user, false));
            }
            still
        });
        // A guild is known once any update arrived (a lag implies some did).
        if let Some(guild) = self.guild_id {
            for (user, channel) in now {
                if let std::collections::btree_map::Entry::Vacant(entry) = self.lit.entry(user) {
                    entry.insert((guild, channel));
                    events.push(speaking(guild, channel, user, true));
                }
            }
        }
        events
    }
}

fn speaking(
    guild_id: Snowflake,
    channel_id: Snowflake,
    user_id: Snowflake,
    speaking: bool,
) -> Event {
    Event::VoiceSpeaking(VoiceSpeaking {
        guild_id,
        channel_id,
        user_id,
        speaking,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    fn update(user: u64, on: bool) -> SpeakingUpdate {
        SpeakingUpdate {
            guild_id: id(1),
            channel_id: id(10),
            user_id: id(user),
            speaking: on,
        }
    }

    /// The last `speaking` the events say for each user.
    fn final_state(events: &[Event]) -> BTreeMap<u64, bool> {
        events
            .iter()
            .map(|event| match event {
                Event::VoiceSpeaking(s) => (s.user_id.get(), s.speaking),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_lost_stop_is_re_derived_after_a_lag() {
        // A channel of 4 and a relay that is not reading yet: 3 starts, then 3
        // stops and a start. The receiver lags (the oldest are dropped).
        let (tx, rx) = broadcast::channel(4);
        let (produced, mut events) = mpsc::channel(64);
        tx.send(update(100, true)).unwrap();
        let relay = tokio::spawn(relay_speaking(
            rx,
            || vec![(id(10), id(400)), (id(10), id(300))],
            produced,
        ));
        // Let the relay emit 100's start before the burst it falls behind on.
        let first = events.recv().await.unwrap();
        assert_eq!(
            final_state(std::slice::from_ref(&first)),
            BTreeMap::from([(100, true)])
        );
        // Held by nobody reading: more than the channel holds at once.
        let burst = [
            update(200, true),
            update(300, true),
            update(100, false),
            update(200, false),
            update(400, true),
            update(500, true),
            update(500, false),
        ];
        for u in burst {
            tx.send(u).unwrap();
        }
        drop(tx);
        relay.await.unwrap();
        let mut all = vec![first];
        while let Ok(event) = events.try_recv() {
            all.push(event);
        }
        // Whatever was lost, nobody who stopped is left speaking, and those who
        // speak now (300 and 400) are reported so.
        let state = final_state(&all);
        let lit: Vec<u64> = state
            .iter()
            .filter(|(_, on)| **on)
            .map(|(u, _)| *u)
            .collect();
        assert_eq!(lit, vec![300, 400], "{all:?}");
    }

    #[test]
    fn a_resync_emits_only_the_difference() {
        let mut relay = SpeakingRelay::default();
        relay.update(update(1, true));
        relay.update(update(2, true));
        // Now: 2 still speaking, 3 started, 1 stopped.
        let events = relay.resync(vec![(id(10), id(2)), (id(10), id(3))]);
        assert_eq!(
            final_state(&events),
            BTreeMap::from([(1, false), (3, true)])
        );
        // Nothing changed since: nothing to emit.
        assert!(
            relay
                .resync(vec![(id(10), id(2)), (id(10), id(3))])
                .is_empty()
        );
    }
}
