//! What the hub benches share (`mod common;` in each): the hub as a child process
//! (`--hub-server`), `/proc` CPU and memory readers, a hand-written keep-alive
//! poster of signed webhooks, and a minimal hand-written WebSocket browser that
//! records when each event arrives.
//!
//! Every bench binary uses only part of this, hence `dead_code` is allowed here.

#![allow(
    dead_code,
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

pub const SECRET: &str = "bench-hub-secret";
pub const ISSUER: &str = "https://bench.invalid";
pub const GUILD: u64 = 1;
const ED_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/ed_private.pem");
const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

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

/// The `--hub-server` child: a hub with the bench's secret, issuer and key on a free
/// loopback port, which it prints as `ADDR <addr>`; it stops when its stdin closes.
/// `configure` adjusts the settings (read buffer, Redis).
pub fn hub_server_main(configure: impl FnOnce(&mut HubSettings)) {
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
        settings.dedupe_capacity = 1_000_000;
        // Tens of thousands of sockets of one user from a few hundred addresses,
        // and posters that may wait between phases: far above a stranger's limits.
        settings.max_connections = 1_000_000;
        settings.max_connections_per_ip = 1_000_000;
        settings.max_unauthenticated_per_ip = 1_000_000;
        settings.max_sockets_per_user = 1_000_000;
        settings.header_read_timeout = std::time::Duration::from_secs(3600);
        settings.http_idle_timeout = std::time::Duration::from_secs(3600);
        configure(&mut settings);
        let hub = Hub::builder(settings, Arc::new(MemoryRooms::new(1)))
            .key_source(Arc::new(static_key()))
            .build()
            .expect("the hub builds");
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

// ---------------------------------------------------------------- measuring

pub fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Wall-clock microseconds since the Unix epoch: every process of a bench runs on
/// the same machine, so receipts taken in one process compare with post times
/// taken in another.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64
}

fn proc_file(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// User + system CPU time of a process (all its threads).
pub fn proc_cpu(pid: u32) -> Duration {
    let (user, system) = proc_ticks(pid);
    ticks(user + system)
}

/// User-space CPU time of process `pid` (`utime` alone).
pub fn user_cpu(pid: u32) -> Duration {
    ticks(proc_ticks(pid).0)
}

/// `utime` and `stime` of process `pid`, in clock ticks.
fn proc_ticks(pid: u32) -> (u64, u64) {
    let stat = proc_file(pid, "stat");
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field(11), field(12))
}

/// Clock ticks as time: Linux reports in `USER_HZ`, 100 per second on every
/// mainstream build.
fn ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}

/// (busy, total) jiffies of the whole machine, from the first line of `/proc/stat`.
pub fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Resident memory of a process in bytes.
pub fn proc_rss(pid: u32) -> u64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A server child process (the hub: this bench binary with `--hub-server`; or
/// another fan-out server the bench compares it with) that prints `ADDR <addr>`
/// and stops when its stdin closes.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts the hub with these extra environment variables and waits for its address.
    pub fn start(envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("exe"));
        command.arg("--hub-server").envs(envs.iter().copied());
        Self::spawn(command)
    }

    /// Starts `command` and waits for the `ADDR` line it prints.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> u64 {
        proc_rss(self.pid())
    }

    /// User + system CPU time.
    pub fn cpu(&self) -> Duration {
        proc_cpu(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The hub's `/health` `replay.headSeq`: the seq of the last event it broadcast.
pub async fn head_seq(addr: SocketAddr) -> u64 {
    let health: serde_json::Value = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    health["replay"]["headSeq"].as_u64().unwrap_or(0)
}

/// A counter from the hub's `/metrics` (summed over its labels), or `None` from a
/// server without that route (the floor stubs, the Node peer).
pub async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let values: Vec<f64> = text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

// ---------------------------------------------------------------- webhooks

/// A keep-alive HTTP/1.1 connection posting signed webhooks.
pub struct Poster {
    reader: BufReader<TcpStream>,
    signer: Signer,
    buf: Vec<u8>,
}

impl Poster {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        Self {
            reader: BufReader::new(stream),
            signer: Signer::new(Secret::new(SECRET)),
            buf: Vec::with_capacity(1024),
        }
    }

    /// Posts `event` with the event id `bench-{id}` and waits for its 200.
    pub async fn post(&mut self, event: &Event, id: u64) {
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

pub fn event(n: u64) -> Event {
    // Small ids keep the envelope near 100 bytes, as issue 6 asks.
    Event::VoiceJoined(VoiceJoined {
        guild_id: Snowflake::new(GUILD).expect("id"),
        channel_id: Snowflake::new(2).expect("id"),
        user_id: Snowflake::new(1 + n % 1000).expect("id"),
    })
}

// ---------------------------------------------------------------- browsers

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

/// What each browser task records: (seq, receipt time from [`now_us`]).
pub type Receipts = Vec<(u64, u64)>;

/// Many authenticated browser sockets, each read by its own task.
pub struct Browsers {
    pub received: Arc<AtomicU64>,
    collect: watch::Sender<u64>,
    results: mpsc::UnboundedReceiver<Receipts>,
    results_tx: mpsc::UnboundedSender<Receipts>,
    pub count: usize,
}

impl Browsers {
    pub fn new() -> Self {
        let (results_tx, results) = mpsc::unbounded_channel();
        Self {
            received: Arc::new(AtomicU64::new(0)),
            collect: watch::channel(0).0,
            results,
            results_tx,
            count: 0,
        }
    }

    /// Opens `n` more authenticated sockets, 256 handshakes at a time
    /// (`FANOUT_HANDSHAKES`).
    pub async fn open(&mut self, addr: SocketAddr, n: usize) {
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
            tokio::spawn(read_frames(browser, received, collect, results));
            self.count += 1;
        }
    }

    /// Waits until `total` frames were received overall (or a timeout).
    pub async fn wait_received(&self, total: u64, limit: Duration) -> bool {
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
    pub async fn collect(&mut self) -> Vec<Receipts> {
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
                let at = now_us();
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
