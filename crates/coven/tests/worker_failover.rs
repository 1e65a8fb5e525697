//! Two `coven worker` processes for one bot with `REDIS_URL`: one active, one
//! standby. Users keep joining, leaving and moving while the active is killed
//! with SIGKILL (or stopped with SIGTERM); the standby must take the lease,
//! RESUME the same Discord session (no second IDENTIFY) and deliver every event
//! to the hub in order — a redelivery of the same event id is the only
//! duplicate allowed. A paused active (SIGSTOP) whose connection stays open is
//! superseded by the standby's RESUME, and when it wakes it lets go without
//! touching the session again — also when Redis lost its data meanwhile (the
//! fencing counter started again, yet the new token is larger and the old
//! lease value never comes back).

mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coven_testkit::{
    FakeHub, KillOnDrop, RedisServer, WAIT, assert_in_order_at_least_once, eventually, free_port,
    simulator, wait_for_role,
};
use process::worker_command;

type Expected = Vec<(&'static str, u64, u64)>;

#[tokio::test]
async fn a_malformed_redis_url_stops_the_worker_with_one_line_that_hides_it() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let state = tempfile::tempdir().unwrap();
    let output = worker_command(&sim, &hub, state.path(), free_port())
        .env("REDIS_URL", "http//:password-never-printed@127.0.0.1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("REDIS_URL is invalid"), "{stderr}");
    assert!(!stderr.contains("password-never-printed"), "{stderr}");
}

fn health(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn pair_worker(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    redis: &RedisServer,
    state: &Path,
    port: u16,
    log_level: &str,
) -> KillOnDrop {
    KillOnDrop::new(
        worker_command(sim, hub, state, port)
            .env("REDIS_URL", redis.url())
            .env("LOG_LEVEL", log_level)
            .spawn()
            .unwrap(),
    )
}

/// A running pair against one simulator, hub and Redis: worker A (active) and
/// worker B (standby), each with its own state folder and health port.
struct Pair {
    sim: coven_sim::Simulator,
    hub: FakeHub,
    redis: RedisServer,
    state_a: tempfile::TempDir,
    state_b: tempfile::TempDir,
    port_a: u16,
    port_b: u16,
    a: KillOnDrop,
    b: KillOnDrop,
}

/// Starts A (logging at `log_a`), waits until it is active, then B as its standby.
async fn start_pair(log_a: &str) -> Pair {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let redis = RedisServer::start();
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let a = pair_worker(&sim, &hub, &redis, state_a.path(), port_a, log_a);
    wait_for_role(health(port_a), "active").await;
    let b = pair_worker(&sim, &hub, &redis, state_b.path(), port_b, "warn");
    wait_for_role(health(port_b), "standby").await;
    Pair {
        sim,
        hub,
        redis,
        state_a,
        state_b,
        port_a,
        port_b,
        a,
        b,
    }
}

/// Users join, leave and move between rooms every `every` until `stop` is set;
/// returns the events the hub must receive, in order.
fn produce(
    handle: coven_sim::SimHandle,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Expected> {
    let seed = handle.seed();
    let users = seed.member_user_ids[2..6].to_vec();
    let rooms = seed.voice_channel_ids.clone();
    tokio::spawn(async move {
        let mut expected = Vec::new();
        let mut i = 0_usize;
        while !stop.load(Ordering::Relaxed) && i < 5_000 {
            let user = users[i % users.len()];
            match handle.voice_channel_of(user) {
                None => {
                    let room = rooms[i % rooms.len()];
                    handle.user_join(user, room).unwrap();
                    expected.push(("voice.joined", room, user));
                }
                Some(room) if i.is_multiple_of(3) => {
                    handle.user_leave(user).unwrap();
                    expected.push(("voice.left", room, user));
                }
                Some(room) => {
                    let to = *rooms.iter().find(|&&r| r != room).unwrap();
                    handle.user_move(user, to).unwrap();
                    expected.push(("voice.left", room, user));
                    expected.push(("voice.joined", to, user));
                }
            }
            i += 1;
            tokio::time::sleep(every).await;
        }
        expected
    })
}

async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the hub has accepted more than `count` deliveries; returns when
/// the first of them arrived.
async fn first_delivery_after(hub: &FakeHub, count: usize) -> Instant {
    let deadline = Instant::now() + WAIT;
    while hub.accepted().len() <= count {
        assert!(Instant::now() < deadline, "no delivery after the handover");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.accepted_at(count)
}

#[tokio::test]
async fn kill_9_of_the_active_the_standby_resumes_and_nothing_is_lost_or_reordered() {
    let Pair {
        sim,
        hub,
        redis,
        state_a,
        state_b: _state_b,
        port_a,
        port_b,
        a: active,
        b: _standby,
    } = start_pair("warn").await;
    let body = wait_for_role(health(port_b), "standby").await;
    assert_eq!(body["state"], "standby", "{body}");
    let handle = sim.handle();
    assert_eq!(handle.counters().identifies, 1);
    assert!(metrics(port_b).await.contains("coven_worker_lease_held 0"));

    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(handle.clone(), Duration::from_millis(25), stop.clone());
    hub.wait_for_events(15).await;

    // SIGKILL: no shutdown code runs, the lease is left to expire.
    let resumes_before = handle.counters().resumes;
    let delivered = hub.accepted().len();
    drop(active);
    let killed = Instant::now();
    handle
        .wait_for(|c| c.resumes > resumes_before, WAIT)
        .await
        .expect("the standby resumed the session");
    let resumed = killed.elapsed();
    let first = first_delivery_after(&hub, delivered).await - killed;
    let body = wait_for_role(health(port_b), "active").await;
    assert_eq!(body["state"], "active", "{body}");
    println!("failover after kill -9: RESUMED after {resumed:?}, first delivery after {first:?}");

    // The killed worker comes back on its old state folder: it is the standby now.
    let _restarted = pair_worker(&sim, &hub, &redis, state_a.path(), port_a, "warn");
    wait_for_role(health(port_a), "standby").await;

    hub.wait_for_events(hub.events().len() + 20).await; // Live events under the new active.
    stop.store(true, Ordering::Relaxed);
    let expected = producer.await.unwrap();
    assert!(
        delivered < expected.len(),
        "the kill landed while events flowed"
    );
    hub.wait_for_events(expected.len()).await;
    assert_in_order_at_least_once(&hub.accepted(), &expected);
    let counters = handle.counters();
    assert_eq!(
        counters.identifies, 1,
        "no IDENTIFY after the first: {counters:?}"
    );
    let text = metrics(port_b).await;
    for line in [
        "coven_worker_lease_held 1",
        "coven_worker_takeovers_total 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn sigterm_of_the_active_hands_over_at_once() {
    let Pair {
        sim,
        hub,
        redis: _redis,
        state_a: _state_a,
        state_b: _state_b,
        port_a: _,
        port_b,
        a: active,
        b: _standby,
    } = start_pair("info").await;

    let handle = sim.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(handle.clone(), Duration::from_millis(25), stop.clone());
    hub.wait_for_events(15).await;

    let resumes = handle.counters().resumes;
    let pid = active.id().to_string();
    let stopped = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    handle
        .wait_for(|c| c.resumes > resumes, WAIT)
        .await
        .expect("the standby resumed the session");
    let handover = stopped.elapsed();
    println!("handover after SIGTERM: RESUMED after {handover:?}");
    wait_for_role(health(port_b), "active").await;
    let output = tokio::task::spawn_blocking(move || active.into_inner().wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("released the worker lease"),
        "the active released its lease instead of letting it expire:\n{stderr}"
    );
    assert!(
        handover < Duration::from_secs(5),
        "no wait for the 5 s lease to expire: {handover:?}"
    );

    hub.wait_for_events(hub.events().len() + 20).await; // Live events under the new active.
    stop.store(true, Ordering::Relaxed);
    let expected = producer.await.unwrap();
    hub.wait_for_events(expected.len()).await;
    assert_in_order_at_least_once(&hub.accepted(), &expected);
    assert_eq!(handle.counters().identifies, 1);
}

fn signal(child: &KillOnDrop, name: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn a_paused_active_is_superseded_and_never_touches_the_session_when_it_wakes() {
    let Pair {
        sim,
        hub,
        redis: _redis,
        state_a: _state_a,
        state_b: _state_b,
        port_a,
        port_b,
        a: paused,
        b: _standby,
    } = start_pair("warn").await;
    let handle = sim.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(handle.clone(), Duration::from_millis(25), stop.clone());
    hub.wait_for_events(15).await;

    // SIGSTOP: the process freezes with its gateway connection open (the
    // simulator does not drop silent connections), and its lease runs out.
    let resumes_before = handle.counters().resumes;
    signal(&paused, "-STOP");
    handle
        .wait_for(|c| c.resumes > resumes_before, WAIT)
        .await
        .expect("the standby resumed over the open connection");
    wait_for_role(health(port_b), "active").await;

    // The paused worker wakes up past its lease: it goes standby without
    // heartbeating, resuming or writing on the session it lost.
    signal(&paused, "-CONT");
    wait_for_role(health(port_a), "standby").await;
    hub.wait_for_events(hub.events().len() + 20).await; // Live events after the wake-up.
    stop.store(true, Ordering::Relaxed);
    let expected = producer.await.unwrap();
    hub.wait_for_events(expected.len()).await;
    assert_in_order_at_least_once(&hub.accepted(), &expected);
    let counters = handle.counters();
    assert_eq!(counters.identifies, 1, "{counters:?}");
    assert_eq!(
        counters.resumes,
        resumes_before + 1,
        "exactly one RESUME: the woken worker never took the session back: {counters:?}"
    );
    assert_eq!(counters.active_connections, 1, "{counters:?}");
    let text = metrics(port_a).await;
    for line in [
        "coven_worker_lease_held 0",
        "coven_worker_lease_losses_total 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

/// Runs `redis-cli` against `redis` and returns its answer, trimmed.
fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The fencing token of the lease in Redis (the value is `<token>:<nonce>`).
fn lease_token(redis: &RedisServer, guild: u64) -> u64 {
    let value = redis_cli(redis, &["GET", &format!("coven:{{{guild}}}:worker:lease")]);
    let token = value.split(':').next().unwrap_or_default();
    token
        .parse()
        .unwrap_or_else(|_| panic!("no lease token in {value:?}"))
}

/// Redis loses its data (`FLUSHALL`) while the active is paused: the standby takes
/// the lease with a token larger than the old one (the counter was lost, the
/// token still grows), identifies afresh (the session was lost too) and delivers;
/// the old active wakes up holding a lease value that Redis never hands out again,
/// so its renewal and its writes are refused and it becomes a standby. Every event
/// after the loss reaches the hub once, in order.
#[tokio::test]
async fn after_redis_loses_its_data_the_paused_active_is_fenced_off() {
    let Pair {
        sim,
        hub,
        redis,
        state_a: _state_a,
        state_b: _state_b,
        port_a,
        port_b,
        a: paused,
        b: _standby,
    } = start_pair("warn").await;
    let handle = sim.handle();
    let guild = sim.guild_id();

    // Before the loss: events flow and are all delivered.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(handle.clone(), Duration::from_millis(25), stop.clone());
    hub.wait_for_events(10).await;
    stop.store(true, Ordering::Relaxed);
    let before = producer.await.unwrap();
    hub.wait_for_events(before.len()).await;
    assert_in_order_at_least_once(&hub.accepted(), &before);
    let token_a = lease_token(&redis, guild);
    let delivered = hub.accepted().len();

    // A freezes; Redis loses everything.
    let identifies = handle.counters().identifies;
    signal(&paused, "-STOP");
    assert_eq!(redis_cli(&redis, &["FLUSHALL"]), "OK");
    wait_for_role(health(port_b), "active").await;
    let token_b = lease_token(&redis, guild);
    assert!(
        token_b > token_a,
        "a token is never handed out twice: {token_b} after {token_a}"
    );
    // B identified afresh and seeded its view from GUILD_CREATE.
    let view = format!("coven:{{{guild}}}:worker:view");
    eventually("the new active committed its view", async || {
        (redis_cli(&redis, &["EXISTS", &view]) == "1").then_some(())
    })
    .await;
    assert_eq!(handle.counters().identifies, identifies + 1);

    // Users move while A is still frozen; then A wakes up within its own
    // deadline, still believing it holds the lease.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(handle.clone(), Duration::from_millis(25), stop.clone());
    hub.wait_for_events(before.len() + 5).await;
    signal(&paused, "-CONT");
    wait_for_role(health(port_a), "standby").await;
    hub.wait_for_events(hub.events().len() + 10).await; // Live events after the wake-up.
    stop.store(true, Ordering::Relaxed);
    let after = producer.await.unwrap();
    hub.wait_for_events(before.len() + after.len()).await;
    let accepted = hub.accepted();
    assert_in_order_at_least_once(&accepted[delivered..], &after);
    assert_eq!(
        hub.events().len(),
        before.len() + after.len(),
        "every event counted once: nothing from the old active"
    );
    assert_eq!(
        lease_token(&redis, guild),
        token_b,
        "B still holds the lease"
    );
    let text = metrics(port_a).await;
    for line in [
        "coven_worker_lease_held 0",
        "coven_worker_lease_losses_total 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(metrics(port_b).await.contains("coven_worker_lease_held 1"));
}
