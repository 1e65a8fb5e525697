//! Gateway protocol tests with a raw WebSocket client: `HELLO`, `IDENTIFY`, `READY`, `GUILD_CREATE`,
//! heartbeats, compression, close codes, RESUME replay, op 9, op 4 and intent filtering.

mod common;

use std::time::Duration;

use common::{Got, Raw, STEP, start};
use coven_sim::{SimConfig, Simulator, VoiceFlags};
use serde_json::json;

const GUILDS: u64 = 1;
const VOICE: u64 = 1 << 7;

#[tokio::test]
async fn identify_gets_ready_then_guild_create() {
    let sim = start().await;
    let seed = sim.handle().seed();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    let hello = c.payload().await;
    assert_eq!(hello["op"], 10);
    assert_eq!(hello["d"]["heartbeat_interval"], 500);
    c.identify(sim.bot_token(), GUILDS | VOICE).await;
    let ready = c.dispatch("READY").await;
    assert_eq!(ready["s"], 1);
    let d = &ready["d"];
    assert_eq!(d["v"], 10);
    assert_eq!(d["resume_gateway_url"], sim.gateway_url());
    assert_eq!(d["user"]["id"], seed.bot_user_id.to_string());
    assert_eq!(d["user"]["bot"], true);
    assert_eq!(d["application"]["id"], seed.bot_user_id.to_string());
    assert_eq!(d["guilds"][0]["unavailable"], true);
    assert_eq!(d["session_id"].as_str().map(str::len), Some(32));
    let guild = c.dispatch("GUILD_CREATE").await;
    assert_eq!(guild["s"], 2);
    let g = &guild["d"];
    assert_eq!(g["id"], sim.guild_id().to_string());
    let channels = g["channels"].as_array().unwrap();
    assert!(channels.iter().filter(|c| c["type"] == 2).count() >= 3);
    assert!(channels.iter().any(|c| c["type"] == 4));
    assert!(channels.iter().any(|c| c["type"] == 0));
    // Without GUILD_PRESENCES, Discord sends only the bot and the members in voice.
    assert_eq!(g["members"].as_array().unwrap().len(), 3);
    assert_eq!(g["voice_states"].as_array().unwrap().len(), 2);
    assert_eq!(sim.handle().counters().identifies, 1);
}

#[tokio::test]
async fn heartbeat_is_acked_and_server_can_request_one() {
    let sim = start().await;
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send(&json!({"op": 1, "d": null})).await;
    assert_eq!(c.payload().await["op"], 11);
    assert_eq!(sim.handle().request_heartbeat(), 1);
    assert_eq!(c.payload().await["op"], 1);
    assert_eq!(sim.handle().counters().heartbeats, 1);
}

#[tokio::test]
async fn zlib_stream_frames_inflate_as_one_stream() {
    let sim = start().await;
    let mut c = Raw::connect(
        &sim.gateway_url(),
        "v=10&encoding=json&compress=zlib-stream",
    )
    .await;
    assert_eq!(c.payload().await["op"], 10);
    c.identify(sim.bot_token(), GUILDS).await;
    c.dispatch("READY").await;
    c.dispatch("GUILD_CREATE").await;
    c.send(&json!({"op": 1, "d": 2})).await;
    assert_eq!(c.payload().await["op"], 11);
}

async fn closed_with(sim: &Simulator, first: serde_json::Value) -> Option<u16> {
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send(&first).await;
    c.close_code().await
}

