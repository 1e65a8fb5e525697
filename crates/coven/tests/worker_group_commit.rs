//! `coven worker` as a real process: dispatches that arrive together are
//! committed together (group commit, docs/worker.md "The data path"), and what
//! was committed so survives `kill -9` — every event once, in order, with no
//! identify spent.

mod process;

use std::time::Duration;

use axum::http::StatusCode;
use coven_contract::Event;
use coven_testkit::{
    FakeHub, KillOnDrop, WAIT, free_port, metric_sum, simulator, summary, wait_healthy,
};
use process::worker_command;

/// How many voice changes the burst makes.
const BURST: usize = 60;

/// Waits until the worker on `port` has committed `events` events to its outbox.
async fn wait_committed(port: u16, events: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let committed =
            metric_sum(([127, 0, 0, 1], port).into(), "coven_worker_events_total").await;
        if committed >= events {
            assert_eq!(committed, events, "no event is committed twice");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {committed} of {events} events were committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, then waits for the clean exit (the session is saved).
async fn terminate(child: KillOnDrop) {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let child = child.into_inner();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap().status)
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_burst_is_committed_in_fewer_commits_than_events_and_survives_kill_9() {
    let sim = simulator().await;
    // The hub is down at first: every event stays in the outbox until after the kill.
    let down = FakeHub::start(Box::new(|_, _| StatusCode::SERVICE_UNAVAILABLE)).await;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = KillOnDrop::new(
        worker_command(&sim, &down, state.path(), port)
            .spawn()
            .unwrap(),
    );
    wait_healthy(([127, 0, 0, 1], port).into()).await;
    terminate(child).await;

    // While the worker is down, users join and leave: on resume, Discord (the
    // simulator) replays all of these at once, so they arrive together.
    let handle = sim.handle();
    let seed = handle.seed();
    let users = seed.member_user_ids[2..6].to_vec();
    let rooms = seed.voice_channel_ids.clone();
    let mut expected = Vec::new();
    for i in 0..BURST {
        let user = users[i % users.len()];
        if let Some(room) = handle.voice_channel_of(user) {
            handle.user_leave(user).unwrap();
            expected.push(("voice.left", room, user));
        } else {
            let room = rooms[i % rooms.len()];
            handle.user_join(user, room).unwrap();
            expected.push(("voice.joined", room, user));
        }
    }

    let child = KillOnDrop::new(
        worker_command(&sim, &down, state.path(), port)
            .spawn()
            .unwrap(),
    );
    wait_healthy(([127, 0, 0, 1], port).into()).await;
    wait_committed(port, BURST as u64).await;
    let commits = metric_sum(
        ([127, 0, 0, 1], port).into(),
        "coven_worker_outbox_commits_total",
    )
    .await;
    assert!(
        (1..BURST as u64).contains(&commits),
        "{BURST} events that arrived together took {commits} commits"
    );
    assert!(down.events().is_empty(), "the hub accepted nothing yet");
    let identifies = handle.counters().identifies;
    drop(child); // SIGKILL: no shutdown code runs.

    // Restarted onto a hub that accepts: the committed events, each once, in order.
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let child = KillOnDrop::new(
        worker_command(&sim, &hub, state.path(), port)
            .spawn()
            .unwrap(),
    );
    wait_healthy(([127, 0, 0, 1], port).into()).await;
    let events: Vec<Event> = hub.wait_for_events(BURST).await;
    assert_eq!(summary(&events), expected, "every event, once, in order");
    // Nothing was replayed twice: the session saved with the burst counted
    // exactly the dispatches whose events were committed.
    assert_eq!(
        metric_sum(([127, 0, 0, 1], port).into(), "coven_worker_events_total").await,
        0
    );
    assert_eq!(
        handle.counters().identifies,
        identifies,
        "resumed, no identify"
    );
    terminate(child).await;
}
