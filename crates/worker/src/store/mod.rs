//! Where the worker keeps what it owes the hub: one interface, two backends,
//! and the fencing that keeps a pair of workers from writing over each other.
//!
//! A single worker keeps its session, voice view and outbox in a local redb
//! file ([`LocalStore`]); a pair of workers with `REDIS_URL` keeps them in
//! Redis ([`RedisStore`]), where every write carries the fencing token of the
//! lease ([`Lease`]) that makes one of the two the active one.
//!
//! [`Store`] owns that difference. It knows which backend is behind it and, for
//! an active stretch of one of a pair ([`Active`]), the lease its writes are
//! fenced by: a refused write gives the lease up, a Redis failure is retried
//! while the lease surely holds, and [`Store::commit`] is the one fenced,
//! retried path every producer of events takes. The gateway, delivery and
//! health code call [`Store`] and never need to know which backend is behind
//! it, nor whether a lease exists. See `docs/worker.md`.

mod error;
mod gauges;
mod lease;
mod local;
mod migrate;
mod records;
mod redis;

use std::path::Path;
use std::time::Duration;

use coven_contract::Event;
use tokio::sync::watch;

pub use error::StoreError;
pub use gauges::{DEFAULT_DEAD_LETTER_CAPACITY, Gauges};
pub use lease::{Lease, LeaseTimings, wait_for_lease};
pub use local::LocalStore;
pub use records::{DeadLetter, Pending, StoredSession};
pub use redis::RedisStore;

use crate::backoff::Backoff;
use crate::tracker::VoiceView;
use crate::{WorkerError, WorkerSettings};

/// How long one of a pair waits between attempts while Redis fails.
const REDIS_RETRY: Backoff = Backoff {
    base: Duration::from_millis(50),
    cap: Duration::from_millis(500),
};

/// The worker's durable state, local or in Redis, with the fencing its writes
/// need. Cheap to clone; clones share the backend and the lease.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// What fences this handle's writes: the lease of one of a pair's active
    /// stretch. `None` for a single worker (it always may write) and for a
    /// pair's handle outside an active stretch (Redis refuses its writes).
    lease: Option<Lease>,
}

#[derive(Debug, Clone)]
enum Backend {
    /// A single worker's redb file under `STATE_DIR`.
    Local(LocalStore),
    /// An active/standby pair's shared state in Redis.
    Redis(RedisStore),
}

/// Whether a write through the store's fenced path was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// It is durable.
    Done,
    /// Nothing was written, and this worker may not write any more: one of a
    /// pair lost its lease, and the worker that holds it now redoes the work.
    Fenced,
}

impl Store {
    /// The store `settings` ask for: the state file under `state_dir`, or
    /// with `redis_url` the pair's state in Redis (connected lazily).
    pub fn open(settings: &WorkerSettings) -> Result<Self, WorkerError> {
        let backend = match &settings.redis_url {
            None => {
                let dir = &settings.state_dir;
                std::fs::create_dir_all(dir).map_err(|source| WorkerError::StateDir {
                    path: dir.clone(),
                    source,
                })?;
                Backend::Local(
                    LocalStore::open(&dir.join(migrate::STATE_FILE), settings.outbox_capacity)?
                        .with_dead_letter_capacity(settings.dead_letter_capacity),
                )
            }
            Some(url) => Backend::Redis(
                RedisStore::open(
                    url,
                    settings.gateway.guild_id,
                    settings.outbox_capacity,
                    settings.lease.redis_timeout,
                )?
                .with_dead_letter_capacity(settings.dead_letter_capacity),
            ),
        };
        Ok(Self {
            backend,
            lease: None,
        })
    }