#[tokio::test]
async fn close_codes_for_protocol_errors() {
    let sim = start().await;
    let token = sim.bot_token().to_owned();
    let props = json!({"os": "linux", "browser": "t", "device": "t"});
    assert_eq!(
        closed_with(
            &sim,
            json!({"op": 2, "d": {"token": "wrong", "intents": 1, "properties": props}})
        )
        .await,
        Some(4004)
    );
    assert_eq!(
        closed_with(
            &sim,
            json!({"op": 2, "d": {"token": token, "intents": 1u64 << 40, "properties": props}})
        )
        .await,
        Some(4013)
    );
    assert_eq!(closed_with(&sim, json!({"op": 4, "d": {"guild_id": "1", "channel_id": null, "self_mute": false, "self_deaf": false}})).await, Some(4003));
    assert_eq!(
        closed_with(&sim, json!({"op": 99, "d": null})).await,
        Some(4001)
    );
    // Bad JSON and oversized payloads: 4002.
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send_text("{not json".to_owned()).await;
    assert_eq!(c.close_code().await, Some(4002));
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send_text(json!({"op": 1, "d": null, "pad": "x".repeat(5000)}).to_string())
        .await;
    assert_eq!(c.close_code().await, Some(4002));
    // A second IDENTIFY: 4005.
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(&token, GUILDS).await;
    c.dispatch("GUILD_CREATE").await;
    c.identify(&token, GUILDS).await;
    assert_eq!(c.close_code().await, Some(4005));
    assert_eq!(sim.handle().counters().last_close_code, Some(4005));
}

#[tokio::test]
async fn more_than_120_commands_a_minute_closes_4008() {
    let sim = start().await;
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    for _ in 0..121 {
        c.send_text(json!({"op": 1, "d": null}).to_string()).await;
    }
    assert_eq!(c.close_code().await, Some(4008));
}

#[tokio::test]
async fn resume_replays_missed_dispatches_then_resumed() {
    let sim = start().await;
    let h = sim.handle();
    let seed = h.seed();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS | VOICE).await;
    let session = c.dispatch("READY").await["d"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seq = c.dispatch("GUILD_CREATE").await["s"].as_u64().unwrap();
    // Drop without a close frame from our side's perspective: the simulator drops TCP.
    h.drop_tcp();
    assert!(matches!(c.next().await, Got::Closed(_)));
    h.wait_for(|c| c.active_connections == 0, STEP)
        .await
        .unwrap();
    h.user_join(seed.member_user_ids[2], seed.voice_channel_ids[1])
        .unwrap();
    h.user_set_flags(
        seed.member_user_ids[2],
        VoiceFlags {
            self_video: Some(true),
            ..VoiceFlags::default()
        },
    )
    .unwrap();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send(&json!({"op": 6, "d": {"token": sim.bot_token(), "session_id": session, "seq": seq}}))
        .await;
    let join = c.payload().await;
    assert_eq!(
        (join["t"].as_str(), join["s"].as_u64()),
        (Some("VOICE_STATE_UPDATE"), Some(seq + 1))
    );
    assert_eq!(
        join["d"]["channel_id"],
        seed.voice_channel_ids[1].to_string()
    );
    let video = c.payload().await;
    assert_eq!(video["d"]["self_video"], true);
    let resumed = c.payload().await;
    assert_eq!(
        (resumed["t"].as_str(), resumed["s"].as_u64()),
        (Some("RESUMED"), Some(seq + 3))
    );
    assert_eq!(h.counters().resumes, 1);
    assert_eq!(h.counters().identifies, 1);
}

#[tokio::test]
async fn unknown_or_expired_session_gets_op9_false() {
    let sim = Simulator::start(SimConfig {
        session_resume_window: Duration::from_millis(100),
        ..common::fast_config()
    })
    .await
    .unwrap();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send(&json!({"op": 6, "d": {"token": sim.bot_token(), "session_id": "nope", "seq": 1}}))
        .await;
    let p = c.payload().await;
    assert_eq!((p["op"].as_u64(), p["d"].as_bool()), (Some(9), Some(false)));

    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    let session = c.dispatch("READY").await["d"]["session_id"].clone();
    sim.handle().close(4000);
    assert_eq!(c.close_code().await, Some(4000));
    // The resume window is 100 ms: outlive it (a deterministic expiry, not a race).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send(&json!({"op": 6, "d": {"token": sim.bot_token(), "session_id": session, "seq": 1}}))
        .await;
    let p = c.payload().await;
    assert_eq!((p["op"].as_u64(), p["d"].as_bool()), (Some(9), Some(false)));
}

