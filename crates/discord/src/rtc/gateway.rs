//! `VoiceGatewaySender`: how the RTC client asks the worker's gateway session to send op 4,
//! and `VoiceGatewayError`, why it could not.

use std::error::Error;

use coven_contract::Snowflake;

/// Sends the bot's voice state update (gateway op 4) through the worker's gateway session.
///
/// The worker implements it on its twilight shard (`MessageSender::command(&UpdateVoiceState)`);
/// tests implement it on a shard of their own. `channel_id: None` leaves voice.
pub trait VoiceGatewaySender: Send + Sync + 'static {
    /// Queues op 4 for the guild of the client. An `Err` ends up in the log and in
    /// [`super::RtcError::Gateway`].
    fn update_voice_state(
        &self,
        channel_id: Option<Snowflake>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<(), VoiceGatewayError>;
}

/// The gateway session could not queue op 4 (e.g. the shard's channel is closed). Its
/// message is the cause's; the cause stays reachable through [`Error::source`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VoiceGatewayError(#[source] Box<dyn Error + Send + Sync>);

impl VoiceGatewayError {
    /// Wraps the gateway's own error (twilight's `ChannelError` for a shard).
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self(source.into())
    }
}
