//! Delivery: posts outbox events to the hub, in order, until each one lands.
//!
//! One task takes the oldest event, signs it (SPEC §5, freshly for each attempt so
//! the timestamp stays inside the hub's window) and posts it with its stable
//! `X-Hub-Event-Id`. A 2xx removes it. 5xx, timeouts, connection errors and
//! answers that point at our configuration (401/403/404) are retried forever
//! with capped exponential backoff and jitter; 429 waits for `Retry-After`. Only an
//! answer saying the event itself is bad (400, 413, 415, 422) sends it to the
//! dead-letter table, so one poisoned event never blocks the queue.
//!
//! One of an active/standby pair delivers only while it holds the lease, and
//! cuts an attempt short when the lease would run out during it.

use std::time::Duration;

use coven_contract::internal::sign_request;
use coven_contract::signature::{EVENT_ID_HEADER, Signer};
use reqwest::StatusCode;
use tokio::sync::watch;
use url::Url;

use crate::lease::Lease;
use crate::metrics;
use crate::outbox::{Pending, StoreError};
use crate::store::Store;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The hub accepted it.
    Delivered,
    /// Try again, after at least the given delay when the hub said so.
    Retry {
        /// `Retry-After`, when the hub sent one.
        after: Option<Duration>,
        /// What went wrong, for the log.
        reason: String,
    },
    /// The hub refused the event itself; retrying cannot help.
    Reject {
        /// What the hub answered.
        reason: String,
    },
}

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

/// Posts signed events to the hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    endpoint: Url,
    signer: Signer,
}

impl HubClient {
    /// A client for `endpoint` (the hub's `/api/internal/events`), signing with `signer`.
    ///
    /// # Panics
    ///
    /// If no TLS backend can be initialised, which the build rules out.
    pub fn new(endpoint: Url, signer: Signer, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            http,
            endpoint,
            signer,
        }
    }

    /// One delivery attempt.
    pub async fn post(&self, pending: &Pending) -> Outcome {
        let response = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .headers(sign_request(&self.signer, &pending.body))
            .header(EVENT_ID_HEADER, &pending.event_id)
            .body(pending.body.clone())
            .send()
            .await;
        match response {
            Ok(response) => classify(response.status(), retry_after(&response)),
            Err(error) => Outcome::Retry {
                after: None,
                reason: transport_reason(&error),
            },
        }
    }
}

/// What an HTTP status means for the event.
pub fn classify(status: StatusCode, retry_after: Option<Duration>) -> Outcome {
    let reason = format!("hub answered {status}");
    match status.as_u16() {
        200..=299 => Outcome::Delivered,
        400 | 413 | 415 | 422 => Outcome::Reject { reason },
        429 => Outcome::Retry {
            after: retry_after,
            reason,
        },
        _ => Outcome::Retry {
            after: None,
            reason,
        },
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

fn transport_reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "could not connect to the hub".into()
    } else {
        "transport error".into()
    }
}

/// What the delivery loop does next.
enum Next {
    /// Take the next event at once.
    Continue,
    /// The outbox is empty: wait for an event.
    Idle,
    /// Wait this long (backoff), then try again.
    Wait(Duration),
}

/// Delivers events until `shutdown` turns true or, for one of a pair of workers,
/// the `lease` is lost. Never gives up on an event that can still be delivered;
/// Redis errors are retried with backoff. Returns an error only when the local
/// state file fails.
pub async fn run(
    store: Store,
    hub: HubClient,
    backoff: Backoff,
    mut shutdown: watch::Receiver<bool>,
    lease: Option<Lease>,
) -> Result<(), StoreError> {
    let mut attempt = 0_u32;
    let mut store_failures = 0_u32;
    let lost = crate::lease::lost(lease.as_ref());
    tokio::pin!(lost);
    loop {
        if *shutdown.borrow() || lease.as_ref().is_some_and(|lease| !lease.is_valid()) {
            return Ok(());
        }
        let next = match step(&store, &hub, backoff, &mut attempt, lease.as_ref()).await {
            Ok(next) => {
                store_failures = 0;
                next
            }
            Err(StoreError::Fenced) => {
                if let Some(lease) = &lease {
                    lease.give_up("a delivery write was refused");
                }
                return Ok(());
            }
            Err(error) if error.is_transient() => {
                let delay = backoff.delay(store_failures);
                tracing::warn!(%error, retry_in_ms = delay.as_millis(), "outbox unavailable; will retry");
                store_failures = store_failures.saturating_add(1);
                Next::Wait(delay)
            }
            Err(error) => return Err(error),
        };
        match next {
            Next::Continue => {}
            Next::Idle => tokio::select! {
                () = store.added() => {}
                _ = shutdown.changed() => {}
                () = &mut lost => {}
            },
            Next::Wait(wait) => tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
                () = &mut lost => {}
            },
        }
    }
}

/// One attempt at the oldest event.
async fn step(
    store: &Store,
    hub: &HubClient,
    backoff: Backoff,
    attempt: &mut u32,
    lease: Option<&Lease>,
) -> Result<Next, StoreError> {
    let Some(pending) = store.peek().await? else {
        return Ok(Next::Idle);
    };
    let outcome = match lease {
        // A worker that may lose the lease never lets a post outlive it, so it
        // cannot reach the hub after the next active worker started delivering.
        Some(lease) => match tokio::time::timeout(lease.remaining(), hub.post(&pending)).await {
            Ok(outcome) => outcome,
            Err(_) => return Ok(Next::Continue),
        },
        None => hub.post(&pending).await,
    };
    match outcome {
        Outcome::Delivered => {
            store.ack(pending.id).await?;
            metrics::delivered(store);
            *attempt = 0;
            Ok(Next::Continue)
        }
        Outcome::Reject { reason } => {
            tracing::error!(event_id = %pending.event_id, %reason, "hub refused an event for good; moved to dead letters");
            store.bury(&pending, &reason).await?;
            metrics::dead_lettered(store);
            *attempt = 0;
            Ok(Next::Continue)
        }
        Outcome::Retry { after, reason } => {
            let delay = after
                .unwrap_or_else(|| backoff.delay(*attempt))
                .max(backoff.delay(0));
            tracing::warn!(event_id = %pending.event_id, %reason, attempt = *attempt, retry_in_ms = delay.as_millis(), "delivery failed; will retry");
            metrics::retried();
            *attempt = attempt.saturating_add(1);
            Ok(Next::Wait(delay))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(StatusCode::OK, None), Outcome::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT, None), Outcome::Delivered);
        for status in [400, 413, 415, 422] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(classify(status, None), Outcome::Reject { .. }),
                "{status}"
            );
        }
        for status in [401, 403, 404, 408, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(classify(status, None), Outcome::Retry { after: None, .. }),
                "{status}"
            );
        }
        let after = Some(Duration::from_secs(2));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, after),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
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
