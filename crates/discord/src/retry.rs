//! Retries of transient failures (5xx, network errors) with capped exponential backoff
//! and jitter. Every other error, including every other 4xx, is returned at once.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::DiscordError;

/// How transient failures are retried: attempt `n` (from 0) waits a random duration
/// between half and all of `min(base × 2ⁿ, cap)` before the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`MAX_API_RETRIES`); 0 never retries.
    pub max_retries: u32,
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Longest delay between two attempts.
    pub cap: Duration,
}

impl RetryPolicy {
    /// `max_retries` retries starting at 100 ms, doubling, capped at 5 s.
    pub const fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }

    /// The wait before retry number `attempt` (0-based), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.cap);
        let half = full / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rand::rng().random_range(0..=jitter_nanos))
    }

    /// Runs `attempt` until it succeeds, fails with a non-retryable error, or has been
    /// retried `max_retries` times; the last error is returned.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        mut attempt: F,
    ) -> Result<T, DiscordError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DiscordError>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(error) if error.is_retryable() && retries < self.max_retries => {
                    let wait = self.delay(retries);
                    retries += 1;
                    tracing::warn!(operation, %error, retry = retries, wait_ms = wait.as_millis(), "Discord call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }
}

impl Default for RetryPolicy {
    /// Three retries, the spec's default (docs/spec.md §3) `MAX_API_RETRIES`.
    fn default() -> Self {
        Self::new(3)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn delays_double_with_jitter_and_cap() {
        let policy = RetryPolicy::new(10);
        for attempt in 0..12 {
            let full = (Duration::from_millis(100) * 2u32.pow(attempt)).min(Duration::from_secs(5));
            for _ in 0..50 {
                let d = policy.delay(attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(policy.delay(u32::MAX) <= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = RetryPolicy::new(3)
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(DiscordError::Server { status: 502 })
            })
            .await;
        assert_eq!(result, Err(DiscordError::Server { status: 502 }));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_first_success_or_client_error() {
        let calls = AtomicU32::new(0);
        let result = RetryPolicy::new(5)
            .run("test", || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(DiscordError::Transport("reset".into())),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = RetryPolicy::new(5)
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(DiscordError::UnknownChannel)
            })
            .await;
        assert_eq!(result, Err(DiscordError::UnknownChannel));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
