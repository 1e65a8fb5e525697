//! Where the worker keeps what it owes the hub: one interface, two backends.
//!
//! A single worker keeps its session, voice view and outbox in a local redb
//! file ([`Outbox`]); a pair of workers with `REDIS_URL` keeps them in Redis
//! ([`RedisStore`]), fenced by the lease. The gateway, delivery and health code
//! call [`Store`] and never need to know which one is behind it.

use coven_contract::Event;

use crate::outbox::{DeadLetter, Outbox, Pending, StoreError, StoredSession};
use crate::redis_store::RedisStore;
use crate::tracker::VoiceView;

/// The worker's durable state, local or in Redis.
#[derive(Debug, Clone)]
pub enum Store {
    /// A single worker's redb file under `STATE_DIR`.
    Local(Outbox),
    /// An active/standby pair's shared state in Redis.
    Redis(RedisStore),
}

impl Store {
    /// The stored session and voice view, if any.
    pub async fn load(&self) -> Result<(Option<StoredSession>, Option<VoiceView>), StoreError> {
        match self {
            Self::Local(outbox) => outbox.load(),
            Self::Redis(redis) => redis.load().await,
        }
    }

    /// Durably appends `events` and records `view` and `session` in one step.
    /// Returns how many events had to be dead-lettered because the outbox was full.
    pub async fn commit(
        &self,
        events: &[Event],
        view: Option<&VoiceView>,
        session: Option<&StoredSession>,
    ) -> Result<usize, StoreError> {
        match self {
            Self::Local(outbox) => {
                // Off the async threads: the commit waits for the disk.
                let (outbox, events, view, session) = (
                    outbox.clone(),
                    events.to_vec(),
                    view.cloned(),
                    session.cloned(),
                );
                tokio::task::spawn_blocking(move || {
                    outbox.commit(&events, view.as_ref(), session.as_ref())
                })
                .await
                .map_err(|_| StoreError::Panicked)?
            }
            Self::Redis(redis) => redis.commit(events, view, session).await,
        }
    }

    /// Records the session alone (periodically and at shutdown).
    pub async fn save_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        match self {
            Self::Local(outbox) => outbox.save_session(session),
            Self::Redis(redis) => redis.save_session(session).await,
        }
    }

    /// The oldest undelivered event.
    pub async fn peek(&self) -> Result<Option<Pending>, StoreError> {
        match self {
            Self::Local(outbox) => outbox.peek(),
            Self::Redis(redis) => redis.peek().await,
        }
    }

    /// Removes a delivered event.
    pub async fn ack(&self, id: u64) -> Result<(), StoreError> {
        match self {
            Self::Local(outbox) => outbox.ack(id),
            Self::Redis(redis) => redis.ack(id).await,
        }
    }

    /// Moves an event the hub refused for good to the dead letters.
    pub async fn bury(&self, pending: &Pending, reason: &str) -> Result<(), StoreError> {
        match self {
            Self::Local(outbox) => outbox.bury(pending, reason),
            Self::Redis(redis) => redis.bury(pending, reason).await,
        }
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        match self {
            Self::Local(outbox) => outbox.dead_letters(),
            Self::Redis(redis) => redis.dead_letters().await,
        }
    }

    /// Events waiting for delivery.
    pub fn depth(&self) -> u64 {
        match self {
            Self::Local(outbox) => outbox.depth(),
            Self::Redis(redis) => redis.depth(),
        }
    }

    /// Events in the dead letters.
    pub fn dead_letter_count(&self) -> u64 {
        match self {
            Self::Local(outbox) => outbox.dead_letter_count(),
            Self::Redis(redis) => redis.dead_letter_count(),
        }
    }

    /// The configured bound.
    pub fn capacity(&self) -> u64 {
        match self {
            Self::Local(outbox) => outbox.capacity(),
            Self::Redis(redis) => redis.capacity(),
        }
    }

    /// Whether the outbox is past 80 % of its bound.
    pub fn near_full(&self) -> bool {
        match self {
            Self::Local(outbox) => outbox.near_full(),
            Self::Redis(redis) => redis.near_full(),
        }
    }

    /// Resolves when an event is added after the last wake-up.
    pub async fn added(&self) {
        match self {
            Self::Local(outbox) => outbox.added().await,
            Self::Redis(redis) => redis.added().await,
        }
    }
}
