//! The records both backends of the store keep: the session to resume, the
//! events waiting for delivery and the dead letters, and how an event's stable
//! id is formed.
//!
//! They live apart from either backend because they are the store's
//! vocabulary: the redb file ([`super::LocalStore`]) and Redis
//! ([`super::RedisStore`]) hold the same records, and a single worker's file
//! moves into Redis unchanged ([`super::migrate`]).

use coven_contract::Snowflake;
use serde::{Deserialize, Serialize};

/// The stable `X-Hub-Event-Id` of outbox position `id`: the store's random
/// epoch, then the position in hex (both backends use it).
pub(crate) fn event_id(epoch: &str, id: u64) -> String {
    format!("{epoch}-{id:016x}")
}

/// The gateway session to resume after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Discord's session id.
    pub id: String,
    /// The last sequence whose effects are committed.
    pub sequence: u64,
    /// READY's `resume_gateway_url`.
    pub resume_url: Option<String>,
    /// The bot's own user id, from READY: a resumed session sees no READY, and
    /// the bot's voice connection needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_user_id: Option<Snowflake>,
}

/// An event waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its position in the outbox.
    pub id: u64,
    /// Its stable `X-Hub-Event-Id`.
    pub event_id: String,
    /// The signed webhook body.
    pub body: Vec<u8>,
}

/// An event the hub refused for good, or that found the outbox full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its stable event id.
    pub event_id: String,
    /// The webhook body, as UTF-8 JSON.
    pub body: String,
    /// Why it could not be delivered.
    pub reason: String,
}
