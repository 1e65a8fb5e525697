//! The Spell Coven wire contract, defined once and used by every part of the system.
//!
//! Everything that crosses a process boundary lives here: the events the worker
//! produces and browsers consume (docs/spec.md §4), the internal webhook and its HMAC
//! signature (docs/spec.md §5), the hub's signed requests to the worker (the voice view and
//! the bot's commands, [`internal`]), the browser WebSocket messages (docs/spec.md §6, with the webcams' signalling of §12) and
//! the HTTP error body and the bot's audio cues (docs/spec.md §7). The worker, the hub and the tests import these types instead of
//! writing JSON by hand, so the contract cannot drift between them.
//!
//! Parsing is strict where the contract is strict (`v` must be 1, unknown message
//! `type`s and event names are rejected, sizes are bounded) and lenient where the
//! contract promises evolution (unknown payload fields are ignored).

mod client;
mod cue;
mod envelope;
mod error;
mod event;
pub mod internal;
pub mod limits;
mod rtc;
mod secret;
pub mod signature;
mod snowflake;
mod validated;

pub use client::ClientMessage;
pub use cue::{Cue, CueInfo, CueList};
pub use envelope::{Ack, AckEvent, ErrorEnvelope, EventEnvelope, ServerMessage, Version};
pub use error::{ApiError, ContractError, ErrorBody, ErrorCode, OkBody};
pub use event::{
    Event, RoomCreated, RoomDeleted, VoiceFlags, VoiceJoined, VoiceLeft, VoiceSpeaking,
    VoiceStateChanged,
};
pub use rtc::{IceServer, RtcData, RtcSignal, RtcSignalEnvelope};
pub use secret::Secret;
pub use snowflake::{Snowflake, SnowflakeError};
pub use validated::{RoomName, UserLimit};
