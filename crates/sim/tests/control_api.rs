//! The HTTP control API under `/_sim`: state, counters, simulated users, faults, REST injection.

mod common;

use common::{Raw, STEP, start};
use serde_json::{Value, json};

#[tokio::test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
async fn control_endpoints_drive_users_faults_and_rest() {
    let sim = start().await;
    let h = sim.handle();
    let seed = h.seed();
    let http = reqwest::Client::new();
    let ctl = sim.control_url();

    let state: Value = http.get(&ctl).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["guild_id"], sim.guild_id().to_string());
    assert_eq!(state["voice_states"].as_array().unwrap().len(), 2);

    let mut c = Raw::connect(&sim.gateway_url(), "v=10&encoding=json").await;
    c.payload().await;
    c.identify(sim.bot_token(), 1 | (1 << 7)).await;
    c.dispatch("GUILD_CREATE").await;

    let dave = seed.member_user_ids[3];
    let post = |path: String, body: Value| http.post(format!("{ctl}{path}")).json(&body).send();
    assert_eq!(
        post(
            format!("/users/{dave}/join"),
            json!({"channel_id": seed.voice_channel_ids[0].to_string()})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        c.dispatch("VOICE_STATE_UPDATE").await["d"]["user_id"],
        dave.to_string()
    );
    post(
        format!("/users/{dave}/move"),
        json!({"channel_id": seed.voice_channel_ids[1]}),
    )
    .await
    .unwrap();
    assert_eq!(
        c.dispatch("VOICE_STATE_UPDATE").await["d"]["channel_id"],
        seed.voice_channel_ids[1].to_string()
    );
    post(
        format!("/users/{dave}/flags"),
        json!({"self_stream": true, "mute": true}),
    )
    .await
    .unwrap();
    let d = c.dispatch("VOICE_STATE_UPDATE").await["d"].clone();
    assert_eq!(
        (d["self_stream"].as_bool(), d["mute"].as_bool()),
        (Some(true), Some(true))
    );
    post(format!("/users/{dave}/leave"), json!({}))
        .await
        .unwrap();
    assert!(c.dispatch("VOICE_STATE_UPDATE").await["d"]["channel_id"].is_null());
    let r = post(format!("/users/{dave}/leave"), json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let created: Value = post(
        "/channels".into(),
        json!({"name": "Table 7", "parent_id": seed.category_id.to_string()}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(c.dispatch("CHANNEL_CREATE").await["d"]["id"], created["id"]);
    let id = created["id"].as_str().unwrap();
    post(format!("/channels/{id}/delete"), json!({}))
        .await
        .unwrap();
    c.dispatch("CHANNEL_DELETE").await;

    let r: Value = post("/gateway/heartbeat-request".into(), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["connections"], 1);
    assert_eq!(c.payload().await["op"], 1);
    post(
        "/gateway/fault".into(),
        json!({"kind": "invalid_session", "resumable": true}),
    )
    .await
    .unwrap();
    assert_eq!(c.payload().await["op"], 9);
    post("/gateway/reconnect".into(), json!({})).await.unwrap();
    assert_eq!(c.payload().await["op"], 7);
    post(
        "/gateway/fault".into(),
        json!({"kind": "close", "code": 4000}),
    )
    .await
    .unwrap();
    assert_eq!(c.close_code().await, Some(4000));

    post("/rest/inject".into(), json!({"route": "GET /users/@me", "count": 1, "response": {"kind": "status", "status": 503}})).await.unwrap();
    let me = |()| {
        http.get(format!("{}/api/v10/users/@me", sim.api_url()))
            .header("authorization", format!("Bot {}", sim.bot_token()))
            .send()
    };
    assert_eq!(me(()).await.unwrap().status(), 503);
    assert_eq!(me(()).await.unwrap().status(), 200);
    let recorded: Value = http
        .get(format!("{ctl}/rest/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recorded.as_array().unwrap().len(), 2);
    post("/rest/forbid".into(), json!({"forbid": true}))
        .await
        .unwrap();
    let r = http
        .delete(format!(
            "{}/api/v10/channels/{}",
            sim.api_url(),
            seed.voice_channel_ids[0]
        ))
        .header("authorization", format!("Bot {}", sim.bot_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 50013);

    let counters: Value = http
        .get(format!("{ctl}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["identifies"], 1);
    assert_eq!(counters["rest_5xx_injected"], 1);
    h.wait_for(|c| c.active_connections == 0, STEP)
        .await
        .unwrap();
}

#[tokio::test]
async fn summary_names_every_endpoint() {
    let sim = start().await;
    let s = sim.summary();
    for needle in [
        sim.gateway_url(),
        sim.api_url(),
        sim.bot_token().to_owned(),
        sim.guild_id().to_string(),
        sim.control_url(),
    ] {
        assert!(s.contains(&needle), "{s} lacks {needle}");
    }
    sim.shutdown().await;
}
