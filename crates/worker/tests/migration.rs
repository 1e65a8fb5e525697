//! Switching a single worker to `REDIS_URL`: its state file moves into Redis
//! once, so the pair resumes the session and delivers what was still queued.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use coven_contract::{Event, Secret, Snowflake};
use coven_testkit::RedisServer;
use coven_testkit::{FakeHub, WAIT, health_of, signed, simulator, summary, wait_for_role};
use coven_worker::LocalStore;
use coven_worker::RedisStore;
use coven_worker::WorkerSettings;
use support::RunningWorker;

async fn pair_worker(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    server: &RedisServer,
    dir: &Path,
) -> RunningWorker {
    let url = server.url();
    RunningWorker::start_with(sim, hub, dir, move |settings: &mut WorkerSettings| {
        settings.redis_url = Some(Secret::new(url));
        settings.lease.poll_every = Duration::from_millis(100);
    })
    .await
}

/// Polls `/health` until the worker reports `depth` queued events and `dead`
/// dead letters.
async fn wait_for_depth(worker: &RunningWorker, depth: u64, dead: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((_, body)) = health_of(worker.health).await
            && body["outboxDepth"] == depth
            && body["deadLetters"] == dead
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never reached {depth}: {:?}",
            health_of(worker.health).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The renamed state files in `dir`.
fn migrated_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("worker.redb.migrated-")
        })
        .collect()
}

#[tokio::test]
async fn a_single_worker_switched_to_redis_resumes_and_delivers_its_queued_events_once() {
    let sim = simulator().await;
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("worker.redb");
    let handle = sim.handle();
    let seed = handle.seed();
    let (carol, dave) = (seed.member_user_ids[2], seed.member_user_ids[3]);
    let room = seed.voice_channel_ids[1];

    // Alone, with a hub that refuses Carol's join for good (a dead letter) and
    // everything else for now: the other events stay queued.
    let refusing = FakeHub::start(Box::new(move |event, _| match event {
        Event::VoiceJoined(joined) if joined.user_id.get() == carol => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }))
    .await;
    let single = RunningWorker::start(&sim, &refusing, dir.path()).await;
    single.wait_for_health(200).await;
    handle.user_join(carol, room).unwrap();
    handle.user_join(dave, room).unwrap();
    handle.user_leave(carol).unwrap();
    wait_for_depth(&single, 2, 1).await;
    single.stop().await.unwrap();
    assert!(refusing.events().is_empty());
    let (first_id, dead) = {
        let local = LocalStore::open(&state_file, 100).unwrap();
        let head = local.peek().unwrap().expect("queued");
        (head.event_id, local.dead_letters().unwrap())
    };
    let before = handle.counters();

    // Same STATE_DIR, now with REDIS_URL, and the hub accepts again: the worker
    // resumes the stored session and delivers the queued events, in order,
    // under their original ids; the dead letter moves to Redis too.
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let pair = pair_worker(&sim, &hub, &server, dir.path()).await;
    wait_for_role(pair.health, "active").await;
    handle
        .wait_for(|c| c.resumes > before.resumes, WAIT)
        .await
        .expect("the pair resumed the single worker's session");
    let events = hub.wait_for_events(2).await;
    assert_eq!(
        summary(&events),
        [("voice.joined", room, dave), ("voice.left", room, carol)]
    );
    assert_eq!(hub.accepted()[0].0, first_id, "the events keep their ids");
    let redis = RedisStore::open(
        &Secret::new(server.url()),
        Snowflake::new(sim.guild_id()).unwrap(),
        100,
        WAIT,
    )
    .unwrap();
    assert_eq!(redis.dead_letters().await.unwrap(), dead);
    assert_eq!(dead.len(), 1);
    assert!(!state_file.exists(), "the file was renamed");
    assert_eq!(migrated_files(dir.path()).len(), 1);

    // The voice view came along, and the session goes on.
    let view: serde_json::Value = signed(reqwest::Method::GET, pair.health, "/voice-view", b"")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["members"][dave.to_string()]["channelId"],
        room.to_string(),
        "{view}"
    );
    handle.user_leave(dave).unwrap();
    hub.wait_for_events(3).await;
    pair.stop().await.unwrap();

    // Put the file back, as if the rename had been lost: Redis holds the pair's
    // state now, so the next start leaves the file alone and imports nothing.
    std::fs::copy(&migrated_files(dir.path())[0], &state_file).unwrap();
    let delivered = hub.accepted().len();
    let again = pair_worker(&sim, &hub, &server, dir.path()).await;
    wait_for_role(again.health, "active").await;
    handle.user_join(carol, room).unwrap();
    let events = hub.wait_for_events(4).await;
    assert_eq!(summary(&events)[3], ("voice.joined", room, carol));
    assert_eq!(
        hub.accepted().len(),
        delivered + 1,
        "nothing delivered twice"
    );
    assert!(state_file.exists(), "left alone");
    assert_eq!(migrated_files(dir.path()).len(), 1);
    assert_eq!(redis.dead_letters().await.unwrap(), dead);
    assert_eq!(
        handle.counters().identifies,
        before.identifies,
        "no new IDENTIFY, ever"
    );
    again.stop().await.unwrap();
}
