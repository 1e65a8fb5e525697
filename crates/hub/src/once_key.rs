//! What makes a publication happen at most once: the "once keys".
//!
//! A retried webhook (same `X-Hub-Event-Id`) must not reach browsers twice, and a
//! room is announced once whether the rooms API or the gateway's webhook reports it
//! first (see `docs/scaling.md`). Both brokers remember event keys for the dedupe
//! window, and a room's key for as long as the room exists (bounded by
//! [`ROOM_KEY_MAX_AGE`]; after its `room.deleted`, for the dedupe window only),
//! durably: the in-process broker in a file of the hub's state dir
//! (`crate::once_store`), the Redis broker as `coven:{<guild>}:hub:once:<key>`,
//! which every hub of a cluster (also during a rolling deploy) reads, so the
//! rendering below is a wire format: `event:<id>` and `room.created:<channel>`.

use std::fmt;
use std::time::Duration;

use coven_contract::{Event, Snowflake};

/// One thing to publish at most once within the dedupe window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OnceKey {
    /// A webhook delivery, by its `X-Hub-Event-Id`: renders as `event:<id>`.
    Event(String),
    /// The announcement of a room, by its channel: renders as `room.created:<channel>`.
    RoomCreated(Snowflake),
}

/// The longest a room's key is kept: refreshed whenever the room is reported
/// again, so it outlives any room that is still reported; the bound keeps the
/// keys of rooms whose deletion was never seen from piling up.
pub(crate) const ROOM_KEY_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The most room keys one hub's state dir keeps (a guild has at most 500
/// channels; the soonest to expire are dropped first).
pub(crate) const ROOM_KEYS_MAX: u64 = 10_000;

impl OnceKey {
    /// The keys of a webhook delivery: its event id, and for `room.created` the
    /// room, so the API and the webhook announce a room once between them.
    pub fn for_webhook(event_id: &str, event: &Event) -> Vec<Self> {
        let mut keys = vec![Self::Event(event_id.to_owned())];
        if let Event::RoomCreated(room) = event {
            keys.push(Self::RoomCreated(room.channel_id));
        }
        keys
    }

    /// The key that `event` ends: a deleted room's `room.created` key, which is
    /// then kept for the dedupe window only.
    pub(crate) fn released_by(event: &Event) -> Option<Self> {
        match event {
            Event::RoomDeleted(room) => Some(Self::RoomCreated(room.channel_id)),
            _ => None,
        }
    }

    /// How long this key is remembered: the dedupe `window` for an event, the
    /// room's lifetime for a room.
    pub(crate) fn lifetime(&self, window: Duration) -> Duration {
        match self {
            Self::Event(_) => window,
            Self::RoomCreated(_) => ROOM_KEY_MAX_AGE,
        }
    }
}

impl fmt::Display for OnceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Event(id) => write!(f, "event:{id}"),
            Self::RoomCreated(channel) => write!(f, "room.created:{channel}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_render_as_the_shared_redis_names() {
        assert_eq!(OnceKey::Event("abc-1".into()).to_string(), "event:abc-1");
        let channel = Snowflake::new(42).unwrap();
        assert_eq!(OnceKey::RoomCreated(channel).to_string(), "room.created:42");
    }
}
