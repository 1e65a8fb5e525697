//! `REDIS_URL=rediss://:<password>@…` (docs/spec.md §3): real `coven hub` and
//! `coven worker` processes against Debian's `redis-server` speaking only TLS,
//! with a CA the test makes at run time and hands to the processes through
//! `SSL_CERT_FILE` (docs/scaling.md). Two hubs share events, `seq` and the issuer's
//! keys over TLS; a worker pair keeps its lease, session and outbox there and
//! hands over on a kill; a Redis certificate nobody trusts is reported with the
//! reason in the log, and a port that never finishes the handshake times out:
//! either way the process keeps running and `/health` says so, instead of hanging.

mod process;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use coven_contract::signature::EVENT_ID_HEADER;
use coven_testkit::{
    FakeHub, KillOnDrop, RedisServer, SECRET, TestCa, WAIT, assert_in_order_at_least_once,
    eventually, free_port, now_secs, sign_webhook, sim_login, simulator, wait_for_role,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Both hubs issue tokens under one name, so a token of one is a token of both.
const ISSUER: &str = "http://coven-rediss.test";

/// A TLS-only Redis with a password, started off the async runtime.
async fn tls_redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start_tls)
        .await
        .unwrap()
}

/// A `coven hub` using `redis` through `rediss://`, trusting `ca` for it.
fn hub(sim: &coven_sim::Simulator, redis: &RedisServer, ca: &Path, state: &Path) -> (u16, Child) {
    let port = free_port();
    let child = process::login_hub_command(
        sim,
        state,
        port,
        &format!("http://127.0.0.1:{port}/auth/callback"),
    )
    .arg("hub")
    .env("JWT_ISSUER", ISSUER)
    .env("REDIS_URL", redis.url())
    .env("SSL_CERT_FILE", ca)
    .env("LOG_LEVEL", "info")
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    (port, child)
}

/// Polls the hub's `/health` until `ready` accepts the body (any status).
async fn hub_health(port: u16, ready: impl Fn(&Value) -> bool) -> Value {
    let url = format!("http://127.0.0.1:{port}/health");
    eventually(&format!("{url} to be ready"), async || {
        let body: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
        ready(&body).then_some(body)
    })
    .await
}

/// The lines a child writes to stderr, read on a thread as they come.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (off the runtime) for a line containing every one of `words`; returns
/// it, or fails with everything read so far.
async fn line_with(lines: mpsc::Receiver<String>, words: &'static [&'static str]) -> String {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if words.iter().all(|word| line.contains(word)) => return line,
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("no line with {words:?} within {WAIT:?}; got:\n{seen:#?}")
                }
            }
        }
    })
    .await
    .unwrap()
}

fn joined(guild: u64, user: u64) -> Value {
    json!({"event": "voice.joined", "payload": {
        "guildId": guild.to_string(), "channelId": "77", "userId": user.to_string()}})
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "event" {
                return frame;
            }
        }
    }
}

#[tokio::test]
async fn two_hubs_on_rediss_share_health_keys_and_events() {
    let sim = simulator().await;
    let redis = tls_redis().await;
    let ca = redis.ca_file().unwrap();
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, a) = hub(&sim, &redis, &ca, state_a.path());
    let _a = KillOnDrop::new(a);
    let (port_b, b) = hub(&sim, &redis, &ca, state_b.path());
    let _b = KillOnDrop::new(b);
    for port in [port_a, port_b] {
        let body = hub_health(port, |h| h["status"] == "ok" && h["redis"] == "up").await;
        assert_eq!(body["redis"], "up", "{body}");
    }

    // A token issued by hub A (its login flow and keys in Redis) works on hub B.
    let token = sim_login(&format!("http://127.0.0.1:{port_a}")).await;
    let (mut on_b, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port_b}/api/ws"))
        .await
        .unwrap();
    on_b.send(Message::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    let ack: Value = match tokio::time::timeout(WAIT, on_b.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(&text).unwrap(),
        other => panic!("no auth answer: {other:?}"),
    };
    assert_eq!(ack["event"], "auth.ok", "{ack}");

    // An event posted to hub A reaches the browser on hub B through Redis.
    let event = joined(sim.guild_id(), 4242);
    let body = event.to_string();
    eventually("hub A to accept the event", async || {
        let request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port_a}/api/internal/events"))
            .header(EVENT_ID_HEADER, "tls-1");
        let status = sign_webhook(request, SECRET, now_secs(), body.as_bytes())
            .send()
            .await
            .ok()?
            .status();
        (status == 200).then_some(())
    })
    .await;
    let frame = next_event(&mut on_b).await;
    assert_eq!(frame["event"], "voice.joined", "{frame}");
    assert_eq!(frame["payload"]["userId"], "4242", "{frame}");
}

