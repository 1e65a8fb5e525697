//! REST at the wire level (reqwest): rate-limit headers, 429 shapes (route and global),
//! 50035's errors tree, 401, member add with an OAuth2 token, unversioned paths.

mod common;

use std::time::Duration;

use common::fast_config;
use coven_sim::{BucketConfig, SimConfig, Simulator};
use serde_json::{Value, json};

fn bot(sim: &Simulator) -> String {
    format!("Bot {}", sim.bot_token())
}

#[tokio::test]
async fn responses_carry_rate_limit_headers_and_429_has_discord_shape() {
    let config = SimConfig {
        channel_create_bucket: BucketConfig::new(2, Duration::from_secs(30)),
        ..fast_config()
    };
    let sim = Simulator::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v10/guilds/{}/channels",
        sim.api_url(),
        sim.guild_id()
    );
    let mut last = None;
    for i in 0..3 {
        let r = http
            .post(&url)
            .header("authorization", bot(&sim))
            .json(&json!({"name": format!("r{i}"), "type": 2}))
            .send()
            .await
            .unwrap();
        last = Some(r);
        if i < 2 {
            let r = last.as_ref().unwrap();
            assert_eq!(r.status(), 201);
            let h = r.headers();
            assert_eq!(h["x-ratelimit-limit"], "2");
            assert_eq!(h["x-ratelimit-remaining"], (1 - i).to_string());
            assert_eq!(h["x-ratelimit-scope"], "user");
            assert!(
                h.contains_key("x-ratelimit-bucket")
                    && h.contains_key("x-ratelimit-reset")
                    && h.contains_key("x-ratelimit-reset-after")
            );
        }
    }
    let r = last.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-scope"], "user");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    assert!(body["retry_after"].as_f64().unwrap() > 0.0);
    assert_eq!(sim.handle().counters().rest_429s, 1);
}

#[tokio::test]
async fn global_limit_answers_global_429() {
    let config = SimConfig {
        global_per_second: 5,
        default_bucket: BucketConfig::new(100, Duration::from_secs(1)),
        ..fast_config()
    };
    let sim = Simulator::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let mut global = None;
    for _ in 0..10 {
        let r = http
            .get(format!("{}/api/v10/users/@me", sim.api_url()))
            .header("authorization", bot(&sim))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            global = Some(r);
            break;
        }
    }
    let r = global.expect("the global limit must trip");
    assert_eq!(r.headers()["x-ratelimit-scope"], "global");
    assert_eq!(r.headers()["x-ratelimit-global"], "true");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["global"], true);
}

#[tokio::test]
async fn invalid_form_body_and_unauthorized() {
    let sim = Simulator::start(fast_config()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v10/guilds/{}/channels",
        sim.api_url(),
        sim.guild_id()
    );
    let r = http
        .post(&url)
        .header("authorization", bot(&sim))
        .json(&json!({"type": 2, "user_limit": 120, "permission_overwrites": [{"type": 7}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], 50035);
    assert_eq!(body["message"], "Invalid Form Body");
    assert_eq!(
        body["errors"]["name"]["_errors"][0]["code"],
        "BASE_TYPE_REQUIRED"
    );
    assert_eq!(
        body["errors"]["user_limit"]["_errors"][0]["code"],
        "NUMBER_TYPE_MAX"
    );
    assert_eq!(
        body["errors"]["permission_overwrites"]["0"]["id"]["_errors"][0]["code"],
        "BASE_TYPE_REQUIRED"
    );

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"message": "401: Unauthorized", "code": 0}));
    let r = http
        .get(&url)
        .header("authorization", "Bot nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = http
        .get(format!("{}/api/v10/channels/123", sim.api_url()))
        .header("authorization", bot(&sim))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Unknown Channel", "code": 10003})
    );
}

#[tokio::test]
async fn unknown_routes_answer_discord_404() {
    let sim = Simulator::start(fast_config()).await.unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/api/v10/nope", sim.api_url()))
        .header("authorization", bot(&sim))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "404: Not Found", "code": 0})
    );
}

#[tokio::test]
async fn route_buckets_are_configurable_per_route_key() {
    let mut config = fast_config();
    config.route_buckets.insert(
        "GET /users/@me".into(),
        BucketConfig::new(1, Duration::from_secs(30)),
    );
    let sim = Simulator::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{}/api/v10/users/@me", sim.api_url()))
            .header("authorization", bot(&sim))
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit"], "1");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(get().await.unwrap().status(), 429);
    // Other routes keep the default bucket.
    let other = http
        .get(format!("{}/api/v10/gateway/bot", sim.api_url()))
        .header("authorization", bot(&sim))
        .send()
        .await
        .unwrap();
    assert_eq!(other.headers()["x-ratelimit-limit"], "10");
}
