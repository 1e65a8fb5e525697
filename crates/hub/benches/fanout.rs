//! Fan-out benchmark of the hub (issues 6 and 18): delivery latency at 5 events/s,
//! burst throughput and server CPU per delivery, memory per idle socket, over
//! loopback, for the hub and, in the same run with the same client, the floor stub
//! (a bare fan-out loop in this binary, `floor/`: one write per delivery, and
//! coalescing up to 64 frames per write) and a Node 20 + `ws` reference hub
//! (`peer/hub.js`). Every figure is printed with its ratio to the floors and to
//! the Node peer (docs/benchmarks.md "Hub fan-out").
//!
//! Each server runs in a child process (this binary with `--hub-server` or
//! `--floor-server <mode>`, or `node peer/hub.js`) so that its CPU time and
//! resident memory can be read from `/proc/<pid>` without counting the clients.
//! The parent holds the browsers (real WebSockets; the hub verifies their JWT) and
//! posts signed webhooks over plain keep-alive HTTP/1.1. Browser source addresses
//! are spread over 127.0.0.0/8 so the ephemeral-port range is never the limit.
//!
//! Run: `cargo bench -p coven-hub --bench fanout` (scale with `FANOUT_SOCKETS`,
//! `FANOUT_MAX_SOCKETS`, `FANOUT_HANDSHAKES`; `FANOUT_SMALL=1` runs in seconds with
//! 200 sockets; `FANOUT_ONLY=hub,floor-one,floor-coalesce,node` picks servers;
//! `FANOUT_ROUNDS=n` measures the servers n times in turn, hub then the others,
//! and prints each figure's median and the p99 ratios round by round: on a
//! shared 2-core machine one round's p99 moves by ±15 %, and rounds taken in
//! turn share the machine's state).
//! The peer needs `node` (skipped with a message without it); its `ws` is
//! installed with `npm ci` on first use. Both processes need one file descriptor
//! per socket plus a few.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;
mod floor;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    Browsers, Poster, Server, env_usize, event, head_seq, metric, now_us, percentile, proc_cpu,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--hub-server") {
        common::hub_server_main(|_| {});
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--floor-server") {
        floor::main(args.get(at + 1).map_or("one", String::as_str));
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(client_main());
}

/// The sizes of one run.
struct Scale {
    sockets: usize,
    small: usize,
    max_sockets: usize,
    small_events: u64,
    full_events: u64,
    burst_events: u64,
}

impl Scale {
    fn from_env() -> Self {
        if env_usize("FANOUT_SMALL").is_some_and(|n| n > 0) {
            return Self {
                sockets: 200,
                small: 50,
                max_sockets: 200,
                small_events: 5,
                full_events: 5,
                burst_events: 50,
            };
        }
        let sockets = env_usize("FANOUT_SOCKETS").unwrap_or(10_000);
        Self {
            sockets,
            small: 1_000.min(sockets),
            max_sockets: env_usize("FANOUT_MAX_SOCKETS")
                .unwrap_or(19_000)
                .max(sockets),
            small_events: 50,
            full_events: 50,
            burst_events: 200,
        }
    }
}

/// One server's figures.
#[derive(Default, Clone, Copy)]
struct Figures {
    /// p50, p99 (ms) at 5 events/s with `small` sockets.
    small: (f64, f64),
    /// p50, p99 (ms) at 5 events/s with `sockets` sockets.
    full: (f64, f64),
    /// Server CPU per delivery (µs) at 5 events/s, `sockets` sockets.
    full_cpu_us: f64,
    /// Burst deliveries per second (wall).
    burst_rate: f64,
    /// Burst server CPU per delivery (µs).
    burst_cpu_us: f64,
    /// Burst client CPU per delivery (µs): the same client for every server, so
    /// what differs is how the server's writes arrive (one frame per read or many).
    burst_client_us: f64,
    /// RSS per idle authenticated socket (KiB) over the first `sockets`.
    kib_per_socket: f64,
}

