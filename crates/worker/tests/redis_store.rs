//! The worker pair's state in Redis and the lease that fences it, against a real
//! `redis-server`: a stale writer is refused, the lease passes on expiry and on
//! release, outbox order and ids survive a takeover, the bound holds; then two
//! workers in-process against the simulator: one active, one healthy standby
//! that serves the view and refuses commands, a graceful handover that resumes,
//! a Redis outage that sends the active back to standby without ending the
//! Discord session, and a `voice.speaking` event whose first commit fails,
//! retried like the gateway's own events.

mod support;

use std::time::Duration;

use coven_contract::{Event, RoomDeleted, Secret, Snowflake};
use coven_testkit::RedisServer;
use coven_testkit::{
    FakeHub, WAIT, eventually, health_of, signed, simulator, summary, wait_for_role,
};
use coven_worker::RedisStore;
use coven_worker::VoiceView;
use coven_worker::WorkerSettings;
use coven_worker::{Lease, LeaseTimings, wait_for_lease};
use coven_worker::{StoreError, StoredSession};
use redis::AsyncCommands;
use support::RunningWorker;
use tokio::sync::watch;

const GUILD: u64 = 1_234;

fn event(channel: u64) -> Event {
    Event::RoomDeleted(RoomDeleted {
        channel_id: Snowflake::new(channel).unwrap(),
        guild_id: Snowflake::new(GUILD).unwrap(),
    })
}

fn session(sequence: u64) -> StoredSession {
    StoredSession {
        id: "session-a".into(),
        sequence,
        resume_url: Some("ws://127.0.0.1:1".into()),
        bot_user_id: Snowflake::new(42),
    }
}

fn open(server: &RedisServer, capacity: u64) -> RedisStore {
    RedisStore::open(
        &Secret::new(server.url()),
        Snowflake::new(GUILD).unwrap(),
        capacity,
        Duration::from_secs(1),
    )
    .unwrap()
}

fn timings(ttl_ms: u64) -> LeaseTimings {
    LeaseTimings {
        ttl: Duration::from_millis(ttl_ms),
        renew_every: Duration::from_millis(ttl_ms / 4),
        poll_every: Duration::from_millis(25),
        redis_timeout: Duration::from_secs(1),
    }
}

/// Tries to take the lease until it succeeds (or `WAIT` passes).
async fn take(store: &RedisStore, timings: LeaseTimings) -> Lease {
    let (_keep, mut never) = watch::channel(false);
    tokio::time::timeout(WAIT, wait_for_lease(store, timings, |_| {}, &mut never))
        .await
        .expect("the lease comes free")
        .expect("no shutdown")
        .0
}

/// Every undelivered event, acked one by one through `store`: (id, event id, body).
async fn drain(store: &RedisStore) -> Vec<(u64, String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(next) = store.peek().await.unwrap() {
        store.ack(next.id).await.unwrap();
        out.push((next.id, next.event_id, next.body));
    }
    out
}

