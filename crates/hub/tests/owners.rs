//! docs/spec.md §7.1 from the outside: who may end a room (and command the bot in
//! it, see tests/bot.rs), how many rooms one may create, and where new rooms go.
//!
//! The creator of a room (remembered across a restart over the same `STATE_DIR`,
//! and across hubs sharing Redis), a member with `MANAGE_CHANNELS` or
//! `ADMINISTRATOR`, and the guild owner may end it; anyone else gets 403
//! `FORBIDDEN` and the room stays. A user holds at most 3 live API-created rooms,
//! the guild 50 (403 naming the limit); ending a room, or its `room.deleted`,
//! frees the slot. With `ROOMS_CATEGORY_ID`, rooms go there and another
//! `parentId` is 400. The guild permissions come from Discord: the simulator's
//! roles are read through `DiscordRooms` (member roles, guild roles, guild owner).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use coven_contract::{Event, RoomDeleted, Secret};
use coven_hub::{
    ADMINISTRATOR, DiscordRooms, MANAGE_CHANNELS, MemoryRooms, RoomsBackend, RoomsError,
};
use coven_sim::{SimConfig, Simulator};
use coven_testkit::RedisServer;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const ALICE: u64 = 1001;
const BOB: u64 = 1002;
const MANAGER: u64 = 1003;
const OWNER: u64 = 1004;
const ADMIN: u64 = 1005;

fn bearer_for(sub: u64) -> String {
    let mut claims = claims();
    claims["sub"] = json!(sub.to_string());
    format!("Bearer {}", token(Algorithm::RS256, "rsa-1", &claims))
}

async fn create(hub: &TestHub, user: u64, body: Value) -> (u16, Value) {
    let response = hub
        .http
        .post(hub.url("/api/create-room"))
        .header("authorization", bearer_for(user))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Creates a room as `user` and returns its id.
async fn room_of(hub: &TestHub, user: u64) -> u64 {
    let (status, body) = create(hub, user, json!({})).await;
    assert_eq!(status, 201, "{body}");
    body["channelId"].as_str().unwrap().parse().unwrap()
}

async fn end(hub: &TestHub, user: u64, channel: u64) -> (u16, Value) {
    let response = hub
        .http
        .delete(hub.url(&format!("/api/end-room/{channel}")))
        .header("authorization", bearer_for(user))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn guild_roles(rooms: &MemoryRooms) {
    rooms.set_permissions(id(MANAGER), false, MANAGE_CHANNELS);
    rooms.set_permissions(id(ADMIN), false, ADMINISTRATOR);
    rooms.set_permissions(id(OWNER), true, 0);
    // Viewing and connecting is not managing.
    rooms.set_permissions(id(BOB), false, 1 << 10 | 1 << 20);
}

#[tokio::test]
async fn only_the_creator_a_channel_manager_or_the_owner_ends_a_room() {
    let (hub, rooms) = TestHub::start().await;
    guild_roles(&rooms);
    let (first, second, third) = (
        room_of(&hub, ALICE).await,
        room_of(&hub, ALICE).await,
        room_of(&hub, ALICE).await,
    );

    let (status, body) = end(&hub, BOB, first).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "FORBIDDEN");
    assert!(rooms.contains(id(first)), "the room is still there");

    assert_eq!(end(&hub, MANAGER, first).await.0, 200);
    assert!(!rooms.contains(id(first)));
    assert_eq!(end(&hub, OWNER, second).await.0, 200);
    assert!(!rooms.contains(id(second)));
    let fourth = room_of(&hub, ALICE).await;
    assert_eq!(end(&hub, ADMIN, fourth).await.0, 200);
    assert_eq!(end(&hub, ALICE, third).await.0, 200);
    assert!(!rooms.contains(id(third)));

    // Bob's room is not Alice's to end.
    let seeded = room_of(&hub, BOB).await;
    assert_eq!(end(&hub, ALICE, seeded).await.0, 403);
    assert!(rooms.contains(id(seeded)));
}

#[tokio::test]
async fn three_live_rooms_per_user_and_fifty_per_guild() {
    let (hub, rooms) = TestHub::start_with(|s| s.rooms_rate_burst = 100).await;
    let mine = [
        room_of(&hub, ALICE).await,
        room_of(&hub, ALICE).await,
        room_of(&hub, ALICE).await,
    ];
    let (status, body) = create(&hub, ALICE, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "FORBIDDEN");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("3 live rooms per user"), "{message}");
    assert_eq!(rooms.created(), 3, "no fourth channel");
    // Another user is not affected.
    room_of(&hub, BOB).await;

    // Ending one frees a slot ...
    assert_eq!(end(&hub, ALICE, mine[0]).await.0, 200);
    let again = room_of(&hub, ALICE).await;
    assert_eq!(create(&hub, ALICE, json!({})).await.0, 403);
    // ... and so does a room deleted in Discord (its room.deleted reaches the hub).
    hub.post_event(
        &Event::RoomDeleted(RoomDeleted {
            channel_id: id(mine[1]),
            guild_id: id(GUILD),
        }),
        "deleted-1",
    )
    .await;
    rooms
        .delete_channel(id(mine[1]), String::new())
        .await
        .unwrap();
    let later = room_of(&hub, ALICE).await;
    // ... and a room deleted while no webhook arrived, found missing at the limit.
    rooms
        .delete_channel(id(again), String::new())
        .await
        .unwrap();
    room_of(&hub, ALICE).await;
    assert!(rooms.contains(id(later)));

    // The guild limit, with another user's slots still free.
    let (hub, _) = TestHub::start_with(|s| s.max_rooms_per_guild = 4).await;
    for user in [ALICE, ALICE, BOB, MANAGER] {
        room_of(&hub, user).await;
    }
    let (status, body) = create(&hub, OWNER, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("4 live rooms in the guild"), "{message}");
}

