//! Ingest benchmark (issue 18): signed webhooks per second and server CPU per
//! webhook, for the hub against its floor, measured by one client in one run.
//!
//! Three servers, each a child process of this binary so that its CPU can be read
//! from `/proc/<pid>/stat` without the client's:
//! - **bare** (`--bare-server`): an axum handler that reads the body and answers
//!   200 `{"ok":true}`, served by hyper's HTTP/1.1 connection builder like the hub
//!   (keep-alive, `TCP_NODELAY`), with no layers: the floor;
//! - **hub** (`--hub-server`, the in-process broker): verify, dedupe, sequence,
//!   publish;
//! - **hub + Redis** (`--hub-server` with `REDIS_URL`, a private volatile
//!   `redis-server` from `coven-testkit`): the same, sequenced and stored in Redis
//!   (one Lua script per event) and read back by the hub's stream reader.
//!
//! Both hubs log as the `coven` binary does by default (`warn,coven=info,
//! coven_=info` to stderr), so per-request spans cost what they cost in production.
//!
//! The client is hand-written keep-alive HTTP/1.1 on a single-threaded runtime
//! (it shares the 2 cores with the servers, so it must be cheap): `N` connections,
//! one request in flight on each (no pipelining), the same ~100-byte
//! `voice.joined` body for every server. A body is signed once per second per
//! connection (the MAC covers timestamp and body, not the event id); every request
//! has its own `X-Hub-Event-Id`, so the hubs publish each one. The servers are
//! measured in turn, round after round (`bare, hub, hub + Redis` each round), so a
//! disturbance of the shared machine shows as a spread between rounds rather than
//! as a bias against one server. After the run each hub's `/health` head must have
//! moved by exactly the number of webhooks it acknowledged (nothing lost, nothing
//! published twice).
//!
//! Run: `cargo bench -p coven-hub --bench ingest` (~40 s). `INGEST_SMALL=1`: one
//! short round (~5 s). `INGEST_CONNECTIONS` (32), `INGEST_SECONDS` (4),
//! `INGEST_ROUNDS` (3), `INGEST_ONLY=bare|hub|redis` (one server, e.g. to attach
//! `perf record -p <pid>`, printed at the start). Figures are recorded by hand in
//! docs/benchmarks.md.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use common::{Server, env_usize, event, head_seq, machine_cpu, proc_cpu, user_cpu};
use coven_contract::Secret;
use coven_contract::signature::Signer;
use coven_testkit::RedisServer;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// The body every server answers (the hub's `OkBody`).
const OK_BODY: &str = r#"{"ok":true}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--hub-server") {
        production_logging();
        common::hub_server_main(|settings| {
            // The parent passes an empty REDIS_URL to the in-process hub.
            if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
                settings.redis_url = Some(Secret::new(url));
            }
        });
        return;
    }
    if args.iter().any(|a| a == "--bare-server") {
        production_logging();
        bare_server_main();
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(client_main());
}

/// The `coven` binary's default log filter (crates/coven/src/logging.rs), to stderr.
fn production_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,coven=info,coven_=info",
        ))
        .with_writer(std::io::stderr)
        .init();
}

// ---------------------------------------------------------------- bare server

/// The floor: reads the whole body (bounded like the hub's) and answers 200.
async fn bare(body: axum::body::Body) -> impl axum::response::IntoResponse {
    let body = axum::body::to_bytes(body, coven_contract::limits::WEBHOOK_BODY_MAX_BYTES)
        .await
        .unwrap_or_default();
    std::hint::black_box(&body);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OK_BODY,
    )
}

/// `--bare-server`: the floor handler on hyper's HTTP/1.1 builder, as the hub
/// serves its router (crates/hub/src/connection.rs) minus limits and watchdog.
/// Prints `ADDR <addr>`; stops when stdin closes.
fn bare_server_main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let router = Router::new().route("/api/internal/events", post(bare));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("ADDR {}", listener.local_addr().expect("addr"));
        std::io::Write::flush(&mut std::io::stdout()).ok();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tcp.set_nodelay(true).ok();
                let router = router.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            router.clone().oneshot(request)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await;
    });
}

