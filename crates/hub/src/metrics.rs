//! Prometheus metrics of the hub and the `/metrics` endpoint.
//!
//! The `metrics` facade records into one process-wide recorder; this module installs
//! a Prometheus recorder once (unless the binary passes its own handle) and renders
//! it. Names are listed here so an operator finds them in one place.
//!
//! The webhook's and the local stream's metrics are recorded on every event, so
//! their handles are registered once ([`ingest`], [`stream`]) instead of being
//! looked up in the recorder's registry per event (docs/benchmarks.md, "Ingest").

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::MetricsState;

/// Open, authenticated browser sockets (gauge).
pub(crate) const SOCKETS: &str = "hub_ws_sockets";
/// Successful browser authentications (counter).
pub(crate) const AUTH_OK: &str = "hub_ws_auth_ok_total";
/// Failed browser authentications, by `reason` (counter).
pub(crate) const AUTH_FAILED: &str = "hub_ws_auth_failed_total";
/// Sockets closed with 1013 because they fell behind (counter).
pub(crate) const OVERLOADED: &str = "hub_ws_overloaded_closes_total";
/// Webhook events accepted after verification, by `result` (counter).
pub(crate) const EVENTS_IN: &str = "hub_events_in_total";
/// Events handed to this hub's browsers, once per event (counter).
pub(crate) const EVENTS_OUT: &str = "hub_events_out_total";
/// Event frames queued to sockets, once per event and socket (counter).
pub(crate) const DELIVERIES: &str = "hub_deliveries_total";
/// Webhook requests refused for their signature, by `reason` (counter).
pub(crate) const SIGNATURE_REJECTED: &str = "hub_webhook_signature_rejected_total";
/// Time from receiving a webhook to having published it (histogram, seconds).
pub(crate) const INGEST_LATENCY: &str = "hub_ingest_latency_seconds";

/// 1 while the last Redis command succeeded, 0 otherwise; only with `REDIS_URL` (gauge).
pub(crate) const REDIS_UP: &str = "hub_redis_up";
/// Failed Redis commands, by `op` (counter).
pub(crate) const REDIS_ERRORS: &str = "hub_redis_errors_total";
/// Time to sequence and store one event in Redis (histogram, seconds).
pub(crate) const PUBLISH_LATENCY: &str = "hub_redis_publish_seconds";
/// Events that left the Redis stream before this hub read them (counter).
pub(crate) const REPLAY_GAPS: &str = "hub_redis_stream_gaps_total";

static GLOBAL: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the installed recorder's histogram samples are folded into their
/// summaries ([`PrometheusHandle::run_upkeep`]).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The handles the webhook records into on every event.
pub(crate) struct IngestMetrics {
    /// [`EVENTS_IN`] `result="published"`.
    pub(crate) published: metrics::Counter,
    /// [`EVENTS_IN`] `result="duplicate"`.
    pub(crate) duplicate: metrics::Counter,
    /// [`EVENTS_IN`] `result="other_guild"`.
    pub(crate) other_guild: metrics::Counter,
    /// [`EVENTS_IN`] `result="invalid"`.
    pub(crate) invalid: metrics::Counter,
    /// [`EVENTS_IN`] `result="unavailable"`.
    pub(crate) unavailable: metrics::Counter,
    /// [`INGEST_LATENCY`].
    pub(crate) latency: metrics::Histogram,
    /// [`PUBLISH_LATENCY`] (the Redis broker's).
    pub(crate) publish_latency: metrics::Histogram,
}

