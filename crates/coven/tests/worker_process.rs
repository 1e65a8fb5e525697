//! `coven worker` as a real process: configuration errors, a fatal token, and
//! kill -9 while events flow followed by a restart on the same `STATE_DIR`.

mod process;

use process::{BIN, worker_command};

use std::process::{Child, Command};
use std::time::Duration;

use coven_contract::Event;
use coven_testkit::{FakeHub, KillOnDrop, free_port, simulator, wait_healthy};

fn output_of(child: Child) -> (std::process::ExitStatus, String) {
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_missing_variable_is_named_in_one_line_and_secrets_never_printed() {
    let output = Command::new(BIN)
        .arg("worker")
        .env_clear()
        .env("HUB_SECRET", "hub-secret-never-printed")
        .env("DISCORD_BOT_TOKEN", "bot-token-never-printed")
        .env("HUB_ENDPOINT", "http://127.0.0.1:9/api/internal/events")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stderr.trim(),
        "coven: configuration error: PRIMARY_GUILD_ID is not set"
    );
    for secret in ["hub-secret-never-printed", "bot-token-never-printed"] {
        assert!(!stderr.contains(secret) && !stdout.contains(secret));
    }

    let output = Command::new(BIN)
        .arg("worker")
        .env_clear()
        .env("PRIMARY_GUILD_ID", "0123")
        .env("HUB_SECRET", "hub-secret-never-printed")
        .env("DISCORD_BOT_TOKEN", "bot-token-never-printed")
        .env("HUB_ENDPOINT", "http://127.0.0.1:9/api/internal/events")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("PRIMARY_GUILD_ID is invalid"), "{stderr}");
}

#[tokio::test]
async fn a_rejected_token_exits_non_zero_with_a_clear_message() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let state = tempfile::tempdir().unwrap();
    let child = worker_command(&sim, &hub, state.path(), free_port())
        .env("DISCORD_BOT_TOKEN", "a-token-discord-rejects")
        .spawn()
        .unwrap();
    let (status, stderr) = tokio::task::spawn_blocking(move || output_of(child))
        .await
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("Discord rejected the bot token"),
        "{stderr}"
    );
    assert!(stderr.contains("4004"), "{stderr}");
    assert!(!stderr.contains("a-token-discord-rejects"), "{stderr}");
}

#[tokio::test]
async fn kill_9_while_events_flow_loses_nothing_and_spends_no_identify() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = KillOnDrop::new(
        worker_command(&sim, &hub, state.path(), port)
            .spawn()
            .unwrap(),
    );
    wait_healthy(([127, 0, 0, 1], port).into()).await;

    // Users join and leave rooms in a steady stream; the worker dies mid-stream.
    let handle = sim.handle();
    let seed = handle.seed();
    let users = seed.member_user_ids[2..6].to_vec();
    let rooms = seed.voice_channel_ids.clone();
    let total = 80;
    let producer = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut expected = Vec::new();
            for i in 0..total {
                let user = users[i % users.len()];
                if handle.voice_channel_of(user).is_some() {
                    let room = handle.voice_channel_of(user).unwrap();
                    handle.user_leave(user).unwrap();
                    expected.push(("voice.left", room, user));
                } else {
                    let room = rooms[i % rooms.len()];
                    handle.user_join(user, room).unwrap();
                    expected.push(("voice.joined", room, user));
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            expected
        })
    };
    hub.wait_for_events(15).await;
    drop(child); // SIGKILL: no shutdown code runs.
    let delivered_before_kill = hub.events().len();
    assert!(
        delivered_before_kill < total,
        "the kill must land mid-stream"
    );

    let identifies = handle.counters().identifies;
    let child = KillOnDrop::new(
        worker_command(&sim, &hub, state.path(), port)
            .spawn()
            .unwrap(),
    );
    let expected = producer.await.unwrap();
    let events: Vec<Event> = hub.wait_for_events(total).await;
    let got: Vec<(&str, u64, u64)> = coven_testkit::summary(&events);
    assert_eq!(got, expected, "every event, once, in order");
    let counters = handle.counters();
    assert_eq!(
        counters.identifies, identifies,
        "the restart resumed instead of identifying"
    );
    assert!(counters.resumes >= 1);
    assert!(hub.attempts() >= total);

    // SIGTERM: a clean, resumable stop with exit status 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let child = child.into_inner();
    let (status, stderr) = tokio::task::spawn_blocking(move || output_of(child))
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
}

/// Whether something accepts TCP connections at `ip:port`.
fn listening(ip: [u8; 4], port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((ip, port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

#[tokio::test]
async fn health_check_host_chooses_the_listeners_address() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let state = tempfile::tempdir().unwrap();

    // Bound to 127.0.0.1: reachable there, and not on another loopback address
    // (the default, every interface, answers on both).
    let port = free_port();
    let child = KillOnDrop::new(
        worker_command(&sim, &hub, state.path(), port)
            .env("HEALTH_CHECK_HOST", "127.0.0.1")
            .spawn()
            .unwrap(),
    );
    wait_healthy(([127, 0, 0, 1], port).into()).await;
    assert!(listening([127, 0, 0, 1], port));
    assert!(
        !listening([127, 0, 0, 2], port),
        "HEALTH_CHECK_HOST=127.0.0.1 must not listen on every interface"
    );
    drop(child);

    // Unset: every interface, as before.
    let port = free_port();
    let _child = KillOnDrop::new(
        worker_command(&sim, &hub, state.path(), port)
            .spawn()
            .unwrap(),
    );
    wait_healthy(([127, 0, 0, 1], port).into()).await;
    assert!(listening([127, 0, 0, 2], port), "the default binds 0.0.0.0");

    // Not an IP address: one line naming the variable, exit non-zero.
    let output = worker_command(&sim, &hub, state.path(), free_port())
        .env("HEALTH_CHECK_HOST", "not-an-address")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("configuration error: HEALTH_CHECK_HOST is invalid"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-an-address"), "{stderr}");
}
