//! Two hubs sharing Redis (issue 9): delivery latency with 19,000 browsers on each
//! hub (38,000 in all, more than one process may hold here), and what the Redis hop
//! costs per event, against one hub without Redis in the same run.
//!
//! Processes, all children of this bench binary except Redis:
//! - a private `redis-server` (`coven-testkit`: a free loopback port, no persistence, temp folder);
//! - hubs A and B (`--hub-server` with `REDIS_URL`) and hub L (`--hub-server`
//!   without it, the in-process broker) as the baseline;
//! - one browser process per hub (`--browsers <addr> <n>`): `n` authenticated
//!   sockets, which report every receipt (seq, wall-clock µs) over stdout when asked.
//!
//! The parent posts signed webhooks at a fixed rate, alternating between hub A and
//! hub B, so half of every browser's events crossed Redis from the other hub.
//! Phases: (1) hub and Redis CPU per event with no browsers (`CLUSTER_BURST` / 4
//! events over one connection, then `CLUSTER_BURST` over four), (2) latency at
//! `CLUSTER_TINY`, `CLUSTER_SMALL` and `CLUSTER_SOCKETS_PER_HUB` browsers per hub:
//! the in-process hub with one browser process, with two (as many deliveries per
//! event as the pair; not at full scale, where one hub cannot hold them), then the
//! pair. Alongside: CPU per delivery of hubs and browsers, and how busy the machine
//! was outside the bench (other work disturbs a run; compare within one run).
//!
//! Run: `cargo bench -p coven-hub --bench cluster` (scale with
//! `CLUSTER_SOCKETS_PER_HUB`, `CLUSTER_SMALL`, `CLUSTER_TINY`, `CLUSTER_EVENTS`,
//! `CLUSTER_RATE`, `CLUSTER_BURST`). Each browser process and each hub needs one file
//! descriptor per socket plus a few. Numbers are recorded by hand in
//! docs/benchmarks.md.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use common::{
    Browsers, Poster, Server, env_usize, event, head_seq, machine_cpu, now_us, percentile, proc_cpu,
};
use coven_testkit::RedisServer;

/// Run labels: one hub without Redis and one browser process; the same hub with
/// two browser processes (as many deliveries per event as the pair); hubs A and B.
const SINGLE: &str = "1 hub, in-process";
const EQUAL: &str = "1 hub, in-process, 2 browser procs";
const PAIR: &str = "2 hubs on Redis";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--hub-server") {
        common::hub_server_main(|settings| {
            // The parent passes an empty REDIS_URL to the baseline hub.
            if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
                settings.redis_url = Some(coven_contract::Secret::new(url));
            }
        });
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(at) = args.iter().position(|a| a == "--browsers") {
        let addr = args[at + 1].parse().expect("hub address");
        let count = args[at + 2].parse().expect("socket count");
        runtime.block_on(browsers_main(addr, count));
        // Leave the sockets to the kernel rather than dropping 19,000 tasks.
        std::process::exit(0);
    }
    runtime.block_on(parent_main());
}

// ---------------------------------------------------------------- browser process

/// `--browsers <addr> <n>`: opens `n` browsers and prints `READY <n>`. Then, on stdin:
/// `WAIT <expected> <timeout ms>` answers `DONE <1 if complete>` once `expected` more
/// frames arrived (or the timeout passed); `COLLECT` answers one
/// `<seq> <µs since the epoch>` line per receipt since the last `COLLECT`, then `END`.
/// Exits when stdin closes.
async fn browsers_main(addr: SocketAddr, count: usize) {
    let mut browsers = Browsers::new();
    browsers.open(addr, count).await;
    println!("READY {}", browsers.count);
    std::io::stdout().flush().ok();
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut collected = 0;
    while let Some(line) = commands.recv().await {
        let mut words = line.split_whitespace();
        let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        if words.next() == Some("WAIT") {
            let expected: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let timeout = words.next().and_then(|w| w.parse().ok()).unwrap_or(30_000);
            let complete = browsers
                .wait_received(collected + expected, Duration::from_millis(timeout))
                .await;
            writeln!(out, "DONE {}", u8::from(complete)).expect("stdout");
        } else {
            for (seq, at) in browsers.collect().await.iter().flatten() {
                collected += 1;
                writeln!(out, "{seq} {at}").expect("stdout");
            }
            writeln!(out, "END").expect("stdout");
        }
        out.flush().expect("stdout");
    }
}

