//! Group commit (docs/worker.md "The data path"): dispatches that arrive
//! together are committed together, and "acknowledged means durable" still
//! holds: the stored session sequence never counts a dispatch whose events are
//! not durably in the outbox. Checked on the pair's Redis store, where the test
//! can watch every committed state while the worker writes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use coven_contract::Secret;
use coven_testkit::{FakeHub, RedisServer, metric_sum, simulator};
use coven_worker::WorkerSettings;
use support::RunningWorker;

/// How many voice changes arrive together.
const BURST: u64 = 60;

/// The stored session's sequence (0 without one) and the outbox's length, read
/// in one script, i.e. one consistent committed state.
async fn snapshot(redis: &mut redis::aio::MultiplexedConnection, guild: u64) -> (u64, u64) {
    let key = |name: &str| format!("coven:{{{guild}}}:worker:{name}");
    let (session, depth): (Option<String>, u64) =
        redis::Script::new("return {redis.call('GET', KEYS[1]), redis.call('XLEN', KEYS[2])}")
            .key(key("session"))
            .key(key("outbox"))
            .invoke_async(redis)
            .await
            .unwrap();
    let sequence = session.map_or(0, |json| {
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["sequence"].as_u64().unwrap()
    });
    (sequence, depth)
}

async fn pair_worker(sim: &coven_sim::Simulator, hub: &FakeHub, url: String) -> RunningWorker {
    let dir = tempfile::tempdir().unwrap();
    RunningWorker::start_with(
        sim,
        hub,
        dir.path(),
        move |settings: &mut WorkerSettings| {
            settings.redis_url = Some(Secret::new(url));
        },
    )
    .await
}

#[tokio::test]
async fn a_burst_takes_fewer_commits_and_the_session_never_runs_ahead_of_its_events() {
    let sim = simulator().await;
    let guild = sim.guild_id();
    let server = RedisServer::start();
    // The hub refuses: every committed event stays in the outbox, where the test sees it.
    let hub = FakeHub::start(Box::new(|_, _| StatusCode::SERVICE_UNAVAILABLE)).await;
    let worker = pair_worker(&sim, &hub, server.url()).await;
    worker.wait_for_health(200).await;
    // The first GUILD_CREATE seeds the view: one commit (metrics are the process's).
    coven_testkit::eventually("the seeding commit", async || {
        metric_sum(worker.health, "coven_worker_outbox_commits_total").await >= 1
    })
    .await;
    let commits_before = metric_sum(worker.health, "coven_worker_outbox_commits_total").await;
    worker.stop().await.unwrap();
    let mut redis = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (sequence_before, depth_before) = snapshot(&mut redis, guild).await;
    assert!(sequence_before > 0, "the stopped worker saved its session");

    // While the worker is down, users join and leave: on resume, the simulator
    // replays every one of these dispatches at once (then RESUMED).
    let handle = sim.handle();
    let seed = handle.seed();
    let users = &seed.member_user_ids[2..6];
    for i in 0..usize::try_from(BURST).unwrap() {
        let user = users[i % users.len()];
        if handle.voice_channel_of(user).is_some() {
            handle.user_leave(user).unwrap();
        } else {
            handle
                .user_join(
                    user,
                    seed.voice_channel_ids[i % seed.voice_channel_ids.len()],
                )
                .unwrap();
        }
    }

    // Every committed state while the worker catches up.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, mut redis) = (done.clone(), redis.clone());
        tokio::spawn(async move {
            let mut states = Vec::new();
            while !done.load(Ordering::Relaxed) {
                states.push(snapshot(&mut redis, guild).await);
            }
            states
        })
    };
    let worker = pair_worker(&sim, &hub, server.url()).await;
    coven_testkit::eventually("the burst in the outbox", async || {
        snapshot(&mut redis, guild).await.1 >= depth_before + BURST
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let mut states = watcher.await.unwrap();
    states.push(snapshot(&mut redis, guild).await);

    // One voice dispatch = one event: a stored sequence counting k of the burst's
    // dispatches needs their k events in the outbox (RESUMED, after the burst,
    // has no event).
    for &(sequence, depth) in &states {
        let counted = sequence.saturating_sub(sequence_before).min(BURST);
        let committed = depth - depth_before;
        assert!(
            counted <= committed,
            "the stored session counts {counted} dispatches of the burst, the outbox holds only {committed} of their events: {states:?}"
        );
    }
    assert_eq!(
        states.last().unwrap().1,
        depth_before + BURST,
        "no event twice"
    );
    let commits =
        metric_sum(worker.health, "coven_worker_outbox_commits_total").await - commits_before;
    assert!(
        (1..BURST).contains(&commits),
        "{BURST} events that arrived together took {commits} commits"
    );
    worker.stop().await.unwrap();
}
