//! The Spell Coven hub: what browsers touch (docs/spec.md §5–§7).
//!
//! It takes the worker's HMAC-signed events (`ingest`), assigns each a per-guild
//! `seq` and fans it out to every authenticated browser (`broker`, `fanout`,
//! `socket`), and serves the rooms API (`rooms`) behind JWT verification (`jwt`).
//! Without an external issuer it signs its own tokens (`issuer`) after a Discord
//! login (`login`), answers room snapshots (`snapshot`, `profiles`) and serves the
//! lobby page embedded from `crates/hub/lobby/` (`lobby`). The snapshot and the
//! bot's voice commands (`bot`) reach the worker, or either worker of an
//! active/standby pair, through `worker_link`.
//! The crate reads no environment: the binary builds a [`HubSettings`] and calls
//! [`serve`] (or [`Hub::builder`] + [`Hub::serve`], or [`Hub::router`] in tests).
//! The wiring is split by purpose: `builder` makes a [`Hub`] out of the settings,
//! `state` holds the small states the handlers extract, `routes` maps every route
//! to its handler, `lifecycle` serves and drains, `auth` knows the caller;
//! `connection` accepts and times every TCP connection against the limits of
//! `conn_limits` (docs/security.md), `client_ip` says who a request is from.
//! Webcams (docs/spec.md §12): `rtc_relay` relays browsers' WebRTC signalling
//! between members of one voice channel (`rtc_presence`), across hubs through
//! Redis (`rtc_route`), and `rtc_turn` mints the TURN credentials of `auth.ok`.

mod auth;
mod bot;
mod broker;
mod builder;
mod client_ip;
mod conn_limits;
mod connection;
mod demo_seat;
mod discord;
mod error;
mod fanout;
mod fd_limit;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod idempotency;
mod ingest;
mod issuer;
mod jwt;
mod lifecycle;
mod lobby;
mod local_stream;
mod login;
mod metrics;
mod once_key;
mod once_store;
pub mod openapi;
mod permissions;
mod profiles;
mod publish_activity;
mod rate_limit;
mod redis_broker;
mod redis_link;
mod room_owners;
mod room_visibility;
mod rooms;
mod routes;
mod rtc_presence;
mod rtc_relay;
mod rtc_route;
mod rtc_turn;
mod settings;
mod shared_limits;
mod snapshot;
mod socket;
mod socket_clock;
mod start_error;
mod state;
mod worker_link;
mod ws_reader;
mod ws_writer;

use std::future::Future;
use std::sync::Arc;

pub use broker::{Broker, BrokerError, BrokerLimits, InProcessBroker, RingState, Subscription};
pub use builder::HubBuilder;
pub use discord::DiscordRooms;
pub use error::HubError;
pub use fanout::{Frame, Outbox};
pub use issuer::{HubIssuer, KEY_FILE_NAME, TokenSubject};
pub use jwt::{
    DEFAULT_JWKS_MAX_AGE, JwksKeySource, JwksUrlError, JwtError, KeySource, VerifiedUser,
    VerifyingKey, check_jwks_url,
};
pub use lobby::lobby_files;
pub use local_stream::LocalStream;
pub use login::LoginFailure;
pub use once_key::OnceKey;
pub use once_store::{ONCE_KEYS_FILE_NAME, OnceStoreError};
pub use permissions::{ADMINISTRATOR, MANAGE_CHANNELS, MemberPermissions};
pub use redis_broker::RedisBroker;
pub use redis_link::RedisLinkError;
pub use room_owners::{ROOM_OWNERS_FILE_NAME, RoomOwnersError};
pub use rooms::{
    ChannelInfo, CreateVoiceChannel, MemberProfile, MemoryRooms, RoomsBackend, RoomsError,
    VOICE_CHANNEL_TYPE,
};
pub use rtc_relay::RtcLimits;
pub use rtc_turn::{IceSettings, is_turn};
pub use settings::{HubSettings, LoginSettings};
pub use snapshot::{ChannelsVoiceView, VoiceViewSource, WorkerVoiceView};
pub use start_error::HubStartError;
pub use state::Hub;

/// Runs the hub on `listener` until `shutdown` completes, then drains: browsers are
/// closed with 1001 and in-flight HTTP requests finish.
///
/// # Errors
///
/// When the hub cannot be built ([`HubBuilder::build`]) or the listener fails.
pub async fn serve(
    settings: HubSettings,
    listener: tokio::net::TcpListener,
    rooms: Arc<dyn RoomsBackend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HubStartError> {
    Hub::new(settings, rooms)?
        .serve(listener, shutdown)
        .await
        .map_err(HubStartError::Listener)
}