/// A browser child process as the parent sees it.
struct BrowserProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// (receipts read before the line, the line) for every non-receipt line.
    lines: std_mpsc::Receiver<(Vec<(u64, u64)>, String)>,
}

impl BrowserProcess {
    fn spawn(addr: SocketAddr, count: usize) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .arg("--browsers")
            .arg(addr.to_string())
            .arg(count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn browsers");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut receipts = Vec::new();
            for line in std::io::BufReader::with_capacity(1 << 16, stdout).lines() {
                let Ok(line) = line else { break };
                let mut words = line.split(' ');
                let seq = words.next().and_then(|w| w.parse::<u64>().ok());
                let at = words.next().and_then(|w| w.parse::<u64>().ok());
                if let (Some(seq), Some(at)) = (seq, at) {
                    receipts.push((seq, at));
                } else if tx.send((std::mem::take(&mut receipts), line)).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Waits for `READY`.
    fn ready(&self) -> usize {
        let (_, line) = self
            .lines
            .recv_timeout(Duration::from_secs(600))
            .expect("browsers ready");
        line.strip_prefix("READY ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("browsers: {line}"))
    }

    fn command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("command");
        stdin.flush().expect("command");
    }

    /// Asks to be told when `expected` more frames arrived.
    fn request_wait(&mut self, expected: u64, timeout: Duration) {
        self.command(&format!("WAIT {expected} {}", timeout.as_millis()));
    }

    /// Whether the frames asked for with [`Self::request_wait`] all arrived.
    fn done(&self) -> bool {
        let (_, line) = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .expect("done");
        line == "DONE 1"
    }

    /// Every receipt since the last collection.
    fn receipts(&mut self) -> Vec<(u64, u64)> {
        self.command("COLLECT");
        let (receipts, line) = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .expect("receipts");
        assert_eq!(line, "END");
        receipts
    }

    fn cpu(&self) -> Duration {
        proc_cpu(self.child.id())
    }
}

impl Drop for BrowserProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- Redis

/// CPU time of the private `redis-server` (`coven-testkit`'s, volatile: no
/// persistence, killed when dropped).
fn redis_cpu(redis: &RedisServer) -> Duration {
    redis.pid().map_or(Duration::ZERO, proc_cpu)
}

// ---------------------------------------------------------------- measuring

/// Unique webhook event ids over the whole run (Redis remembers them across hubs).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// `/proc` readings of everything one measurement involves.
#[derive(Clone, Copy)]
struct Meter {
    hubs: Duration,
    redis: Duration,
    browsers: Duration,
    /// This (the posting) process.
    own: Duration,
    /// Busy and total jiffies of the whole machine (`/proc/stat`).
    machine: (u64, u64),
}

impl Meter {
    fn read(hubs: &[&Server], redis: Option<&RedisServer>, browsers: &[BrowserProcess]) -> Self {
        Self {
            hubs: hubs.iter().map(|h| h.cpu()).sum(),
            redis: redis.map_or(Duration::ZERO, redis_cpu),
            browsers: browsers.iter().map(BrowserProcess::cpu).sum(),
            own: proc_cpu(std::process::id()),
            machine: machine_cpu(),
        }
    }

    /// What was spent between `earlier` and this reading.
    fn since(self, earlier: Self) -> Self {
        Self {
            hubs: self.hubs.saturating_sub(earlier.hubs),
            redis: self.redis.saturating_sub(earlier.redis),
            browsers: self.browsers.saturating_sub(earlier.browsers),
            own: self.own.saturating_sub(earlier.own),
            machine: (
                self.machine.0.saturating_sub(earlier.machine.0),
                self.machine.1.saturating_sub(earlier.machine.1),
            ),
        }
    }

    /// The share of all cores that was busy (any process).
    fn busy(self) -> f64 {
        self.machine.0 as f64 / self.machine.1.max(1) as f64
    }

    /// The share of all cores busy outside the bench's processes: other work on
    /// the machine, or the kernel's softirq threads (jiffies are 10 ms).
    fn others(self) -> f64 {
        let ours = self.hubs + self.redis + self.browsers + self.own;
        let busy = Duration::from_millis(self.machine.0 * 10);
        busy.saturating_sub(ours).as_secs_f64() / (self.machine.1.max(1) as f64 / 100.0)
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Context switches of every thread of a process (voluntary and not).
fn proc_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Phase 1: CPU per event with no browsers.
struct CpuRun {
    /// All hubs together.
    hub_us: f64,
    /// Each hub.
    per_hub_us: Vec<f64>,
    redis_us: f64,
    /// Thread context switches of all hubs, per event.
    switches: f64,
    per_second: f64,
}

/// Posts `events` as fast as `connections` keep-alive connections allow (spread over
/// `hubs`), waits until every hub broadcast them all, and charges the CPU the hubs
/// and Redis spent (minus their idle rate) to the events.
async fn cpu_burst(
    hubs: &[&Server],
    redis: Option<&RedisServer>,
    events: u64,
    connections: u64,
) -> CpuRun {
    let idle_window = Duration::from_secs(2);
    let before_idle = Meter::read(hubs, redis, &[]);
    tokio::time::sleep(idle_window).await;
    let idle = Meter::read(hubs, redis, &[]).since(before_idle);
    let hub_idle = idle.hubs.as_secs_f64() / idle_window.as_secs_f64();
    let redis_idle = idle.redis.as_secs_f64() / idle_window.as_secs_f64();

    let base = head_seq(hubs[0].addr).await;
    let before = Meter::read(hubs, redis, &[]);
    let each_before: Vec<Duration> = hubs.iter().map(|h| h.cpu()).collect();
    let switches_before: u64 = hubs.iter().map(|h| proc_switches(h.pid())).sum();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = hubs[c as usize % hubs.len()].addr;
        tasks.push(tokio::spawn(async move {
            let mut poster = Poster::connect(addr).await;
            let mut n = c;
            while n < events {
                poster.post(&event(n), next_id()).await;
                n += connections;
            }
        }));
    }
    for task in tasks {
        task.await.expect("poster");
    }
    let posted = started.elapsed();
    for hub in hubs {
        let deadline = Instant::now() + Duration::from_secs(30);
        while head_seq(hub.addr).await < base + events {
            if Instant::now() > deadline {
                println!(
                    "    warning: hub {} did not broadcast every event",
                    hub.addr
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let wall = started.elapsed().as_secs_f64();
    let spent = Meter::read(hubs, redis, &[]).since(before);
    let switches: u64 = hubs.iter().map(|h| proc_switches(h.pid())).sum();
    let idle_each = hub_idle / hubs.len() as f64;
    let run = CpuRun {
        hub_us: (spent.hubs.as_secs_f64() - hub_idle * wall) * 1e6 / events as f64,
        per_hub_us: hubs
            .iter()
            .zip(each_before)
            .map(|(hub, before)| {
                let spent = hub.cpu().saturating_sub(before).as_secs_f64();
                (spent - idle_each * wall) * 1e6 / events as f64
            })
            .collect(),
        redis_us: (spent.redis.as_secs_f64() - redis_idle * wall) * 1e6 / events as f64,
        switches: switches.saturating_sub(switches_before) as f64 / events as f64,
        per_second: events as f64 / posted.as_secs_f64(),
    };
    println!(
        "(1) {} hub(s){}, {connections} connection(s): {events} events in {:.2} s ({:.0}/s); \
         hub CPU {:.1} us per event {:.1?} (idle {:.1} ms/s subtracted), {:.1} context \
         switches per event; Redis CPU {:.1} us per event",
        hubs.len(),
        if redis.is_some() { " on Redis" } else { "" },
        posted.as_secs_f64(),
        run.per_second,
        run.hub_us,
        run.per_hub_us,
        hub_idle * 1e3,
        run.switches,
        run.redis_us,
    );
    run
}

/// Latency percentiles of one group of deliveries, in µs.
#[derive(Default, Clone, Copy)]
struct Spread {
    count: usize,
    p50: u64,
    p99: u64,
    max: u64,
}

impl Spread {
    fn of(mut latencies: Vec<u64>) -> Self {
        latencies.sort_unstable();
        Self {
            count: latencies.len(),
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            max: latencies.last().copied().unwrap_or(0),
        }
    }

    fn cell(self) -> String {
        if self.count == 0 {
            return "—".into();
        }
        format!(
            "{:.2} / {:.2} / {:.2}",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Phase 2: one latency run.
struct LatencyRun {
    label: String,
    sockets: usize,
    all: Spread,
    same: Spread,
    other: Spread,
    complete: bool,
    hub_us_per_delivery: f64,
    browser_us_per_delivery: f64,
    /// Share of both cores busy (all processes) from the first post to the last receipt.
    machine_busy: f64,
    /// The part of it outside the bench's processes.
    others_busy: f64,
    /// How long after its post the first and the last event reached their last
    /// browser (grows from first to last when the machine cannot keep up).
    drained: (u64, u64),
}

/// Starts one browser process with `per_hub` sockets for each hub, in parallel.
fn open_browsers(label: &str, hubs: &[&Server], per_hub: usize) -> Vec<BrowserProcess> {
    let opening = Instant::now();
    let processes: Vec<BrowserProcess> = hubs
        .iter()
        .map(|hub| BrowserProcess::spawn(hub.addr, per_hub))
        .collect();
    for process in &processes {
        assert_eq!(process.ready(), per_hub);
    }
    println!(
        "    {label}: {} x {per_hub} browsers open in {:.1} s",
        hubs.len(),
        opening.elapsed().as_secs_f64()
    );
    processes
}

/// Latencies of the events `base + 1 ..= base + sent_at.len()`: (all, browsers on
/// the hub the event was posted to, browsers on the other hub). Browser process `k`
/// is on hub `k`, event `n` was posted to hub `n % hubs`; with `split` false (one
/// hub) every delivery counts as "same".
/// Also raises `drained[n]` to the latest delivery of event `n`.
fn latencies(
    processes: &mut [BrowserProcess],
    base: u64,
    sent_at: &[u64],
    split: bool,
    drained: &mut [u64],
) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let hubs = processes.len();
    let (mut all, mut same, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for (k, process) in processes.iter_mut().enumerate() {
        for (seq, at) in process.receipts() {
            let Some(index) = seq
                .checked_sub(base + 1)
                .map(|i| i as usize)
                .filter(|i| *i < sent_at.len())
            else {
                continue;
            };
            let latency = at.saturating_sub(sent_at[index]);
            drained[index] = drained[index].max(latency);
            all.push(latency);
            if !split || index % hubs == k {
                same.push(latency);
            } else {
                other.push(latency);
            }
        }
    }
    (all, same, other)
}

/// Opens `per_hub` browsers on every hub (one browser process each), posts `events`
/// at `rate` per second, event `n` to hub `n % hubs.len()`, and measures when each
/// browser received each event.
async fn latency_run(
    label: &str,
    hubs: &[&Server],
    redis: Option<&RedisServer>,
    per_hub: usize,
    events: u64,
    rate: u64,
) -> LatencyRun {
    let mut processes = open_browsers(label, hubs, per_hub);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let base = head_seq(hubs[0].addr).await;
    let mut posters = Vec::new();
    for hub in hubs {
        posters.push(Poster::connect(hub.addr).await);
    }
    let before = Meter::read(hubs, redis, &processes);
    let mut sent_at = Vec::with_capacity(events as usize);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for n in 0..events {
        tick.tick().await;
        sent_at.push(now_us());
        let to = n as usize % hubs.len();
        posters[to].post(&event(n), next_id()).await;
    }
    for process in &mut processes {
        process.request_wait(events * per_hub as u64, Duration::from_secs(30));
    }
    // Every process answers (no short circuit), so none is left with a stale line.
    let complete = processes.iter().filter(|p| !p.done()).count() == 0;
    let spent = Meter::read(hubs, redis, &processes).since(before);
    // Two browser processes on one hub (the equal-work baseline): nothing to split.
    let split = hubs.iter().any(|h| h.addr != hubs[0].addr);
    let mut drained = vec![0; sent_at.len()];
    let (all, same, other) = latencies(&mut processes, base, &sent_at, split, &mut drained);
    for hub in hubs {
        let head = head_seq(hub.addr).await;
        if head != base + events {
            println!(
                "    warning: hub {} head seq {head}, expected {}",
                hub.addr,
                base + events
            );
        }
    }
    let deliveries = all.len();
    let run = LatencyRun {
        label: label.into(),
        sockets: per_hub * hubs.len(),
        all: Spread::of(all),
        same: Spread::of(same),
        other: Spread::of(other),
        complete: complete && deliveries as u64 == events * (per_hub * hubs.len()) as u64,
        hub_us_per_delivery: spent.hubs.as_secs_f64() * 1e6 / deliveries.max(1) as f64,
        browser_us_per_delivery: spent.browsers.as_secs_f64() * 1e6 / deliveries.max(1) as f64,
        machine_busy: spent.busy(),
        others_busy: spent.others(),
        drained: (
            drained.first().copied().unwrap_or(0),
            drained.last().copied().unwrap_or(0),
        ),
    };
    println!(
        "(2) {label}: {deliveries} deliveries{}: p50/p99/max {} ms (same hub {}, other hub {}); \
         CPU per delivery: hubs {:.2} us, browsers {:.2} us; Redis CPU {} ms in all \
         (10 ms ticks); machine {:.0} % busy, {:.0} % outside the bench; first event \
         delivered to all after {:.1} ms, last event after {:.1} ms",
        if run.complete { "" } else { " (INCOMPLETE)" },
        run.all.cell(),
        run.same.cell(),
        run.other.cell(),
        run.hub_us_per_delivery,
        run.browser_us_per_delivery,
        spent.redis.as_millis(),
        run.machine_busy * 100.0,
        run.others_busy * 100.0,
        ms(run.drained.0),
        ms(run.drained.1),
    );
    drop(processes);
    // Let the hubs close the sockets before the next run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    run
}

async fn parent_main() {
    let per_hub = env_usize("CLUSTER_SOCKETS_PER_HUB").unwrap_or(19_000);
    let small = env_usize("CLUSTER_SMALL").unwrap_or(1_000).min(per_hub);
    let tiny = env_usize("CLUSTER_TINY").unwrap_or(10).min(small);
    let events = env_usize("CLUSTER_EVENTS").unwrap_or(50) as u64;
    let rate = env_usize("CLUSTER_RATE").unwrap_or(5) as u64;
    let burst = env_usize("CLUSTER_BURST").unwrap_or(20_000) as u64;
    let started = Instant::now();

    let redis = RedisServer::start_volatile();
    let url = redis.url();
    let local = Server::start(&[("REDIS_URL", "")]);
    let a = Server::start(&[("REDIS_URL", url.as_str())]);
    let b = Server::start(&[("REDIS_URL", url.as_str())]);
    println!(
        "redis pid {} on {url}; hub L (in-process) {} pid {}; hubs A {} pid {}, B {} pid {}",
        redis.pid().unwrap_or_default(),
        local.addr,
        local.pid(),
        a.addr,
        a.pid(),
        b.addr,
        b.pid()
    );

    // One connection: each event alone through the Redis hop; four: batched.
    let mut cpu = Vec::new();
    for (events, connections) in [((burst / 4).max(1), 1), (burst, 4)] {
        let local = cpu_burst(&[&local], None, events, connections).await;
        let pair = cpu_burst(&[&a, &b], Some(&redis), events, connections).await;
        cpu.push((events, connections, local, pair));
    }

    let mut sizes = vec![tiny, small, per_hub];
    sizes.dedup();
    let mut runs = Vec::new();
    for &size in &sizes {
        runs.push(latency_run(SINGLE, &[&local], None, size, events, rate).await);
        if size < per_hub {
            // The same deliveries per event as the pair, from two browser processes.
            let both = [&local, &local];
            runs.push(latency_run(EQUAL, &both, None, size, events, rate).await);
        }
        let pair = [&a, &b];
        runs.push(latency_run(PAIR, &pair, Some(&redis), size, events, rate).await);
    }
    println!("\n{events} events at {rate}/s per run");
    println!("{}", report(&runs, &sizes));
    println!("CPU per event with no browsers (idle rate subtracted):\n");
    for (events, connections, local, pair) in cpu {
        println!(
            "- {events} events over {connections} connection(s) ({}): in-process hub {:.1} µs, \
             {:.1} context switches ({:.0}/s); two hubs on Redis {:.1} µs together ({:+.1} µs; \
             A {:.1}, B {:.1}), {:.1} context switches ({:.0}/s) + Redis server {:.1} µs",
            if connections == 1 {
                "all to hub A"
            } else {
                "alternating A and B"
            },
            local.hub_us,
            local.switches,
            local.per_second,
            pair.hub_us,
            pair.hub_us - local.hub_us,
            pair.per_hub_us.first().copied().unwrap_or(0.0),
            pair.per_hub_us.get(1).copied().unwrap_or(0.0),
            pair.switches,
            pair.per_second,
            pair.redis_us,
        );
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}

/// The results table and the p50 differences.
fn report(runs: &[LatencyRun], sizes: &[usize]) -> String {
    let mut table = String::from(
        "latency p50 / p99 / max in ms; CPU per delivery\n\n\
         | setup | browsers | all deliveries | same hub as the post | other hub | first / last event at all browsers | hubs | browsers | machine busy (outside the bench) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        writeln!(
            table,
            "| {} | {}{} | {} | {} | {} | {:.1} / {:.1} | {:.2} µs | {:.2} µs | {:.0} % ({:.0} %) |",
            run.label,
            run.sockets,
            if run.complete { "" } else { " (INCOMPLETE)" },
            run.all.cell(),
            run.same.cell(),
            run.other.cell(),
            ms(run.drained.0),
            ms(run.drained.1),
            run.hub_us_per_delivery,
            run.browser_us_per_delivery,
            run.machine_busy * 100.0,
            run.others_busy * 100.0,
        )
        .ok();
    }
    writeln!(
        table,
        "\nRedis hop: p50 of the pair minus p50 of the in-process hub"
    )
    .ok();
    let find = |label: &str, sockets: usize| {
        runs.iter()
            .find(|r| r.label == label && r.sockets == sockets)
    };
    for &size in sizes {
        let Some(pair) = find(PAIR, 2 * size) else {
            continue;
        };
        let versus = |base: Option<&LatencyRun>| {
            base.map_or_else(
                || "—".to_string(),
                |base| {
                    format!(
                        "same hub {:+.2} ms, other hub {:+.2} ms",
                        ms(pair.same.p50) - ms(base.all.p50),
                        ms(pair.other.p50) - ms(base.all.p50)
                    )
                },
            )
        };
        writeln!(
            table,
            "- {size} browsers per hub: vs one hub with {size}: {}; vs one hub with {} \
             (equal work): {}",
            versus(find(SINGLE, size)),
            2 * size,
            versus(find(EQUAL, 2 * size)),
        )
        .ok();
    }
    table
}
