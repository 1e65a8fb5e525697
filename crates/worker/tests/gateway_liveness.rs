//! The worker when Discord misbehaves for a while (docs/spec.md §8, docs/worker.md
//! "Reconnects"): `/health` says 503 as soon as the session is not live, even while
//! every connect fails; and a gateway that closes each connection right after HELLO
//! gets a handful of attempts, paced by a capped, jittered backoff, not a storm; the
//! worker recovers once the gateway behaves.

mod support;

use std::time::{Duration, Instant};

use coven_sim::Fault;
use coven_testkit::{FakeHub, WAIT, simulator};
use coven_worker::ReconnectPacing;
use support::RunningWorker;

/// Polls `/health` until it answers `status`, for at most `within`.
async fn health_within(worker: &RunningWorker, status: u16, within: Duration) -> serde_json::Value {
    tokio::time::timeout(within, worker.wait_for_health(status))
        .await
        .unwrap_or_else(|_| panic!("/health did not answer {status} within {within:?}"))
}

async fn metrics(worker: &RunningWorker) -> String {
    reqwest::get(format!("http://{}/metrics", worker.health))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of an unlabelled counter in Prometheus text.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
}

#[tokio::test]
async fn health_turns_503_while_every_connect_is_refused_and_200_after() {
    let sim = simulator().await;
    let handle = sim.handle();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    let health = worker.wait_for_health(200).await;
    assert_eq!(health["state"], "active");

    // Discord becomes unreachable: the connection goes without a close frame and
    // every reconnect is refused, so twilight yields only connect errors.
    assert_eq!(handle.inject(&Fault::Unreachable), 1);
    let health = health_within(&worker, 503, Duration::from_secs(3)).await;
    assert_eq!(health["status"], "unavailable", "{health}");
    assert_eq!(health["state"], "disconnected", "{health}");
    // It stays 503 while the connects keep failing.
    let client = reqwest::Client::new();
    let url = format!("http://{}/health", worker.health);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = client.get(&url).send().await.unwrap().status();
        assert_eq!(status, 503);
    }

    let sessions = handle.counters().identifies + handle.counters().resumes;
    handle.inject(&Fault::Reachable);
    let health = worker.wait_for_health(200).await;
    assert_eq!(health["state"], "active", "{health}");
    let counters = handle.counters();
    assert!(
        counters.identifies + counters.resumes > sessions,
        "{counters:?}"
    );
    let metrics = metrics(&worker).await;
    assert!(
        counter(&metrics, "coven_worker_reconnects_total") >= 2.0,
        "{metrics}"
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_gateway_closing_after_hello_gets_a_handful_of_attempts_then_the_worker_recovers() {
    let sim = simulator().await;
    let handle = sim.handle();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    // The production pacing (the support module makes it fast for other tests).
    let worker = RunningWorker::start_with(&sim, &hub, dir.path(), |settings| {
        settings.gateway.reconnect = ReconnectPacing::default();
    })
    .await;
    worker.wait_for_health(200).await;

    let before = handle.counters();
    let start = Instant::now();
    assert_eq!(handle.inject(&Fault::CloseAfterHello { code: 4000 }), 1);
    // With 1 s doubling, jittered to 50–100 %, and the first reconnect immediate at
    // best: attempts at ≥ 0, 0.5, 1.5, 3.5, 7.5 s. Without pacing, thousands.
    handle
        .wait_for(
            |c| c.connections >= before.connections + 4,
            Duration::from_secs(30),
        )
        .await
        .expect("four attempts");
    let four = start.elapsed();
    assert!(
        four >= Duration::from_millis(3_400),
        "4 attempts in {four:?}"
    );
    assert_eq!(handle.counters().connections, before.connections + 4);
    let health = worker.wait_for_health(503).await;
    assert_ne!(health["state"], "active", "{health}");

    // The gateway behaves again: the next attempt, still paced, starts a session.
    handle.inject(&Fault::Reachable);
    let health = health_within(&worker, 200, Duration::from_secs(20)).await;
    assert_eq!(health["state"], "active", "{health}");
    let five = start.elapsed();
    let counters = handle.counters();
    assert_eq!(
        counters.connections,
        before.connections + 5,
        "five attempts in {five:?}: {counters:?}"
    );
    assert!(
        five >= Duration::from_millis(7_400),
        "5 attempts in {five:?}"
    );
    assert!(
        counters.identifies + counters.resumes > before.identifies + before.resumes,
        "{counters:?}"
    );
    let metrics = metrics(&worker).await;
    assert!(
        counter(&metrics, "coven_worker_reconnects_total") >= 5.0,
        "{metrics}"
    );

    // Live again: nothing was lost on the way.
    let seed = handle.seed();
    handle
        .user_join(seed.member_user_ids[3], seed.voice_channel_ids[1])
        .unwrap();
    hub.wait_for_events(1).await;
    tokio::time::timeout(WAIT, worker.stop())
        .await
        .unwrap()
        .unwrap();
}