/// Starts this binary with `--bare-server` and waits for its address.
fn bare_server() -> Server {
    let mut command = Command::new(std::env::current_exe().expect("exe"));
    command.arg("--bare-server");
    Server::spawn(command)
}

// ---------------------------------------------------------------- client

/// One keep-alive connection posting signed webhooks, one at a time.
struct Conn {
    stream: TcpStream,
    signer: Signer,
    body: Vec<u8>,
    /// The signed part of the request head, for `signed_at`.
    head: String,
    signed_at: u64,
    request: Vec<u8>,
    answer: Vec<u8>,
    /// Event ids are `<prefix>-<n>`.
    prefix: String,
    next: u64,
}

impl Conn {
    async fn connect(addr: SocketAddr, prefix: String, user: u64) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        Self {
            stream,
            signer: Signer::new(Secret::new(common::SECRET)),
            body: event(user).to_webhook_body(),
            head: String::new(),
            signed_at: 0,
            request: Vec::with_capacity(512),
            answer: Vec::with_capacity(512),
            prefix,
            next: 0,
        }
    }

    /// Posts one webhook with a new event id; returns its status.
    async fn post(&mut self) -> u16 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        if now != self.signed_at {
            let signed = self.signer.sign(now, &self.body);
            self.head = format!(
                "POST /api/internal/events HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nx-hub-timestamp: {}\r\nx-hub-signature: {}\r\nx-hub-event-id: ",
                self.body.len(),
                signed.timestamp,
                signed.signature
            );
            self.signed_at = now;
        }
        self.next += 1;
        self.request.clear();
        self.request.extend_from_slice(self.head.as_bytes());
        let mut id = String::with_capacity(32);
        write!(id, "{}-{}\r\n\r\n", self.prefix, self.next).expect("format");
        self.request.extend_from_slice(id.as_bytes());
        self.request.extend_from_slice(&self.body);
        self.stream.write_all(&self.request).await.expect("write");
        self.read_answer().await
    }

    /// Reads one whole response (head and `content-length` body).
    async fn read_answer(&mut self) -> u16 {
        self.answer.clear();
        let mut chunk = [0_u8; 512];
        loop {
            if let Some(end) = self.answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.answer[..end]).expect("ascii head");
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let total = end + 4 + length;
                while self.answer.len() < total {
                    let n = self.stream.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "closed mid-answer");
                    self.answer.extend_from_slice(&chunk[..n]);
                }
                assert_eq!(self.answer.len(), total, "one request in flight");
                return status;
            }
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            self.answer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One server under test.
struct Target {
    label: &'static str,
    server: Server,
    /// Redis, whose CPU counts as the server's too.
    redis_pid: Option<u32>,
    /// Whether it is a hub (its `/health` head is checked).
    hub: bool,
    /// Webhooks it acknowledged with 200 (warm-ups included).
    acknowledged: u64,
    head_before: u64,
    results: Vec<Measure>,
}

/// One measured phase of one server.
#[derive(Debug, Clone, Copy)]
struct Measure {
    rate: f64,
    /// Server (+ Redis) CPU per webhook, µs.
    server_us: f64,
    /// Of which Redis, µs.
    redis_us: f64,
    /// Of which the server's user-space time (not the kernel's, not Redis's), µs:
    /// what the hub's own code costs, steadier than the total on a busy machine.
    user_us: f64,
    /// Client CPU per webhook, µs.
    client_us: f64,
}

impl Target {
    fn cpu(&self) -> (Duration, Duration) {
        let redis = self.redis_pid.map_or(Duration::ZERO, proc_cpu);
        (self.server.cpu() + redis, redis)
    }
}

