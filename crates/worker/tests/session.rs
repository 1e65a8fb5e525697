//! The worker end to end against the simulator: every docs/spec.md §4 rule through a real
//! gateway session, the gateway faults, restarts, a failing hub, fatal closes and
//! dispatches twilight cannot read.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use coven_contract::Event;
use coven_sim::VoiceFlags;
use coven_testkit::{FakeHub, WAIT, metric_sum, simulator, summary};
use support::RunningWorker;

/// Waits until the worker has a live session (so it has seen `GUILD_CREATE`).
async fn live(worker: &RunningWorker) {
    worker.wait_for_health(200).await;
}

#[tokio::test]
async fn every_voice_rule_reaches_the_hub_in_order() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;

    let seed = sim.handle().seed();
    let [room1, room2, room3] = seed.voice_channel_ids[..] else {
        panic!("three rooms")
    };
    let (alice, bob, carol) = (
        seed.member_user_ids[0],
        seed.member_user_ids[1],
        seed.member_user_ids[2],
    );
    let sim_handle = sim.handle();
    // Alice and Bob are in room 1 since before the worker started.
    sim_handle.user_leave(alice).unwrap();
    sim_handle.user_move(bob, room2).unwrap();
    sim_handle.user_join(carol, room3).unwrap();
    sim_handle
        .user_set_flags(
            carol,
            VoiceFlags {
                self_mute: Some(true),
                ..VoiceFlags::default()
            },
        )
        .unwrap();
    let room4 = sim_handle
        .create_channel("Table 4", 2, Some(seed.category_id))
        .unwrap();
    sim_handle.create_channel("chatter", 0, None).unwrap();
    sim_handle.user_move(carol, room4).unwrap();
    sim_handle.delete_channel(room4).unwrap();

    let events = hub.wait_for_events(11).await;
    assert_eq!(
        summary(&events),
        [
            ("voice.left", room1, alice),
            ("voice.left", room1, bob),
            ("voice.joined", room2, bob),
            ("voice.joined", room3, carol),
            ("voice.state", room3, carol),
            ("room.created", room4, 0),
            ("voice.left", room3, carol),
            ("voice.joined", room4, carol),
            // Carol is still self-muted: the join of her move carries the flags.
            ("voice.state", room4, carol),
            ("voice.left", room4, carol),
            ("room.deleted", room4, 0),
        ]
    );
    for index in [4, 8] {
        let Event::VoiceState(state) = &events[index] else {
            panic!()
        };
        assert!(state.flags.self_mute && !state.flags.self_deaf);
    }

    let metrics = reqwest::get(format!("http://{}/metrics", worker.health))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "coven_worker_events_total{type=\"voice.left\"}",
        "coven_worker_delivered_total",
        "coven_worker_identifies_total",
        "coven_worker_outbox_depth",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }
    worker.stop().await.unwrap();
}

/// A named fault injection.
type Fault<'a> = (&'static str, Box<dyn Fn() + 'a>);

/// Makes one more voice change and waits for it to reach the hub.
async fn one_more_event(sim: &coven_sim::Simulator, hub: &FakeHub, expected: usize) {
    let handle = sim.handle();
    let seed = handle.seed();
    let user = seed.member_user_ids[3];
    let room = seed.voice_channel_ids[expected % 3];
    if handle.voice_channel_of(user).is_some() {
        handle.user_leave(user).unwrap();
    } else {
        handle.user_join(user, room).unwrap();
    }
    hub.wait_for_events(expected).await;
}

