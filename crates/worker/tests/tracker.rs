//! The voice-state tracker against every docs/spec.md §4 rule, fed Discord's own JSON.

use coven_contract::{Event, Snowflake};
use coven_worker::VoiceTracker;
use serde_json::{Value, json};
use twilight_model::channel::Channel;
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::voice::VoiceState;

const GUILD: u64 = 1000;
const OTHER_GUILD: u64 = 2000;
const ROOM_A: u64 = 10;
const ROOM_B: u64 = 11;
const TEXT: u64 = 12;
const STAGE: u64 = 13;
const ALICE: u64 = 100;
const BOB: u64 = 101;

fn id(n: u64) -> Snowflake {
    Snowflake::new(n).unwrap()
}

fn channel(id: u64, kind: u8, guild: u64, name: &str) -> Value {
    json!({"id": id.to_string(), "type": kind, "guild_id": guild.to_string(), "name": name,
        "position": 0, "permission_overwrites": [], "parent_id": null, "user_limit": 4,
        "bitrate": 64000, "nsfw": false, "rate_limit_per_user": 0})
}

fn voice_state(user: u64, channel: Option<u64>, guild: Option<u64>, flags: [bool; 3]) -> Value {
    let mut state = json!({"user_id": user.to_string(), "channel_id": channel.map(|c| c.to_string()),
        "session_id": "s", "deaf": false, "mute": false, "self_deaf": flags[1], "self_mute": flags[0],
        "self_video": flags[2], "self_stream": false, "suppress": false, "request_to_speak_timestamp": null});
    if let Some(guild) = guild {
        state["guild_id"] = json!(guild.to_string());
    }
    state
}

fn guild_create(channels: &[Value], voice_states: &[Value]) -> GuildCreate {
    serde_json::from_value(json!({
        "id": GUILD.to_string(), "name": "Coven", "icon": null, "splash": null, "discovery_splash": null,
        "owner_id": "1", "afk_channel_id": null, "afk_timeout": 300, "verification_level": 0,
        "default_message_notifications": 0, "explicit_content_filter": 0, "roles": [], "emojis": [],
        "features": [], "mfa_level": 0, "application_id": null, "system_channel_id": null,
        "system_channel_flags": 0, "rules_channel_id": null, "vanity_url_code": null,
        "description": null, "banner": null, "premium_tier": 0, "preferred_locale": "en-US",
        "public_updates_channel_id": null, "nsfw_level": 0, "premium_progress_bar_enabled": false,
        "joined_at": "2024-01-01T00:00:00.000000+00:00", "large": false, "member_count": 2,
        "members": [], "channels": channels, "threads": [], "presences": [],
        "voice_states": voice_states, "stickers": [], "stage_instances": [],
        "guild_scheduled_events": [], "unavailable": false
    }))
    .expect("a GUILD_CREATE twilight accepts")
}

fn base_channels() -> Vec<Value> {
    vec![
        channel(ROOM_A, 2, GUILD, "Table A"),
        channel(ROOM_B, 2, GUILD, "Table B"),
        channel(TEXT, 0, GUILD, "general"),
        channel(STAGE, 13, GUILD, "stage"),
    ]
}

fn vsu(
    tracker: &mut VoiceTracker,
    user: u64,
    channel: Option<u64>,
    flags: [bool; 3],
) -> Vec<Event> {
    let state: VoiceState =
        serde_json::from_value(voice_state(user, channel, Some(GUILD), flags)).unwrap();
    tracker.voice_state_update(&state)
}

fn names(events: &[Event]) -> Vec<(&'static str, u64)> {
    events
        .iter()
        .map(|e| (e.name(), e.channel_id().get()))
        .collect()
}

/// A tracker that has seen a `GUILD_CREATE` with Alice already in room A.
fn seeded() -> VoiceTracker {
    let mut tracker = VoiceTracker::new(id(GUILD), None);
    let events = tracker.guild_create(&guild_create(
        &base_channels(),
        &[voice_state(ALICE, Some(ROOM_A), None, [false; 3])],
    ));
    assert!(
        events.is_empty(),
        "the first GUILD_CREATE only seeds: {events:?}"
    );
    tracker
}

const QUIET: [bool; 3] = [false; 3];