#[tokio::test]
async fn a_hub_that_does_not_trust_the_redis_certificate_says_why_and_keeps_serving() {
    let sim = simulator().await;
    let redis = tls_redis().await;
    let stranger = TestCa::new(); // Not the CA that signed Redis' certificate.
    let state = tempfile::tempdir().unwrap();
    let (port, mut child) = hub(&sim, &redis, &stranger.ca_file(), state.path());
    let lines = stderr_lines(&mut child);
    let _hub = KillOnDrop::new(child);

    let line = line_with(lines, &["Redis is unreachable", "certificate"]).await;
    println!("hub: {line}");
    let password = redis.url();
    let password = password
        .trim_start_matches("rediss://:")
        .split('@')
        .next()
        .unwrap();
    assert!(!line.contains(password), "the password leaked: {line}");
    // Still answering, and saying Redis is down (not hanging on the handshake).
    let body = hub_health(port, |h| h["redis"] == "down").await;
    assert_eq!(body["redis"], "down", "{body}");
}

fn health(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A `coven worker` of the pair using `redis` through `rediss://`, trusting
/// `bundle` (the Redis test CA and the simulator's voice CA).
fn pair_worker(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    redis: &RedisServer,
    bundle: &Path,
    state: &Path,
    port: u16,
) -> KillOnDrop {
    KillOnDrop::new(
        process::worker_command(sim, hub, state, port)
            .env("REDIS_URL", redis.url())
            .env("SSL_CERT_FILE", bundle)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_worker_pair_on_rediss_delivers_and_hands_over_on_a_kill() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let redis = tls_redis().await;
    let bundle = redis
        .test_ca()
        .unwrap()
        .bundle_with(&[&coven_sim::voice::test_ca_path()]);
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let active = pair_worker(&sim, &hub, &redis, &bundle, state_a.path(), port_a);
    wait_for_role(health(port_a), "active").await;
    let _standby = pair_worker(&sim, &hub, &redis, &bundle, state_b.path(), port_b);
    let body = wait_for_role(health(port_b), "standby").await;
    assert_eq!(body["state"], "standby", "{body}");

    let handle = sim.handle();
    let seed = handle.seed();
    let (room, users) = (seed.voice_channel_ids[0], &seed.member_user_ids[2..6]);
    let mut expected = Vec::new();
    handle.user_join(users[0], room).unwrap();
    expected.push(("voice.joined", room, users[0]));
    hub.wait_for_events(expected.len()).await;

    // SIGKILL: the standby takes the lease from Redis and resumes the session
    // kept there.
    let resumes = handle.counters().resumes;
    drop(active);
    handle
        .wait_for(|c| c.resumes > resumes, WAIT)
        .await
        .expect("the standby resumed the session kept in Redis");
    wait_for_role(health(port_b), "active").await;
    for &user in &users[1..] {
        handle.user_join(user, room).unwrap();
        expected.push(("voice.joined", room, user));
    }
    hub.wait_for_events(expected.len()).await;
    assert_in_order_at_least_once(&hub.accepted(), &expected);
    assert_eq!(
        handle.counters().identifies,
        1,
        "RESUMEd, not re-identified"
    );
}

#[tokio::test]
async fn a_worker_that_does_not_trust_the_redis_certificate_says_why() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let redis = tls_redis().await;
    let stranger = TestCa::new();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = process::worker_command(&sim, &hub, state.path(), port)
        .env("REDIS_URL", redis.url())
        .env("SSL_CERT_FILE", stranger.ca_file())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let _worker = KillOnDrop::new(child);
    let line = line_with(lines, &["redis", "certificate"]).await;
    println!("worker: {line}");
    assert!(
        !line.contains("test-redis-password"),
        "the password leaked: {line}"
    );
}

#[tokio::test]
async fn a_redis_port_that_never_finishes_the_tls_handshake_times_out_instead_of_hanging() {
    // Accepts connections and never says a word: the TLS handshake never ends.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let sim = simulator().await;
    let state = tempfile::tempdir().unwrap();
    let hub_port = free_port();
    let mut child = process::hub_command(&sim, state.path(), hub_port)
        .arg("hub")
        .env("REDIS_URL", format!("rediss://:pw@127.0.0.1:{port}/"))
        .env("LOG_LEVEL", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let _hub = KillOnDrop::new(child);
    let line = line_with(lines, &["Redis is unreachable"]).await;
    println!("hub: {line}");
    let body = hub_health(hub_port, |h| h["redis"] == "down").await;
    assert_eq!(body["redis"], "down", "{body}");
    held.abort();
}