#[tokio::test]
async fn gateway_faults_lose_nothing() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    let handle = sim.handle();
    let mut expected = 0;

    // Each fault, then a change made while the worker is recovering.
    let faults: Vec<Fault<'_>> = vec![
        (
            "op 7 reconnect",
            Box::new(|| assert_eq!(handle.reconnect(), 1)),
        ),
        (
            "op 9 resumable",
            Box::new(|| assert_eq!(handle.invalid_session(true), 1)),
        ),
        ("TCP drop", Box::new(|| assert_eq!(handle.drop_tcp(), 1))),
        ("zombie", Box::new(|| assert_eq!(handle.zombie(), 1))),
        (
            "op 9 not resumable",
            Box::new(|| assert_eq!(handle.invalid_session(false), 1)),
        ),
    ];
    for (name, fault) in &faults {
        let before = handle.counters();
        fault();
        expected += 1;
        one_more_event(&sim, &hub, expected).await;
        handle
            .wait_for(
                |c| c.identifies + c.resumes > before.identifies + before.resumes,
                WAIT,
            )
            .await
            .unwrap_or_else(|_| panic!("no new session after {name}"));
        live(&worker).await;
    }
    // Resumable close codes: the worker reconnects and keeps delivering.
    for code in [4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009] {
        let before = handle.counters();
        assert_eq!(handle.close(code), 1, "close {code}");
        handle
            .wait_for(
                |c| c.identifies + c.resumes > before.identifies + before.resumes,
                WAIT,
            )
            .await
            .unwrap_or_else(|_| panic!("no new session after close {code}"));
        expected += 1;
        one_more_event(&sim, &hub, expected).await;
    }
    let counters = handle.counters();
    // One identify at start, one after op 9 false, and at most one per
    // close code whose session Discord would not resume (4007 invalid seq, 4009 timeout).
    assert!(counters.identifies <= 4, "{counters:?}");
    assert!(counters.resumes >= 10, "{counters:?}");
    assert_eq!(hub.events().len(), expected);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_worker_resumes_and_replays_what_it_missed() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    one_more_event(&sim, &hub, 1).await;
    worker.stop().await.unwrap();

    // While the worker is down, a user joins: Discord holds the dispatch.
    let handle = sim.handle();
    let seed = handle.seed();
    handle
        .user_join(seed.member_user_ids[4], seed.voice_channel_ids[2])
        .unwrap();

    let identifies = handle.counters().identifies;
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    let events = hub.wait_for_events(2).await;
    assert_eq!(
        summary(&events)[1],
        (
            "voice.joined",
            seed.voice_channel_ids[2],
            seed.member_user_ids[4]
        )
    );
    let counters = handle.counters();
    assert_eq!(
        counters.identifies, identifies,
        "a restart must resume, not identify"
    );
    assert!(counters.resumes >= 1);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_resume_after_restart_still_reports_what_changed() {
    // Sessions die with their connection here, so the restart's resume is
    // refused (op 9 false) and the worker must identify afresh.
    let sim = coven_sim::Simulator::start(coven_sim::SimConfig {
        session_resume_window: Duration::ZERO,
        ..coven_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    worker.stop().await.unwrap();

    // While it is down, Alice leaves and Bob moves.
    let handle = sim.handle();
    let seed = handle.seed();
    let (alice, bob) = (seed.member_user_ids[0], seed.member_user_ids[1]);
    handle.user_leave(alice).unwrap();
    handle.user_move(bob, seed.voice_channel_ids[1]).unwrap();
    let identifies = handle.counters().identifies;

    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    let events = hub.wait_for_events(3).await;
    let room1 = seed.voice_channel_ids[0];
    assert_eq!(
        summary(&events),
        [
            ("voice.left", room1, alice),
            ("voice.left", room1, bob),
            ("voice.joined", seed.voice_channel_ids[1], bob)
        ]
    );
    assert_eq!(handle.counters().identifies, identifies + 1);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_hub_outage_loses_nothing_and_keeps_order() {
    let sim = simulator().await;
    // 503 for the first 6 attempts, then accept.
    let hub = FakeHub::start(Box::new(|_, attempt| {
        if attempt <= 6 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    let handle = sim.handle();
    let seed = handle.seed();
    for &user in &seed.member_user_ids[2..6] {
        handle.user_join(user, seed.voice_channel_ids[1]).unwrap();
    }
    let events = hub.wait_for_events(4).await;
    let users: Vec<u64> = summary(&events).iter().map(|e| e.2).collect();
    assert_eq!(users, seed.member_user_ids[2..6]);
    assert!(
        hub.attempts() >= 10,
        "the first six attempts failed and were retried"
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_the_hub_refuses_is_dead_lettered_and_the_rest_flows() {
    let sim = simulator().await;
    let handle = sim.handle();
    let seed = handle.seed();
    let poisoned = seed.member_user_ids[3];
    let hub = FakeHub::start(Box::new(move |event, _| match event {
        Event::VoiceJoined(p) if p.user_id.get() == poisoned => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    for &user in &seed.member_user_ids[2..5] {
        handle.user_join(user, seed.voice_channel_ids[2]).unwrap();
    }
    let events = hub.wait_for_events(2).await;
    let users: Vec<u64> = summary(&events).iter().map(|e| e.2).collect();
    assert_eq!(users, [seed.member_user_ids[2], seed.member_user_ids[4]]);
    let health = worker.wait_for_health(200).await;
    assert_eq!(health["deadLetters"], 1, "{health}");
    worker.stop().await.unwrap();

    let outbox = coven_worker::LocalStore::open(&dir.path().join("worker.redb"), 10).unwrap();
    let letters = outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("400"), "{letters:?}");
    assert!(letters[0].body.contains(&poisoned.to_string()));
}

#[tokio::test]
async fn fatal_close_codes_end_the_worker_with_a_clear_error() {
    for code in [4004_u16, 4010, 4011, 4012, 4013, 4014] {
        let sim = simulator().await;
        let hub = FakeHub::start(FakeHub::accepting()).await;
        let dir = tempfile::tempdir().unwrap();
        let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
        live(&worker).await;
        assert_eq!(sim.handle().close(code), 1);
        let error = worker
            .finished()
            .await
            .expect_err("a fatal close ends the worker");
        assert!(
            matches!(error, coven_worker::WorkerError::Fatal { code: Some(c), .. } if c == code),
            "{code}: {error}"
        );
        assert!(error.to_string().contains(&code.to_string()), "{error}");
    }
}

#[tokio::test]
async fn a_bad_token_is_fatal_and_says_so() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start_with(&sim, &hub, dir.path(), |settings| {
        settings.gateway.bot_token = coven_contract::Secret::new("not-the-token");
    })
    .await;
    let error = worker.finished().await.expect_err("4004 is fatal");
    let message = error.to_string();
    assert!(
        message.contains("rejected the bot token") && message.contains("4004"),
        "{message}"
    );
    assert!(!message.contains("not-the-token"));
}

#[tokio::test]
async fn health_turns_503_while_the_gateway_is_down_and_back() {
    let sim = simulator().await;
    let addr = sim.addr();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    let health = worker.wait_for_health(200).await;
    assert_eq!(health["state"], "active");
    assert_eq!(health["status"], "ok");

    sim.shutdown().await;
    let health = worker.wait_for_health(503).await;
    assert_eq!(health["status"], "unavailable");
    assert_ne!(health["state"], "active");

    // Discord comes back (a new simulator on the same address).
    let sim = coven_sim::Simulator::start(coven_sim::SimConfig {
        bind: addr,
        heartbeat_interval: Duration::from_millis(500),
        ..coven_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let health = worker.wait_for_health(200).await;
    assert!(health["sessionAgeSecs"].is_u64());
    assert!(sim.handle().counters().identifies >= 1);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn the_voice_view_is_served_to_signed_requests_only() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    let seed = sim.handle().seed();
    sim.handle()
        .user_join(seed.member_user_ids[2], seed.voice_channel_ids[2])
        .unwrap();
    hub.wait_for_events(1).await;

    let url = format!("http://{}/voice-view", worker.health);
    let client = reqwest::Client::new();
    let get = |secret: &str| {
        coven_testkit::signed_with(
            reqwest::Method::GET,
            worker.health,
            "/voice-view",
            secret,
            b"",
        )
    };
    let view: serde_json::Value = get(coven_testkit::SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = seed.voice_channel_ids[2].to_string();
    assert_eq!(view["rooms"][&room]["name"], "Table 3", "{view}");
    assert_eq!(view["rooms"][&room]["userLimit"], 4, "{view}");
    let carol = seed.member_user_ids[2].to_string();
    assert_eq!(
        view["members"][&carol]["channelId"],
        room.as_str(),
        "{view}"
    );
    assert_eq!(
        view["members"][&carol]["flags"]["selfMute"], false,
        "{view}"
    );
    let alice = seed.member_user_ids[0].to_string();
    assert_eq!(
        view["members"][&alice]["channelId"],
        seed.voice_channel_ids[0].to_string()
    );

    assert_eq!(get("wrong-secret").send().await.unwrap().status(), 403);
    let unsigned = client.get(&url).send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(unsigned.text().await.unwrap(), r#"{"message":"forbidden"}"#);
    worker.stop().await.unwrap();
}

/// The tests that count unreadable dispatches and re-syncs take turns: the
/// metrics are the process's, shared by the workers of every test in this file.
static COUNTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_voice_state_twilight_cannot_read_still_reaches_the_hub() {
    let _turn = COUNTING.lock().await;
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    let unreadable = r#"coven_worker_gateway_unreadable_total{event="VOICE_STATE_UPDATE"}"#;
    let before = metric_sum(worker.health, unreadable).await;
    let handle = sim.handle();
    let seed = handle.seed();
    let (carol, room) = (seed.member_user_ids[2], seed.voice_channel_ids[2]);
    // Both dispatches go out with `self_stream: null` and a member without
    // `roles`: twilight 0.18 refuses them (their sequence still counts).
    assert_eq!(
        handle.inject(&coven_sim::Fault::UnreadableVoiceStates {
            count: 2,
            without_user_id: false
        }),
        1
    );
    handle.user_join(carol, room).unwrap();
    handle
        .user_set_flags(
            carol,
            VoiceFlags {
                self_mute: Some(true),
                ..VoiceFlags::default()
            },
        )
        .unwrap();
    let events = hub.wait_for_events(2).await;
    assert_eq!(
        summary(&events),
        [("voice.joined", room, carol), ("voice.state", room, carol)]
    );
    let Event::VoiceState(state) = &events[1] else {
        panic!()
    };
    assert!(state.flags.self_mute && !state.flags.self_stream);

    assert_eq!(metric_sum(worker.health, unreadable).await - before, 2);
    let health = worker.wait_for_health(200).await;
    assert_eq!(health["deadLetters"], 2, "{health}");
    // The session went on: a later, readable change flows as usual.
    handle.user_leave(carol).unwrap();
    let events = hub.wait_for_events(3).await;
    assert_eq!(summary(&events)[2], ("voice.left", room, carol));
    worker.stop().await.unwrap();

    let outbox = coven_worker::LocalStore::open(&dir.path().join("worker.redb"), 10).unwrap();
    let letters = outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for letter in &letters {
        assert!(letter.body.contains(r#""self_stream":null"#), "{letter:?}");
        assert!(letter.body.contains(&carol.to_string()), "{letter:?}");
        assert!(letter.reason.contains("VOICE_STATE_UPDATE"), "{letter:?}");
        // serde's own words (the member comes before `self_stream`).
        assert!(
            letter.reason.contains("missing field `roles`"),
            "{letter:?}"
        );
    }
}

#[tokio::test]
async fn a_voice_state_not_even_read_leniently_is_re_synced_with_a_new_session() {
    let _turn = COUNTING.lock().await;
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    live(&worker).await;
    let handle = sim.handle();
    let seed = handle.seed();
    let (carol, room) = (seed.member_user_ids[2], seed.voice_channel_ids[2]);
    let identifies = handle.counters().identifies;
    let resyncs = "coven_worker_gateway_resyncs_total";
    let before = metric_sum(worker.health, resyncs).await;
    // Whose voice state it is cannot be told: the view must be re-synced.
    handle.inject(&coven_sim::Fault::UnreadableVoiceStates {
        count: 1,
        without_user_id: true,
    });
    handle.user_join(carol, room).unwrap();
    // A new session's GUILD_CREATE, diffed against the view, reports the join.
    let events = hub.wait_for_events(1).await;
    assert_eq!(summary(&events), [("voice.joined", room, carol)]);
    assert_eq!(handle.counters().identifies, identifies + 1);
    assert_eq!(metric_sum(worker.health, resyncs).await - before, 1);
    worker.wait_for_health(200).await;
    worker.stop().await.unwrap();
    let outbox = coven_worker::LocalStore::open(&dir.path().join("worker.redb"), 10).unwrap();
    let letters = outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains("VOICE_STATE_UPDATE"),
        "{letters:?}"
    );
}
