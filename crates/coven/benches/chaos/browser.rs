//! One simulated browser, as the lobby's client does it (docs/spec.md §6, §7):
//! load the snapshot (`GET /api/rooms`), open `/api/ws` with `lastSeq` = the
//! snapshot's `seq`, apply events; when the socket ends, reconnect (to the other
//! hub, as a load balancer would after a failure) with `lastSeq`; after
//! `resumed:false`, load the snapshot again. It counts what the contract
//! forbids: a `seq` at or below one already applied (a duplicate) and a `seq`
//! more than one above (a gap without `resumed:false`).
//!
//! Each browser names itself in `X-Forwarded-For` (the hubs trust 127.0.0.1 as
//! their proxy), so per-IP limits apply per browser as behind a real balancer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::model::{EventKey, View};

/// What the fault injector can make a browser do.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// Stop reading the socket for this long (a slow browser).
    Stall(Duration),
    /// Drop the socket at once and reconnect with `lastSeq` to a random hub.
    Reconnect,
}

/// A browser's state and counters, read by the checks.
#[derive(Debug, Default)]
pub struct BrowserState {
    /// Rooms and members as this browser shows them.
    pub view: View,
    /// The `seq` of the last event applied (or of the snapshot).
    pub last_seq: u64,
    /// Authenticated and reading.
    pub connected: bool,
    /// Events applied.
    pub events: u64,
    /// Events with a `seq` at or below one already applied.
    pub duplicates: u64,
    /// Events whose `seq` skipped ahead on a resumed socket.
    pub gaps: u64,
    /// `resumed:false` answers (each followed by a snapshot reload).
    pub resyncs: u64,
    /// After `resumed:false` and a snapshot at `seq` S, the socket's first event
    /// above S was not S + 1: events neither in the snapshot nor delivered.
    pub holes_after_snapshot: u64,
    /// A snapshot was just loaded under an open socket.
    pub after_snapshot: bool,
    /// Snapshots loaded.
    pub snapshots: u64,
    /// Sockets that ended (hub gone, closed by the server, or dropped on purpose).
    pub disconnects: u64,
    /// Failed attempts: connect refused, 429/503, an auth error, a snapshot error.
    pub failed_attempts: u64,
    /// Why the last failed attempt failed.
    pub last_failure: String,
    /// Close codes received from the hubs, by code.
    pub close_codes: BTreeMap<u16, u64>,
    /// Every event applied, for witness browsers only.
    pub log: Option<Vec<(u64, EventKey)>>,
}

/// Shared handle on a browser's state.
pub type Shared = Arc<Mutex<BrowserState>>;

/// How a browser behaves.
pub struct Browser {
    /// Index, also its fake client IP.
    pub index: usize,
    /// Its JWT.
    pub token: String,
    /// Hub ports; it starts on `ports[index % 2]`.
    pub ports: [u16; 2],
    /// Reads with a pause after every frame.
    pub slow: bool,
    /// Its state.
    pub state: Shared,
}