#[test]
fn join_and_leave() {
    let mut tracker = seeded();
    assert_eq!(
        names(&vsu(&mut tracker, BOB, Some(ROOM_B), QUIET)),
        [("voice.joined", ROOM_B)]
    );
    assert_eq!(
        names(&vsu(&mut tracker, BOB, None, QUIET)),
        [("voice.left", ROOM_B)]
    );
}

#[test]
fn a_user_present_at_start_can_leave_and_move() {
    let mut tracker = seeded();
    assert_eq!(
        names(&vsu(&mut tracker, ALICE, Some(ROOM_B), QUIET)),
        [("voice.left", ROOM_A), ("voice.joined", ROOM_B)]
    );
    let left = vsu(&mut tracker, ALICE, None, QUIET);
    assert_eq!(names(&left), [("voice.left", ROOM_B)]);
    let Event::VoiceLeft(payload) = &left[0] else {
        panic!()
    };
    assert_eq!((payload.user_id, payload.guild_id), (id(ALICE), id(GUILD)));
}

#[test]
fn flag_change_is_voice_state_only() {
    let mut tracker = seeded();
    let events = vsu(&mut tracker, ALICE, Some(ROOM_A), [true, false, true]);
    assert_eq!(names(&events), [("voice.state", ROOM_A)]);
    let Event::VoiceState(state) = &events[0] else {
        panic!()
    };
    assert!(state.flags.self_mute && state.flags.self_video && !state.flags.self_deaf);
    // The same state again (a replay after resume) changes nothing.
    assert!(vsu(&mut tracker, ALICE, Some(ROOM_A), [true, false, true]).is_empty());
}

#[test]
fn a_join_with_flags_set_is_followed_by_voice_state() {
    let mut tracker = seeded();
    // Bob joins already self-muted and with his camera on (Discord keeps self-mute).
    let events = vsu(&mut tracker, BOB, Some(ROOM_B), [true, false, true]);
    assert_eq!(
        names(&events),
        [("voice.joined", ROOM_B), ("voice.state", ROOM_B)]
    );
    let Event::VoiceState(state) = &events[1] else {
        panic!()
    };
    assert_eq!(state.user_id, id(BOB));
    assert!(state.flags.self_mute && state.flags.self_video && !state.flags.self_deaf);
    // A replay changes nothing.
    assert!(vsu(&mut tracker, BOB, Some(ROOM_B), [true, false, true]).is_empty());

    // A move keeps the flags: the join of the move carries them again.
    let moved = vsu(&mut tracker, BOB, Some(ROOM_A), [true, false, true]);
    assert_eq!(
        names(&moved),
        [
            ("voice.left", ROOM_B),
            ("voice.joined", ROOM_A),
            ("voice.state", ROOM_A)
        ]
    );
    let Event::VoiceState(state) = &moved[2] else {
        panic!()
    };
    assert!(state.flags.self_mute && state.flags.self_video);

    // A server mute alone counts too; a join with every flag off is only a join.
    let mut server_muted = voice_state(ALICE, Some(ROOM_B), Some(GUILD), QUIET);
    server_muted["mute"] = json!(true);
    let state: VoiceState = serde_json::from_value(server_muted).unwrap();
    let events = tracker.voice_state_update(&state);
    assert_eq!(
        names(&events),
        [
            ("voice.left", ROOM_A),
            ("voice.joined", ROOM_B),
            ("voice.state", ROOM_B)
        ]
    );
    let Event::VoiceState(state) = &events[2] else {
        panic!()
    };
    assert!(state.flags.mute && !state.flags.self_mute);
    vsu(&mut tracker, BOB, None, QUIET);
    assert_eq!(
        names(&vsu(&mut tracker, BOB, Some(ROOM_A), QUIET)),
        [("voice.joined", ROOM_A)]
    );
}

