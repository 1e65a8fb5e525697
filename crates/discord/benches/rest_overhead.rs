//! Benchmark of `DiscordRestClient`'s own overhead per request on loopback (docs/spec.md §10:
//! Discord REST under 500 ms p95 excluding Discord's time).
//!
//! Each iteration fetches the same channel from the simulator three ways: through the
//! client (twilight's rate limiter, request building, retry wrapper, JSON decoding into
//! twilight's model and mapping to the domain type); as a keep-alive reqwest GET whose
//! body is only read; and as a hand-written HTTP/1.1 GET on one kept-alive TCP socket,
//! the least work a request can take. The simulator's time is in all three, so the
//! per-iteration difference to the raw socket is the client's own overhead. The order
//! rotates every iteration, and requests are paced under twilight's global limit of 50
//! per second, so no iteration waits for a rate-limit permit.
//!
//! `cargo bench -p coven-discord --bench rest_overhead` (`BENCH_ITERATIONS` overrides 400).

use std::time::{Duration, Instant};

use coven_contract::{Secret, Snowflake};
use coven_discord::{DiscordRestClient, RetryPolicy};
use coven_sim::{BucketConfig, SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// Pace of iterations: 40 client requests per second, below twilight's global 50/s.
const TICK: Duration = Duration::from_millis(25);
const WARMUP: usize = 20;

/// One kept-alive HTTP/1.1 connection driven by hand.
struct RawConnection {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl RawConnection {
    async fn open(addr: std::net::SocketAddr, path: &str, authorization: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("raw connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {authorization}\r\n\r\n"
        )
        .into_bytes();
        Self {
            stream,
            request,
            buffer: Vec::with_capacity(8192),
        }
    }

    /// Sends the request and reads one whole response (headers and `content-length` body).
    async fn round_trip(&mut self) -> usize {
        self.stream
            .write_all(&self.request)
            .await
            .expect("raw write");
        self.buffer.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.stream.read(&mut chunk).await.expect("raw read");
            assert!(n > 0, "connection closed");
            self.buffer.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                while self.buffer.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk).await.expect("raw read");
                    assert!(n > 0, "connection closed");
                    self.buffer.extend_from_slice(&chunk[..n]);
                }
                return length;
            }
        }
    }
}

fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// Prints p50, p99 and max of samples in nanoseconds (signed: differences can be negative).
fn report(name: &str, samples: &mut [i64]) {
    samples.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let us = |n: i64| format!("{:>8.1} µs", n as f64 / 1e3);
    println!(
        "{name:<36} p50 {}   p99 {}   max {}",
        us(percentile(samples, 0.50)),
        us(percentile(samples, 0.99)),
        us(samples[samples.len() - 1]),
    );
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    // Generous simulator limits (bucket limits must fit twilight's u16) so that only the
    // client's own pacing matters.
    let sim = Simulator::start(SimConfig {
        default_bucket: BucketConfig::new(60_000, Duration::from_secs(600)),
        global_per_second: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let channel_id = sim.handle().seed().voice_channel_ids[0];
    let path = format!("/api/v10/channels/{channel_id}");
    let authorization = format!("Bot {}", sim.bot_token());
    let api_url = Url::parse(&sim.api_url()).expect("api url");
    let client = DiscordRestClient::with_retry_policy(
        api_url,
        &Secret::new(sim.bot_token()),
        RetryPolicy::new(0),
    )
    .expect("client builds");
    let reqwest_client = reqwest::Client::new();
    let reqwest_url = format!("{}{path}", sim.api_url());
    let mut raw = RawConnection::open(sim.addr(), &path, &authorization).await;
    let id = Snowflake::new(channel_id).expect("id");

    let mut with_client = Vec::with_capacity(iterations);
    let mut with_reqwest = Vec::with_capacity(iterations);
    let mut with_raw = Vec::with_capacity(iterations);
    let mut over_raw = Vec::with_capacity(iterations);
    let mut over_reqwest = Vec::with_capacity(iterations);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..WARMUP + iterations {
        tick.tick().await;
        let mut times = [Duration::ZERO; 3];
        for step in 0..3 {
            let which = (i + step) % 3;
            let started = Instant::now();
            match which {
                0 => {
                    let channel = client.channel(id).await.expect("client request");
                    assert_eq!(channel.id, id);
                }
                1 => {
                    let response = reqwest_client
                        .get(&reqwest_url)
                        .header("authorization", &authorization)
                        .send()
                        .await
                        .expect("reqwest request");
                    assert!(response.status().is_success());
                    assert!(!response.bytes().await.expect("reqwest body").is_empty());
                }
                _ => assert!(raw.round_trip().await > 0),
            }
            times[which] = started.elapsed();
        }
        if i >= WARMUP {
            let [c, q, r] = times.map(nanos);
            with_client.push(c);
            with_reqwest.push(q);
            with_raw.push(r);
            over_raw.push(c - r);
            over_reqwest.push(c - q);
        }
    }
    let rest_429s = sim.handle().counters().rest_429s;
    println!(
        "DiscordRestClient on loopback, GET /api/v10/channels/{{id}}, {iterations} iterations at 40/s"
    );
    report("client round trip", &mut with_client);
    report("reqwest round trip", &mut with_reqwest);
    report("raw HTTP/1.1 socket round trip", &mut with_raw);
    report("overhead: client - raw (paired)", &mut over_raw);
    report("overhead: client - reqwest (paired)", &mut over_reqwest);
    println!("429s served by the simulator: {rest_429s}");
    sim.shutdown().await;
}
