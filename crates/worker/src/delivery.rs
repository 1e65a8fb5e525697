//! Delivery: posts outbox events to the hub, in order, until each one lands.
//!
//! One task takes the oldest event, signs it (docs/spec.md §5, freshly for each attempt so
//! the timestamp stays inside the hub's window) and posts it with its stable
//! `X-Hub-Event-Id`. A 2xx removes it. 5xx, timeouts, connection errors and
//! answers that point at our configuration (401/403/404) are retried forever
//! with capped exponential backoff and jitter; 429 waits for `Retry-After`. Only an
//! answer saying the event itself is bad (400, 413, 415, 422) sends it to the
//! dead-letter table, so one poisoned event never blocks the queue.
//!
//! One of an active/standby pair delivers only while its store may write (it
//! holds the lease), and cuts an attempt short when that would end during it.

use std::time::Duration;

use coven_contract::internal::sign_webhook;
use coven_contract::signature::{EVENT_ID_HEADER, Signer};
use reqwest::StatusCode;
use tokio::sync::watch;
use url::Url;

use crate::backoff::Backoff;
use crate::metrics;
use crate::store::{Pending, Store, StoreError};

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
        reason: Failure,
    },
    /// The hub refused the event itself; retrying cannot help.
    Reject {
        /// What the hub answered (kept with the dead letter).
        reason: Failure,
    },
}

/// Why an attempt did not deliver the event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The hub answered with a status other than 2xx.
    #[error("hub answered {0}")]
    Status(StatusCode),
    /// No answer within the delivery timeout.
    #[error("timed out")]
    TimedOut,
    /// The hub could not be reached.
    #[error("could not connect to the hub")]
    Unreachable,
    /// Another transport failure (TLS, a broken connection, …).
    #[error("transport error")]
    Transport,
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
            .headers(sign_webhook(&self.signer, &pending.body))
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
    let reason = Failure::Status(status);
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

fn transport_reason(error: &reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::TimedOut
    } else if error.is_connect() {
        Failure::Unreachable
    } else {
        Failure::Transport
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
/// the `store` fences this worker off. Never gives up on an event that can
/// still be delivered; Redis errors are retried with backoff. Returns an error
/// only when the local state file fails.
pub async fn run(
    store: Store,
    hub: HubClient,
    backoff: Backoff,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let mut attempt = 0_u32;
    let mut store_failures = 0_u32;
    let fenced = store.fenced();
    tokio::pin!(fenced);
    loop {
        if *shutdown.borrow() || !store.may_write() {
            return Ok(());
        }
        let next = match step(&store, &hub, backoff, &mut attempt).await {
            Ok(next) => {
                store_failures = 0;
                next
            }
            // The store has given the lease up: another worker delivers now.
            Err(StoreError::Fenced) => return Ok(()),
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
                () = store.gauges().added() => {}
                _ = shutdown.changed() => {}
                () = &mut fenced => {}
            },
            Next::Wait(wait) => tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
                () = &mut fenced => {}
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
) -> Result<Next, StoreError> {
    let Some(pending) = store.peek().await? else {
        return Ok(Next::Idle);
    };
    let outcome = match store.write_window() {
        // A worker that may lose the lease never lets a post outlive it, so it
        // cannot reach the hub after the next active worker started delivering.
        Some(window) => match tokio::time::timeout(window, hub.post(&pending)).await {
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
            store.bury(&pending, &reason.to_string()).await?;
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
}
