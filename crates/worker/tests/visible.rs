//! docs/spec.md §7.1 end to end against the simulator: a voice channel hidden from
//! `@everyone` is no room. It is absent from the worker's `/voice-view` and from the
//! events it posts, whoever is in it; hiding a room ends it (`room.deleted`),
//! showing it again starts it (`room.created`, then the joins of those present).

mod support;

use coven_sim::VoiceFlags;
use coven_testkit::{FakeHub, signed, simulator, summary};
use serde_json::Value;
use support::RunningWorker;

async fn voice_view(worker: &RunningWorker) -> Value {
    signed(reqwest::Method::GET, worker.health, "/voice-view", b"")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_channel_hidden_from_everyone_never_reaches_the_view_or_the_hub() {
    let sim = simulator().await;
    let handle = sim.handle();
    let seed = handle.seed();
    let (carol, dave) = (seed.member_user_ids[2], seed.member_user_ids[3]);
    // One hidden before the worker starts (seen in GUILD_CREATE), with Dave in it.
    let staff = handle
        .create_hidden_channel("staff", 2, Some(seed.category_id))
        .unwrap();
    handle.user_join(dave, staff).unwrap();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    worker.wait_for_health(200).await;

    // One hidden made while it runs; Carol joins it, mutes, moves to the other, leaves.
    let private = handle.create_hidden_channel("private", 2, None).unwrap();
    handle.user_join(carol, private).unwrap();
    handle
        .user_set_flags(
            carol,
            VoiceFlags {
                self_mute: Some(true),
                ..VoiceFlags::default()
            },
        )
        .unwrap();
    let view = voice_view(&worker).await;
    for (hidden, user) in [(staff, dave), (private, carol)] {
        assert!(view["rooms"].get(hidden.to_string()).is_none(), "{view}");
        assert!(view["members"].get(user.to_string()).is_none(), "{view}");
    }
    handle.user_move(carol, staff).unwrap();
    handle.delete_channel(private).unwrap();
    handle.user_leave(carol).unwrap();
    // A visible room's join marks the end: nothing before it reached the hub.
    let room = seed.voice_channel_ids[2];
    handle.user_join(carol, room).unwrap();
    let events = hub.wait_for_events(1).await;
    assert_eq!(summary(&events), [("voice.joined", room, carol)]);
    let view = voice_view(&worker).await;
    assert!(view["rooms"].get(room.to_string()).is_some(), "{view}");
    assert!(view["rooms"].get(staff.to_string()).is_none(), "{view}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(hub.events().len(), 1, "{:?}", summary(&hub.events()));
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn hiding_a_room_deletes_it_and_showing_it_again_creates_it() {
    let sim = simulator().await;
    let handle = sim.handle();
    let seed = handle.seed();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    worker.wait_for_health(200).await;

    let (room, carol) = (seed.voice_channel_ids[2], seed.member_user_ids[2]);
    handle.user_join(carol, room).unwrap();
    hub.wait_for_events(1).await;
    handle.hide_channel(room).unwrap();
    let events = hub.wait_for_events(3).await;
    assert_eq!(
        summary(&events[1..]),
        [("voice.left", room, carol), ("room.deleted", room, 0)]
    );
    let view = voice_view(&worker).await;
    assert!(view["rooms"].get(room.to_string()).is_none(), "{view}");
    assert!(view["members"].get(carol.to_string()).is_none(), "{view}");
    // While hidden, Carol's mute is not seen; shown again, she is there, muted.
    handle
        .user_set_flags(
            carol,
            VoiceFlags {
                self_mute: Some(true),
                ..VoiceFlags::default()
            },
        )
        .unwrap();
    handle.show_channel(room).unwrap();
    let events = hub.wait_for_events(5).await;
    assert_eq!(
        summary(&events[3..]),
        [("room.created", room, 0), ("voice.joined", room, carol)]
    );
    let view = voice_view(&worker).await;
    assert_eq!(view["rooms"][room.to_string()]["name"], "Table 3", "{view}");
    assert_eq!(
        view["members"][carol.to_string()]["flags"]["selfMute"],
        true,
        "{view}"
    );
    worker.stop().await.unwrap();
}