/// Runs `connections` posters against `target` for `warmup` + `seconds`; measures
/// the last `seconds`.
async fn measure(
    target: &mut Target,
    round: usize,
    connections: usize,
    warmup: Duration,
    seconds: Duration,
) -> Measure {
    let addr = target.server.addr;
    let count = Rc::new(Cell::new(0_u64));
    let stop = Rc::new(Cell::new(false));
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let count = count.clone();
        let stop = stop.clone();
        let prefix = format!("r{round}-c{c}");
        tasks.push(local.spawn_local(async move {
            let mut conn = Conn::connect(addr, prefix, c as u64).await;
            while !stop.get() {
                let status = conn.post().await;
                assert_eq!(status, 200, "the server answered {status}");
                count.set(count.get() + 1);
            }
        }));
    }
    let own = std::process::id();
    let measured = local
        .run_until(async {
            tokio::time::sleep(warmup).await;
            let (n0, (cpu0, redis0), user0, client0, t0) = (
                count.get(),
                target.cpu(),
                user_cpu(target.server.child.id()),
                proc_cpu(own),
                Instant::now(),
            );
            tokio::time::sleep(seconds).await;
            let (n1, (cpu1, redis1), user1, client1, wall) = (
                count.get(),
                target.cpu(),
                user_cpu(target.server.child.id()),
                proc_cpu(own),
                t0.elapsed(),
            );
            stop.set(true);
            for task in tasks {
                task.await.expect("poster");
            }
            let n = (n1 - n0).max(1) as f64;
            Measure {
                rate: n / wall.as_secs_f64(),
                server_us: cpu1.saturating_sub(cpu0).as_secs_f64() * 1e6 / n,
                redis_us: redis1.saturating_sub(redis0).as_secs_f64() * 1e6 / n,
                user_us: user1.saturating_sub(user0).as_secs_f64() * 1e6 / n,
                client_us: client1.saturating_sub(client0).as_secs_f64() * 1e6 / n,
            }
        })
        .await;
    target.acknowledged += count.get();
    measured
}

/// Median of the rounds, by rate (with that round's CPU figures).
fn median(results: &[Measure]) -> Measure {
    let mut sorted = results.to_vec();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    sorted[sorted.len() / 2]
}

async fn client_main() {
    let small = std::env::var("INGEST_SMALL").is_ok_and(|v| !v.is_empty() && v != "0");
    let connections = env_usize("INGEST_CONNECTIONS").unwrap_or(if small { 8 } else { 32 });
    let seconds =
        Duration::from_secs(
            env_usize("INGEST_SECONDS").unwrap_or(if small { 1 } else { 4 }) as u64,
        );
    let rounds = env_usize("INGEST_ROUNDS")
        .unwrap_or(if small { 1 } else { 3 })
        .max(1);
    let only = std::env::var("INGEST_ONLY").unwrap_or_default();
    let warmup = Duration::from_millis(if small { 300 } else { 1000 });

    let redis = RedisServer::start_volatile();
    let mut targets = start_targets(&redis, &only);
    for target in targets.iter_mut().filter(|t| t.hub) {
        first_webhook(target, &redis).await;
    }
    println!(
        "{connections} keep-alive connections, one request in flight each; {} s measured after {} ms warm-up, {rounds} round(s); a {} B body",
        seconds.as_secs(),
        warmup.as_millis(),
        event(0).to_webhook_body().len()
    );
    let machine_before = machine_cpu();
    let started = Instant::now();
    for round in 0..rounds {
        for target in &mut targets {
            let m = measure(target, round, connections, warmup, seconds).await;
            println!(
                "round {}: {:<12} {:>8.0} webhooks/s; server CPU {:>6.1} us/webhook (user {:.1}){}; client CPU {:>5.1} us/webhook",
                round + 1,
                target.label,
                m.rate,
                m.server_us,
                m.user_us,
                if target.redis_pid.is_some() {
                    format!(" (of which Redis {:.1})", m.redis_us)
                } else {
                    String::new()
                },
                m.client_us,
            );
            target.results.push(m);
        }
    }
    let (busy1, total1) = machine_cpu();
    if let Some(target) = targets.iter().find(|t| t.redis_pid.is_some()) {
        let calls = command_calls(&redis).await;
        let per = |name: &str| {
            calls.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c) as f64
                / target.acknowledged as f64
        };
        println!(
            "hub + Redis: {:.2} script calls (EVALSHA) and {:.2} XREAD per webhook over the run: {:.1} webhooks per call",
            per("evalsha"),
            per("xread"),
            1.0 / per("evalsha").max(f64::MIN_POSITIVE)
        );
    }
    let machine = (busy1 - machine_before.0) as f64 / (total1 - machine_before.1).max(1) as f64;

    for target in &targets {
        if target.hub {
            let expected = target.head_before + target.acknowledged;
            let head = wait_head(target.server.addr, expected, Duration::from_secs(10)).await;
            assert_eq!(
                head, expected,
                "{}: every acknowledged webhook published exactly once",
                target.label
            );
        }
    }

    report(&targets, rounds, started.elapsed(), machine);
    println!("every acknowledged webhook was published once (checked on /health)");
}

