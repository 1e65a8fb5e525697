//! The internal wire between the worker and the hub, beyond the event envelope.
//!
//! The hub asks the worker for its voice view (`GET /voice-view`) and forwards the
//! bot's voice commands (`POST /commands/{join,leave,cue}`); the worker posts events
//! to the hub's webhook. The webhook keeps the headers of docs/spec.md §5
//! ([`sign_webhook`] / [`verify_webhook`]); the hub's requests to the worker are
//! signed over their method, path, timestamp, a unique id and body, and each id is
//! accepted once ([`sign_request`] / [`verify_request`], docs/spec.md §8). The
//! bodies, the paths and both signing pairs live here, used by both ends: neither
//! side writes these JSON shapes, paths or header look-ups by hand, and they
//! cannot drift apart (`docs/contract.md`).

mod bot_command;
mod clock;
#[doc(hidden)]
pub mod fuzzing;
mod replay;
mod request;
mod voice_view;
mod webhook;

pub use bot_command::{BotCommand, BotCommandBody};
pub use replay::{REPLAY_CACHE_CAPACITY, ReplayCache};
pub use request::{
    REQUEST_ID_HEADER, REQUEST_SIGNATURE_HEADER, RequestError, RequestVerifier, sign_request,
    verify_request,
};
pub use voice_view::{VOICE_VIEW_PATH, VoiceMember, VoiceRoom, VoiceView};
pub use webhook::{sign_webhook, verify_webhook};
