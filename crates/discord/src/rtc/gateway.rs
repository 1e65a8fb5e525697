//! `VoiceGatewaySender`: how the RTC client asks the worker's gateway session to send op 4.

use coven_contract::Snowflake;

/// Sends the bot's voice state update (gateway op 4) through the worker's gateway session.
///
/// The worker implements it on its twilight shard (`MessageSender::command(&UpdateVoiceState)`);
/// tests implement it on a shard of their own. `channel_id: None` leaves voice.
pub trait VoiceGatewaySender: Send + Sync + 'static {
    /// Queues op 4 for the guild of the client. An `Err` is a message for the log and
    /// [`super::RtcError::Gateway`].
    fn update_voice_state(
        &self,
        channel_id: Option<Snowflake>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<(), String>;
}