#[tokio::test]
async fn a_writer_with_a_stale_fencing_token_is_refused() {
    let server = RedisServer::start();
    let (a, b) = (open(&server, 100), open(&server, 100));
    let short = timings(300);
    let lease_a = Lease::try_acquire(&a, short).await.unwrap().unwrap();
    assert!(
        Lease::try_acquire(&b, short).await.unwrap().is_none(),
        "one holder at a time"
    );
    a.commit(&[event(1)], Some(&VoiceView::default()), Some(&session(1)))
        .await
        .unwrap();

    // A is paused (no renewals): the lease expires and B takes it.
    let lease_b = take(&b, short).await;
    assert!(lease_b.token() > lease_a.token(), "tokens only grow");
    assert!(!lease_a.is_valid(), "A's own deadline has passed too");

    // A wakes up and writes with its old token: every kind of write is refused.
    let late = a.commit(&[event(2)], None, Some(&session(2))).await;
    assert!(matches!(late, Err(StoreError::Fenced)), "{late:?}");
    let head = a.peek().await.unwrap().expect("reads need no lease");
    assert!(matches!(a.ack(head.id).await, Err(StoreError::Fenced)));
    assert!(matches!(
        a.bury(&head, "late").await,
        Err(StoreError::Fenced)
    ));
    assert!(matches!(
        a.save_session(&session(3)).await,
        Err(StoreError::Fenced)
    ));

    // None of it landed; B writes normally.
    let (stored, view) = b.load().await.unwrap();
    assert_eq!(stored, Some(session(1)));
    assert_eq!(view, Some(VoiceView::default()));
    b.commit(&[event(3)], None, Some(&session(4)))
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = drain(&b).await.into_iter().map(|e| e.2).collect();
    assert_eq!(
        bodies,
        [event(1).to_webhook_body(), event(3).to_webhook_body()]
    );
    assert!(b.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_lease_passes_on_expiry_on_release_and_never_while_renewed() {
    let server = RedisServer::start();
    let (a, b) = (open(&server, 100), open(&server, 100));
    let timings = timings(400);
    let lease_a = Lease::try_acquire(&a, timings).await.unwrap().unwrap();
    let keeper = lease_a.keep();

    // While A renews, B never gets it, over several TTLs.
    let until = tokio::time::Instant::now() + timings.ttl * 4;
    while tokio::time::Instant::now() < until {
        assert!(Lease::try_acquire(&b, timings).await.unwrap().is_none());
        tokio::time::sleep(timings.poll_every).await;
    }
    assert!(lease_a.is_valid());

    // A dies (no more renewals): B takes over once the lease has expired, and
    // never before A's own deadline.
    keeper.abort();
    let stopped = tokio::time::Instant::now();
    let (_keep, mut never) = watch::channel(false);
    let (lease_b, took_over) = wait_for_lease(&b, timings, |_| {}, &mut never)
        .await
        .unwrap();
    assert!(took_over, "B saw A's lease before taking it");
    assert!(
        stopped.elapsed() >= timings.ttl.saturating_sub(timings.renew_every),
        "taken after {:?}",
        stopped.elapsed()
    );
    tokio::time::timeout(WAIT, lease_a.lost())
        .await
        .expect("A knows");

    // A renewal that finds another token gives the lease up at once.
    let keeper_b = lease_b.keep();
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("coven:{{{GUILD}}}:worker:lease");
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("999999")
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::timeout(timings.renew_every * 4, lease_b.lost())
        .await
        .expect("B noticed within a renewal or two");
    keeper_b.await.unwrap();
    assert!(matches!(
        b.save_session(&session(1)).await,
        Err(StoreError::Fenced)
    ));

    // A graceful release hands the lease over at once.
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let lease_a = Lease::try_acquire(&a, timings).await.unwrap().unwrap();
    let _keeper = lease_a.keep();
    lease_a.release().await;
    assert!(!lease_a.is_valid());
    let lease = Lease::try_acquire(&b, timings).await.unwrap();
    assert!(lease.is_some(), "released: free at once");
}

#[tokio::test]
async fn outbox_order_and_event_ids_survive_a_takeover() {
    let server = RedisServer::start();
    let (a, b) = (open(&server, 100), open(&server, 100));
    let timings = timings(2_000);
    let lease_a = Lease::try_acquire(&a, timings).await.unwrap().unwrap();
    a.commit(&[event(1), event(2)], None, Some(&session(5)))
        .await
        .unwrap();
    a.commit(&[event(3)], None, Some(&session(6)))
        .await
        .unwrap();
    let first = a.peek().await.unwrap().unwrap();
    a.ack(first.id).await.unwrap();
    let second = a.peek().await.unwrap().unwrap();
    assert_eq!(a.gauges().depth(), 2);

    // A hands over (graceful stop); B continues exactly where A stopped.
    lease_a.release().await;
    let _lease_b = Lease::try_acquire(&b, timings).await.unwrap().unwrap();
    b.refresh_counts().await.unwrap();
    assert_eq!(b.gauges().depth(), 2);
    let (stored, _) = b.load().await.unwrap();
    assert_eq!(stored, Some(session(6)));
    b.commit(&[event(4)], None, Some(&session(7)))
        .await
        .unwrap();
    let rest = drain(&b).await;
    assert_eq!(rest[0].1, second.event_id, "the same event keeps its id");
    let bodies: Vec<Vec<u8>> = rest.iter().map(|e| e.2.clone()).collect();
    assert_eq!(
        bodies,
        [2, 3, 4].map(|c| event(c).to_webhook_body()),
        "in order"
    );
    let ids: Vec<u64> = rest.iter().map(|e| e.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids[0] > first.id);
    let epoch = first.event_id.split('-').next().unwrap();
    assert!(
        rest.iter().all(|e| e.1.starts_with(&format!("{epoch}-"))),
        "one epoch for the pair: {rest:?}"
    );
    assert!(first.event_id < rest[0].1 && rest[1].1 < rest[2].1);
}

#[tokio::test]
async fn past_the_bound_events_go_to_dead_letters_and_redis_errors_are_transient() {
    let mut server = RedisServer::start();
    let store = open(&server, 5);
    let _lease = Lease::try_acquire(&store, timings(10_000))
        .await
        .unwrap()
        .unwrap();
    let overflowed = store
        .commit(&(1..=7).map(event).collect::<Vec<_>>(), None, None)
        .await
        .unwrap();
    assert_eq!(overflowed, 2);
    assert_eq!(store.gauges().depth(), 5);
    assert!(store.gauges().near_full());
    assert_eq!(store.gauges().dead_letter_count(), 2);
    let head = store.peek().await.unwrap().unwrap();
    store
        .bury(&head, "hub answered 400 Bad Request")
        .await
        .unwrap();
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 3);
    assert!(letters[..2].iter().all(|l| l.reason == "outbox full"));
    assert!(letters[1].body.contains("\"7\""));
    assert_eq!(letters[2].event_id, head.event_id);
    assert!(letters[2].reason.contains("400"));
    assert_eq!(store.gauges().depth(), 4);

    // Redis goes away: calls fail as transient errors (retried by the worker),
    // and work again once it is back (the append-only file kept everything).
    server.kill();
    let error = store.peek().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    server.restart();
    let deadline = tokio::time::Instant::now() + WAIT;
    let depth = loop {
        if store.refresh_counts().await.is_ok() {
            break store.gauges().depth();
        }
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(depth, 4);
    assert_eq!(store.gauges().dead_letter_count(), 3);
}

/// `coven_worker_dead_letters_dropped_total` as `/metrics` renders it.
fn dropped_total() -> u64 {
    coven_worker::prometheus()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("coven_worker_dead_letters_dropped_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_dead_letters_in_redis_keep_the_newest_within_their_bound() {
    let server = RedisServer::start_volatile();
    let store = open(&server, 2).with_dead_letter_capacity(3);
    let _lease = Lease::try_acquire(&store, timings(10_000))
        .await
        .unwrap()
        .unwrap();
    let before = dropped_total();
    let overflowed = store
        .commit(&(1..=7).map(event).collect::<Vec<_>>(), None, None)
        .await
        .unwrap();
    assert_eq!(overflowed, 5);
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 3);
    for (letter, channel) in letters.iter().zip(5..=7) {
        assert!(
            letter.body.contains(&format!("\"{channel}\"")),
            "{letter:?}"
        );
    }
    assert_eq!(store.gauges().dead_letter_count(), 3);
    assert_eq!(dropped_total() - before, 2);

    let head = store.peek().await.unwrap().unwrap();
    store
        .bury(&head, "hub answered 400 Bad Request")
        .await
        .unwrap();
    store
        .bury_raw(r#"{"t":"VOICE_STATE_UPDATE"}"#, "unreadable: missing field")
        .await
        .unwrap();
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 3);
    assert!(letters[0].body.contains("\"7\""));
    assert_eq!(letters[1].event_id, head.event_id);
    assert_eq!(letters[2].reason, "unreadable: missing field");
    assert_eq!(letters[2].body, r#"{"t":"VOICE_STATE_UPDATE"}"#);
    assert_ne!(letters[2].event_id, letters[1].event_id);
    assert_eq!(dropped_total() - before, 4);
    // Redis itself holds no more than the bound.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: u64 = conn
        .xlen(format!("coven:{{{GUILD}}}:worker:dead"))
        .await
        .unwrap();
    assert_eq!(len, 3);
}

/// Lease timings short enough for tests, long enough for a loaded machine.
fn fast() -> LeaseTimings {
    LeaseTimings {
        ttl: Duration::from_millis(1_500),
        renew_every: Duration::from_millis(300),
        poll_every: Duration::from_millis(100),
        redis_timeout: Duration::from_millis(500),
    }
}

async fn pair_worker(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    server: &RedisServer,
    dir: &std::path::Path,
) -> RunningWorker {
    let url = server.url();
    RunningWorker::start_with(sim, hub, dir, move |settings: &mut WorkerSettings| {
        settings.redis_url = Some(Secret::new(url));
        settings.lease = fast();
    })
    .await
}

#[tokio::test]
async fn a_pair_has_one_active_and_a_healthy_standby_that_takes_over_by_resuming() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let server = RedisServer::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = pair_worker(&sim, &hub, &server, dir_a.path()).await;
    wait_for_role(a.health, "active").await;
    let b = pair_worker(&sim, &hub, &server, dir_b.path()).await;
    let standby = wait_for_role(b.health, "standby").await;
    assert_eq!(standby["state"], "standby", "{standby}");
    assert_eq!(standby["status"], "ok", "{standby}");

    let handle = sim.handle();
    let seed = handle.seed();
    let (carol, room) = (seed.member_user_ids[2], seed.voice_channel_ids[2]);
    handle.user_join(carol, room).unwrap();
    hub.wait_for_events(1).await;

    // The standby serves the active's view from Redis, and refuses commands.
    let view: serde_json::Value = signed(reqwest::Method::GET, b.health, "/voice-view", b"")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["members"][carol.to_string()]["channelId"],
        room.to_string(),
        "{view}"
    );
    let command = format!(r#"{{"channelId":"{room}"}}"#);
    let refused = signed(
        reqwest::Method::POST,
        b.health,
        "/commands/join",
        command.as_bytes(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["message"], "standby", "{body}");
    let unsigned = reqwest::Client::new()
        .post(format!("http://{}/commands/join", b.health))
        .body(command.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403, "the signature is checked first");

    // Graceful stop of the active: the standby takes over at once, by RESUME.
    let before = handle.counters();
    a.stop().await.unwrap();
    wait_for_role(b.health, "active").await;
    handle
        .wait_for(|c| c.resumes > before.resumes, WAIT)
        .await
        .expect("the standby resumed the session");
    handle.user_leave(carol).unwrap();
    let events = hub.wait_for_events(2).await;
    assert_eq!(
        summary(&events),
        [("voice.joined", room, carol), ("voice.left", room, carol)]
    );
    assert_eq!(
        handle.counters().identifies,
        1,
        "one IDENTIFY for the pair's life"
    );
    // The new active knows the bot from the stored session: commands reach the
    // voice client (the bot is in no room, hence 409, not 503).
    let leave = signed(
        reqwest::Method::POST,
        b.health,
        "/commands/leave",
        command.as_bytes(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(leave.status(), 409, "{:?}", leave.text().await);
    b.stop().await.unwrap();
}

#[tokio::test]
async fn losing_redis_sends_the_active_to_standby_without_ending_the_session() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = pair_worker(&sim, &hub, &server, dir.path()).await;
    wait_for_role(worker.health, "active").await;
    let handle = sim.handle();
    let seed = handle.seed();
    let users = &seed.member_user_ids[2..5];
    let room = seed.voice_channel_ids[1];
    handle.user_join(users[0], room).unwrap();
    hub.wait_for_events(1).await;

    // Redis dies: within the lease's validity the worker lets the session go
    // (dropping the connection, no close frame) and waits as an unhealthy standby.
    server.kill();
    handle
        .wait_for(|c| c.active_connections == 0, WAIT)
        .await
        .expect("the worker let go of the gateway connection");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((503, body)) = health_of(worker.health).await
            && body["role"] == "standby"
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never went standby");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(handle.session_ids().len(), 1, "the session still exists");

    // Meanwhile users move; Discord holds the dispatches for the session.
    handle.user_join(users[1], room).unwrap();
    handle.user_leave(users[0]).unwrap();

    // Redis returns: the worker takes the lease again and resumes.
    server.restart();
    wait_for_role(worker.health, "active").await;
    let events = hub.wait_for_events(3).await;
    assert_eq!(
        summary(&events),
        [
            ("voice.joined", room, users[0]),
            ("voice.joined", room, users[1]),
            ("voice.left", room, users[0]),
        ]
    );
    let counters = handle.counters();
    assert_eq!(counters.identifies, 1, "{counters:?}");
    assert!(counters.resumes >= 1, "{counters:?}");
    worker.stop().await.unwrap();
}

/// How many plain `ERR` replies Redis has sent (script errors among them).
async fn err_replies(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("errorstats")
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("errorstat_ERR:count="))
        .map_or(0, |count| count.trim().parse().unwrap())
}

/// Every event the bot's voice connection produces takes the gateway's fenced,
/// retried commit path: while Redis refuses to commit events, the bot hears
/// Alice speak, and both `voice.speaking` events still reach the hub once
/// Redis accepts commits again (before, a failed commit lost the event).
#[tokio::test]
async fn a_speaking_event_whose_first_commit_fails_is_retried_and_delivered() {
    // The bot's voice connection must trust the simulator's voice server.
    if !support::trusts_the_voice_ca_or_reruns(
        "a_speaking_event_whose_first_commit_fails_is_retried_and_delivered",
    ) {
        return;
    }
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = pair_worker(&sim, &hub, &server, dir.path()).await;
    wait_for_role(worker.health, "active").await;
    let handle = sim.handle();
    let seed = handle.seed();
    let (room, alice) = (seed.voice_channel_ids[0], seed.member_user_ids[0]);

    // The bot joins Alice's room (its voice client exists once the session is ready).
    let join = format!(r#"{{"channelId":"{room}"}}"#);
    eventually("the bot joined", async || {
        let response = signed(
            reqwest::Method::POST,
            worker.health,
            "/commands/join",
            join.as_bytes(),
        )
        .send()
        .await
        .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    // Every commit of events fails from here: the outbox counter is not a number.
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = |name: &str| format!("coven:{{{}}}:worker:{name}", sim.guild_id());
    let (next_id, saved) = (key("next_id"), key("test:next_id"));
    let () = redis::Script::new(
        "redis.call('SET', KEYS[2], redis.call('GET', KEYS[1]) or '') \
         redis.call('SET', KEYS[1], 'not-a-number')",
    )
    .key(&next_id)
    .key(&saved)
    .invoke_async(&mut redis)
    .await
    .unwrap();
    let errors = err_replies(&mut redis).await;

    // Alice speaks; the first commit of her voice.speaking fails.
    assert!(handle.voice_user_speak(alice, Duration::from_millis(300)));
    let mut probe = redis.clone();
    eventually("a commit refused by redis", async || {
        (err_replies(&mut probe).await > errors).then_some(())
    })
    .await;
    let () = redis::Script::new(
        "local v = redis.call('GET', KEYS[2]) \
         if v == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], v) end",
    )
    .key(&next_id)
    .key(&saved)
    .invoke_async(&mut redis)
    .await
    .unwrap();

    // Redis accepts commits again: both speaking events reach the hub, in order.
    let speaking = || -> Vec<bool> {
        hub.events()
            .iter()
            .filter_map(|event| match event {
                Event::VoiceSpeaking(p) if p.user_id.get() == alice => Some(p.speaking),
                _ => None,
            })
            .collect()
    };
    eventually("voice.speaking true then false at the hub", async || {
        (speaking() == [true, false]).then_some(())
    })
    .await;
    worker.stop().await.unwrap();
}

/// The lease value in Redis, as a raw string (`None` when absent).
async fn raw_lease(redis: &mut redis::aio::MultiplexedConnection) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("coven:{{{GUILD}}}:worker:lease"))
        .query_async(redis)
        .await
        .unwrap()
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// Redis loses its data while A holds the lease (FLUSHALL here; a failover to a
/// replica that missed writes is the same): the fencing counter starts again,
/// yet B's token is still larger than A's, the two lease values differ, and A —
/// a holder paused across the loss that wakes up and carries on — can neither
/// renew nor write (docs/worker.md, "the active/standby pair").
#[tokio::test]
async fn after_redis_loses_its_data_no_token_is_handed_out_twice() {
    let server = RedisServer::start();
    let (a, b) = (open(&server, 100), open(&server, 100));
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let timings = timings(10_000);
    let before = unix_ms();
    let lease_a = Lease::try_acquire(&a, timings).await.unwrap().unwrap();
    assert!(
        lease_a.token() > before,
        "tokens start above the clock: {} <= {before}",
        lease_a.token()
    );
    let value_a = raw_lease(&mut redis).await.expect("A holds the lease");
    let (token, nonce) = value_a.split_once(':').expect("<token>:<nonce>");
    assert_eq!(token, lease_a.token().to_string());
    assert!(nonce.len() >= 16, "{value_a}");
    a.commit(&[event(1)], None, Some(&session(1)))
        .await
        .unwrap();

    // Redis loses everything: the lease, the counter, the outbox.
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    let lease_b = Lease::try_acquire(&b, timings)
        .await
        .unwrap()
        .expect("the lease is gone with the data");
    assert!(
        lease_b.token() > lease_a.token(),
        "a token is never handed out twice: {} after {}",
        lease_b.token(),
        lease_a.token()
    );
    let value_b = raw_lease(&mut redis).await.unwrap();
    assert_ne!(value_a, value_b);

    // A wakes up and carries on, still carrying its own lease value: every
    // write is refused, its renewal finds another value, and nothing of it lands.
    let head = b.peek().await.unwrap();
    assert!(head.is_none(), "the outbox went with the data: {head:?}");
    for late in [
        a.commit(&[event(2)], None, Some(&session(2))).await.err(),
        a.save_session(&session(3)).await.err(),
        a.ack(1).await.err(),
    ] {
        assert!(matches!(late, Some(StoreError::Fenced)), "{late:?}");
    }
    assert!(lease_a.is_valid(), "A has not noticed yet");
    let keeper = lease_a.keep();
    tokio::time::timeout(timings.renew_every * 4, lease_a.lost())
        .await
        .expect("A's renewal found another holder");
    keeper.await.unwrap();
    lease_a.release().await; // Not A's to delete: B keeps it.
    b.commit(&[event(3)], None, Some(&session(4)))
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = drain(&b).await.into_iter().map(|e| e.2).collect();
    assert_eq!(bodies, [event(3).to_webhook_body()]);
    assert_eq!(b.load().await.unwrap().0, Some(session(4)));
    assert_eq!(raw_lease(&mut redis).await, Some(value_b));

    // And a lease taken after B's is larger again.
    lease_b.release().await;
    let lease_c = Lease::try_acquire(&a, timings).await.unwrap().unwrap();
    assert!(lease_c.token() > lease_b.token());
}

/// A rolling upgrade: a worker of the previous release holds the lease with a
/// bare counter value (`7`). The new worker waits while it is held, takes it once
/// it is released with a token above both the counter and the clock, and the
/// old worker's value never matches the new one.
#[tokio::test]
async fn a_lease_held_by_a_worker_of_the_previous_release_is_respected() {
    let server = RedisServer::start();
    let store = open(&server, 100);
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = |name: &str| format!("coven:{{{GUILD}}}:worker:{name}");
    let () = redis::cmd("SET")
        .arg(key("fence"))
        .arg(7)
        .query_async(&mut redis)
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(key("lease"))
        .arg("7")
        .arg("PX")
        .arg(10_000)
        .query_async(&mut redis)
        .await
        .unwrap();
    let timings = timings(10_000);
    assert!(Lease::try_acquire(&store, timings).await.unwrap().is_none());
    let () = redis::cmd("DEL")
        .arg(key("lease"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let lease = Lease::try_acquire(&store, timings).await.unwrap().unwrap();
    assert!(lease.token() > unix_ms() - 60_000, "{}", lease.token());
    let fence: u64 = redis::cmd("GET")
        .arg(key("fence"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        fence,
        lease.token(),
        "the counter goes on from the new token"
    );
    let value = raw_lease(&mut redis).await.unwrap();
    assert_ne!(value, "7");
    assert!(value.starts_with(&format!("{}:", lease.token())), "{value}");
}