/// A fresh state dir, removed when dropped.
struct StateDir(PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_creator_is_remembered_across_a_restart() {
    let state =
        StateDir(std::env::temp_dir().join(format!("coven-owners-{:016x}", rand::random::<u64>())));
    let rooms = Arc::new(MemoryRooms::new(7_000_000_000_000_000));
    let dir = state.0.clone();
    let tune = move |s: &mut coven_hub::HubSettings| s.state_dir = Some(dir.clone());
    let mut before = TestHub::start_backend(tune.clone(), rooms.clone()).await;
    let channel = room_of(&before, ALICE).await;
    room_of(&before, ALICE).await;
    room_of(&before, ALICE).await;
    before.stop().await;
    drop(before);
    assert!(state.0.join(coven_hub::ROOM_OWNERS_FILE_NAME).exists());

    let after = TestHub::start_backend(tune, rooms.clone()).await;
    assert_eq!(end(&after, BOB, channel).await.0, 403);
    assert_eq!(
        create(&after, ALICE, json!({})).await.0,
        403,
        "the limit counts rooms created before the restart"
    );
    assert_eq!(end(&after, ALICE, channel).await.0, 200);
    assert!(!rooms.contains(id(channel)));
    room_of(&after, ALICE).await;
}

#[tokio::test]
async fn new_rooms_go_in_the_rooms_category() {
    let category = 77;
    let (hub, rooms) = TestHub::start_with(|s| s.rooms_category_id = Some(id(category))).await;
    let placed = |channel: u64| {
        let rooms = rooms.clone();
        async move { rooms.get_channel(id(channel)).await.unwrap().parent_id }
    };
    let channel = room_of(&hub, ALICE).await;
    assert_eq!(placed(channel).await, Some(id(category)));
    let (status, body) = create(&hub, ALICE, json!({"parentId": "77"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = create(&hub, ALICE, json!({"parentId": "78"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "VALIDATION_FAILED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ROOMS_CATEGORY_ID")
    );
    assert_eq!(rooms.created(), 2, "no channel for the refused parentId");

    // Without the setting, parentId is the caller's choice.
    let (hub, rooms) = TestHub::start().await;
    let (status, body) = create(&hub, ALICE, json!({"parentId": "78"})).await;
    assert_eq!(status, 201, "{body}");
    let channel: u64 = body["channelId"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        rooms.get_channel(id(channel)).await.map(|c| c.parent_id),
        Ok::<_, RoomsError>(Some(id(78)))
    );
}

#[tokio::test]
async fn guild_permissions_come_from_discord_roles() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim.handle();
    let seed = handle.seed();
    let client = common::sim_rest_client(&sim, 2);
    let guild = sim.guild_id();
    let hub = TestHub::start_backend(
        |s| {
            s.primary_guild_id = id(guild);
            s.member_permissions_ttl = Duration::ZERO;
        },
        Arc::new(DiscordRooms::new(client)),
    )
    .await;
    let [owner, creator, stranger, moderator, ..] = seed.member_user_ids[..] else {
        panic!("the seed has six members");
    };
    assert_eq!(handle.owner_id(), owner);
    let channel = room_of(&hub, creator).await;

    assert_eq!(end(&hub, stranger, channel).await.0, 403);
    assert_eq!(end(&hub, moderator, channel).await.0, 403);
    assert!(handle.channel_ids().contains(&channel));
    let role = handle.create_role("Moderators", MANAGE_CHANNELS);
    handle.grant_role(moderator, role).unwrap();
    // The role is visible through REST, with its permissions.
    let roles: Value = reqwest::Client::new()
        .get(format!("{}/api/v10/guilds/{guild}/roles", sim.api_url()))
        .header("authorization", format!("Bot {}", sim.bot_token()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(roles[0]["id"], guild.to_string(), "@everyone first");
    assert_eq!(roles[1]["permissions"], MANAGE_CHANNELS.to_string());
    assert_eq!(end(&hub, moderator, channel).await.0, 200);
    assert!(!handle.channel_ids().contains(&channel));

    // The guild owner, without any role.
    let channel = room_of(&hub, creator).await;
    assert_eq!(end(&hub, owner, channel).await.0, 200);
    // A user who is not a member at all.
    let channel = room_of(&hub, creator).await;
    assert_eq!(end(&hub, seed.outsider_user_ids[0], channel).await.0, 403);
    assert_eq!(end(&hub, creator, channel).await.0, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn hubs_on_one_redis_share_creators_and_limits() {
    let redis = RedisServer::start_volatile();
    let rooms = Arc::new(MemoryRooms::new(8_000_000_000_000_000));
    let start = || {
        let url = Secret::new(redis.url());
        TestHub::start_backend(move |s| s.redis_url = Some(url), rooms.clone())
    };
    let a = start().await;
    let b = start().await;
    let channel = room_of(&a, ALICE).await;
    assert_eq!(end(&b, BOB, channel).await.0, 403);
    assert!(rooms.contains(id(channel)));
    room_of(&b, ALICE).await;
    room_of(&a, ALICE).await;
    let (status, body) = create(&b, ALICE, json!({})).await;
    assert_eq!(status, 403, "the limit spans hubs: {body}");
    assert_eq!(end(&b, ALICE, channel).await.0, 200);
    assert!(!rooms.contains(id(channel)));
    room_of(&a, ALICE).await;
}
