//! A real `coven hub` whose `WORKER_ENDPOINT` lists both workers of an
//! active/standby pair (`REDIS_URL`), with the simulator as Discord: the bot's
//! join goes through whichever worker is active (the standby's 503 is skipped),
//! and after the active is killed with SIGKILL and the standby has taken over,
//! the room snapshot and the bot's commands reach the new active without any
//! change to the hub (a refused connection moves on to the next endpoint).

mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use coven_testkit::{
    FakeHub, KillOnDrop, RedisServer, WAIT, eventually, free_port, sim_login, simulator,
    wait_for_role,
};
use process::{login_hub_command, worker_command};
use serde_json::Value;

fn health(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `coven hub` on `port`, its worker endpoints `workers`, Discord login through
/// the simulator.
fn hub_process(sim: &coven_sim::Simulator, state: &Path, port: u16, workers: &str) -> KillOnDrop {
    let redirect_uri = format!("http://127.0.0.1:{port}/auth/callback");
    let child = login_hub_command(sim, state, port, &redirect_uri)
        .arg("hub")
        .env("WORKER_ENDPOINT", workers)
        .spawn()
        .unwrap();
    KillOnDrop::new(child)
}

/// One worker of the pair, delivering to the hub at `hub_endpoint`.
fn pair_worker(
    sim: &coven_sim::Simulator,
    recorder: &FakeHub,
    redis: &RedisServer,
    hub_endpoint: &str,
    state: &Path,
    port: u16,
) -> KillOnDrop {
    KillOnDrop::new(
        worker_command(sim, recorder, state, port)
            .env("HUB_ENDPOINT", hub_endpoint)
            .env("REDIS_URL", redis.url())
            .spawn()
            .unwrap(),
    )
}

/// `POST /api/rooms/{room}/bot` until it answers 200; a 503 (a worker whose
/// session is not ready yet) is retried, anything else fails the test.
async fn bot_joins(base: &str, token: &str, room: u64) {
    let client = reqwest::Client::new();
    let mut last = (0, Value::Null);
    let joined = tokio::time::timeout(WAIT, async {
        loop {
            let response = client
                .post(format!("{base}/api/rooms/{room}/bot"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                200 => return body,
                503 => last = (status, body),
                _ => panic!("join answered {status}: {body}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let body = joined.unwrap_or_else(|_| panic!("the bot never joined; last answer {last:?}"));
    assert_eq!(body, serde_json::json!({"ok": true}));
}

/// `GET /api/rooms`: 200 with the room list.
async fn rooms(base: &str, token: &str) -> Vec<u64> {
    let response = reqwest::Client::new()
        .get(format!("{base}/api/rooms"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["channelId"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn the_hub_follows_the_active_worker_of_the_pair_through_a_kill_9() {
    let sim = simulator().await;
    let redis = RedisServer::start();
    let recorder = FakeHub::start(FakeHub::accepting()).await;
    let (hub_state, state_a, state_b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (hub_port, port_a, port_b) = (free_port(), free_port(), free_port());
    let base = format!("http://127.0.0.1:{hub_port}");
    let hub_endpoint = format!("{base}/api/internal/events");
    let _hub = hub_process(
        &sim,
        hub_state.path(),
        hub_port,
        &format!("http://127.0.0.1:{port_a},http://127.0.0.1:{port_b}/"),
    );
    eventually("the hub to be ready", async || {
        let body: Value = reqwest::get(format!("{base}/health"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["status"] == "ok").then_some(())
    })
    .await;

    // B is started first and becomes the active: the hub's first endpoint (A)
    // is the standby.
    let worker_b = pair_worker(
        &sim,
        &recorder,
        &redis,
        &hub_endpoint,
        state_b.path(),
        port_b,
    );
    wait_for_role(health(port_b), "active").await;
    let worker_a = pair_worker(
        &sim,
        &recorder,
        &redis,
        &hub_endpoint,
        state_a.path(),
        port_a,
    );
    wait_for_role(health(port_a), "standby").await;

    let token = sim_login(&base).await;
    let seed = sim.handle().seed();
    let room = seed.voice_channel_ids[0];
    let second_room = seed.voice_channel_ids[1];

    // A answers the command 503 "standby"; the hub moves on to B.
    bot_joins(&base, &token, room).await;
    // The standby serves the snapshot from Redis.
    let listed = rooms(&base, &token).await;
    assert!(listed.contains(&room), "{listed:?}");

    // SIGKILL of the active: A takes the lease once it expires.
    drop(worker_b);
    wait_for_role(health(port_a), "active").await;
    let listed = rooms(&base, &token).await;
    assert!(listed.contains(&room), "{listed:?}");
    // The hub remembered B for commands: B refuses connections, A takes it. The
    // bot rejoins the room it was in: Discord still has it there (the session was
    // resumed), so A's new voice client must leave first to get a voice server.
    bot_joins(&base, &token, room).await;

    // B comes back as the standby; then A is killed and B takes over: now both
    // the snapshot (which remembered A) and the commands move past a dead A.
    let _worker_b_again = pair_worker(
        &sim,
        &recorder,
        &redis,
        &hub_endpoint,
        state_b.path(),
        port_b,
    );
    wait_for_role(health(port_b), "standby").await;
    drop(worker_a);
    wait_for_role(health(port_b), "active").await;
    let listed = rooms(&base, &token).await;
    assert!(listed.contains(&room), "{listed:?}");
    bot_joins(&base, &token, second_room).await;
}
