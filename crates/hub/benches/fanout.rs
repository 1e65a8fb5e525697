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

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coven_contract::signature::Signer;
use coven_contract::{Event, Secret, Snowflake, VoiceJoined};
use coven_hub::{Hub, HubSettings, KeySource, MemoryRooms, VerifyingKey};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

const SECRET: &str = "bench-hub-secret";
const ISSUER: &str = "https://bench.invalid";
const GUILD: u64 = 1;
const ED_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/ed_private.pem");
const JWKS: &str = include_str!("../tests/fixtures/jwks.json");

fn main() {
    if std::env::args().any(|a| a == "--hub-server") {
        server_main();
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(client_main());
}

// ---------------------------------------------------------------- server process

/// The one Ed25519 key of the test fixtures, as the hub's only key source.
struct StaticKey(Arc<VerifyingKey>);

impl KeySource for StaticKey {
    fn key(&self, kid: &str) -> BoxFuture<'_, Option<Arc<VerifyingKey>>> {
        let key = (kid == "ed-1").then(|| self.0.clone());
        Box::pin(async move { key })
    }
}

fn static_key() -> StaticKey {
    let jwks: serde_json::Value = serde_json::from_str(JWKS).expect("jwks");
    let x = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == "ed-1"))
        .and_then(|k| k["x"].as_str())
        .expect("ed-1 in the fixtures");
    StaticKey(Arc::new(VerifyingKey {
        key: DecodingKey::from_ed_components(x).expect("ed key"),
        algorithm: Algorithm::EdDSA,
    }))
}

fn server_main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut settings = HubSettings::new(
            Snowflake::new(GUILD).expect("id"),
            vec![Secret::new(SECRET)],
            ISSUER.into(),
        );
        if let Some(size) = env_usize("FANOUT_READ_BUFFER") {
            settings.ws_read_buffer_size = size;
        }
        settings.dedupe_capacity = 1_000_000;
        let hub = Hub::builder(settings, Arc::new(MemoryRooms::new(1)))
            .key_source(Arc::new(static_key()))
            .build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("ADDR {}", listener.local_addr().expect("addr"));
        std::io::stdout().flush().ok();
        // Shut down when the parent closes our stdin.
        let shutdown = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = String::new();
                while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
            })
            .await;
        };
        hub.serve(listener, shutdown).await.expect("serve");
    });
}

// ---------------------------------------------------------------- client process

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .arg("--hub-server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .env("RUST_LOG", "off")
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server address");
        let addr = line
            .trim()
            .strip_prefix("ADDR ")
            .expect("ADDR line")
            .parse()
            .expect("socket address");
        Self { child, addr }
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    /// Resident memory in bytes.
    fn rss(&self) -> u64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// User + system CPU time.
    fn cpu(&self) -> Duration {
        let stat = self.proc_file("stat");
        let after = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        // Linux reports in USER_HZ, 100 per second on every mainstream build.
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP/1.1 connection posting signed webhooks.
struct Poster {
    reader: BufReader<TcpStream>,
    signer: Signer,
    buf: Vec<u8>,
}

impl Poster {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        Self {
            reader: BufReader::new(stream),
            signer: Signer::new(Secret::new(SECRET)),
            buf: Vec::with_capacity(1024),
        }
    }

    async fn post(&mut self, event: &Event, id: u64) {
        let body = event.to_webhook_body();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let signed = self.signer.sign(now, &body);
        self.buf.clear();
        write!(
            self.buf,
            "POST /api/internal/events HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nx-hub-timestamp: {}\r\nx-hub-signature: {}\r\nx-hub-event-id: bench-{id}\r\n\r\n",
            body.len(),
            signed.timestamp,
            signed.signature
        )
        .expect("format");
        self.buf.extend_from_slice(&body);
        self.reader
            .get_mut()
            .write_all(&self.buf)
            .await
            .expect("write");
        // Status line, headers, body.
        let mut line = String::new();
        let mut length = 0;
        let mut status = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.expect("read");
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.expect("body");
        assert_eq!(status, 200, "ingest answered {status}");
    }
}

fn event(n: u64) -> Event {
    // Small ids keep the envelope near 100 bytes, as the issue asks.
    Event::VoiceJoined(VoiceJoined {
        guild_id: Snowflake::new(GUILD).expect("id"),
        channel_id: Snowflake::new(2).expect("id"),
        user_id: Snowflake::new(1 + n % 1000).expect("id"),
    })
}

fn token() -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let claims =
        serde_json::json!({"iss": ISSUER, "aud": "spell-coven-web", "sub": "1", "exp": exp});
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(ED_PRIVATE).expect("key"),
    )
    .expect("token")
}

/// What each browser task records: (seq, microseconds since the epoch of the run).
type Receipts = Vec<(u64, u64)>;

struct Browsers {
    received: Arc<AtomicU64>,
    collect: watch::Sender<u64>,
    results: mpsc::UnboundedReceiver<Receipts>,
    results_tx: mpsc::UnboundedSender<Receipts>,
    count: usize,
    t0: Instant,
}

impl Browsers {
    fn new(t0: Instant) -> Self {
        let (results_tx, results) = mpsc::unbounded_channel();
        Self {
            received: Arc::new(AtomicU64::new(0)),
            collect: watch::channel(0).0,
            results,
            results_tx,
            count: 0,
            t0,
        }
    }

