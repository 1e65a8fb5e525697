//! `RtcError`: every way the bot's voice connection can fail, typed.

use std::time::Duration;

use super::gateway::VoiceGatewayError;

/// An error of [`super::DiscordRtcClient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    /// The voice connection was not ready within the connect timeout (no
    /// `VOICE_STATE_UPDATE`/`VOICE_SERVER_UPDATE` arrived, or the voice handshake hung).
    #[error("voice connection not ready within {0:?}")]
    Timeout(Duration),
    /// The voice server refused or broke the handshake (bad token, encryption mode, DAVE…).
    #[error("voice connection failed: {0}")]
    Connection(String),
    /// The worker's gateway session could not send the voice state update (op 4).
    #[error("gateway could not send the voice state update: {0}")]
    Gateway(#[source] VoiceGatewayError),
    /// The call needs a ready voice connection and there is none.
    #[error("the bot is not connected to a voice channel")]
    NotConnected,
    /// `connect` was superseded by another `connect` or by `disconnect`.
    #[error("the connection attempt was superseded")]
    Superseded,
    /// Discord does not allow bots to send or receive camera video (or Go Live streams).
    #[error("Discord does not allow bots to send or receive camera video")]
    VideoUnsupported,
    /// Decoded audio was asked for, but the client was built without `RtcSettings::pcm`.
    #[error("receiving decoded audio is not enabled (RtcSettings::pcm)")]
    PcmDisabled,
}

impl RtcError {
    /// A short, stable machine-readable code (for logs and command answers).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Connection(_) => "connection_failed",
            Self::Gateway(_) => "gateway_failed",
            Self::NotConnected => "not_connected",
            Self::Superseded => "superseded",
            Self::VideoUnsupported => "video_unsupported",
            Self::PcmDisabled => "pcm_disabled",
        }
    }
}
