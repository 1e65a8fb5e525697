//! Worker benchmark: `coven worker` as a real process between the simulator and a
//! recording hub, all on loopback.
//!
//! Prints (1) latency from a simulated voice change to the hub receiving its
//! signed webhook, p50/p99/max over sequential events; (2) time from a dropped
//! gateway connection to `RESUMED`; (3) the worker process's CPU time and
//! resident memory per 1,000 events; (4) with `REDIS_URL`, an active/standby
//! pair: time from `kill -9` (or SIGTERM) of the active to the standby's
//! `RESUMED` and to the hub receiving an event made right after the kill;
//! (5) events per second through the durable outbox (a burst of 1,000 events
//! until all are committed, and until all reached the hub), with the redb file
//! on disk and with Redis (`appendfsync always`), each against its floor: the
//! same burst where a commit costs no fsync (the file on tmpfs, Redis without
//! persistence), in the same run so that the ratios compare like with like.
//! Run: `cargo bench -p coven --bench worker`; `WORKER_BENCH_ONLY=outbox` runs (5) alone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coven_testkit::{FakeHub, KillOnDrop, RedisServer, SECRET, free_port};

const LATENCY_EVENTS: usize = 400;
const BURST_EVENTS: usize = 1_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// utime + stime of a process, in clock ticks (usually 10 ms each).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// Alternates join/leave of one user so every call yields exactly one event.
fn toggle(handle: &coven_sim::SimHandle, user: u64, room: u64) {
    if handle.voice_channel_of(user).is_some() {
        handle.user_leave(user).unwrap();
    } else {
        handle.user_join(user, room).unwrap();
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("WORKER_BENCH_ONLY").as_deref() == Ok("outbox") {
        outbox_throughput().await;
        return;
    }
    let sim = coven_sim::Simulator::start(coven_sim::SimConfig {
        heartbeat_interval: Duration::from_millis(41_250),
        ..coven_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_coven"))
        .arg("worker")
        .env_clear()
        .env("PRIMARY_GUILD_ID", sim.guild_id().to_string())
        .env("HUB_SECRET", SECRET)
        .env("DISCORD_BOT_TOKEN", sim.bot_token())
        .env("HUB_ENDPOINT", hub.endpoint().as_str())
        .env("HEALTH_CHECK_PORT", port.to_string())
        .env("STATE_DIR", state.path())
        .env("DISCORD_GATEWAY_URL", sim.gateway_url())
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _child = KillOnDrop::new(child);
    let handle = sim.handle();
    // Live means READY was processed, so GUILD_CREATE is already in the session.
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(&health)
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "the worker never became healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seed = handle.seed();
    let (user, room) = (seed.member_user_ids[3], seed.voice_channel_ids[1]);
    toggle(&handle, user, room);
    hub.wait_for_events(1).await;
    let mut delivered = 1;

    // (1) Latency, one event at a time.
    let mut latencies = Vec::with_capacity(LATENCY_EVENTS);
    for _ in 0..LATENCY_EVENTS {
        let start = Instant::now();
        toggle(&handle, user, room);
        hub.wait_for_events(delivered + 1).await;
        latencies.push(hub.accepted_at(delivered) - start);
        delivered += 1;
    }
    latencies.sort();
    println!(
        "dispatch -> hub webhook latency over {LATENCY_EVENTS} events: p50 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );

    // (2) Dropped connection -> RESUMED.
    let mut resumes = Vec::new();
    for _ in 0..5 {
        // A session live for less than 5 s before the drop is a short one, and its
        // reconnect is paced (docs/worker.md "Reconnects"): measure single drops.
        tokio::time::sleep(Duration::from_millis(5_100)).await;
        let before = handle.counters().resumes;
        let start = Instant::now();
        assert_eq!(handle.drop_tcp(), 1);
        handle
            .wait_for(|c| c.resumes > before, Duration::from_secs(30))
            .await
            .expect("resumed");
        resumes.push(start.elapsed());
    }
    println!("TCP drop -> RESUMED (5 runs): {resumes:?}");

    // (3) CPU and memory per 1,000 events, as fast as the simulator produces them.
    let (ticks_before, rss_before) = (cpu_ticks(pid), rss_kib(pid));
    let start = Instant::now();
    for _ in 0..BURST_EVENTS {
        toggle(&handle, user, room);
    }
    hub.wait_for_events(delivered + BURST_EVENTS).await;
    let elapsed = start.elapsed();
    let ticks = cpu_ticks(pid) - ticks_before;
    // Linux reports CPU times in USER_HZ = 100 ticks per second.
    let cpu = Duration::from_millis(ticks * 10);
    println!(
        "burst of {BURST_EVENTS} events: {elapsed:?} wall ({:.0} events/s), worker CPU {cpu:?} \
         ({:?} per event), RSS {rss_before} KiB -> {} KiB",
        f64::from(u32::try_from(BURST_EVENTS).unwrap()) / elapsed.as_secs_f64(),
        cpu / u32::try_from(BURST_EVENTS).unwrap(),
        rss_kib(pid)
    );

    // (4) Active/standby failover with Redis, on a fresh simulator and hub.
    failover().await;

    // (5) Events per second through the durable outbox, against the no-fsync floor.
    outbox_throughput().await;
}

/// Where an outbox bench worker keeps its state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backing {
    /// The redb file on disk: every commit is fsynced.
    Disk,
    /// The redb file on tmpfs (`/dev/shm`): the same code, fsync costs nothing.
    Tmpfs,
    /// Redis with `appendfsync always`.
    RedisAof,
    /// Redis without persistence.
    RedisVolatile,
}

/// A burst through one worker's outbox.
struct Burst {
    /// From the first change to the last event committed to the outbox.
    committed: Duration,
    /// From the first change to the last event at the hub.
    delivered: Duration,
    /// How many commits of new events that took.
    commits: u64,
}

impl Burst {
    fn rate(elapsed: Duration) -> f64 {
        f64::from(u32::try_from(BURST_EVENTS).unwrap()) / elapsed.as_secs_f64()
    }
}

/// The sum of a counter's series in the worker's `/metrics` (0 when absent).
async fn counter_sum(port: u16, name: &str) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A burst of [`BURST_EVENTS`] voice changes through a fresh worker backed by `backing`.
async fn outbox_burst(backing: Backing) -> Burst {
    let sim = coven_sim::Simulator::start(coven_sim::SimConfig {
        heartbeat_interval: Duration::from_millis(41_250),
        ..coven_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let state = match backing {
        Backing::Tmpfs => tempfile::tempdir_in("/dev/shm").unwrap(),
        _ => tempfile::tempdir().unwrap(),
    };
    let port = free_port();
    let redis = match backing {
        Backing::RedisAof => Some(RedisServer::start()),
        Backing::RedisVolatile => Some(RedisServer::start_volatile()),
        Backing::Disk | Backing::Tmpfs => None,
    };
    let _worker = match &redis {
        Some(redis) => pair_worker(&sim, &hub, redis, state.path(), port),
        None => single_worker(&sim, &hub, state.path(), port),
    };
    wait_role(port, "active").await;
    let handle = sim.handle();
    let seed = handle.seed();
    let (user, room) = (seed.member_user_ids[3], seed.voice_channel_ids[1]);
    toggle(&handle, user, room);
    hub.wait_for_events(1).await;
    let events_before = counter_sum(port, "coven_worker_events_total").await;
    let commits_before = counter_sum(port, "coven_worker_outbox_commits_total").await;

    let start = Instant::now();
    for _ in 0..BURST_EVENTS {
        toggle(&handle, user, room);
    }
    let target = events_before + BURST_EVENTS as u64;
    while counter_sum(port, "coven_worker_events_total").await < target {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the burst never committed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let committed = start.elapsed();
    hub.wait_for_events(1 + BURST_EVENTS).await;
    let delivered = hub.accepted_at(BURST_EVENTS) - start;
    let commits = counter_sum(port, "coven_worker_outbox_commits_total").await - commits_before;
    Burst {
        committed,
        delivered,
        commits,
    }
}

/// Events per second through the durable outbox: redb on disk and Redis with
/// `appendfsync always`, each against its no-fsync floor.
async fn outbox_throughput() {
    for (name, durable, floor) in [
        ("redb file", Backing::Disk, Backing::Tmpfs),
        ("redis pair", Backing::RedisAof, Backing::RedisVolatile),
    ] {
        let durable = outbox_burst(durable).await;
        let floor = outbox_burst(floor).await;
        let (rate, floor_rate) = (Burst::rate(durable.committed), Burst::rate(floor.committed));
        println!(
            "outbox, {name}: burst of {BURST_EVENTS} committed in {:?} = {rate:.0} events/s \
             ({} commits), at the hub after {:?} = {:.0} events/s; \
             floor without fsync: committed {floor_rate:.0} events/s ({} commits), \
             at the hub {:.0} events/s; durable / floor = {:.2} committed, {:.2} at the hub",
            durable.committed,
            durable.commits,
            durable.delivered,
            Burst::rate(durable.delivered),
            floor.commits,
            Burst::rate(floor.delivered),
            rate / floor_rate,
            floor.delivered.as_secs_f64() / durable.delivered.as_secs_f64(),
        );
    }
}

/// `coven worker` between `sim` and `hub`, its state under `state`, health on `port`.
fn worker_command(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    state: &std::path::Path,
    port: u16,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coven"));
    command
        .arg("worker")
        .env_clear()
        .env("PRIMARY_GUILD_ID", sim.guild_id().to_string())
        .env("HUB_SECRET", SECRET)
        .env("DISCORD_BOT_TOKEN", sim.bot_token())
        .env("HUB_ENDPOINT", hub.endpoint().as_str())
        .env("HEALTH_CHECK_PORT", port.to_string())
        .env("STATE_DIR", state)
        .env("DISCORD_GATEWAY_URL", sim.gateway_url())
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::null());
    command
}

/// `coven worker` alone: its state in a redb file under `state`.
fn single_worker(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    state: &std::path::Path,
    port: u16,
) -> KillOnDrop {
    KillOnDrop::new(worker_command(sim, hub, state, port).spawn().unwrap())
}

const FAILOVER_ROUNDS: usize = 3;

/// `coven worker` of a pair: its own state folder and health port, shared Redis.
fn pair_worker(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    redis: &RedisServer,
    state: &std::path::Path,
    port: u16,
) -> KillOnDrop {
    KillOnDrop::new(
        worker_command(sim, hub, state, port)
            .env("REDIS_URL", redis.url())
            .spawn()
            .unwrap(),
    )
}

/// Waits until the worker on `port` is a healthy `role`.
async fn wait_role(port: u16, role: &str) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    coven_testkit::wait_for_role(addr, role).await;
}

async fn failover() {
    let sim = coven_sim::Simulator::start(coven_sim::SimConfig {
        heartbeat_interval: Duration::from_millis(41_250),
        ..coven_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let redis = RedisServer::start();
    let handle = sim.handle();
    let seed = handle.seed();
    let (user, room) = (seed.member_user_ids[4], seed.voice_channel_ids[2]);
    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [free_port(), free_port()];
    let mut workers = [
        Some(pair_worker(&sim, &hub, &redis, states[0].path(), ports[0])),
        None,
    ];
    wait_role(ports[0], "active").await;
    workers[1] = Some(pair_worker(&sim, &hub, &redis, states[1].path(), ports[1]));
    wait_role(ports[1], "standby").await;
    let mut active = 0;
    let mut delivered = 0;

    for graceful in [false, true] {
        let mut resumed = Vec::new();
        let mut first_event = Vec::new();
        for round in 0..FAILOVER_ROUNDS {
            // Hit a different point of the renewal (1 s) and poll (500 ms) cycles
            // each time: the failover time depends on it.
            tokio::time::sleep(Duration::from_millis(350 * (round as u64 + 1))).await;
            let resumes_before = handle.counters().resumes;
            let start = Instant::now();
            let worker = workers[active].take().unwrap();
            if graceful {
                let pid = worker.id().to_string();
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                let _ = worker.into_inner().wait();
            } else {
                drop(worker); // SIGKILL
            }
            // An event made right after the active died reaches the hub through the standby.
            toggle(&handle, user, room);
            handle
                .wait_for(|c| c.resumes > resumes_before, Duration::from_secs(30))
                .await
                .expect("the standby resumed");
            resumed.push(start.elapsed());
            hub.wait_for_events(delivered + 1).await;
            delivered += 1;
            first_event.push(hub.accepted_at(hub.accepted().len() - 1) - start);
            // The old active comes back as the standby.
            let standby = active;
            active = 1 - active;
            wait_role(ports[active], "active").await;
            workers[standby] = Some(pair_worker(
                &sim,
                &hub,
                &redis,
                states[standby].path(),
                ports[standby],
            ));
            wait_role(ports[standby], "standby").await;
        }
        let how = if graceful { "SIGTERM" } else { "kill -9" };
        println!(
            "failover, {how} of the active ({FAILOVER_ROUNDS} runs; lease 5 s, renewed every 1 s, \
             polled every 500 ms): standby RESUMED after {resumed:?}; next event at the hub \
             after {first_event:?}"
        );
    }
    assert_eq!(
        handle.counters().identifies,
        1,
        "every handover resumed the one session"
    );
}
