//! A real `coven hub` process without Redis, killed with SIGKILL and started
//! again on the same `STATE_DIR` while a browser is away (docs/spec.md §4, §6): the new
//! process's `seq` goes on above everything the old one handed out, the browser's
//! old `lastSeq` gets `resumed:false` (so it reloads the snapshot, never living
//! with a hole), and a room the API announced before the kill is not announced a
//! second time when the gateway's webhook for it arrives after the restart.

mod process;

use std::process::{Command, Stdio};
use std::time::Duration;

use coven_contract::signature::EVENT_ID_HEADER;
use coven_testkit::{
    KillOnDrop, SECRET, eventually, free_port, now_secs, sign_webhook, sim_login, simulator,
};
use process::{Ws, browser, next_json};
use serde_json::{Value, json};

/// `coven hub` on `port` with its state in `state`, running until dropped.
async fn start_hub(sim: &coven_sim::Simulator, state: &std::path::Path, port: u16) -> KillOnDrop {
    let child = Command::new(process::BIN)
        .arg("hub")
        .env_clear()
        .env("PRIMARY_GUILD_ID", sim.guild_id().to_string())
        .env("HUB_SECRET", SECRET)
        .env("DISCORD_BOT_TOKEN", sim.bot_token())
        .env("JWT_ISSUER", "http://coven-restart.test")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("STATE_DIR", state)
        .env("DISCORD_API_URL", sim.api_url())
        .env("DISCORD_GATEWAY_URL", sim.gateway_url())
        .env("DISCORD_CLIENT_ID", sim.oauth_client_id())
        .env("DISCORD_CLIENT_SECRET", "sim-client-secret")
        .env(
            "OAUTH_REDIRECT_URI",
            format!("http://127.0.0.1:{port}/auth/callback"),
        )
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hub = KillOnDrop::new(child);
    let url = format!("http://127.0.0.1:{port}/health");
    eventually(&format!("{url} to be ready"), async || {
        let response = reqwest::get(&url).await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    hub
}

/// Posts one signed webhook event until the hub acknowledges it (like the
/// worker's retries).
async fn deliver(port: u16, id: &str, event: &Value) {
    let body = event.to_string();
    eventually(&format!("event {id} to be accepted"), async || {
        let request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/internal/events"))
            .header(EVENT_ID_HEADER, id);
        let response = sign_webhook(request, SECRET, now_secs(), body.as_bytes())
            .body(body.clone())
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

/// The next `count` events as `(seq, event name)`.
async fn events(ws: &mut Ws, count: usize) -> Vec<(u64, String)> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let frame = next_json(ws).await;
        assert_eq!(frame["type"], "event", "{frame}");
        let name = frame["event"].as_str().unwrap().to_owned();
        out.push((frame["seq"].as_u64().unwrap(), name));
    }
    out
}

fn seqs(events: &[(u64, String)]) -> Vec<u64> {
    events.iter().map(|(seq, _)| *seq).collect()
}

fn joined(guild: u64, user: u64) -> Value {
    json!({"event": "voice.joined", "payload": {
        "guildId": guild.to_string(), "channelId": "77", "userId": user.to_string()}})
}

#[tokio::test]
async fn a_hub_killed_and_restarted_never_reuses_a_seq_and_refuses_old_resumes() {
    let sim = simulator().await;
    let guild = sim.guild_id();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = start_hub(&sim, state.path(), port).await;
    let token = sim_login(&format!("http://127.0.0.1:{port}")).await;

    // The API creates (and announces) a room; a browser sees three events, then
    // goes away and misses two more.
    let created: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/create-room"))
        .bearer_auth(&token)
        .json(&json!({"name": "Restart Table"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel = created["channelId"].as_str().unwrap().to_owned();
    let (mut away, _) = browser(port, &token, None).await;
    for user in 1..=3 {
        deliver(port, &format!("a{user}"), &joined(guild, user)).await;
    }
    let seen = seqs(&events(&mut away, 3).await);
    let last_seq = seen[2];
    drop(away);
    for user in 4..=5 {
        deliver(port, &format!("a{user}"), &joined(guild, user)).await;
    }
    let old_head = last_seq + 2;

    // kill -9, and the same hub again on the same state dir.
    drop(hub);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let _hub = start_hub(&sim, state.path(), port).await;
    let (mut watching, _) = browser(port, &token, None).await;
    // The gateway's webhook for the room the API announced: not announced again.
    let room = json!({"event": "room.created", "payload": {
        "channelId": channel, "name": "Restart Table", "guildId": guild.to_string(),
        "parentId": null, "userLimit": 0}});
    deliver(port, "gw-room", &room).await;
    for user in 6..=10 {
        deliver(port, &format!("b{user}"), &joined(guild, user)).await;
    }
    let new = events(&mut watching, 5).await;
    assert!(
        new.iter().all(|(_, name)| name == "voice.joined"),
        "exactly one room.created per channel: {new:?}"
    );
    let new = seqs(&new);
    assert!(new[0] > old_head, "{new:?} after {old_head}");
    assert!(new.windows(2).all(|w| w[1] == w[0] + 1), "{new:?}");

    // The browser comes back with its old lastSeq: not resumed, so it reloads the
    // snapshot and resumes from the snapshot's seq without a hole.
    let (_ws, ack) = browser(port, &token, Some(last_seq)).await;
    assert_eq!(ack["resumed"], false, "{ack}");
    let snapshot: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/rooms"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = snapshot["seq"].as_u64().unwrap();
    assert_eq!(at, new[4], "{snapshot}");
    let (mut back, ack) = browser(port, &token, Some(at)).await;
    assert_eq!(ack["resumed"], true, "{ack}");
    deliver(port, "b11", &joined(guild, 11)).await;
    assert_eq!(
        events(&mut back, 1).await,
        vec![(at + 1, "voice.joined".to_owned())]
    );
    // The old head and a lastSeq ahead of the stream are refused as well.
    for last in [old_head, at + 100] {
        let (_ws, ack) = browser(port, &token, Some(last)).await;
        assert_eq!(ack["resumed"], false, "{last}: {ack}");
    }
}