/// Posts `events` at `rate` per second; returns (p50, p99) in ms and server CPU
/// per delivery in µs.
async fn latency(
    server: &Server,
    browsers: &mut Browsers,
    events: u64,
    rate: u64,
    label: &str,
) -> ((f64, f64), f64) {
    let addr = server.addr;
    let base = head_seq(addr).await;
    let cpu_before = server.cpu();
    let received_before = browsers.received.load(Ordering::Relaxed);
    let mut poster = Poster::connect(addr).await;
    let mut sent_at = Vec::with_capacity(events as usize);
    let period = Duration::from_micros(1_000_000 / rate);
    let mut tick = tokio::time::interval(period);
    for n in 0..events {
        tick.tick().await;
        sent_at.push(now_us());
        poster.post(&event(n), base + n + 1).await;
    }
    let expected = received_before + events * browsers.count as u64;
    let complete = browsers
        .wait_received(expected, Duration::from_secs(30))
        .await;
    let cpu = server.cpu().saturating_sub(cpu_before);
    // Each event's first delivery: what the server takes from the post to its
    // first write (and the client to read it), apart from the fan-out itself.
    let mut first = vec![u64::MAX; events as usize];
    let mut latencies: Vec<u64> = browsers
        .collect()
        .await
        .into_iter()
        .flatten()
        .filter(|(seq, _)| *seq > base && *seq <= base + events)
        .map(|(seq, at)| {
            let n = (seq - base - 1) as usize;
            let latency = at.saturating_sub(sent_at[n]);
            first[n] = first[n].min(latency);
            latency
        })
        .collect();
    latencies.sort_unstable();
    first.sort_unstable();
    let p50 = percentile(&latencies, 50.0) as f64 / 1000.0;
    let p99 = percentile(&latencies, 99.0) as f64 / 1000.0;
    let cpu_us = cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64;
    println!(
        "  latency, {label}: {} browsers, {events} events at {rate}/s, {} deliveries{}: \
         p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms; first delivery of an event p50 \
         {:.2} ms; server CPU {cpu_us:.2} us per delivery",
        browsers.count,
        latencies.len(),
        if complete { "" } else { " (INCOMPLETE)" },
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        percentile(&first, 50.0) as f64 / 1000.0,
    );
    ((p50, p99), cpu_us)
}

/// Posts `events` as fast as possible over 4 connections; returns deliveries per
/// second, and server and client CPU per delivery in µs.
async fn burst(server: &Server, browsers: &mut Browsers, events: u64) -> (f64, f64, f64) {
    let addr = server.addr;
    let base = head_seq(addr).await;
    let received_before = browsers.received.load(Ordering::Relaxed);
    let (frames_before, writes_before) = (
        metric(addr, "hub_ws_frames_total").await,
        metric(addr, "hub_ws_writes_total").await,
    );
    let cpu_before = server.cpu();
    let client_before = proc_cpu(std::process::id());
    let started = Instant::now();
    let connections = 4;
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut poster = Poster::connect(addr).await;
            let mut n = c;
            while n < events {
                poster.post(&event(n), 10_000_000 + base + n).await;
                n += connections;
            }
        }));
    }
    for task in tasks {
        task.await.expect("poster");
    }
    let expected = received_before + events * browsers.count as u64;
    let complete = browsers
        .wait_received(expected, Duration::from_secs(60))
        .await;
    let wall = started.elapsed();
    // Let the server finish its last writes before reading its CPU.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = server.cpu().saturating_sub(cpu_before);
    let client = proc_cpu(std::process::id()).saturating_sub(client_before);
    let deliveries = events * browsers.count as u64;
    browsers.collect().await;
    let rate = deliveries as f64 / wall.as_secs_f64();
    let cpu_us = cpu.as_secs_f64() * 1e6 / deliveries as f64;
    let client_us = client.as_secs_f64() * 1e6 / deliveries as f64;
    let per_write = match (
        frames_before,
        writes_before,
        metric(addr, "hub_ws_frames_total").await,
        metric(addr, "hub_ws_writes_total").await,
    ) {
        (Some(f0), Some(w0), Some(f1), Some(w1)) if w1 > w0 => {
            format!("; {:.1} frames per write", (f1 - f0) / (w1 - w0))
        }
        _ => String::new(),
    };
    println!(
        "  burst: {events} events x {} browsers = {deliveries} deliveries{} in {:.2} s wall \
         ({rate:.0} deliveries/s); server CPU {:.2} s = {cpu_us:.2} us per delivery; \
         client CPU {client_us:.2} us per delivery{per_write}",
        browsers.count,
        if complete { "" } else { " (INCOMPLETE)" },
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
    );
    (rate, cpu_us, client_us)
}

