//! The outbox's gauges: how many events wait for delivery, how many were
//! dead-lettered, the bounds, and the wake-up delivery waits on.
//!
//! The dead letters are bounded too (`WorkerSettings::dead_letter_capacity`,
//! 10,000 by default): beyond it each backend drops the oldest in the same
//! write, and [`Gauges::dead_letters_trimmed`] counts the drops in `/metrics` and
//! logs once when dropping starts and once when it stops.
//!
//! Both backends keep the same ones, updated after each of their writes (the
//! redb file counts its own tables; Redis answers the lengths from its scripts),
//! so `/health`, `/metrics` and delivery read them without a disk or network
//! round trip, whichever backend is behind the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Fraction of the bound past which the outbox reports that it is nearly full.
const NEAR_FULL_PERCENT: u64 = 80;

/// Dead letters kept at most unless configured otherwise.
pub const DEFAULT_DEAD_LETTER_CAPACITY: u64 = 10_000;

/// The outbox's counters and delivery's wake-up. Cheap to clone; clones share them.
#[derive(Debug, Clone)]
pub struct Gauges(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    depth: AtomicU64,
    dead: AtomicU64,
    capacity: u64,
    dead_capacity: AtomicU64,
    /// The last dead-letter write had to drop old ones.
    dropping: AtomicBool,
    added: Notify,
}

impl Gauges {
    /// Gauges for an outbox bounded at `capacity` holding `depth` events and
    /// `dead` dead letters.
    pub(crate) fn new(capacity: u64, depth: u64, dead: u64) -> Self {
        Self(Arc::new(Inner {
            depth: AtomicU64::new(depth),
            dead: AtomicU64::new(dead),
            capacity,
            dead_capacity: AtomicU64::new(DEFAULT_DEAD_LETTER_CAPACITY),
            dropping: AtomicBool::new(false),
            added: Notify::new(),
        }))
    }

    /// Events waiting for delivery, as of the last write (or, for a standby of a
    /// pair, the last refresh).
    pub fn depth(&self) -> u64 {
        self.0.depth.load(Ordering::Relaxed)
    }

    /// Events in the dead letters.
    pub fn dead_letter_count(&self) -> u64 {
        self.0.dead.load(Ordering::Relaxed)
    }

    /// The configured bound (`OUTBOX_MAX_EVENTS`).
    pub fn capacity(&self) -> u64 {
        self.0.capacity
    }

    /// The most dead letters kept; beyond, the oldest are dropped.
    pub fn dead_letter_capacity(&self) -> u64 {
        self.0.dead_capacity.load(Ordering::Relaxed)
    }

    /// Sets the dead letters' bound (at least 1), before the store is used.
    pub(crate) fn set_dead_letter_capacity(&self, capacity: u64) {
        self.0
            .dead_capacity
            .store(capacity.max(1), Ordering::Relaxed);
    }

    /// After a write to the dead letters that left `dead` of them and dropped the
    /// `dropped` oldest to stay within the bound: counts the drops and logs once
    /// when dropping starts (and once when a write no longer needs to drop).
    pub(crate) fn dead_letters_trimmed(&self, dead: u64, dropped: u64) {
        self.0.dead.store(dead, Ordering::Relaxed);
        if dropped > 0 {
            crate::metrics::dead_letters_dropped(dropped);
            if !self.0.dropping.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    capacity = self.dead_letter_capacity(),
                    dropped,
                    "dead letters are at their bound: the oldest are dropped from now on \
                     (counted in coven_worker_dead_letters_dropped_total)"
                );
            }
        } else if dead < self.dead_letter_capacity()
            && self.0.dropping.swap(false, Ordering::Relaxed)
        {
            tracing::info!(
                dead,
                "dead letters are below their bound again: none dropped"
            );
        }
    }

    /// Whether the outbox is past 80 % of its bound.
    pub fn near_full(&self) -> bool {
        self.depth().saturating_mul(100) >= self.capacity().saturating_mul(NEAR_FULL_PERCENT)
    }

    /// Resolves when an event is added after the last wake-up.
    pub async fn added(&self) {
        self.0.added.notified().await;
    }

    /// Records lengths a backend read or was answered.
    pub(crate) fn set(&self, depth: u64, dead: u64) {
        self.set_depth(depth);
        self.0.dead.store(dead, Ordering::Relaxed);
    }

    /// Records the outbox's length alone.
    pub(crate) fn set_depth(&self, depth: u64) {
        self.0.depth.store(depth, Ordering::Relaxed);
    }

    /// Counts `queued` events added to the outbox and `dead` to the dead letters.
    pub(crate) fn add(&self, queued: u64, dead: u64) {
        self.0.depth.fetch_add(queued, Ordering::Relaxed);
        self.0.dead.fetch_add(dead, Ordering::Relaxed);
    }

    /// Counts one event gone from the outbox.
    pub(crate) fn remove_one(&self) {
        self.0.depth.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes delivery: events were added.
    pub(crate) fn wake(&self) {
        self.0.added.notify_one();
    }
}
