//! The internal wire between the worker and the hub, beyond the webhook.
//!
//! The hub asks the worker for its voice view (`GET /voice-view`) and forwards the
//! bot's voice commands (`POST /commands/{join,leave,cue}`); the worker posts events
//! to the hub's webhook. All three are signed the same way (the webhook's headers
//! `X-Hub-Timestamp` and `X-Hub-Signature`, `docs/contract.md`), so the bodies,
//! the paths and the one [`sign_request`] / [`verify_request`] pair live here, used
//! by both ends: neither side writes these JSON shapes, paths or header look-ups by
//! hand, and they cannot drift apart.

mod bot_command;
mod request;
mod voice_view;

pub use bot_command::{BotCommand, BotCommandBody};
pub use request::{sign_request, verify_request};
pub use voice_view::{VOICE_VIEW_PATH, VoiceMember, VoiceRoom, VoiceView};