/// Resident memory growth per socket in KiB, after the sockets settled.
async fn settled_rss(server: &Server) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.rss()
}

/// Runs every measurement against `server`.
async fn measure(name: &str, server: &Server, scale: &Scale, first_round: bool) -> Figures {
    let addr = server.addr;
    println!("{name} on {addr}, pid {}", server.pid());
    let mut figures = Figures::default();
    let mut browsers = Browsers::new();
    let rss0 = settled_rss(server).await;
    browsers.open(addr, scale.small).await;
    (figures.small, _) = latency(server, &mut browsers, scale.small_events, 5, "small").await;
    browsers.open(addr, scale.sockets - scale.small).await;
    let rss1 = settled_rss(server).await;
    figures.kib_per_socket = rss1.saturating_sub(rss0) as f64 / browsers.count as f64 / 1024.0;
    println!(
        "  memory: {} idle authenticated sockets: RSS +{:.1} MiB = {:.2} KiB per socket",
        browsers.count,
        rss1.saturating_sub(rss0) as f64 / 1_048_576.0,
        figures.kib_per_socket,
    );
    (figures.full, figures.full_cpu_us) =
        latency(server, &mut browsers, scale.full_events, 5, "full").await;
    (
        figures.burst_rate,
        figures.burst_cpu_us,
        figures.burst_client_us,
    ) = burst(server, &mut browsers, scale.burst_events).await;
    if name == "hub" && scale.max_sockets > scale.sockets && first_round {
        let before = server.rss();
        let fresh = scale.max_sockets - scale.sockets;
        browsers.open(addr, fresh).await;
        let rss2 = settled_rss(server).await;
        println!(
            "  memory: {} sockets: RSS +{:.1} MiB over the empty server = {:.2} KiB per socket; \
             the {fresh} fresh ones +{:.2} KiB each",
            browsers.count,
            rss2.saturating_sub(rss0) as f64 / 1_048_576.0,
            rss2.saturating_sub(rss0) as f64 / browsers.count as f64 / 1024.0,
            rss2.saturating_sub(before) as f64 / fresh as f64 / 1024.0,
        );
    }
    println!("  server total CPU {:.1} s", server.cpu().as_secs_f64());
    figures
}

/// The Node peer's command, after `npm ci` if needed; `None` (with the reason
/// printed) when `node` or its `ws` is not available.
fn node_peer() -> Option<Command> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
    if Command::new("node").arg("--version").output().is_err() {
        println!("node peer SKIPPED: `node` is not installed");
        return None;
    }
    if !dir.join("node_modules/ws").exists() {
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            println!("node peer SKIPPED: `npm ci` failed in {}", dir.display());
            return None;
        }
    }
    let mut command = Command::new("node");
    command.arg(dir.join("hub.js"));
    Some(command)
}

/// `value / base`, or "-" without a base.
fn ratio(value: f64, base: Option<f64>) -> String {
    match base {
        Some(base) if base > 0.0 => format!("{:.2}x", value / base),
        _ => "-".to_owned(),
    }
}

/// Reads one figure.
type Figure = fn(&Figures) -> f64;

fn print_table(results: &[(&str, Figures)], scale: &Scale) {
    let find = |name: &str| results.iter().find(|(n, _)| *n == name).map(|(_, f)| *f);
    let (one, coalescing, node) = (find("floor-one"), find("floor-coalesce"), find("node"));
    let rows: [(String, Figure); 9] = [
        (format!("p50 ms, 5 ev/s, {}", scale.small), |f| f.small.0),
        (format!("p99 ms, 5 ev/s, {}", scale.small), |f| f.small.1),
        (format!("p50 ms, 5 ev/s, {}", scale.sockets), |f| f.full.0),
        (format!("p99 ms, 5 ev/s, {}", scale.sockets), |f| f.full.1),
        ("CPU us/delivery, 5 ev/s".to_owned(), |f| f.full_cpu_us),
        ("burst deliveries/s".to_owned(), |f| f.burst_rate),
        ("burst CPU us/delivery".to_owned(), |f| f.burst_cpu_us),
        ("burst client us/delivery".to_owned(), |f| f.burst_client_us),
        ("KiB per idle socket".to_owned(), |f| f.kib_per_socket),
    ];
    println!();
    print!("{:<28}", "figure");
    for (name, _) in results {
        print!(" {name:>15}");
    }
    println!(
        " {:>12} {:>12} {:>12}",
        "hub/one", "hub/coalesce", "hub/node"
    );
    for (label, get) in rows {
        print!("{label:<28}");
        for (_, figures) in results {
            print!(" {:>15.2}", get(figures));
        }
        let hub = find("hub").map(|f| get(&f));
        match hub {
            Some(hub) => println!(
                " {:>12} {:>12} {:>12}",
                ratio(hub, one.map(|f| get(&f))),
                ratio(hub, coalescing.map(|f| get(&f))),
                ratio(hub, node.map(|f| get(&f))),
            ),
            None => println!(),
        }
    }
}

