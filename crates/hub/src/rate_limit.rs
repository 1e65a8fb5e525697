//! Token buckets per key: the rooms API per JWT subject, `/auth/login` per client IP.
//!
//! Creating and deleting Discord channels is expensive and Discord bans IPs that
//! cause too many 429s, so each user gets a small burst refilled at a steady pace;
//! beyond it the hub answers 429 with `Retry-After` instead of calling Discord.
//!
//! The keys come from clients, so the map is bounded (docs/spec.md §7.2): past its
//! capacity, full (idle) buckets are swept, then the least recently used one is
//! dropped. Dropping a bucket only forgives that key's past requests; it never
//! refuses anyone else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most by default.
const DEFAULT_CAPACITY: usize = 10_000;

/// A token bucket per key.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    burst: f64,
    period: Duration,
    capacity: usize,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `burst` requests at once, then one per `period`; at most 10,000 keys.
    pub(crate) fn new(burst: u32, period: Duration) -> Self {
        Self::with_capacity(burst, period, DEFAULT_CAPACITY)
    }

    /// Like [`Self::new`], keeping at most `capacity` keys.
    pub(crate) fn with_capacity(burst: u32, period: Duration, capacity: usize) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            period: period.max(Duration::from_millis(1)),
            capacity: capacity.max(1),
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
        if buckets.len() >= self.capacity && !buckets.contains_key(key) {
            let burst = self.burst;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() / period < burst
            });
            if buckets.len() >= self.capacity
                && let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                buckets.remove(&oldest);
            }
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

    #[test]
    fn the_map_stays_within_its_capacity() {
        let limiter = RateLimiter::with_capacity(1, Duration::from_secs(60), 3);
        for key in ["a", "b", "c"] {
            assert!(limiter.check(key).is_ok());
        }
        assert!(limiter.check("a").is_err(), "a is spent");
        for i in 0..100 {
            let _ = limiter.check(&format!("stranger-{i}"));
        }
        assert!(limiter.buckets.lock().unwrap().len() <= 3);
    }
}