    /// Whether this worker is one of an active/standby pair (`REDIS_URL`).
    pub fn is_pair(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Waits, as a standby, until this worker takes the lease; `None` at
    /// shutdown. `reachable` is told whether Redis answers, for `/health`. A
    /// single worker is always active: it returns at once.
    pub async fn take_lease(
        &self,
        timings: LeaseTimings,
        reachable: impl Fn(bool),
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Active> {
        let Backend::Redis(redis) = &self.backend else {
            return Some(Active {
                store: self.clone(),
                keeper: None,
                took_over: false,
            });
        };
        let (lease, took_over) = wait_for_lease(redis, timings, reachable, shutdown).await?;
        let keeper = lease.keep();
        Some(Active {
            store: Self {
                backend: self.backend.clone(),
                lease: Some(lease),
            },
            keeper: Some(keeper),
            took_over,
        })
    }

    /// Whether this handle may still write: a single worker always may, one
    /// of a pair while its lease surely holds.
    pub fn may_write(&self) -> bool {
        self.lease.as_ref().is_none_or(Lease::is_valid)
    }

    /// Resolves once this handle may no longer write; never for a single worker.
    pub async fn fenced(&self) {
        match &self.lease {
            Some(lease) => lease.lost().await,
            None => std::future::pending().await,
        }
    }

    /// How long this handle's writes surely still hold: `None` when there is
    /// no such bound (a single worker).
    pub fn write_window(&self) -> Option<Duration> {
        self.lease.as_ref().map(Lease::remaining)
    }

    /// Gives the lease (if any) up: every holder of this handle stops writing.
    fn give_up(&self, reason: &str) {
        if let Some(lease) = &self.lease {
            lease.give_up(reason);
        }
    }

    /// Gives the lease up when `result` is a refusal.
    fn refused<T>(&self, result: Result<T, StoreError>, reason: &str) -> Result<T, StoreError> {
        if matches!(result, Err(StoreError::Fenced)) {
            self.give_up(reason);
        }
        result
    }

    /// Waits before retry number `failures` after a Redis failure, if the
    /// lease allows one: `false` when `error` is not worth retrying (a single
    /// worker's failure, a broken file, a refusal) or the lease has run out.
    async fn retry_after(&self, error: &StoreError, failures: &mut u32, what: &str) -> bool {
        let Some(lease) = &self.lease else {
            return false;
        };
        if !error.is_transient() || !lease.is_valid() {
            return false;
        }
        let delay = REDIS_RETRY.delay(*failures).min(lease.remaining());
        tracing::warn!(%error, retry_in_ms = delay.as_millis(), "could not {what} redis; retrying");
        *failures = failures.saturating_add(1);
        tokio::time::sleep(delay).await;
        true
    }

    /// The stored session and voice view. One of a pair retries while Redis
    /// fails and its lease holds; `Ok(None)` means the lease was lost meanwhile.
    pub async fn load(
        &self,
    ) -> Result<Option<(Option<StoredSession>, Option<VoiceView>)>, StoreError> {
        let mut failures = 0_u32;
        loop {
            let error = match self.load_once().await {
                Ok(stored) => return Ok(Some(stored)),
                Err(error) => error,
            };
            if self
                .retry_after(&error, &mut failures, "load the session from")
                .await
            {
                continue;
            }
            return match (&self.lease, error) {
                (Some(_), error) if error.is_transient() => Ok(None),
                (_, error) => Err(error),
            };
        }
    }

    async fn load_once(&self) -> Result<(Option<StoredSession>, Option<VoiceView>), StoreError> {
        match &self.backend {
            Backend::Local(local) => local.load(),
            Backend::Redis(redis) => redis.load().await,
        }
    }

    /// The stored voice view, if any: what a standby serves at `/voice-view`,
    /// as the active worker last committed it.
    pub async fn load_view(&self) -> Result<Option<VoiceView>, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.load().map(|(_, view)| view),
            Backend::Redis(redis) => redis.load_view().await,
        }
    }

    /// Durably appends `events` and records `view` and `session` in one step:
    /// the one path every producer of events takes (gateway dispatches and the
    /// bot's own `voice.speaking`).
    ///
    /// A single worker's failure is returned: it ends the worker. One of a pair
    /// retries while Redis fails and its lease holds, and gives the lease up
    /// when Redis refuses the write; [`Written::Fenced`] means nothing was
    /// committed (the next active worker gets the dispatch again on resume).
    /// Events past the outbox's bound go to the dead letters, with an error in
    /// the log.
    pub async fn commit(
        &self,
        events: &[Event],
        view: Option<&VoiceView>,
        session: Option<&StoredSession>,
    ) -> Result<Written, StoreError> {
        let mut failures = 0_u32;
        let overflowed = loop {
            let error = match self.commit_once(events, view, session).await {
                Ok(overflowed) => break overflowed,
                Err(error) => error,
            };
            if self.retry_after(&error, &mut failures, "commit to").await {
                continue;
            }
            return match error {
                StoreError::Fenced => {
                    self.give_up("a commit was refused");
                    Ok(Written::Fenced)
                }
                // The lease ran out while Redis failed.
                error if error.is_transient() && self.lease.is_some() => Ok(Written::Fenced),
                error => Err(error),
            };
        };
        if overflowed > 0 {
            tracing::error!(
                overflowed,
                capacity = self.gauges().capacity(),
                "outbox full: events moved to dead letters"
            );
        } else if self.gauges().near_full() {
            tracing::warn!(
                depth = self.gauges().depth(),
                capacity = self.gauges().capacity(),
                "outbox is nearly full"
            );
        }
        Ok(Written::Done)
    }

