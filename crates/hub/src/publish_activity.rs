//! How a guild's Redis reader keeps out of the way of this hub's own publishing.
//!
//! The reader follows the guild's stream with a blocking `XREAD`, so every
//! `XADD` wakes it, this hub's own included: it was read back whole (each entry's
//! event JSON) and skipped, since the publisher had delivered it already. That
//! was one more Redis command and reply per publish call, and the parse of every
//! entry, for nothing (docs/benchmarks.md "Ingest").
//!
//! So while this hub publishes to a guild, and for [`LINGER`] after its last
//! call, the reader does not sit in a blocking read. Nothing is missed meanwhile:
//! the publisher delivers its own events only when they directly follow what the
//! hub delivered last; otherwise another hub's events came in between, and it
//! tells the reader to read now ([`Activity::read_now`]). Events of other hubs
//! that come after this hub's last call are read when the linger ends, at the
//! latest, by the blocking read that follows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coven_contract::Snowflake;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long after this hub's last publish call its reader still keeps out of a
/// blocking read: longer than the gaps between calls under load, short enough
/// that another hub's event arriving as this one falls quiet waits little.
pub(crate) const LINGER: Duration = Duration::from_millis(2);

/// The [`Activity`] of each guild this hub publishes to or reads, shared by the
/// publishing task and the readers.
#[derive(Debug, Default)]
pub(crate) struct Activities(Mutex<HashMap<Snowflake, Arc<Activity>>>);

impl Activities {
    /// `guild`'s activity.
    pub(crate) fn of(&self, guild: Snowflake) -> Arc<Activity> {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.entry(guild).or_default().clone()
    }
}

/// One guild's publish calls as its reader sees them.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    state: Mutex<State>,
    /// The reader must read now: a call's events did not follow the head.
    read: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// A call is on its way.
    busy: bool,
    /// When the last call ended.
    ended: Option<Instant>,
}

/// What the reader may do now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Nothing of this hub's is on its way: a blocking read.
    Block,
    /// This hub publishes: wait for [`Activity::read_now`] or until this instant.
    Wait(Instant),
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A publish call starts.
    pub(crate) fn start(&self) {
        self.lock().busy = true;
    }

    /// The call ended; `read` when its events did not follow the head (or the
    /// call failed), so the reader must read the stream now.
    pub(crate) fn end(&self, read: bool) {
        {
            let mut state = self.lock();
            state.busy = false;
            state.ended = Some(Instant::now());
        }
        if read {
            self.read.notify_one();
        }
    }

    /// The reader's turn.
    pub(crate) fn turn(&self) -> Turn {
        let state = self.lock();
        let now = Instant::now();
        match state.ended {
            _ if state.busy => Turn::Wait(now + LINGER),
            Some(ended) if now < ended + LINGER => Turn::Wait(ended + LINGER),
            _ => Turn::Block,
        }
    }

    /// Completes when a call asked the reader to read (at once if one did since
    /// the reader last looked).
    pub(crate) async fn read_now(&self) {
        self.read.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_reader_blocks_only_once_the_hub_is_quiet_for_the_linger() {
        let activity = Activity::default();
        assert_eq!(activity.turn(), Turn::Block);
        activity.start();
        assert!(matches!(activity.turn(), Turn::Wait(_)));
        activity.end(false);
        let Turn::Wait(until) = activity.turn() else {
            panic!("a call just ended: the reader waits");
        };
        assert!(until > Instant::now() && until <= Instant::now() + LINGER);
        tokio::time::sleep_until(until).await;
        assert_eq!(activity.turn(), Turn::Block);
    }

    #[tokio::test]
    async fn a_call_that_did_not_follow_the_head_wakes_the_reader_even_before_it_waits() {
        let activity = Activity::default();
        activity.start();
        activity.end(true);
        // The permit is kept until the reader looks.
        tokio::time::timeout(Duration::from_millis(1), activity.read_now())
            .await
            .expect("the reader is told to read");
        activity.start();
        activity.end(false);
        assert!(
            tokio::time::timeout(Duration::from_millis(1), activity.read_now())
                .await
                .is_err(),
            "a call that followed the head needs no read"
        );
    }
}