    /// Opens `n` more authenticated sockets, 256 handshakes at a time.
    async fn open(&mut self, addr: SocketAddr, n: usize) {
        let token = Arc::new(token());
        let start = self.count;
        let mut pending = futures_util::stream::iter(start..start + n)
            .map(|i| {
                let token = token.clone();
                async move { connect(addr, i, &token).await }
            })
            .buffer_unordered(env_usize("FANOUT_HANDSHAKES").unwrap_or(256));
        while let Some(browser) = pending.next().await {
            let received = self.received.clone();
            let collect = self.collect.subscribe();
            let results = self.results_tx.clone();
            tokio::spawn(read_frames(browser, self.t0, received, collect, results));
            self.count += 1;
        }
    }

    /// Waits until `total` frames were received overall (or a timeout).
    async fn wait_received(&self, total: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.received.load(Ordering::Relaxed) < total {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// Collects and clears every browser's receipts.
    async fn collect(&mut self) -> Vec<Receipts> {
        self.collect.send_modify(|n| *n += 1);
        let mut all = Vec::with_capacity(self.count);
        while all.len() < self.count {
            match tokio::time::timeout(Duration::from_secs(30), self.results.recv()).await {
                Ok(Some(r)) => all.push(r),
                _ => break,
            }
        }
        all
    }
}

/// A browser's connection after the handshake and `auth.ok`, with any bytes read
/// past the ack.
struct Browser {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One server frame at the start of `buf`: (opcode, payload range, frame length).
fn parse_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (
            usize::try_from(u64::from_be_bytes(buf[2..10].try_into().ok()?)).ok()?,
            10,
        ),
        126 | 127 => return None,
        n => (usize::from(n), 2),
    };
    (buf.len() >= header + len).then_some((opcode, header..header + len, header + len))
}

/// A client frame (masked with a zero key, which leaves the payload as is).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 0x7e);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// Opens one browser by hand: a raw WebSocket handshake and `auth`, so that the
/// client side costs as little CPU as possible next to the hub it measures.
async fn connect(addr: SocketAddr, i: usize, token: &str) -> Browser {
    // 127.0.0.2 .. 127.0.0.201: 200 source addresses, each with the full port range.
    let source: SocketAddr = format!("127.0.0.{}:0", 2 + i % 200)
        .parse()
        .expect("source");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(source).expect("bind source");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    stream
        .write_all(
            b"GET /api/ws HTTP/1.1\r\nhost: hub\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
        )
        .await
        .expect("handshake");
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        let mut chunk = [0_u8; 512];
        let n = stream.read(&mut chunk).await.expect("handshake answer");
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"), "no upgrade");
    buf.drain(..head_end);
    let auth = serde_json::json!({"type": "auth", "token": token}).to_string();
    stream
        .write_all(&client_frame(1, auth.as_bytes()))
        .await
        .expect("auth");
    loop {
        if let Some((opcode, payload, len)) = parse_frame(&buf) {
            assert_eq!(opcode, 1);
            let text = std::str::from_utf8(&buf[payload]).expect("utf-8");
            assert!(text.contains("auth.ok"), "auth failed: {text}");
            buf.drain(..len);
            return Browser { stream, buf };
        }
        let mut chunk = [0_u8; 512];
        let n = stream.read(&mut chunk).await.expect("ack");
        assert!(n > 0, "closed before the ack");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A browser's reading loop: records (seq, receipt time) of every event frame,
/// answers pings, and hands its receipts over when asked.
async fn read_frames(
    browser: Browser,
    t0: Instant,
    received: Arc<AtomicU64>,
    mut collect: watch::Receiver<u64>,
    results: mpsc::UnboundedSender<Receipts>,
) {
    let Browser {
        mut stream,
        mut buf,
    } = browser;
    let mut receipts: Receipts = Vec::new();
    let mut chunk = vec![0_u8; 4096];
    loop {
        tokio::select! {
            read = stream.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let at = t0.elapsed().as_micros() as u64;
                buf.extend_from_slice(&chunk[..n]);
                let mut start = 0;
                while let Some((opcode, payload, len)) = parse_frame(&buf[start..]) {
                    let payload = start + payload.start..start + payload.end;
                    match opcode {
                        1 => {
                            let text = std::str::from_utf8(&buf[payload]).unwrap_or("");
                            receipts.push((seq_of(text), at));
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        9 => {
                            let pong = client_frame(0xA, &buf[payload]);
                            if stream.write_all(&pong).await.is_err() {
                                return;
                            }
                        }
                        8 => return,
                        _ => {}
                    }
                    start += len;
                }
                buf.drain(..start);
            }
            changed = collect.changed() => {
                if changed.is_err() { return; }
                let _ = results.send(std::mem::take(&mut receipts));
            }
        }
    }
}

fn seq_of(text: &str) -> u64 {
    text.rfind("\"seq\":").map_or(0, |i| {
        text[i + 6..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn head_seq(addr: SocketAddr) -> u64 {
    let health: serde_json::Value = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    health["replay"]["headSeq"].as_u64().unwrap_or(0)
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
        sent_at.push(browsers.t0.elapsed().as_micros() as u64);
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
    let server = Server::start();
    let addr = server.addr;
    println!("hub on {addr}, pid {}", server.child.id());

    ingest_rate(&server, 3, 8).await;

    let t0 = Instant::now();
    let mut browsers = Browsers::new(t0);
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