#[tokio::test]
async fn invalid_session_fault_sends_op9_with_resumable_flag() {
    let sim = start().await;
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    let session = c.dispatch("READY").await["d"]["session_id"].clone();
    c.dispatch("GUILD_CREATE").await;
    sim.handle().invalid_session(true);
    let p = c.payload().await;
    assert_eq!((p["op"].as_u64(), p["d"].as_bool()), (Some(9), Some(true)));
    // Still resumable.
    let mut c2 = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c2.payload().await;
    c2.send(&json!({"op": 6, "d": {"token": sim.bot_token(), "session_id": session, "seq": 2}}))
        .await;
    assert_eq!(c2.dispatch("RESUMED").await["s"], 3);
    sim.handle().invalid_session(false);
    let p = c2.payload().await;
    assert_eq!((p["op"].as_u64(), p["d"].as_bool()), (Some(9), Some(false)));
    assert!(sim.handle().session_ids().is_empty());
}

#[tokio::test]
async fn bot_voice_state_update_gets_state_and_server_update() {
    let sim = start().await;
    let seed = sim.handle().seed();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS | VOICE).await;
    let session = c.dispatch("READY").await["d"]["session_id"].clone();
    c.dispatch("GUILD_CREATE").await;
    let channel = seed.voice_channel_ids[2].to_string();
    c.send(&json!({"op": 4, "d": {"guild_id": sim.guild_id().to_string(), "channel_id": channel, "self_mute": false, "self_deaf": true}})).await;
    let vs = c.dispatch("VOICE_STATE_UPDATE").await["d"].clone();
    assert_eq!(vs["user_id"], seed.bot_user_id.to_string());
    assert_eq!(vs["channel_id"], channel);
    assert_eq!(vs["session_id"], session);
    assert_eq!(vs["self_deaf"], true);
    let server = c.dispatch("VOICE_SERVER_UPDATE").await["d"].clone();
    assert_eq!(server["guild_id"], sim.guild_id().to_string());
    assert!(server["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(server["endpoint"], sim.voice_endpoint());
    c.send(&json!({"op": 4, "d": {"guild_id": sim.guild_id().to_string(), "channel_id": null, "self_mute": false, "self_deaf": false}})).await;
    let left = c.dispatch("VOICE_STATE_UPDATE").await["d"].clone();
    assert!(left["channel_id"].is_null());
}

#[tokio::test]
async fn dispatches_follow_intents() {
    let sim = start().await;
    let h = sim.handle();
    let seed = h.seed();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    let guild = c.dispatch("GUILD_CREATE").await;
    assert!(guild["d"]["voice_states"].as_array().unwrap().is_empty());
    h.user_join(seed.member_user_ids[3], seed.voice_channel_ids[0])
        .unwrap();
    let id = h
        .create_channel("Table 4", 2, Some(seed.category_id))
        .unwrap();
    let next = c.payload().await;
    assert_eq!(
        next["t"], "CHANNEL_CREATE",
        "VOICE_STATE_UPDATE is filtered without GUILD_VOICE_STATES"
    );
    assert_eq!(next["d"]["id"], id.to_string());
    assert_eq!(next["d"]["parent_id"], seed.category_id.to_string());
    h.delete_channel(id).unwrap();
    assert_eq!(c.payload().await["t"], "CHANNEL_DELETE");
}

#[tokio::test]
async fn privileged_intents_can_be_disallowed_4014() {
    let sim = Simulator::start(SimConfig {
        allow_privileged_intents: false,
        ..common::fast_config()
    })
    .await
    .unwrap();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS | (1 << 1)).await;
    assert_eq!(c.close_code().await, Some(4014));
}

