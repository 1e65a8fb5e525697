//! Capped exponential backoff with jitter, for every retry loop of the worker:
//! webhook deliveries, Redis calls of one of a pair, and the pacing of gateway
//! reconnects after short sessions (`reconnect.rs`).
//!
//! The jitter keeps many workers (or the two of a pair) from retrying in
//! lockstep after a shared outage.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