    /// One attempt at [`Store::commit`]: how many events were dead-lettered
    /// because the outbox was full.
    async fn commit_once(
        &self,
        events: &[Event],
        view: Option<&VoiceView>,
        session: Option<&StoredSession>,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Local(local) => {
                // Off the async threads: the commit waits for the disk.
                let (local, events, view, session) = (
                    local.clone(),
                    events.to_vec(),
                    view.cloned(),
                    session.cloned(),
                );
                tokio::task::spawn_blocking(move || {
                    local.commit(&events, view.as_ref(), session.as_ref())
                })
                .await
                .map_err(|_| StoreError::Panicked)?
            }
            Backend::Redis(redis) => redis.commit(events, view, session).await,
        }
    }

    /// Records the session alone (periodically and at shutdown); `Ok(true)`
    /// when it did. One of a pair only logs a failure (the next save or commit
    /// records it) and gives the lease up when Redis refuses the write.
    pub async fn save_session(&self, session: &StoredSession) -> Result<bool, StoreError> {
        let result = match &self.backend {
            Backend::Local(local) => local.save_session(session),
            Backend::Redis(redis) => redis.save_session(session).await,
        };
        match (
            self.refused(result, "a session save was refused"),
            &self.lease,
        ) {
            (Ok(()), _) => Ok(true),
            (Err(error), None) => Err(error),
            (Err(StoreError::Fenced), Some(_)) => Ok(false),
            (Err(error), Some(_)) => {
                tracing::warn!(%error, "could not save the session to redis");
                Ok(false)
            }
        }
    }

    /// The oldest undelivered event.
    pub async fn peek(&self) -> Result<Option<Pending>, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.peek(),
            Backend::Redis(redis) => redis.peek().await,
        }
    }

    /// Removes a delivered event (a refusal gives the lease up).
    pub async fn ack(&self, id: u64) -> Result<(), StoreError> {
        let result = match &self.backend {
            Backend::Local(local) => local.ack(id),
            Backend::Redis(redis) => redis.ack(id).await,
        };
        self.refused(result, "a delivery write was refused")
    }

    /// Moves an event the hub refused for good to the dead letters (a refusal
    /// gives the lease up).
    pub async fn bury(&self, pending: &Pending, reason: &str) -> Result<(), StoreError> {
        let result = match &self.backend {
            Backend::Local(local) => local.bury(pending, reason),
            Backend::Redis(redis) => redis.bury(pending, reason).await,
        };
        self.refused(result, "a delivery write was refused")
    }

    /// Keeps `body`, a gateway payload the worker could not read, as a dead
    /// letter with `reason` (a refusal gives the lease up). Not retried: the
    /// letter is for an operator, the caller goes on either way.
    pub async fn bury_raw(&self, body: &str, reason: &str) -> Result<(), StoreError> {
        let result = match &self.backend {
            Backend::Local(local) => {
                let (local, body, reason) = (local.clone(), body.to_owned(), reason.to_owned());
                tokio::task::spawn_blocking(move || local.bury_raw(&body, &reason))
                    .await
                    .map_err(|_| StoreError::Panicked)?
            }
            Backend::Redis(redis) => redis.bury_raw(body, reason).await,
        };
        self.refused(result, "a dead-letter write was refused")
    }

    /// The outbox's length, dead-letter count, bound and delivery's wake-up.
    pub fn gauges(&self) -> &Gauges {
        match &self.backend {
            Backend::Local(local) => local.gauges(),
            Backend::Redis(redis) => redis.gauges(),
        }
    }
}

/// One stretch during which this worker may write: a single worker's whole
/// run, or one of a pair's time holding the lease (renewed in the background
/// until it ends).
#[derive(Debug)]
pub struct Active {
    store: Store,
    keeper: Option<tokio::task::JoinHandle<()>>,
    took_over: bool,
}

impl Active {
    /// The store whose writes this stretch fences.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether another worker held the lease while this one waited (a takeover).
    pub fn took_over(&self) -> bool {
        self.took_over
    }

    /// The lease's fencing token, for the log (0 for a single worker).
    pub fn token(&self) -> u64 {
        self.store.lease.as_ref().map_or(0, Lease::token)
    }

    /// Imports a single worker's state file under `state_dir` into the pair's
    /// Redis keys, once (see [`migrate`]); nothing to do for a single worker.
    pub async fn import_local_state(&self, state_dir: &Path) -> Result<(), StoreError> {
        match &self.store.backend {
            Backend::Local(_) => Ok(()),
            Backend::Redis(redis) => migrate::import_local_state(redis, state_dir).await,
        }
    }

    /// Ends the stretch on purpose: stops renewing and deletes the lease if it
    /// is still ours, so a standby takes over at once. With `wait`, also waits
    /// for the renewal task to stop.
    pub async fn release(self, wait: bool) {
        if let Some(lease) = &self.store.lease {
            lease.release().await;
        }
        if wait && let Some(keeper) = self.keeper {
            let _ = keeper.await;
        }
    }

    /// Ends a stretch whose lease is lost: no more writes, and waits for the
    /// renewal task to stop.
    pub async fn give_up(self, reason: &str) {
        if let Some(lease) = &self.store.lease {
            lease.give_up(reason);
        }
        if let Some(keeper) = self.keeper {
            let _ = keeper.await;
        }
    }
}
