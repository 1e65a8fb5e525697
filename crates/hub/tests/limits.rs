//! What a stranger can hold open (docs/spec.md §6.6), tried from outside over
//! loopback: idle connections do not starve the webhook and are closed after the
//! idle timeout, a dripping request head is cut off, and each connection limit
//! answers 429/503 with `Retry-After` while the connections already open go on;
//! the API's per-IP budget holds however many users share one address.
//!
//! Clients bind distinct loopback source addresses (127.0.0.2, 127.0.0.3, …) to
//! be distinct client IPs. Timeouts are shortened through `HubSettings`; every
//! wait is bounded.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// Opens a TCP connection to `to` from the loopback address `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .expect("connected in time")
        .unwrap()
}

/// What the hub wrote before closing, or `None` if the connection is still open
/// after `wait`.
async fn read_until_closed(tcp: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0_u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

/// The connection is open and the hub has sent nothing on it.
fn still_open(tcp: &TcpStream) -> bool {
    let mut buf = [0_u8; 1];
    matches!(tcp.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The soft open-file limit of this test process.
fn soft_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Raises this process' soft open-file limit to `needed` when it is lower (the
/// hub and the clients share this process, so every connection costs two).
fn ensure_file_limit(needed: u64) {
    if soft_file_limit() >= needed {
        return;
    }
    let _ = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={needed}:"))
        .status();
    assert!(
        soft_file_limit() >= needed,
        "this test needs {needed} open files: run `ulimit -n {needed}` first"
    );
}

#[tokio::test]
async fn idle_connections_do_not_starve_the_webhook_and_are_closed() {
    const IDLE: usize = 1_100;
    ensure_file_limit(2 * IDLE as u64 + 512);
    let idle_timeout = Duration::from_secs(3);
    let (hub, _) = TestHub::start_with(|s| {
        s.http_idle_timeout = idle_timeout;
        // Long enough that only the idle timeout can close them.
        s.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    // 220 per address: under MAX_CONNECTIONS_PER_IP (256), far under the total.
    let mut idle = Vec::with_capacity(IDLE);
    let opened = Instant::now();
    for n in 0..IDLE {
        idle.push(tcp_from(&format!("127.0.0.{}", 2 + n % 5), hub.addr).await);
    }
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), hub.post_event(&joined(1), "idle-1"))
        .await
        .expect("the webhook answered 200 in time despite 1,100 idle connections");
    let webhook_took = started.elapsed();
    // None of them was refused (a refusal would have written a response).
    if opened.elapsed() < idle_timeout {
        assert!(
            idle.iter().all(still_open),
            "an idle connection was refused"
        );
    }
    // Every one is closed by the hub, without a response, after the idle timeout.
    let closed = futures_util::future::join_all(
        idle.iter_mut()
            .map(|tcp| read_until_closed(tcp, idle_timeout + WAIT)),
    )
    .await;
    let after = opened.elapsed();
    assert!(
        closed.iter().all(|c| c.as_deref() == Some("")),
        "every idle connection closed silently"
    );
    assert!(
        after >= idle_timeout && after < idle_timeout + WAIT,
        "closed after {after:?}"
    );
    eprintln!("webhook with {IDLE} idle connections: {webhook_took:?}");
}

#[tokio::test]
async fn a_dripping_request_head_is_cut_off() {
    let header_timeout = Duration::from_secs(1);
    let (hub, _) = TestHub::start_with(|s| s.header_read_timeout = header_timeout).await;
    let tcp = tcp_from("127.0.0.2", hub.addr).await;
    let (mut read, mut write) = tcp.into_split();
    let started = Instant::now();
    // One byte every 200 ms: the connection is never idle, the head never ends.
    let drip = tokio::spawn(async move {
        for byte in b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = [0_u8; 256];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let took = started.elapsed();
    assert!(closed.is_ok(), "the dripping connection was not closed");
    assert!(
        took >= header_timeout && took < header_timeout * 5,
        "closed after {took:?}"
    );
    drip.abort();
    // A prompt request on a new connection is served.
    assert_eq!(hub.health().await["status"], "ok");
}

/// A WebSocket upgrade from `from`, optionally saying `X-Forwarded-For`.
async fn ws_from(
    from: &str,
    hub: &TestHub,
    forwarded_for: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let tcp = tcp_from(from, hub.addr).await;
    let mut request = format!("ws://{}/api/ws", hub.addr)
        .into_client_request()
        .unwrap();
    if let Some(ip) = forwarded_for {
        request
            .headers_mut()
            .insert("x-forwarded-for", ip.parse().unwrap());
    }
    tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .map(|(ws, _)| ws)
}

/// The upgrade was answered 429 with `Retry-After`.
fn assert_refused_429(result: Result<Ws, tungstenite::Error>) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        Err(other) => panic!("expected 429, got {other}"),
        Ok(_) => panic!("expected 429, the upgrade succeeded"),
    }
}

#[tokio::test]
async fn unauthenticated_sockets_per_ip_are_capped_at_32() {
    let (hub, _) = TestHub::start().await;
    let mut open = Vec::new();
    for n in 1..=40 {
        let result = ws_from("127.0.0.2", &hub, None).await;
        if n <= 32 {
            open.push(result.unwrap_or_else(|e| panic!("socket {n} refused: {e}")));
        } else {
            assert_refused_429(result);
        }
    }
    // Another address is not affected.
    let mut other = ws_from("127.0.0.3", &hub, None).await.unwrap();
    send_auth(
        &mut other,
        &token(Algorithm::RS256, "rsa-1", &claims()),
        None,
    )
    .await;
    assert_eq!(next_json(&mut other).await["event"], "auth.ok");
    // The open ones are unaffected: one authenticates, which frees its slot.
    send_auth(
        &mut open[0],
        &token(Algorithm::RS256, "rsa-1", &claims()),
        None,
    )
    .await;
    assert_eq!(next_json(&mut open[0]).await["event"], "auth.ok");
    let mut next = ws_from("127.0.0.2", &hub, None).await.unwrap();
    send_auth(
        &mut next,
        &token(Algorithm::RS256, "rsa-1", &claims()),
        None,
    )
    .await;
    assert_eq!(next_json(&mut next).await["event"], "auth.ok");
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let proxy: IpAddr = "127.0.0.4".parse().unwrap();
    let (hub, _) = TestHub::start_with(|s| {
        s.max_unauthenticated_per_ip = 2;
        s.trusted_proxies = vec![proxy];
    })
    .await;
    // Through the proxy: two clients, each with its own allowance.
    let _a1 = ws_from("127.0.0.4", &hub, Some("203.0.113.7"))
        .await
        .unwrap();
    let _a2 = ws_from("127.0.0.4", &hub, Some("203.0.113.7"))
        .await
        .unwrap();
    assert_refused_429(ws_from("127.0.0.4", &hub, Some("203.0.113.7")).await);
    let _b = ws_from("127.0.0.4", &hub, Some("198.51.100.9"))
        .await
        .unwrap();
    // From an untrusted peer the header is ignored: the peer is the client.
    let _c1 = ws_from("127.0.0.5", &hub, Some("192.0.2.1")).await.unwrap();
    let _c2 = ws_from("127.0.0.5", &hub, Some("192.0.2.2")).await.unwrap();
    assert_refused_429(ws_from("127.0.0.5", &hub, Some("192.0.2.3")).await);
}

#[tokio::test]
async fn a_user_holds_at_most_16_sockets() {
    let (hub, _) = TestHub::start().await;
    let base = hub.base_seq().await;
    let mut sockets = Vec::new();
    for _ in 0..16 {
        sockets.push(hub.authed(None).await.0);
    }
    // The 17th opens (the user is known only after `auth`), then is refused.
    let mut extra = hub.connect().await;
    send_auth(
        &mut extra,
        &token(Algorithm::RS256, "rsa-1", &claims()),
        None,
    )
    .await;
    let (code, texts) = close_code(&mut extra).await;
    assert_eq!(code, 1008, "{texts:?}");
    assert_eq!(texts[0]["error"]["code"], "RATE_LIMITED", "{texts:?}");
    // Another user is not affected, and neither are the 16.
    let mut claims_b = claims();
    claims_b["sub"] = json!("515151");
    let mut other = hub.connect().await;
    send_auth(
        &mut other,
        &token(Algorithm::RS256, "rsa-1", &claims_b),
        None,
    )
    .await;
    assert_eq!(next_json(&mut other).await["event"], "auth.ok");
    hub.post_event(&joined(1), "per-user-1").await;
    for socket in &mut sockets {
        assert_eq!(next_event(socket).await.seq, base + 1);
    }
    // Closing one frees its slot.
    let mut first = sockets.remove(0);
    first.send(Message::Close(None)).await.unwrap();
    let _ = close_code(&mut first).await;
    eventually("the user's slot to be freed", async || {
        let mut again = hub.connect().await;
        send_auth(
            &mut again,
            &token(Algorithm::RS256, "rsa-1", &claims()),
            None,
        )
        .await;
        next_json(&mut again).await["event"] == "auth.ok"
    })
    .await;
}

#[tokio::test]
async fn connections_per_ip_and_in_all_are_capped() {
    let (hub, _) = TestHub::start_with(|s| {
        s.max_connections_per_ip = 10;
        s.max_connections = 30;
    })
    .await;
    // Per IP: the 11th connection from one address is answered 429 at once.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(tcp_from("127.0.0.2", hub.addr).await);
    }
    let mut over = tcp_from("127.0.0.2", hub.addr).await;
    let answer = read_until_closed(&mut over, WAIT).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: "), "{answer}");
    // In all: fill up from other addresses until the hub answers 503.
    let mut refused = None;
    for n in 0..40 {
        let mut tcp = tcp_from(&format!("127.0.0.{}", 3 + n % 4), hub.addr).await;
        if let Some(answer) = read_until_closed(&mut tcp, Duration::from_millis(200)).await {
            refused = Some(answer);
            break;
        }
        held.push(tcp);
    }
    let answer = refused.expect("the total limit answered");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: "), "{answer}");
    assert!(held.len() <= 30, "{} open", held.len());
    // The ones already open are unaffected; closing some makes room again.
    assert!(held.iter().all(still_open));
    held.truncate(held.len() - 5);
    eventually("room for a new connection", async || {
        let mut tcp = tcp_from("127.0.0.7", hub.addr).await;
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_until_closed(&mut tcp, WAIT)
            .await
            .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
    })
    .await;
}

/// An HTTP client whose connections come from the loopback address `from`.
fn http_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A token for user `sub`.
fn bearer_of(sub: u64) -> String {
    let mut claims = claims();
    claims["sub"] = json!(sub.to_string());
    token(Algorithm::RS256, "rsa-1", &claims)
}

#[tokio::test]
async fn the_api_allowance_per_ip_holds_across_users() {
    // 20 per IP (each user's own budget, 10, is never reached: one request each).
    let (hub, rooms) = TestHub::start_with(|s| {
        s.api_rate_per_ip_burst = 20;
        s.api_rate_per_ip_period = Duration::from_secs(60);
        s.max_rooms_per_guild = 100;
    })
    .await;
    let nat = http_from("127.0.0.2");
    let create = |client: &reqwest::Client, user: u64| {
        client
            .post(hub.url("/api/create-room"))
            .bearer_auth(bearer_of(user))
            .json(&json!({}))
            .send()
    };
    for user in 1..=20 {
        assert_eq!(
            create(&nat, user).await.unwrap().status(),
            201,
            "user {user}"
        );
    }
    // The 21st user behind the same address is refused, before anything is created.
    let refused = create(&nat, 21).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(rooms.created(), 20);
    // Every API route spends the same budget, with a token or without.
    for path in ["/api/rooms", "/api/cues"] {
        let response = nat
            .get(hub.url(path))
            .bearer_auth(bearer_of(22))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429, "{path}");
    }
    let anonymous = nat.get(hub.url("/api/rooms")).send().await.unwrap();
    assert_eq!(anonymous.status(), 429);
    // Another address is unaffected, even for a user already seen behind the first.
    let other = http_from("127.0.0.3");
    assert_eq!(create(&other, 1).await.unwrap().status(), 201);
    let snapshot = other
        .get(hub.url("/api/rooms"))
        .bearer_auth(bearer_of(1))
        .send()
        .await
        .unwrap();
    assert_eq!(snapshot.status(), 200);
    // The limit is the API's: the health check is not throttled.
    assert_eq!(
        nat.get(hub.url("/health")).send().await.unwrap().status(),
        200
    );
}
