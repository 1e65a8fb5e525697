//! The lease that makes one of two workers the active one.
//!
//! A bot has one Discord session, so only one worker of a pair may use it at a
//! time. The active worker holds an expiring lock in Redis (`SET … PX ttl` when
//! absent, inside a script that also hands out a fencing token from `INCR`),
//! renews it well before it expires, and every write it makes carries the
//! lease's value ([`super::RedisStore`]). A standby polls and takes the lease
//! once it has expired, or at once when the active releases it on a graceful
//! shutdown.
//!
//! The value is `<token>:<nonce>`, compared whole by every renewal, release and
//! write, and the token is never below the clock (unix ms) when it is handed
//! out. So even after Redis loses its data and its counter starts again, no
//! value is ever handed out twice and tokens still only grow: a paused old
//! active cannot mistake a new holder's lease for its own (docs/worker.md).
//!
//! The active also keeps a *local* deadline: the time it sent its last
//! successful renewal plus `ttl − renew_every`. Redis cannot expire the lease
//! before that instant, so stopping there (when renewals fail, e.g. Redis is
//! unreachable) means the worker has let go of the Discord session before a
//! standby can possibly take it. A renewal that finds another token means the
//! lease is already gone: the worker stops at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{RedisStore, StoreError};

/// How the pair hands the session over. Tests may shorten them.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimings {
    /// How long the lease lives in Redis without a renewal: a crashed active's
    /// standby takes over this long (plus one poll) after the last renewal.
    pub ttl: Duration,
    /// How often the active renews. It gives the session up when it has not
    /// renewed for `ttl − renew_every`.
    pub renew_every: Duration,
    /// How often a standby tries to take the lease.
    pub poll_every: Duration,
    /// How long one Redis call may take before it counts as failed.
    pub redis_timeout: Duration,
}

impl Default for LeaseTimings {
    /// 5 s lease, renewed every second, polled every 500 ms, 1 s per Redis call.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            renew_every: Duration::from_secs(1),
            poll_every: Duration::from_millis(500),
            redis_timeout: Duration::from_secs(1),
        }
    }
}

impl LeaseTimings {
    /// How long after sending a successful renewal the lease surely still holds.
    fn validity(&self) -> Duration {
        self.ttl.saturating_sub(self.renew_every)
    }
}

/// The lease this worker holds. Cheap to clone; every clone sees the loss.
#[derive(Clone, Debug)]
pub struct Lease {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: RedisStore,
    token: u64,
    /// The lease value in Redis, `<token>:<nonce>`: what renewals, the release
    /// and every write compare, whole.
    value: String,
    timings: LeaseTimings,
    valid_until: Mutex<Instant>,
    lost: watch::Sender<bool>,
    released: AtomicBool,
}

impl Lease {
    /// Takes the lease if nobody holds it. On success, `store`'s writes carry
    /// the new lease value. The lease is not renewed until [`Lease::keep`].
    pub async fn try_acquire(
        store: &RedisStore,
        timings: LeaseTimings,
    ) -> Result<Option<Self>, StoreError> {
        let sent = Instant::now();
        let Some((token, value)) = store.acquire(timings.ttl).await? else {
            return Ok(None);
        };
        store.set_fence(&value);
        Ok(Some(Self {
            shared: Arc::new(Shared {
                store: store.clone(),
                token,
                value,
                timings,
                valid_until: Mutex::new(sent + timings.validity()),
                lost: watch::channel(false).0,
                released: AtomicBool::new(false),
            }),
        }))
    }

    /// The fencing token: larger than every earlier holder's, and than the unix
    /// time in ms when it was handed out (even after Redis lost its data).
    pub fn token(&self) -> u64 {
        self.shared.token
    }

    /// Whether the lease surely still holds: not lost, and inside its local deadline.
    pub fn is_valid(&self) -> bool {
        !*self.shared.lost.borrow() && Instant::now() < self.valid_until()
    }

