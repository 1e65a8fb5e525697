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

/// Every snowflake the control API sends is a JSON string, as Discord sends them: a JSON
/// number above 2^53 is rounded by JavaScript, and the next control call would answer 404.
#[tokio::test]
async fn control_api_sends_snowflakes_as_strings() {
    let sim = start().await;
    let seed = sim.handle().seed();
    let http = reqwest::Client::new();
    let ctl = sim.control_url();
    // An audit-log entry (target id) to look at.
    let r = http
        .post(format!(
            "{}/api/v10/guilds/{}/channels",
            sim.api_url(),
            seed.guild_id
        ))
        .header("authorization", format!("Bot {}", sim.bot_token()))
        .json(&json!({"name": "Table 9", "type": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for path in [
        "",
        "/state",
        "/audit-log",
        "/voice",
        "/counters",
        "/rest/requests",
    ] {
        let v: Value = http
            .get(format!("{ctl}{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_no_big_numbers(&v, &format!("/_sim{path}"));
    }
    let state: Value = http.get(&ctl).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["seed"]["bot_user_id"], seed.bot_user_id.to_string());
    assert_eq!(
        state["seed"]["member_user_ids"][2],
        seed.member_user_ids[2].to_string()
    );
    // Ids read from the state drive the next call unchanged (strings, never rounded).
    let carol = state["seed"]["member_user_ids"][2].as_str().unwrap();
    let table = &state["seed"]["voice_channel_ids"][1];
    let r = http
        .post(format!("{ctl}/users/{carol}/join"))
        .json(&json!({ "channel_id": table }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Numbers are still accepted on input (optional ids too).
    let r = http
        .post(format!("{ctl}/channels"))
        .json(&json!({"name": "Table 8", "parent_id": seed.category_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Fails on any JSON number that cannot be an exact JavaScript number (a snowflake sent as a
/// number).
fn assert_no_big_numbers(v: &Value, at: &str) {
    match v {
        Value::Number(n) => assert!(
            n.as_u64().is_none_or(|n| n < (1 << 53)),
            "{at}: snowflake-sized number {n}"
        ),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                assert_no_big_numbers(x, &format!("{at}[{i}]"));
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                assert_no_big_numbers(x, &format!("{at}.{k}"));
            }
        }
        _ => {}
    }
}