#[tokio::test]
async fn delayed_frames_arrive_late_but_in_order() {
    let sim = start().await;
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    sim.handle().delay_frames(Duration::from_millis(300));
    let started = std::time::Instant::now();
    c.send(&json!({"op": 1, "d": null})).await;
    c.send(&json!({"op": 1, "d": null})).await;
    assert_eq!(c.payload().await["op"], 11);
    assert_eq!(c.payload().await["op"], 11);
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[tokio::test]
async fn unsupported_version_closes_4012() {
    let sim = start().await;
    let mut c = Raw::connect(&sim.gateway_url(), "v=6&encoding=json").await;
    assert_eq!(c.payload().await["op"], 10);
    assert_eq!(c.close_code().await, Some(4012));
}

#[tokio::test]
async fn silent_connection_is_closed_but_session_stays_resumable() {
    let config = SimConfig {
        heartbeat_timeout: Some(Duration::from_millis(300)),
        ..common::fast_config()
    };
    let sim = Simulator::start(config).await.unwrap();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    let session = c.dispatch("READY").await["d"]["session_id"].clone();
    // No heartbeat: the simulator closes after 300 ms.
    assert_eq!(c.close_code().await, Some(4009));
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send(&json!({"op": 1, "d": null})).await;
    assert_eq!(c.payload().await["op"], 11);
    c.send(&json!({"op": 6, "d": {"token": sim.bot_token(), "session_id": session, "seq": 2}}))
        .await;
    c.dispatch("RESUMED").await;
}

#[tokio::test]
async fn unreachable_and_close_after_hello_last_until_reachable() {
    use coven_sim::Fault;
    let sim = start().await;
    let h = sim.handle();
    let mut open = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    open.payload().await;

    // Unreachable: the open connection is dropped, new upgrades are refused.
    assert_eq!(h.inject(&Fault::Unreachable), 1);
    assert!(matches!(open.next().await, Got::Closed(None)));
    let refused =
        tokio_tungstenite::connect_async(format!("{}/?v=10&encoding=json", sim.gateway_url()))
            .await;
    assert!(refused.is_err(), "a refused upgrade");

    // Close after HELLO: every new connection gets HELLO, then the close.
    assert_eq!(h.inject(&Fault::CloseAfterHello { code: 4000 }), 0);
    for _ in 0..2 {
        let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
        assert_eq!(c.payload().await["op"], 10);
        assert_eq!(c.close_code().await, Some(4000));
    }

    // Reachable again: a session starts as usual.
    h.inject(&Fault::Reachable);
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    c.dispatch("READY").await;
    let counters = h.counters();
    assert_eq!(counters.identifies, 1, "{counters:?}");
    assert_eq!(
        counters.connections, 4,
        "the refused upgrade is no connection"
    );
}

#[tokio::test]
async fn a_fatal_close_lasts_like_its_cause_until_reachable() {
    let sim = start().await;
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    let session = c.dispatch("READY").await["d"]["session_id"].clone();
    assert_eq!(sim.handle().close(4004), 1);
    assert_eq!(c.close_code().await, Some(4004));

    // The token is still refused, as at Discord: an IDENTIFY meets the same close…
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    assert_eq!(c.payload().await["op"], 10);
    c.identify(sim.bot_token(), GUILDS).await;
    assert_eq!(c.close_code().await, Some(4004));
    // …and so does a RESUME.
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.send(&json!({"op": 6, "d": {"token": sim.bot_token(), "session_id": session, "seq": 1}}))
        .await;
    assert_eq!(c.close_code().await, Some(4004));

    // A resumable close does not last.
    sim.handle().inject(&coven_sim::Fault::Reachable);
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    c.dispatch("READY").await;
    assert_eq!(sim.handle().close(4000), 1);
    assert_eq!(c.close_code().await, Some(4000));
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    c.dispatch("READY").await;
}

#[tokio::test]
async fn a_close_waits_for_the_reply_so_a_late_heartbeat_cannot_reset_it_away() {
    let sim = start().await;
    let handle = sim.handle();
    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), GUILDS).await;
    c.dispatch("GUILD_CREATE").await;
    assert_eq!(handle.close(4000), 1);
    handle
        .wait_for(|c| c.active_connections == 0, STEP)
        .await
        .expect("the connection ended");
    // Heartbeats cross our close frame, written before the client reads (as
    // twilight does: it sends what is due before it reads). Dropping TCP at once
    // would answer the first with a reset and fail the second write, and the
    // client would never read the close code.
    c.send(&json!({"op": 1, "d": 2})).await;
    c.send(&json!({"op": 1, "d": 2})).await;
    assert_eq!(c.close_code().await, Some(4000));
}
