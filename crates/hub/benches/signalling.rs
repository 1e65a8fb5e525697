//! The webcams' signalling relay (docs/spec.md §12, issue 17): how long an
//! `rtc.signal` takes from one browser's socket to the other's, with hundreds of
//! signalling pairs at once, through one hub and across two hubs sharing Redis.
//!
//! Everything runs in this process on loopback: the hubs (their own issuer, one
//! shared key), a private `redis-server` (`coven-testkit`) for the pair of hubs, and
//! `2 × SIGNAL_PAIRS` browser sockets (tokio-tungstenite). Each pair sits in its own
//! voice channel (published through the hub's broker, as the worker's events would
//! be). Every sender sends `SIGNAL_MESSAGES` signals (an ICE-candidate-sized `data`
//! carrying its send time) at `SIGNAL_RATE` per second, all pairs at once; every
//! receiver records now − sent. With two hubs, the senders are on hub A and the
//! receivers on hub B, so every signal crosses Redis (one `PUBLISH` on the
//! recipient's channel).
//!
//! Run: `cargo bench -p coven-hub --bench signalling` (scale with `SIGNAL_PAIRS`,
//! `SIGNAL_MESSAGES`, `SIGNAL_RATE`). Figures are recorded in docs/scaling.md.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coven_contract::{Event, Secret, Snowflake, VoiceJoined};
use coven_hub::{Hub, HubIssuer, HubSettings, MemoryRooms, TokenSubject};
use coven_testkit::RedisServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const GUILD: u64 = 1_000_000_000_000_001;
const ISSUER: &str = "https://bench.invalid";
const AUDIENCE: &str = "spell-coven-web";
const FIRST_USER: u64 = 2_000_000_000_000_000;
const FIRST_CHANNEL: u64 = 3_000_000_000_000_000;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn id(n: u64) -> Snowflake {
    Snowflake::new(n).expect("a snowflake")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pairs = env("SIGNAL_PAIRS", 300);
        let messages = env("SIGNAL_MESSAGES", 40);
        let rate = env("SIGNAL_RATE", 10).max(1);
        println!(
            "signalling: {pairs} pairs ({} sockets), {messages} signals per sender at {rate}/s ({} signals/s in all)",
            pairs * 2,
            pairs * rate
        );
        let one = run(pairs, messages, rate, None).await;
        report("1 hub, in-process", &one);
        let redis = RedisServer::start_volatile();
        let two = run(pairs, messages, rate, Some(redis.url())).await;
        report("2 hubs on Redis", &two);
        let ratio = |p: f64| percentile(&two.0, p) as f64 / percentile(&one.0, p).max(1) as f64;
        println!(
            "ratio 2 hubs / 1 hub: p50 {:.2}x, p99 {:.2}x",
            ratio(0.50),
            ratio(0.99)
        );
    });
}

/// Latencies (µs, sorted) and how many signals never arrived.
type Outcome = (Vec<u64>, usize);

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, (latencies, lost): &Outcome) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{label:<20} signals {:>6}  p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  lost {lost}",
        latencies.len(),
        ms(percentile(latencies, 0.50)),
        ms(percentile(latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or(0)),
    );
}

/// A hub serving on a free loopback port until the returned sender is dropped.
async fn hub(
    issuer: &Arc<HubIssuer>,
    redis: Option<&str>,
) -> (SocketAddr, Hub, tokio::sync::oneshot::Sender<()>) {
    let mut settings = HubSettings::new(
        id(GUILD),
        vec![Secret::new("bench-hub-secret")],
        ISSUER.into(),
    );
    settings.jwt_audience = AUDIENCE.into();
    settings.max_connections = 100_000;
    settings.max_connections_per_ip = 100_000;
    settings.max_unauthenticated_per_ip = 100_000;
    settings.redis_url = redis.map(Secret::new);
    let hub = Hub::builder(settings, Arc::new(MemoryRooms::new(1)))
        .issuer(issuer.clone())
        .build()
        .expect("a hub");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hub.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, hub, stop)
}

async fn sign_in(addr: SocketAddr, token: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/ws"))
        .await
        .expect("a socket");
    ws.send(Message::text(
        json!({"type":"auth","token":token}).to_string(),
    ))
    .await
    .expect("auth sent");
    loop {
        if let Some(Ok(Message::Text(text))) = ws.next().await {
            let ack: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(ack["event"], "auth.ok", "{ack}");
            return ws;
        }
    }
}

fn signal(to: u64, channel: u64, k: usize) -> String {
    // About the size of an ICE candidate message.
    let candidate = format!(
        "candidate:842163049 1 udp 1677729535 127.0.0.1 {} typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag sXbD network-cost 999",
        50_000 + k
    );
    json!({"type":"rtc.signal","to":to.to_string(),"channelId":channel.to_string(),
        "data":{"kind":"candidate","t":now_us(),"candidate":{"candidate":candidate,"sdpMid":"0","sdpMLineIndex":0}}})
    .to_string()
}

