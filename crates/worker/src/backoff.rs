//! Capped exponential backoff with jitter, for every retry loop of the worker:
//! webhook deliveries, Redis calls of one of a pair, and gateway reconnects.
//!
//! The jitter keeps many workers (or the two of a pair) from retrying in
//! lockstep after a shared outage.
//!
//! Gateway reconnects need their own pacing ([`ReconnectPacing`], applied by
//! [`Pacer`]): twilight backs off only after a failed *connect*, so a server that
//! accepts the connection and closes it at once (right after HELLO, or right
//! after READY) would be redialled thousands of times a second, and Discord bans
//! IPs that do that (docs/worker.md "Reconnects").

use std::time::{Duration, Instant};

/// Backoff between failed attempts: `base × 2^attempt`, capped, with full jitter
/// in its upper half so that many workers do not retry in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(self, attempt: u32) -> Duration {
        let exponential = self.base.saturating_mul(1 << attempt.min(20)).min(self.cap);
        exponential.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// How the gateway loop paces reconnects: a session that ends before it is live
/// (READY or RESUMED), or within `stable_after` of it, is *short*; after each of
/// consecutive short sessions the loop waits `backoff.delay(n)` (n = 0, 1, …)
/// before connecting again. A session live for `stable_after` or longer resets the
/// count, and the reconnect after it is immediate (a resume, as Discord expects).
#[derive(Debug, Clone, Copy)]
pub struct ReconnectPacing {
    /// The wait after consecutive short sessions (default 1 s doubling to 60 s, jittered 50–100 %).
    pub backoff: Backoff,
    /// How long a session must stay live to count as a good one (default 5 s).
    pub stable_after: Duration,
}

impl Default for ReconnectPacing {
    fn default() -> Self {
        Self {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
            stable_after: Duration::from_secs(5),
        }
    }
}

/// [`ReconnectPacing`] applied to the connections of one gateway loop.
#[derive(Debug)]
pub(crate) struct Pacer {
    pacing: ReconnectPacing,
    /// Consecutive short sessions (and failed connects) so far.
    short: u32,
    /// When the current session went live, if it did.
    live_since: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(pacing: ReconnectPacing) -> Self {
        Self {
            pacing,
            short: 0,
            live_since: None,
        }
    }

    /// The session went live (READY or RESUMED) at `now`.
    pub(crate) fn live(&mut self, now: Instant) {
        self.live_since = Some(now);
    }

    /// The connection ended at `now`: how long to wait before connecting again.
    pub(crate) fn ended(&mut self, now: Instant) -> Duration {
        let stable = self
            .live_since
            .take()
            .is_some_and(|since| now.saturating_duration_since(since) >= self.pacing.stable_after);
        if stable {
            self.short = 0;
            return Duration::ZERO;
        }
        let delay = self.pacing.backoff.delay(self.short);
        self.short = self.short.saturating_add(1);
        delay
    }

    /// A connect attempt failed. twilight waits before its next attempt by
    /// itself (1 s doubling), so this adds no wait of its own, but it counts as
    /// a short session: a server that then closes right after HELLO is waited
    /// for as long as the outage already lasted.
    pub(crate) fn connect_failed(&mut self) {
        self.live_since = None;
        self.short = self.short.saturating_add(1);
    }

    /// Consecutive short sessions so far.
    pub(crate) fn short_sessions(&self) -> u32 {
        self.short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn short_sessions_back_off_and_a_stable_one_starts_over() {
        let pacing = ReconnectPacing::default();
        let mut pacer = Pacer::new(pacing);
        let t0 = Instant::now();
        // Closed right after HELLO, five times: 0.5–1 s, 1–2 s, 2–4 s, 4–8 s, 8–16 s.
        for n in 0..5 {
            let delay = pacer.ended(t0);
            let ceiling = secs(f64::from(1_u32 << n));
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{n}: {delay:?}");
        }
        // Live, but closed within `stable_after`: still short.
        pacer.live(t0);
        assert!(pacer.ended(t0 + secs(4.9)) >= secs(16.0));
        // A failed connect counts without a wait of its own.
        pacer.connect_failed();
        assert_eq!(pacer.short_sessions(), 7);
        // Capped at 60 s.
        for _ in 0..10 {
            assert!(pacer.ended(t0) <= secs(60.0));
        }
        // Live long enough: the next reconnect is immediate and the count starts over.
        pacer.live(t0);
        assert_eq!(pacer.ended(t0 + pacing.stable_after), Duration::ZERO);
        assert_eq!(pacer.short_sessions(), 0);
        assert!(pacer.ended(t0) <= secs(1.0));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let backoff = Backoff::default();
        for attempt in 0..40 {
            let delay = backoff.delay(attempt);
            let ceiling = (backoff.base * 2_u32.pow(attempt.min(20))).min(backoff.cap);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
        }
        assert!(backoff.delay(30) <= Duration::from_secs(30));
    }
}
