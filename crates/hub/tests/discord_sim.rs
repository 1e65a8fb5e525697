//! The rooms API end to end against the Discord simulator: the hub's
//! `DiscordRooms` adapter on `coven-discord`'s REST client creates and deletes real
//! (simulated) voice channels with audit-log reasons, and Discord's errors come back
//! as the contract's 403/404.

mod common;

use std::sync::Arc;

use common::*;
use coven_hub::DiscordRooms;
use coven_sim::{SimConfig, Simulator};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

#[tokio::test]
async fn rooms_api_against_the_simulator() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim.handle();
    let seed = handle.seed();
    let client = common::sim_rest_client(&sim, 2);
    let guild = sim.guild_id();
    let hub = TestHub::start_backend(
        |s| s.primary_guild_id = id(guild),
        Arc::new(DiscordRooms::new(client)),
    )
    .await;
    let (mut ws, ack) = hub.authed(None).await;
    assert_eq!(ack["guildId"], guild.to_string());
    let auth = format!("Bearer {}", token(Algorithm::RS256, "rsa-1", &claims()));

    let response = hub
        .http
        .post(hub.url("/api/create-room"))
        .header("authorization", &auth)
        .json(
            &json!({"name": "Sim Table", "parentId": seed.category_id.to_string(), "userLimit": 6}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Sim Table");
    assert_eq!(body["guildId"], guild.to_string());
    let channel: u64 = body["channelId"].as_str().unwrap().parse().unwrap();
    assert!(handle.channel_ids().contains(&channel));
    let created = handle
        .audit_log()
        .into_iter()
        .find(|entry| entry.target_id == channel)
        .expect("an audit-log entry for the new channel");
    assert!(
        created
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("Spell Coven room created by user 424242"),
        "{created:?}"
    );
    let event = next_event(&mut ws).await;
    assert_eq!(event.event.name(), "room.created");
    assert_eq!(event.event.channel_id(), id(channel));

    let end = |target: String| {
        hub.http
            .delete(hub.url(&format!("/api/end-room/{target}")))
            .header("authorization", &auth)
            .send()
    };
    let response = end(seed.text_channel_id.to_string()).await.unwrap();
    assert_eq!(response.status(), 403, "a text channel is not a room");
    let response = end("1246251873992839999".into()).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "NOT_FOUND");
    let response = end(channel.to_string()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!handle.channel_ids().contains(&channel));
    assert!(
        handle
            .audit_log()
            .iter()
            .any(|e| e.target_id == channel
                && e.reason.as_deref().is_some_and(|r| r.contains("ended"))),
        "delete carries an audit-log reason"
    );

    // The bot without permissions: 403 FORBIDDEN, no channel.
    handle.forbid_all(true);
    let response = hub
        .http
        .post(hub.url("/api/create-room"))
        .header("authorization", &auth)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "FORBIDDEN");
    sim.shutdown().await;
}
