//! What makes a publication happen at most once: the "once keys".
//!
//! A retried webhook (same `X-Hub-Event-Id`) must not reach browsers twice, and a
//! room is announced once whether the rooms API or the gateway's webhook reports it
//! first (see `docs/scaling.md`). Both brokers remember these keys for the dedupe
//! window; the Redis broker stores them as `coven:{<guild>}:hub:once:<key>`, which
//! every hub of a cluster (also during a rolling deploy) reads, so the rendering
//! below is a wire format: `event:<id>` and `room.created:<channel>`.

use std::fmt;

use coven_contract::{Event, Snowflake};

/// One thing to publish at most once within the dedupe window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OnceKey {
    /// A webhook delivery, by its `X-Hub-Event-Id`: renders as `event:<id>`.
    Event(String),
    /// The announcement of a room, by its channel: renders as `room.created:<channel>`.
    RoomCreated(Snowflake),
}

impl OnceKey {
    /// The keys of a webhook delivery: its event id, and for `room.created` the
    /// room, so the API and the webhook announce a room once between them.
    pub(crate) fn for_webhook(event_id: &str, event: &Event) -> Vec<Self> {
        let mut keys = vec![Self::Event(event_id.to_owned())];
        if let Event::RoomCreated(room) = event {
            keys.push(Self::RoomCreated(room.channel_id));
        }
        keys
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
