//! Discord clients of Spell Coven (docs/spec.md §9): [`DiscordRestClient`] for the bot's REST calls,
//! [`DiscordOAuthClient`] for players' OAuth2 + PKCE login and [`DiscordRtcClient`] for the
//! bot's voice connection (speaking updates, audio cues; songbird 0.6's driver).
//!
//! Both speak to the origin given in their settings (`https://discord.com` or the
//! simulator), take and return small domain types of this crate instead of twilight's,
//! and fail with one typed error, [`DiscordError`] (which HTTP answer the hub gives for
//! one is the hub's business). No value of a token or secret ever appears in a `Debug`
//! output, a log line or an error message.
//!
//! The REST client is built on twilight-http, whose rate limiter learns Discord's
//! per-route buckets from response headers, queues requests per bucket, honours the
//! global limit and retries 429s after their `Retry-After`; this crate adds input
//! validation, exponential-backoff retries of 5xx and network errors, and error mapping.

mod error;
mod model;
mod oauth;
mod origin;
mod pkce;
mod rest;
mod retry;
mod room_rule;
pub mod rtc;
mod twilight_map;
mod validate;

pub use error::{DiscordError, FieldError};
pub use model::{
    Channel, ChannelKind, Invite, InviteOptions, Member, Message, NewVoiceRoom, OverwriteKind,
    PermissionOverwrite, Role, permissions,
};
pub use oauth::{AuthorizationRequest, CurrentUser, DiscordOAuthClient, OAuthSettings, TokenGrant};
pub use pkce::PkceVerifier;
pub use rest::{DiscordRestClient, RestSettings};
pub use retry::RetryPolicy;
pub use room_rule::{ASSUMED_EVERYONE, everyone_may_view, everyone_overwrite, is_room};
pub use rtc::{
    Cue, DiscordRtcClient, PCM_FRAME_SAMPLES, PCM_SAMPLE_RATE, PcmAudio, PcmFrame, PcmSettings,
    ReceivedAudio, RtcCounters, RtcError, RtcSettings, RtcStatus, SpeakingUpdate,
    TransportPreference, UserPcm, VoiceGatewayError, VoiceGatewaySender,
};
