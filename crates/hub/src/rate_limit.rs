//! Per-user rate limiting of the rooms API: a token bucket per JWT subject.
//!
//! Creating and deleting Discord channels is expensive and Discord bans IPs that
//! cause too many 429s, so each user gets a small burst refilled at a steady pace;
//! beyond it the hub answers 429 with `Retry-After` instead of calling Discord.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets above this count trigger a sweep of the full (idle) ones.
const SWEEP_THRESHOLD: usize = 10_000;

/// A token bucket per key.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    burst: f64,
    period: Duration,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `burst` requests at once, then one per `period`.
    pub(crate) fn new(burst: u32, period: Duration) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            period: period.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub(crate) fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let period = self.period.as_secs_f64();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > SWEEP_THRESHOLD {
            let burst = self.burst;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() / period < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() / period).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) * period))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_wait() {
        let limiter = RateLimiter::new(2, Duration::from_secs(10));
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10));
        assert!(limiter.check("b").is_ok(), "per user");
    }
}
