//! `coven hub` and `coven run` as real processes against the simulator.

mod process;

use std::process::{Command, Stdio};

use process::hub_command;
use std::time::Duration;

use coven_contract::signature::EVENT_ID_HEADER;
use coven_testkit::{KillOnDrop, SECRET, WAIT, free_port, now_secs, sign_webhook, simulator};

/// Polls `url` until `ready` accepts the JSON body.
async fn wait_json(url: &str, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(response) = reqwest::get(url).await
            && let Ok(body) = response.json::<serde_json::Value>().await
            && ready(&body)
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn terminate(child: KillOnDrop) -> (std::process::ExitStatus, String) {
    let child = child.into_inner();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn coven_hub_accepts_a_signed_webhook_and_stops_cleanly() {
    let sim = simulator().await;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = KillOnDrop::new(
        hub_command(&sim, state.path(), port)
            .arg("hub")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let health = wait_json(&format!("{base}/health"), |h| h["status"] == "ok").await;
    // No event yet: the head is the stream's clock-derived base.
    let head = health["replay"]["headSeq"].as_u64().unwrap();

    let body = format!(
        r#"{{"event":"voice.joined","payload":{{"guildId":"{}","channelId":"2","userId":"3"}}}}"#,
        sim.guild_id()
    );
    let request = reqwest::Client::new()
        .post(format!("{base}/api/internal/events"))
        .header(EVENT_ID_HEADER, "process-test-1");
    let response = sign_webhook(request, SECRET, now_secs(), body.as_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"ok":true}"#);
    wait_json(&format!("{base}/health"), |h| {
        h["replay"]["headSeq"] == head + 1
    })
    .await;

    let (status, stderr) = tokio::task::spawn_blocking(move || terminate(hub))
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(SECRET) && !stderr.contains(sim.bot_token()),
        "{stderr}"
    );
}

#[tokio::test]
async fn coven_run_carries_gateway_events_to_its_own_hub() {
    let sim = simulator().await;
    let state = tempfile::tempdir().unwrap();
    let (port, health_port) = (free_port(), free_port());
    let run = KillOnDrop::new(
        hub_command(&sim, state.path(), port)
            .arg("run")
            .stderr(Stdio::piped())
            .env("HEALTH_CHECK_PORT", health_port.to_string())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_json(&format!("http://127.0.0.1:{health_port}/health"), |h| {
        h["status"] == "ok"
    })
    .await;
    let health = wait_json(&format!("{base}/health"), |h| h["status"] == "ok").await;
    let head = health["replay"]["headSeq"].as_u64().unwrap();

    let handle = sim.handle();
    let seed = handle.seed();
    handle
        .user_join(seed.member_user_ids[4], seed.voice_channel_ids[1])
        .unwrap();
    handle.user_leave(seed.member_user_ids[0]).unwrap();
    // Both events crossed the signed loopback webhook into the hub's replay ring.
    wait_json(&format!("{base}/health"), |h| {
        h["replay"]["headSeq"] == head + 2
    })
    .await;
    let worker = wait_json(&format!("http://127.0.0.1:{health_port}/health"), |h| {
        h["outboxDepth"] == 0
    })
    .await;
    assert_eq!(worker["deadLetters"], 0);

    let (status, stderr) = tokio::task::spawn_blocking(move || terminate(run))
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(SECRET) && !stderr.contains(sim.bot_token()),
        "{stderr}"
    );
}
