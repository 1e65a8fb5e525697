//! Fan-out benchmark of the hub (issue 6): delivery latency, server CPU per delivery,
//! memory per idle socket and signed ingest throughput, over loopback.
//!
//! The hub runs in a child process (this binary with `--hub-server`) so that its CPU
//! time and resident memory can be read from `/proc/<pid>` without counting the
//! clients. The parent holds the browsers (real WebSockets, authenticated with a JWT)
//! and posts signed webhooks over plain keep-alive HTTP/1.1. Browser source addresses
//! are spread over 127.0.0.0/8 so the ephemeral-port range is never the limit.
//!
//! Run: `cargo bench -p coven-hub --bench fanout` (scale with `FANOUT_SOCKETS`,
//! `FANOUT_MAX_SOCKETS`, `FANOUT_SMALL`, `FANOUT_HANDSHAKES`). Both processes need
//! one file descriptor per socket plus a few; the numbers are printed and recorded
//! by hand in docs/benchmarks.md.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Browsers, Poster, Server, env_usize, event, head_seq, now_us, percentile};

fn main() {
    if std::env::args().any(|a| a == "--hub-server") {
        common::hub_server_main(|settings| {
            if let Some(size) = env_usize("FANOUT_READ_BUFFER") {
                settings.ws_read_buffer_size = size;
            }
        });
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(client_main());
}

/// (a) Posts `events` at `rate` per second; prints delivery latency percentiles.
async fn latency(server: &Server, browsers: &mut Browsers, events: u64, rate: u64, label: &str) {
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
    let mut latencies: Vec<u64> = browsers
        .collect()
        .await
        .into_iter()
        .flatten()
        .filter(|(seq, _)| *seq > base && *seq <= base + events)
        .map(|(seq, at)| at.saturating_sub(sent_at[(seq - base - 1) as usize]))
        .collect();
    latencies.sort_unstable();
    println!(
        "(a) latency, {label}: {} browsers, {events} events at {rate}/s, {} deliveries{}: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; server CPU {:.2} us per delivery",
        browsers.count,
        latencies.len(),
        if complete { "" } else { " (INCOMPLETE)" },
        percentile(&latencies, 50.0) as f64 / 1000.0,
        percentile(&latencies, 99.0) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64,
    );
}

/// (b) Posts `events` as fast as possible; prints server CPU per delivery.
async fn burst(server: &Server, browsers: &mut Browsers, events: u64) {
    let addr = server.addr;
    let base = head_seq(addr).await;
    let received_before = browsers.received.load(Ordering::Relaxed);
    let cpu_before = server.cpu();
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
    let deliveries = events * browsers.count as u64;
    browsers.collect().await;
    println!(
        "(b) burst: {events} events x {} browsers = {deliveries} deliveries{} in {:.2} s wall \
         ({:.0} deliveries/s); server CPU {:.2} s = {:.2} us per delivery",
        browsers.count,
        if complete { "" } else { " (INCOMPLETE)" },
        wall.as_secs_f64(),
        deliveries as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / deliveries as f64,
    );
}

/// (d) Signed ingest requests per second, `connections` keep-alive posters.
async fn ingest_rate(server: &Server, seconds: u64, connections: u64) {
    let addr = server.addr;
    let cpu_before = server.cpu();
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let mut poster = Poster::connect(addr).await;
            let mut n = 0;
            while Instant::now() < deadline {
                poster
                    .post(&event(n), 50_000_000 + c * 10_000_000 + n)
                    .await;
                n += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await.expect("poster");
    }
    let total = count.load(Ordering::Relaxed);
    let cpu = server.cpu().saturating_sub(cpu_before);
    println!(
        "(d) ingest: {total} signed webhooks in {:.1} s over {connections} connections = {:.0}/s; \
         server CPU {:.1} us per request (client shares the 2 cores)",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / total.max(1) as f64,
    );
}

async fn client_main() {
    let sockets = env_usize("FANOUT_SOCKETS").unwrap_or(10_000);
    let max_sockets = env_usize("FANOUT_MAX_SOCKETS")
        .unwrap_or(19_000)
        .max(sockets);
    let small = env_usize("FANOUT_SMALL").unwrap_or(1_000).min(sockets);
    let server = Server::start(&[]);
    let addr = server.addr;
    println!("hub on {addr}, pid {}", server.pid());

    ingest_rate(&server, 3, 8).await;

    let mut browsers = Browsers::new();
    let rss0 = server.rss();
    browsers.open(addr, small).await;
    latency(&server, &mut browsers, 25, 5, "small").await;

    browsers.open(addr, sockets - small).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = server.rss();
    println!(
        "(c) memory: {} idle authenticated sockets: RSS +{:.1} MiB = {:.2} KiB per socket",
        browsers.count,
        (rss1 - rss0) as f64 / 1_048_576.0,
        (rss1 - rss0) as f64 / browsers.count as f64 / 1024.0
    );
    latency(&server, &mut browsers, 50, 5, "full").await;
    burst(&server, &mut browsers, 200).await;

    if max_sockets > sockets {
        let before = server.rss();
        let fresh = max_sockets - sockets;
        browsers.open(addr, fresh).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss2 = server.rss();
        println!(
            "(c) memory: {} sockets: RSS +{:.1} MiB over the empty hub = {:.2} KiB per socket; \
             the {fresh} fresh ones +{:.2} KiB each",
            browsers.count,
            (rss2 - rss0) as f64 / 1_048_576.0,
            (rss2 - rss0) as f64 / browsers.count as f64 / 1024.0,
            (rss2 - before) as f64 / fresh as f64 / 1024.0,
        );
    }
    println!("server total CPU {:.1} s", server.cpu().as_secs_f64());
}
