//! The worker's Prometheus metrics, named in one place.
//!
//! Counters and gauges go through the `metrics` facade; [`prometheus`] installs
//! the process-wide Prometheus recorder once and returns the handle that renders
//! `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::Store;

/// The process's Prometheus handle, installing the global recorder on first use.
/// If another recorder is already installed, metrics still render (empty) rather
/// than failing the worker.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// A contract event was produced (and committed to the outbox).
pub fn event_produced(name: &'static str) {
    counter!("coven_worker_events_total", "type" => name).increment(1);
}

/// New events were committed durably to the outbox, in one transaction or
/// script: those of every dispatch the gateway had sent by then (docs/worker.md).
pub fn outbox_commit() {
    counter!("coven_worker_outbox_commits_total").increment(1);
}

/// An event reached the hub.
pub fn delivered(outbox: &Store) {
    counter!("coven_worker_delivered_total").increment(1);
    outbox_gauges(outbox);
}

/// A delivery attempt failed and will be retried.
pub fn retried() {
    counter!("coven_worker_delivery_retries_total").increment(1);
}

/// An event went to the dead-letter table.
pub fn dead_lettered(outbox: &Store) {
    counter!("coven_worker_dead_letters_total").increment(1);
    outbox_gauges(outbox);
}

/// `dropped` of the oldest dead letters were dropped to stay within their bound.
pub fn dead_letters_dropped(dropped: u64) {
    counter!("coven_worker_dead_letters_dropped_total").increment(dropped);
}

/// Current outbox depth, dead letters and bound.
#[allow(clippy::cast_precision_loss)] // Gauges are f64; depths stay far below 2^52.
pub fn outbox_gauges(outbox: &Store) {
    gauge!("coven_worker_outbox_depth").set(outbox.gauges().depth() as f64);
    gauge!("coven_worker_outbox_capacity").set(outbox.gauges().capacity() as f64);
    gauge!("coven_worker_dead_letters").set(outbox.gauges().dead_letter_count() as f64);
}

/// A gateway dispatch twilight could not read (kept as a dead letter); `event`
/// is its name, or `other` for one the worker does not use.
pub fn unreadable_dispatch(event: &str) {
    const USED: [&str; 8] = [
        "READY",
        "GUILD_CREATE",
        "GUILD_ROLE_UPDATE",
        "CHANNEL_CREATE",
        "CHANNEL_UPDATE",
        "CHANNEL_DELETE",
        "VOICE_STATE_UPDATE",
        "VOICE_SERVER_UPDATE",
    ];
    let label = USED
        .into_iter()
        .find(|used| *used == event)
        .unwrap_or("other");
    counter!("coven_worker_gateway_unreadable_total", "event" => label).increment(1);
}

/// The worker started a new session to bring its view back in sync after a
/// dispatch it could not read.
pub fn resynced() {
    counter!("coven_worker_gateway_resyncs_total").increment(1);
}

/// A new session was identified (READY).
pub fn identified() {
    counter!("coven_worker_identifies_total").increment(1);
}

/// A session was resumed (RESUMED).
pub fn resumed() {
    counter!("coven_worker_resumes_total").increment(1);
}

/// The gateway connection ended, or a connect attempt failed, and the worker
/// connects again after `wait` (zero unless the sessions before were short,
/// docs/worker.md "Reconnects"); the wait is also the current backoff gauge.
pub fn reconnecting(wait: Duration) {
    counter!("coven_worker_reconnects_total").increment(1);
    gauge!("coven_worker_reconnect_backoff_seconds").set(wait.as_secs_f64());
}

/// Latest heartbeat round trip.
pub fn gateway_latency(latency: Duration) {
    gauge!("coven_worker_gateway_latency_seconds").set(latency.as_secs_f64());
}

/// Whether this worker holds the active/standby lease (1) or not (0). Only a
/// worker with `REDIS_URL` reports it.
pub fn lease_held(held: bool) {
    gauge!("coven_worker_lease_held").set(if held { 1.0 } else { 0.0 });
}

/// This worker took the lease over from another worker of the pair.
pub fn took_over() {
    counter!("coven_worker_takeovers_total").increment(1);
}

/// This worker lost the lease without releasing it (and went back to standby).
pub fn lease_lost() {
    counter!("coven_worker_lease_losses_total").increment(1);
}