/// The median of `values` (the mean of the middle two of an even count).
fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// The median of each figure over `rounds`.
fn median(rounds: &[Figures]) -> Figures {
    let of = |get: fn(&Figures) -> f64| median_of(rounds.iter().map(get).collect());
    Figures {
        small: (of(|f| f.small.0), of(|f| f.small.1)),
        full: (of(|f| f.full.0), of(|f| f.full.1)),
        full_cpu_us: of(|f| f.full_cpu_us),
        burst_rate: of(|f| f.burst_rate),
        burst_cpu_us: of(|f| f.burst_cpu_us),
        burst_client_us: of(|f| f.burst_client_us),
        kib_per_socket: of(|f| f.kib_per_socket),
    }
}

/// Adds one round's `figures` to `name`'s.
fn record<'a>(results: &mut Vec<(&'a str, Vec<Figures>)>, name: &'a str, figures: Figures) {
    match results.iter_mut().find(|(n, _)| *n == name) {
        Some((_, all)) => all.push(figures),
        None => results.push((name, vec![figures])),
    }
}

/// One round's p99 ratios of the hub to each other server, and their medians.
fn print_rounds(results: &[(&str, Vec<Figures>)], scale: &Scale) {
    let Some((_, hub)) = results.iter().find(|(name, _)| *name == "hub") else {
        return;
    };
    for (name, other) in results.iter().filter(|(name, _)| *name != "hub") {
        for (size, get) in [
            (scale.small, (|f: &Figures| f.small.1) as Figure),
            (scale.sockets, |f: &Figures| f.full.1),
        ] {
            let ratios: Vec<f64> = hub
                .iter()
                .zip(other)
                .map(|(h, o)| get(h) / get(o))
                .collect();
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "p99 hub/{name}, {size} sockets, round by round: {} (median {:.2}x)",
                each.join(" "),
                median_of(ratios),
            );
        }
    }
}

async fn client_main() {
    let scale = Scale::from_env();
    let only = std::env::var("FANOUT_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|n| n == name);
    let rounds = env_usize("FANOUT_ROUNDS").unwrap_or(1).max(1);
    let exe = std::env::current_exe().expect("exe");
    let mut results: Vec<(&str, Vec<Figures>)> = Vec::new();
    for round in 0..rounds {
        if rounds > 1 {
            println!("== round {} of {rounds}", round + 1);
        }
        let mut servers: Vec<(&str, Command)> = Vec::new();
        for (name, mode) in [("floor-one", "one"), ("floor-coalesce", "coalesce")] {
            let mut command = Command::new(&exe);
            command.args(["--floor-server", mode]);
            servers.push((name, command));
        }
        if wanted("node")
            && let Some(command) = node_peer()
        {
            servers.push(("node", command));
        }
        let first = round == 0;
        if wanted("hub") {
            let server = Server::start(&[]);
            record(
                &mut results,
                "hub",
                measure("hub", &server, &scale, first).await,
            );
        }
        for (name, command) in servers.into_iter().filter(|(name, _)| wanted(name)) {
            let server = Server::spawn(command);
            record(
                &mut results,
                name,
                measure(name, &server, &scale, first).await,
            );
        }
    }
    let medians: Vec<(&str, Figures)> = results
        .iter()
        .map(|(name, all)| (*name, median(all)))
        .collect();
    if rounds > 1 {
        println!();
        println!("medians of {rounds} rounds:");
    }
    print_table(&medians, &scale);
    if rounds > 1 {
        print_rounds(&results, &scale);
    }
}