#[test]
fn a_guild_create_diff_reports_the_flags_of_a_join() {
    let stored = seeded().view().clone();
    // After a refused resume: Bob joined room B muted and deafened meanwhile.
    let mut tracker = VoiceTracker::new(id(GUILD), Some(stored));
    let events = tracker.guild_create(&guild_create(
        &base_channels(),
        &[
            voice_state(ALICE, Some(ROOM_A), None, QUIET),
            voice_state(BOB, Some(ROOM_B), None, [true, true, false]),
        ],
    ));
    assert_eq!(
        names(&events),
        [("voice.joined", ROOM_B), ("voice.state", ROOM_B)]
    );
    let Event::VoiceState(state) = &events[1] else {
        panic!()
    };
    assert!(state.flags.self_mute && state.flags.self_deaf);
}

#[test]
fn only_voice_channels_are_rooms() {
    let mut tracker = seeded();
    // Moving into a stage channel leaves the room; it is not a join.
    assert_eq!(
        names(&vsu(&mut tracker, ALICE, Some(STAGE), QUIET)),
        [("voice.left", ROOM_A)]
    );
    assert!(vsu(&mut tracker, BOB, Some(STAGE), QUIET).is_empty());
    let text: Channel = serde_json::from_value(channel(20, 0, GUILD, "chat")).unwrap();
    assert!(tracker.channel_create(&text).is_empty());
    let category: Channel = serde_json::from_value(channel(21, 4, GUILD, "games")).unwrap();
    assert!(tracker.channel_create(&category).is_empty());
}

#[test]
fn other_guilds_are_ignored() {
    let mut tracker = seeded();
    let state: VoiceState =
        serde_json::from_value(voice_state(BOB, Some(ROOM_A), Some(OTHER_GUILD), QUIET)).unwrap();
    assert!(tracker.voice_state_update(&state).is_empty());
    let foreign: Channel =
        serde_json::from_value(channel(30, 2, OTHER_GUILD, "elsewhere")).unwrap();
    assert!(tracker.channel_create(&foreign).is_empty());
    assert!(tracker.channel_delete(&foreign).is_empty());
}

#[test]
fn rooms_are_created_once_and_deleted_after_their_occupants_leave() {
    let mut tracker = seeded();
    let new_room: Channel = serde_json::from_value(channel(40, 2, GUILD, "Table C")).unwrap();
    let created = tracker.channel_create(&new_room);
    assert_eq!(names(&created), [("room.created", 40)]);
    let Event::RoomCreated(room) = &created[0] else {
        panic!()
    };
    assert_eq!(
        (room.name.as_str(), room.user_limit.get(), room.parent_id),
        ("Table C", 4, None)
    );
    assert!(
        tracker.channel_create(&new_room).is_empty(),
        "a replayed CHANNEL_CREATE is not a new room"
    );

    vsu(&mut tracker, BOB, Some(40), QUIET);
    assert_eq!(
        names(&tracker.channel_delete(&new_room)),
        [("voice.left", 40), ("room.deleted", 40)]
    );
    // Discord's own VOICE_STATE_UPDATE with no channel afterwards adds nothing.
    assert!(vsu(&mut tracker, BOB, None, QUIET).is_empty());
    assert!(tracker.channel_delete(&new_room).is_empty());
}

#[test]
fn a_stored_view_makes_the_next_guild_create_a_diff() {
    let stored = seeded().view().clone();
    // After a restart whose resume was refused: Alice left A, Bob joined B, Carol
    // moved nowhere, room B was deleted and room 50 created meanwhile.
    let mut tracker = VoiceTracker::new(id(GUILD), Some(stored));
    let channels = vec![
        channel(ROOM_A, 2, GUILD, "Table A"),
        channel(50, 2, GUILD, "Table E"),
        channel(TEXT, 0, GUILD, "general"),
    ];
    let events = tracker.guild_create(&guild_create(
        &channels,
        &[voice_state(BOB, Some(50), None, QUIET)],
    ));
    assert_eq!(
        names(&events),
        [
            ("room.created", 50),
            ("voice.left", ROOM_A),
            ("voice.joined", 50),
            ("room.deleted", ROOM_B)
        ]
    );
    // And applying the same GUILD_CREATE again changes nothing.
    let again = tracker.guild_create(&guild_create(
        &channels,
        &[voice_state(BOB, Some(50), None, QUIET)],
    ));
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn view_round_trips_through_json() {
    let tracker = seeded();
    let text = serde_json::to_string(tracker.view()).unwrap();
    let back: coven_worker::VoiceView = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, tracker.view());
}
