//! One timer for every browser socket's deadlines, and the hub's shutdown for every
//! idle session, both delivered through the socket's outbox wake-up.
//!
//! An authenticated session waits for one of a few things: its outbox (blocked,
//! failed, overloaded), its socket (readable, writable), its next deadline (a ping,
//! silence, a stalled write, the token's expiry; docs/spec.md §6) and the hub's
//! shutdown (close 1001). The first two wait without state in the session's future
//! (`crate::socket`). A tokio `Sleep` (112 bytes) and a shutdown waiter (72 bytes)
//! in each of 19,000 futures would cost 3.4 MiB; here a deadline costs one 16-byte
//! heap entry, held by one task for the whole hub, which wakes each outbox when its
//! time comes (docs/benchmarks.md "Where the memory goes").
//!
//! A session that moves its deadline arms a new one; the entry of the old one stays
//! and wakes the session once more, which then finds nothing due. A session only
//! arms a deadline earlier than the one it waits for (when a write stalls) or after
//! its deadline passed, so it has at most two entries. An entry holds its outbox
//! weakly: a closed socket's outbox is dropped at once, only its allocation waits
//! for the entry (at most a ping interval). At shutdown every armed outbox is woken
//! (its session sees the cancelled token and closes 1001), and an outbox armed after
//! that is woken at once.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fanout::Outbox;

/// The deadlines of every socket of a hub.
pub(crate) struct SocketClock {
    /// Instants are kept as nanoseconds since this one (8 bytes instead of 16).
    epoch: Instant,
    state: Mutex<State>,
    /// Wakes the clock's task: an earlier deadline was armed.
    earlier: Notify,
    /// Shutdown wakes every armed outbox.
    shutdown: CancellationToken,
    /// The clock's task was started (on the first deadline, inside the runtime).
    started: AtomicBool,
}

struct State {
    /// Armed deadlines, earliest first.
    due: BinaryHeap<Entry>,
    /// Shutdown began: every outbox was woken, and one armed now is woken at once.
    closed: bool,
}

/// One armed deadline: the outbox to wake, and when.
struct Entry {
    at: u64,
    outbox: Weak<Outbox>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: the earliest deadline is the heap's top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl SocketClock {
    /// A clock whose sockets are all woken once `shutdown` is cancelled.
    pub(crate) fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            state: Mutex::new(State {
                due: BinaryHeap::new(),
                closed: false,
            }),
            earlier: Notify::new(),
            shutdown,
            started: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Wakes `outbox` ([`Outbox::wake`]) at `at`, or at once when shutdown has
    /// begun. Must be called inside the Tokio runtime.
    pub(crate) fn wake_at(self: &Arc<Self>, at: Instant, outbox: &Arc<Outbox>) {
        if !self.started.swap(true, AtomicOrdering::AcqRel) {
            tokio::spawn(run(self.clone()));
        }
        let at = self.nanos(at);
        let mut state = self.lock();
        if state.closed {
            drop(state);
            outbox.wake();
            return;
        }
        let earliest = state.due.peek().is_none_or(|top| at < top.at);
        state.due.push(Entry {
            at,
            outbox: Arc::downgrade(outbox),
        });
        drop(state);
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// Wakes every outbox whose deadline passed; returns the next deadline.
    fn fire(&self) -> Option<Instant> {
        let now = self.nanos(Instant::now());
        let mut state = self.lock();
        while let Some(top) = state.due.peek() {
            if top.at > now {
                let next = top.at;
                return Some(self.epoch + std::time::Duration::from_nanos(next));
            }
            if let Some(entry) = state.due.pop()
                && let Some(outbox) = entry.outbox.upgrade()
            {
                outbox.wake();
            }
        }
        None
    }

    /// Shutdown: wakes every armed outbox, and from now on wakes at once.
    fn close(&self) {
        let due = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.due)
        };
        for entry in due {
            if let Some(outbox) = entry.outbox.upgrade() {
                outbox.wake();
            }
        }
    }
}

/// The clock's task: sleeps until the earliest deadline (or until an earlier one
/// is armed), wakes what is due; at shutdown wakes everything and ends.
async fn run(clock: Arc<SocketClock>) {
    loop {
        let next = clock.fire();
        let sleep = async {
            match next {
                Some(next) => tokio::time::sleep_until(next).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = clock.shutdown.cancelled() => break,
            () = clock.earlier.notified() => {}
            () = sleep => {}
        }
    }
    clock.close();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Waits for `outbox`'s next wake-up; `None` after `limit`.
    async fn woken(outbox: &Outbox, limit: Duration) -> Option<Instant> {
        tokio::time::timeout(limit, outbox.ready())
            .await
            .ok()
            .map(|()| Instant::now())
    }

    #[tokio::test]
    async fn each_outbox_is_woken_at_its_deadline_not_before() {
        let clock = SocketClock::new(CancellationToken::new());
        let late = Arc::new(Outbox::new(1024));
        let early = Arc::new(Outbox::new(1024));
        let start = Instant::now();
        clock.wake_at(start + Duration::from_millis(300), &late);
        // Armed after, due first: the clock's task wakes up earlier for it.
        clock.wake_at(start + Duration::from_millis(100), &early);
        let at = woken(&early, Duration::from_secs(5)).await.expect("woken");
        assert!(at >= start + Duration::from_millis(100), "{:?}", at - start);
        assert!(
            woken(&late, Duration::from_millis(50)).await.is_none(),
            "not yet"
        );
        let at = woken(&late, Duration::from_secs(5)).await.expect("woken");
        assert!(at >= start + Duration::from_millis(300), "{:?}", at - start);
    }

    #[tokio::test]
    async fn shutdown_wakes_every_armed_outbox_and_later_ones_at_once() {
        let shutdown = CancellationToken::new();
        let clock = SocketClock::new(shutdown.clone());
        let outboxes: Vec<_> = (0..3).map(|_| Arc::new(Outbox::new(1024))).collect();
        for outbox in &outboxes {
            clock.wake_at(Instant::now() + Duration::from_secs(3600), outbox);
        }
        shutdown.cancel();
        for outbox in &outboxes {
            assert!(woken(outbox, Duration::from_secs(5)).await.is_some());
        }
        let after = Arc::new(Outbox::new(1024));
        clock.wake_at(Instant::now() + Duration::from_secs(3600), &after);
        assert!(woken(&after, Duration::from_secs(5)).await.is_some());
    }
}
