//! Shared helpers for the simulator's integration tests: a fast config and a raw gateway client.
#![allow(dead_code)]

use std::io::Read;
use std::time::Duration;

use coven_sim::{SimConfig, Simulator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// Generous per-step timeout: conditions are awaited, never slept on.
pub const STEP: Duration = Duration::from_secs(10);

/// Installs the rustls crypto provider twilight needs (idempotent).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A config with small heartbeat intervals for tests.
pub fn fast_config() -> SimConfig {
    SimConfig {
        heartbeat_interval: Duration::from_millis(500),
        // Like Discord, drop connections that stop heartbeating (twilight never does).
        heartbeat_timeout: Some(Duration::from_secs(2)),
        ..SimConfig::default()
    }
}

/// Starts a simulator with the fast config.
pub async fn start() -> Simulator {
    Simulator::start(fast_config())
        .await
        .expect("start simulator")
}

/// A raw gateway client (tokio-tungstenite), optionally decompressing zlib-stream.
pub struct Raw {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    zlib: Option<flate2::Decompress>,
}

/// What the raw client read.
#[derive(Debug)]
pub enum Got {
    Payload(Value),
    Closed(Option<u16>),
}

impl Raw {
    pub async fn connect(base: &str, query: &str) -> Self {
        let (ws, _) = connect_async(format!("{base}/?{query}"))
            .await
            .expect("connect");
        let zlib = query
            .contains("zlib-stream")
            .then(|| flate2::Decompress::new(true));
        Self { ws, zlib }
    }

    pub async fn send(&mut self, v: &Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, s: String) {
        let _ = self.ws.send(Message::Text(s.into())).await;
    }

    /// Next payload or close, within [`STEP`].
    pub async fn next(&mut self) -> Got {
        loop {
            let msg = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("frame in time");
            match msg {
                None | Some(Err(_)) => return Got::Closed(None),
                Some(Ok(Message::Close(f))) => return Got::Closed(f.map(|f| u16::from(f.code))),
                Some(Ok(Message::Text(t))) => {
                    return Got::Payload(serde_json::from_str(t.as_str()).expect("json"));
                }
                Some(Ok(Message::Binary(b))) => {
                    let z = self.zlib.as_mut().expect("binary only with compression");
                    assert!(
                        b.ends_with(&[0, 0, 0xff, 0xff]),
                        "zlib-stream frames end with the sync flush suffix"
                    );
                    let mut out = Vec::with_capacity(b.len() * 8 + 1024);
                    z.decompress_vec(&b, &mut out, flate2::FlushDecompress::Sync)
                        .expect("inflate");
                    let mut s = String::new();
                    let _ = out.as_slice().read_to_string(&mut s);
                    return Got::Payload(serde_json::from_str(&s).expect("json"));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn payload(&mut self) -> Value {
        match self.next().await {
            Got::Payload(v) => v,
            Got::Closed(c) => panic!("closed with {c:?}, wanted a payload"),
        }
    }

    /// Reads until a close frame arrives and returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Got::Closed(c) = self.next().await {
                return c;
            }
        }
    }

    /// Reads until a dispatch with this name arrives.
    pub async fn dispatch(&mut self, t: &str) -> Value {
        loop {
            let p = self.payload().await;
            if p["op"] == 0 && p["t"] == t {
                return p;
            }
        }
    }

    pub async fn identify(&mut self, token: &str, intents: u64) {
        self.send(&json!({"op": 2, "d": {"token": token, "intents": intents, "properties": {"os": "linux", "browser": "raw", "device": "raw"}}})).await;
    }
}
