//! The bot's voice connection (docs/spec.md §9 `DiscordRtcClient`) on songbird 0.6's driver: join and
//! leave through the worker's gateway session, speaking updates and per-user received audio
//! (counted, and decoded to 48 kHz PCM streams when enabled),
//! audio cues, transport encryption and DAVE (negotiated by songbird when the voice server
//! offers it). See `docs/discord-clients.md`, "`DiscordRtcClient`".

mod client;
mod cue;
mod decode;
mod error;
mod gateway;
mod pcm;
mod receive;

pub use client::{DiscordRtcClient, RtcCounters, RtcSettings, RtcStatus, TransportPreference};
pub use cue::{CUE_SAMPLE_RATE, Cue};
pub use error::RtcError;
pub use gateway::{VoiceGatewayError, VoiceGatewaySender};
pub use pcm::{PCM_FRAME_SAMPLES, PCM_SAMPLE_RATE, PcmAudio, PcmFrame, PcmSettings, UserPcm};
pub use receive::{ReceivedAudio, SpeakingUpdate};