/// Starts the servers (`only` one of `bare`, `hub`, `redis`, or all).
fn start_targets(redis: &RedisServer, only: &str) -> Vec<Target> {
    let url = redis.url();
    let mut targets = Vec::new();
    for (label, wanted) in [("bare", "bare"), ("hub", "hub"), ("hub + Redis", "redis")] {
        if !only.is_empty() && only != wanted {
            continue;
        }
        let server = match wanted {
            "bare" => bare_server(),
            "hub" => Server::start(&[("REDIS_URL", "")]),
            _ => Server::start(&[("REDIS_URL", url.as_str())]),
        };
        println!("{label}: {} pid {}", server.addr, server.pid());
        targets.push(Target {
            label,
            redis_pid: (wanted == "redis").then(|| redis.pid()).flatten(),
            hub: wanted != "bare",
            acknowledged: 0,
            head_before: 0,
            server,
            results: Vec::new(),
        });
    }
    targets
}

/// One webhook first (the Redis hub's reader starts with its first event); its
/// seq is where the hub's count starts.
async fn first_webhook(target: &mut Target, redis: &RedisServer) {
    let mut conn = Conn::connect(target.server.addr, "first".into(), 0).await;
    assert_eq!(conn.post().await, 200);
    target.acknowledged = 1;
    let first = if target.redis_pid.is_some() {
        let mut redis = redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let seq: u64 = redis::cmd("GET")
            .arg(format!("coven:{{{}}}:hub:seq", common::GUILD))
            .query_async(&mut redis)
            .await
            .expect("the guild's seq");
        assert_eq!(
            wait_head(target.server.addr, seq, Duration::from_secs(5)).await,
            seq
        );
        seq
    } else {
        head_seq(target.server.addr).await
    };
    target.head_before = first - 1;
}

/// The medians as a Markdown table, and the ratios.
fn report(targets: &[Target], rounds: usize, took: Duration, machine: f64) {
    println!(
        "\nmedian of {rounds} round(s) ({:.0} s; machine {:.0} % busy over the run, client included):",
        took.as_secs_f64(),
        machine * 100.0
    );
    println!("| server | webhooks/s | server CPU per webhook (user) | client CPU per webhook |");
    println!("|---|---|---|---|");
    for target in targets {
        let m = median(&target.results);
        println!(
            "| {} | {:.0} | {:.1} µs ({:.1}){} | {:.1} µs |",
            target.label,
            m.rate,
            m.server_us,
            m.user_us,
            if target.redis_pid.is_some() {
                format!(" (Redis {:.1})", m.redis_us)
            } else {
                String::new()
            },
            m.client_us
        );
    }
    let rate = |label: &str| {
        targets
            .iter()
            .find(|t| t.label == label)
            .map(|t| median(&t.results).rate)
    };
    if let (Some(bare), Some(hub)) = (rate("bare"), rate("hub")) {
        println!("hub / bare = {:.0} % (target ≥ 80 %)", hub / bare * 100.0);
    }
    if let (Some(hub), Some(redis)) = (rate("hub"), rate("hub + Redis")) {
        println!(
            "hub + Redis / hub = {:.0} % (target ≥ 50 %)",
            redis / hub * 100.0
        );
    }
}

/// Redis's `INFO commandstats`: (command, calls).
async fn command_calls(redis: &RedisServer) -> Vec<(String, u64)> {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_owned(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

/// Waits until the hub's `/health` head is at least `at_least` (its stream reader
/// may lag), then returns it.
async fn wait_head(addr: SocketAddr, at_least: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let head = head_seq(addr).await;
        if head >= at_least || Instant::now() > deadline {
            return head;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
