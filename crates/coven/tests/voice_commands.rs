//! The bot's voice command path through a real `coven worker` process: signed
//! commands on the health port make the bot join a room of the simulator's voice
//! server, a simulated user's speech becomes `voice.speaking` events at the hub,
//! a cue is heard (decrypted) by a simulated listener, and bad commands are refused.

mod process;

use process::worker_command;

use std::time::Duration;

use coven_contract::{Event, Secret};
use coven_testkit::{FakeHub, KillOnDrop, SECRET, WAIT, free_port, signed_with, simulator};

/// Posts a command signed with `secret`; returns the status (0 when the worker is
/// not listening yet) and the JSON body.
async fn command(
    port: u16,
    path: &str,
    body: &serde_json::Value,
    secret: &str,
) -> (u16, serde_json::Value) {
    let body = serde_json::to_vec(body).unwrap();
    let worker = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let path = format!("/commands/{path}");
    let response = signed_with(reqwest::Method::POST, worker, &path, secret, &body)
        .send()
        .await;
    let Ok(response) = response else {
        return (0, serde_json::Value::Null);
    };
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

fn speaking(events: &[Event], user: u64) -> Vec<bool> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::VoiceSpeaking(p) if p.user_id.get() == user => Some(p.speaking),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_bot_joins_hears_speech_plays_a_cue_and_leaves() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let _worker = KillOnDrop::new(
        worker_command(&sim, &hub, state.path(), port)
            .spawn()
            .unwrap(),
    );
    let seed = sim.handle().seed();
    let (room, other_room, alice) = (
        seed.voice_channel_ids[0],
        seed.voice_channel_ids[1],
        seed.member_user_ids[0],
    );
    let join = serde_json::json!({"channelId": room.to_string()});

    // Until the session is READY the bot has no voice client: 503, then 200.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = command(port, "join", &join, SECRET).await;
        if status == 200 {
            assert_eq!(body, serde_json::json!({"ok": true}));
            break;
        }
        assert!(
            status == 503 || status == 0,
            "join answered {status}: {body}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bot never joined"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Alice (in the room since the seed) speaks: true then false reach the hub.
    assert!(
        sim.handle()
            .voice_user_speak(alice, Duration::from_millis(300))
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while speaking(&hub.events(), alice) != [true, false] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "speaking events: {:?}",
            speaking(&hub.events(), alice)
        );
        hub.wait_for_events(hub.events().len() + 1).await;
    }

    // A cue is heard by Alice (decrypted by the simulated listener).
    let cue = serde_json::json!({"channelId": room.to_string(), "cue": "turn_chime"});
    assert_eq!(command(port, "cue", &cue, SECRET).await.0, 200);
    sim.handle()
        .voice_wait_for(
            |s| s.received.get(&alice).is_some_and(|r| r.audio_frames > 0),
            WAIT,
        )
        .await
        .expect("alice heard the cue");

    // Refusals: unsigned, wrong secret, unknown cue, a room the bot is not in.
    let unsigned = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/commands/join"))
        .json(&join)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(command(port, "join", &join, "not-the-secret").await.0, 403);
    let (status, body) = command(
        port,
        "cue",
        &serde_json::json!({"channelId": room.to_string(), "cue": "airhorn"}),
        SECRET,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("turn_chime"),
        "{body}"
    );
    let (status, body) = command(
        port,
        "leave",
        &serde_json::json!({"channelId": other_room.to_string()}),
        SECRET,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("VALIDATION_FAILED")),
        "{body}"
    );
    let (status, _) = command(
        port,
        "join",
        &serde_json::json!({"channelId": "not-a-snowflake"}),
        SECRET,
    )
    .await;
    assert_eq!(status, 400);

    // Leaving frees the connection.
    assert_eq!(command(port, "leave", &join, SECRET).await.0, 200);
    assert_eq!(command(port, "cue", &cue, SECRET).await.0, 409);
}

/// The whole chain of docs/spec.md §4 `voice.speaking` and §7 bot routes: a browser asks
/// the hub for the bot, the hub forwards the signed command to the worker, the bot
/// joins through the simulator's voice server, a user speaks, and the browser's
/// socket receives `voice.speaking` true then false through outbox → webhook → hub.
#[tokio::test]
async fn speaking_reaches_a_browser_socket_through_the_hub() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let sim = simulator().await;
    let state = tempfile::tempdir().unwrap();
    let worker_port = free_port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let guild = coven_contract::Snowflake::new(sim.guild_id()).unwrap();
    let mut settings = coven_hub::HubSettings::new(guild, vec![Secret::new(SECRET)], base.clone());
    settings.worker_endpoints = vec![format!("http://127.0.0.1:{worker_port}").parse().unwrap()];
    let rest = coven_discord::DiscordRestClient::new(coven_discord::RestSettings {
        api_url: sim.api_url().parse().unwrap(),
        bot_token: Secret::new(sim.bot_token()),
        max_retries: 1,
    })
    .unwrap();
    let hub = coven_hub::Hub::builder(
        settings,
        std::sync::Arc::new(coven_hub::DiscordRooms::new(rest)),
    )
    .build()
    .unwrap();
    let token = hub
        .issuer()
        .unwrap()
        // The guild owner: may command the bot in any room (docs/spec.md §7.1).
        .issue(&coven_hub::TokenSubject {
            user_id: sim.handle().owner_id().to_string(),
            name: "tester".into(),
            avatar_url: None,
        })
        .unwrap();
    tokio::spawn(hub.serve(listener, std::future::pending()));

    // The worker delivers to this hub.
    let recorder = FakeHub::start(FakeHub::accepting()).await;
    let hub_endpoint = format!("{base}/api/internal/events");
    let _worker = KillOnDrop::new(
        worker_command(&sim, &recorder, state.path(), worker_port)
            .env("HUB_ENDPOINT", hub_endpoint)
            .spawn()
            .unwrap(),
    );

    let ws_url = format!("{}/api/ws", base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    socket
        .send(Message::text(
            serde_json::json!({"type": "auth", "token": token}).to_string(),
        ))
        .await
        .unwrap();

    let seed = sim.handle().seed();
    let (room, alice) = (seed.voice_channel_ids[0], seed.member_user_ids[0]);
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = client
            .post(format!("{base}/api/rooms/{room}/bot"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        // 503 until the worker's session is ready.
        assert_eq!(response.status(), 503, "{}", response.text().await.unwrap());
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bot never joined"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sim.handle()
            .voice_user_speak(alice, Duration::from_millis(300))
    );

    let mut heard = Vec::new();
    tokio::time::timeout(WAIT, async {
        while heard != [true, false] {
            let Some(Ok(Message::Text(text))) = socket.next().await else {
                panic!("the socket closed");
            };
            let message: serde_json::Value = serde_json::from_str(&text).unwrap();
            if message["event"] == "voice.speaking"
                && message["payload"]["userId"].as_str() == Some(alice.to_string().as_str())
            {
                assert_eq!(message["payload"]["channelId"], room.to_string());
                heard.push(message["payload"]["speaking"].as_bool().unwrap());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("voice.speaking never reached the browser: {heard:?}"));
}