    /// How long the lease surely still holds (zero once lost).
    pub fn remaining(&self) -> Duration {
        if *self.shared.lost.borrow() {
            return Duration::ZERO;
        }
        self.valid_until().saturating_duration_since(Instant::now())
    }

    /// Resolves once the lease is lost: given up, or its local deadline passed.
    pub async fn lost(&self) {
        let mut lost = self.shared.lost.subscribe();
        loop {
            let deadline = self.valid_until();
            tokio::select! {
                _ = lost.wait_for(|lost| *lost) => return,
                () = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= self.valid_until() {
                        self.give_up("the lease could not be renewed in time");
                        return;
                    }
                }
            }
        }
    }

    /// Marks the lease lost (e.g. a write was refused): no more writes from here.
    pub fn give_up(&self, reason: &str) {
        self.shared.store.clear_fence(&self.shared.value);
        let newly = self
            .shared
            .lost
            .send_if_modified(|lost| !std::mem::replace(lost, true));
        if newly && !self.shared.released.load(Ordering::Relaxed) {
            tracing::warn!(reason, token = self.token(), "lost the worker lease");
        }
    }

    /// Renews the lease in the background until it is lost or released.
    pub fn keep(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(renew(self.clone()))
    }

    /// Stops renewing and deletes the lease if it is still ours, so a standby
    /// takes over at once (graceful shutdown).
    pub async fn release(&self) {
        self.shared.released.store(true, Ordering::Relaxed);
        self.give_up("released");
        match self.shared.store.release(&self.shared.value).await {
            Ok(true) => tracing::info!(token = self.token(), "released the worker lease"),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "could not release the worker lease; it expires by itself");
            }
        }
    }

    fn valid_until(&self) -> Instant {
        *self
            .shared
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn extend(&self, until: Instant) {
        let mut valid_until = self
            .shared
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *valid_until = (*valid_until).max(until);
    }
}

/// The renewal loop of an active worker.
async fn renew(lease: Lease) {
    let timings = lease.shared.timings;
    let mut lost = lease.shared.lost.subscribe();
    let mut tick = tokio::time::interval(timings.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // The first tick is immediate; the lease is fresh.
    loop {
        tokio::select! {
            _ = lost.wait_for(|lost| *lost) => return,
            _ = tick.tick() => {}
        }
        if !lease.is_valid() {
            lease.give_up("the lease could not be renewed in time");
            return;
        }
        let sent = Instant::now();
        match lease
            .shared
            .store
            .renew(&lease.shared.value, timings.ttl)
            .await
        {
            Ok(true) => lease.extend(sent + timings.validity()),
            Ok(false) => {
                lease.give_up("another worker holds the lease");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, remaining_ms = lease.remaining().as_millis(), "could not renew the worker lease; retrying");
            }
        }
    }
}

/// Waits, as a standby, until this worker takes the lease; `None` at shutdown.
/// Returns the lease and whether another worker held it meanwhile (a takeover).
/// `reachable` is told whether Redis answers, for `/health`. Redis errors are
/// retried with capped exponential backoff, never fatal.
pub async fn wait_for_lease(
    store: &RedisStore,
    timings: LeaseTimings,
    reachable: impl Fn(bool),
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Lease, bool)> {
    let mut held_by_other = false;
    let mut failures = 0_u32;
    loop {
        if *shutdown.borrow() {
            return None;
        }
        let wait = match Lease::try_acquire(store, timings).await {
            Ok(Some(lease)) => {
                reachable(true);
                return Some((lease, held_by_other));
            }
            Ok(None) => {
                held_by_other = true;
                if failures > 0 {
                    tracing::info!("redis answers again");
                }
                failures = 0;
                reachable(store.refresh_counts().await.is_ok());
                timings.poll_every
            }
            Err(error) => {
                if failures == 0 {
                    tracing::warn!(%error, "standby cannot reach redis; retrying with backoff");
                }
                failures = failures.saturating_add(1);
                reachable(false);
                timings
                    .poll_every
                    .saturating_mul(1 << failures.min(4))
                    .min(Duration::from_secs(5))
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}