async fn run(pairs: usize, messages: usize, rate: usize, redis: Option<String>) -> Outcome {
    let issuer = Arc::new(
        HubIssuer::with_key_file(
            None,
            ISSUER.into(),
            AUDIENCE.into(),
            Duration::from_secs(3600),
        )
        .expect("an issuer"),
    );
    let (addr_a, hub_a, stop_a) = hub(&issuer, redis.as_deref()).await;
    let (addr_b, _hub_b, stop_b) = match redis.as_deref() {
        Some(url) => {
            let (addr, hub, stop) = hub(&issuer, Some(url)).await;
            (addr, Some(hub), Some(stop))
        }
        None => (addr_a, None, None),
    };
    let user = |pair: usize, side: u64| FIRST_USER + 2 * pair as u64 + side;
    let channel = |pair: usize| FIRST_CHANNEL + pair as u64;
    for pair in 0..pairs {
        for side in 0..2 {
            let joined = Event::VoiceJoined(VoiceJoined {
                guild_id: id(GUILD),
                channel_id: id(channel(pair)),
                user_id: id(user(pair, side)),
            });
            hub_a
                .broker()
                .publish(joined, Vec::new())
                .await
                .expect("published");
        }
    }
    let token = |user: u64| {
        issuer
            .issue(&TokenSubject {
                user_id: user.to_string(),
                name: format!("player {user}"),
                avatar_url: None,
            })
            .expect("a token")
    };
    let mut links = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        let sender = sign_in(addr_a, &token(user(pair, 0))).await;
        let receiver = sign_in(addr_b, &token(user(pair, 1))).await;
        links.push((pair, sender, receiver));
    }
    // Wait until each pair's signals get through (presence known on both hubs, the
    // receiver's channel subscribed), then measure.
    for (pair, sender, receiver) in &mut links {
        probe(sender, receiver, user(*pair, 1), channel(*pair)).await;
    }
    let (all, elapsed) =
        measure(links, messages, rate, |pair| (user(pair, 1), channel(pair))).await;
    let lost = pairs * messages - all.len();
    println!(
        "  ({} signals in {:.1} s: {:.0}/s)",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    drop((stop_a, stop_b));
    (all, lost)
}

/// Signals until one gets through, then drains the sender's refusals.
async fn probe(sender: &mut Ws, receiver: &mut Ws, to: u64, room: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    'probe: loop {
        if Instant::now() >= deadline {
            let answer = tokio::time::timeout(Duration::from_secs(1), sender.next()).await;
            panic!("{to} never got a signal; the sender got {answer:?}");
        }
        sender
            .send(Message::text(signal(to, room, 0)))
            .await
            .expect("sent");
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => continue 'probe,
                frame = receiver.next() => {
                    if let Some(Ok(Message::Text(text))) = frame && text.contains("rtc.signal") {
                        break 'probe;
                    }
                }
            }
        }
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), sender.next()).await {}
}

/// Every pair sends at once; returns the sorted latencies (µs) and how long it took.
async fn measure(
    links: Vec<(usize, Ws, Ws)>,
    messages: usize,
    rate: usize,
    target: impl Fn(usize) -> (u64, u64),
) -> (Vec<u64>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = links
        .into_iter()
        .map(|(pair, mut sender, mut receiver)| {
            let (to, room) = target(pair);
            tokio::spawn(async move {
                // Spread the senders over one period so they do not fire in lockstep.
                let period = Duration::from_secs(1) / rate as u32;
                tokio::time::sleep(period * (pair as u32 % 97) / 97).await;
                let send = async {
                    let mut tick = tokio::time::interval(period);
                    for k in 0..messages {
                        tick.tick().await;
                        sender
                            .send(Message::text(signal(to, room, k)))
                            .await
                            .expect("sent");
                    }
                    sender
                };
                let receive = async {
                    let mut latencies = Vec::with_capacity(messages);
                    let deadline =
                        tokio::time::sleep(period * messages as u32 + Duration::from_secs(10));
                    tokio::pin!(deadline);
                    while latencies.len() < messages {
                        tokio::select! {
                            () = &mut deadline => break,
                            frame = receiver.next() => match frame {
                                Some(Ok(Message::Text(text))) => {
                                    let now = now_us();
                                    let value: Value = serde_json::from_str(&text).expect("JSON");
                                    if let Some(t) = value["data"]["t"].as_u64() {
                                        latencies.push(now.saturating_sub(t));
                                    }
                                }
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                        }
                    }
                    latencies
                };
                let (_sender, latencies) = tokio::join!(send, receive);
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(tasks.len() * messages);
    for task in tasks {
        all.extend(task.await.expect("a pair"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    (all, elapsed)
}