/// The webhook's metric handles, registered with the process-wide recorder on
/// first use. A hub installs that recorder when it is built ([`handle`]), before
/// it serves a request, so the first webhook finds it in place.
pub(crate) fn ingest() -> &'static IngestMetrics {
    static HANDLES: LazyLock<IngestMetrics> = LazyLock::new(|| {
        let events_in = |result: &'static str| metrics::counter!(EVENTS_IN, "result" => result);
        IngestMetrics {
            published: events_in("published"),
            duplicate: events_in("duplicate"),
            other_guild: events_in("other_guild"),
            invalid: events_in("invalid"),
            unavailable: events_in("unavailable"),
            latency: metrics::histogram!(INGEST_LATENCY),
            publish_latency: metrics::histogram!(PUBLISH_LATENCY),
        }
    });
    &HANDLES
}

/// The handles the local stream records into on every event.
pub(crate) struct StreamMetrics {
    /// [`EVENTS_OUT`].
    pub(crate) events_out: metrics::Counter,
    /// [`DELIVERIES`] to subscribers without a socket (the writer shards count
    /// the sockets' once per pass).
    pub(crate) deliveries: metrics::Counter,
}

/// The local stream's metric handles, registered once like [`ingest`]'s: a
/// registry lookup per event was the largest single cost of publishing one.
pub(crate) fn stream() -> &'static StreamMetrics {
    static HANDLES: LazyLock<StreamMetrics> = LazyLock::new(|| StreamMetrics {
        events_out: metrics::counter!(EVENTS_OUT),
        deliveries: metrics::counter!(DELIVERIES),
    });
    &HANDLES
}

/// The handle to render: `given` (whose owner keeps it up, see [`keep_up`]), or the
/// process-wide one installed on first use.
pub(crate) fn handle(given: Option<PrometheusHandle>) -> PrometheusHandle {
    if let Some(handle) = given {
        return handle;
    }
    GLOBAL
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            keep_up(handle.clone());
            handle
        })
        .clone()
}

/// Folds `handle`'s histogram samples into their summaries every [`UPKEEP_EVERY`],
/// on a thread of its own for the life of the process. `build_recorder` leaves
/// that to its caller: without it every sample (one [`INGEST_LATENCY`] per webhook,
/// one [`PUBLISH_LATENCY`] per Redis publication) stays in memory until `/metrics`
/// is scraped, without bound when nobody scrapes it.
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no metrics upkeep: histograms grow until /metrics is scraped");
    }
}

fn describe() {
    metrics::describe_gauge!(SOCKETS, "Open authenticated browser WebSockets");
    metrics::describe_counter!(AUTH_OK, "Successful browser authentications");
    metrics::describe_counter!(AUTH_FAILED, "Failed browser authentications by reason");
    metrics::describe_counter!(OVERLOADED, "Sockets closed 1013 for falling behind");
    metrics::describe_counter!(EVENTS_IN, "Verified webhook events by result");
    metrics::describe_counter!(EVENTS_OUT, "Events published to browsers");
    metrics::describe_counter!(DELIVERIES, "Event frames queued to sockets");
    metrics::describe_counter!(SIGNATURE_REJECTED, "Webhooks refused by reason");
    metrics::describe_histogram!(INGEST_LATENCY, "Webhook receipt to publication");
    metrics::describe_gauge!(REDIS_UP, "1 while Redis answers, 0 while it does not");
    metrics::describe_counter!(REDIS_ERRORS, "Failed Redis commands by operation");
    metrics::describe_histogram!(PUBLISH_LATENCY, "Sequencing and storing one event in Redis");
    metrics::describe_counter!(
        REPLAY_GAPS,
        "Events trimmed from Redis before this hub read them"
    );
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<MetricsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_installed_recorder_is_kept_up() {
        let handle = handle(None);
        let threads = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread names itself once it runs.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !threads().iter().any(|name| name == "metrics-upkeep") {
            assert!(std::time::Instant::now() < deadline, "{:?}", threads());
            std::thread::sleep(Duration::from_millis(10));
        }
        // Upkeep folds samples into their summaries; none is lost.
        ingest().latency.record(0.25);
        handle.run_upkeep();
        assert!(
            handle.render().contains(INGEST_LATENCY),
            "{}",
            handle.render()
        );
    }
}