/// The pause a slow reader makes after every frame.
const SLOW_READ: Duration = Duration::from_millis(30);
/// A socket silent this long is considered dead (the hub pings every 30 s).
const IDLE: Duration = Duration::from_secs(75);
/// Timeouts of one connection attempt.
const ATTEMPT: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Browser {
    /// `10.x.y.z` derived from the index.
    fn ip(&self) -> String {
        let i = self.index + 1;
        format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
    }

    /// Runs until `stop` is set.
    pub async fn run(
        self,
        mut control: mpsc::UnboundedReceiver<Control>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) {
        let http = reqwest::Client::new();
        let mut rng = StdRng::seed_from_u64(self.index as u64);
        let mut hub = self.index % 2;
        let mut loaded = false;
        let mut backoff = Duration::from_millis(100);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // As the lobby: the snapshot first, so the socket resumes from its seq.
            if !loaded {
                if !self.load_snapshot(&http, self.ports[hub]).await {
                    hub = 1 - hub;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                loaded = true;
            }
            let last_seq = self.state.lock().unwrap().last_seq;
            let Some((ws, resumed)) = self.connect(self.ports[hub], last_seq).await else {
                self.state.lock().unwrap().failed_attempts += 1;
                hub = 1 - hub;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            };
            if !resumed {
                // The socket stays open (its events wait unread) while the
                // snapshot loads; those at or below its seq are then skipped.
                self.state.lock().unwrap().resyncs += 1;
                if !self.load_snapshot(&http, self.ports[hub]).await {
                    loaded = false;
                    continue;
                }
                self.state.lock().unwrap().after_snapshot = true;
            }
            backoff = Duration::from_millis(100);
            self.state.lock().unwrap().connected = true;
            let dropped_on_purpose = self.read(ws, &mut control, &stop).await;
            {
                let mut state = self.state.lock().unwrap();
                state.connected = false;
                state.disconnects += 1;
            }
            hub = if dropped_on_purpose {
                rng.random_range(0..2)
            } else {
                // As the lobby does: a short, jittered pause, then (through the
                // balancer) most likely another hub.
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..500))).await;
                1 - hub
            };
        }
    }

    /// Loads the snapshot into the view (a few tries); false when it failed.
    async fn load_snapshot(&self, http: &reqwest::Client, port: u16) -> bool {
        for attempt in 0..5 {
            if let Some((view, seq)) = self.snapshot(http, port).await {
                let mut state = self.state.lock().unwrap();
                state.view = view;
                state.last_seq = seq;
                state.snapshots += 1;
                return true;
            }
            self.state.lock().unwrap().failed_attempts += 1;
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        false
    }

    async fn snapshot(&self, http: &reqwest::Client, port: u16) -> Option<(View, u64)> {
        let response = http
            .get(format!("http://127.0.0.1:{port}/api/rooms"))
            .bearer_auth(&self.token)
            .header("x-forwarded-for", self.ip())
            .timeout(ATTEMPT)
            .send()
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        View::from_snapshot(&response.json().await.ok()?)
    }

    /// Opens `/api/ws` and authenticates with `lastSeq`; the socket and whether
    /// the hub resumed, `None` when the attempt failed (refused, 429/503, an
    /// error instead of `auth.ok`, a timeout).
    async fn connect(&self, port: u16, last_seq: u64) -> Option<(Ws, bool)> {
        let result = self.try_connect(port, last_seq).await;
        match result {
            Ok(connected) => Some(connected),
            Err(why) => {
                self.state.lock().unwrap().last_failure = why;
                None
            }
        }
    }

    async fn try_connect(&self, port: u16, last_seq: u64) -> Result<(Ws, bool), String> {
        let mut request = format!("ws://127.0.0.1:{port}/api/ws")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let ip = HeaderValue::from_str(&self.ip()).map_err(|e| e.to_string())?;
        request.headers_mut().insert("x-forwarded-for", ip);
        let (mut ws, _) = tokio::time::timeout(ATTEMPT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let auth = json!({"type": "auth", "token": self.token, "lastSeq": last_seq});
        ws.send(Message::text(auth.to_string()))
            .await
            .map_err(|e| format!("send auth: {e}"))?;
        let ack = tokio::time::timeout(ATTEMPT, async {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    return serde_json::from_str::<Value>(&text).ok();
                }
            }
            None
        })
        .await
        .map_err(|_| "no ack in time".to_owned())?
        .ok_or_else(|| "socket ended before the ack".to_owned())?;
        if ack["event"] != "auth.ok" {
            return Err(format!("not auth.ok: {ack}"));
        }
        Ok((ws, ack["resumed"] != false))
    }

    /// Reads until the socket ends or a [`Control::Reconnect`]; true for the latter.
    async fn read(
        &self,
        mut ws: Ws,
        control: &mut mpsc::UnboundedReceiver<Control>,
        stop: &std::sync::atomic::AtomicBool,
    ) -> bool {
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return true;
            }
            tokio::select! {
                // A witness has no sender: its channel is closed, never a command.
                Some(command) = control.recv() => match command {
                    Control::Stall(pause) => tokio::time::sleep(pause).await,
                    Control::Reconnect => return true,
                },
                frame = tokio::time::timeout(IDLE, ws.next()) => {
                    let Ok(Some(Ok(message))) = frame else {
                        return false;
                    };
                    match message {
                        Message::Text(text) => {
                            self.on_frame(&text);
                            if self.slow {
                                tokio::time::sleep(SLOW_READ).await;
                            }
                        }
                        Message::Close(frame) => {
                            if let Some(frame) = frame {
                                *self
                                    .state
                                    .lock()
                                    .unwrap()
                                    .close_codes
                                    .entry(u16::from(frame.code))
                                    .or_default() += 1;
                            }
                            return false;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn on_frame(&self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if frame["type"] != "event" {
            return;
        }
        let (Some(seq), Some(key)) = (frame["seq"].as_u64(), EventKey::of(&frame)) else {
            return;
        };
        let mut state = self.state.lock().unwrap();
        if seq <= state.last_seq {
            // Right after a snapshot the socket's older events are already in it.
            if !state.after_snapshot {
                state.duplicates += 1;
            }
            return;
        }
        if seq != state.last_seq + 1 {
            if state.after_snapshot {
                state.holes_after_snapshot += 1;
            } else {
                state.gaps += 1;
            }
        }
        state.after_snapshot = false;
        state.view.apply(&key);
        state.last_seq = seq;
        state.events += 1;
        if let Some(log) = state.log.as_mut() {
            log.push((seq, key));
        }
    }
}

/// When each browser was last seen caught up, for recovery times.
pub fn all_caught_up(browsers: &[Shared], seq: u64) -> bool {
    browsers.iter().all(|b| {
        let state = b.lock().unwrap();
        state.connected && state.last_seq >= seq
    })
}
