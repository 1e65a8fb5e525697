//! One gateway WebSocket connection: HELLO, inbound command handling, outbound frames and faults.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::compression::{Compression, Encoder};
use super::protocol::{self as p, reason};
use super::session::Session;
use super::{Admission, Fault, Out};
use crate::intents;
use crate::shapes;
use crate::state::Shared;
use crate::world::{Dispatch, VoiceFlags};

#[doc(hidden)]
pub mod fuzzing;

/// How a connection ended, deciding the fate of its session.
enum End {
    /// The peer went away (TCP gone or close frame with a resumable code).
    Gone,
    /// A close frame that ends the session (1000/1001 from the client, fatal from us).
    SessionEnded,
    /// This connection was replaced by a resume elsewhere.
    Superseded,
    /// Dropped on purpose without a close frame.
    Dropped,
}

struct Conn {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Out>,
    session: Option<String>,
    zombie: bool,
    delay: Duration,
    recent: VecDeque<Instant>,
    /// When the connection is closed for lack of heartbeats (if configured).
    heartbeat_deadline: Option<tokio::time::Instant>,
    /// What the gateway did with new connections when this one opened.
    admission: Admission,
    /// The next this many `VOICE_STATE_UPDATE`s go out unreadable to twilight
    /// ([`Fault::UnreadableVoiceStates`]), and whether without `user_id`.
    unreadable_voice_states: (u32, bool),
    /// Whether our close frame went out (the client's reply is then awaited).
    close_sent: bool,
}

/// How long a closing connection waits for the client's close reply.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// What handling one inbound payload or fault asks for.
enum Action {
    Continue,
    Close(u16),
    Drop,
}

fn end_for(code: u16) -> End {
    if p::ends_session(code) {
        End::SessionEnded
    } else {
        End::Gone
    }
}

pub(crate) async fn serve(
    socket: WebSocket,
    shared: Arc<Shared>,
    compression: Compression,
    version_ok: bool,
    encoding_ok: bool,
) {
    let (mut sink, mut stream) = socket.split();
    let (mut conn, mut rx) = Conn::open(shared);
    let Ok(mut enc) = Encoder::new(compression) else {
        conn.finish(&End::Gone);
        return;
    };
    conn.hello(version_ok, encoding_ok);

    let end = loop {
        let deadline = conn.heartbeat_deadline;
        tokio::select! {
            biased;
            () = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                // Discord closes a connection that stops heartbeating; the session stays resumable.
                conn.close(&mut sink, p::CLOSE_SESSION_TIMED_OUT).await;
                break End::Gone;
            }
            out = rx.recv() => {
                let Some(out) = out else { break End::Gone };
                match out {
                    Out::Frame(f) => {
                        if conn.zombie {
                            continue;
                        }
                        if !conn.delay.is_zero() {
                            tokio::time::sleep(conn.delay).await;
                        }
                        let f = conn.quirks(f);
                        let Ok(msg) = enc.encode(&f) else { break End::Gone };
                        if sink.send(msg).await.is_err() {
                            break End::Gone;
                        }
                    }
                    Out::Superseded => break End::Superseded,
                    Out::Fault(fault) => match conn.apply_fault(fault) {
                        Action::Continue => {}
                        Action::Close(code) => {
                            conn.close(&mut sink, code).await;
                            break end_for(code);
                        }
                        Action::Drop => break End::Dropped,
                    },
                }
            }
            msg = stream.next() => {
                let text = match msg {
                    None | Some(Err(_)) => break End::Gone,
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map_or(1005, |f| f.code);
                        break if code == 1000 || code == 1001 { End::SessionEnded } else { End::Gone };
                    }
                    Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(Message::Binary(b))) => {
                        let Some(s) = binary_text(&b) else {
                            conn.close(&mut sink, p::CLOSE_DECODE_ERROR).await;
                            break End::Gone;
                        };
                        s
                    }
                    Some(Ok(_)) => continue,
                };
                if let Action::Close(code) = conn.handle(&text) {
                    conn.close(&mut sink, code).await;
                    break end_for(code);
                }
            }
        }
    };
    conn.finish(&end);
    if conn.close_sent {
        close_reply(&mut stream).await;
    }
}

/// Reads until the client's close reply (or [`CLOSE_REPLY_WAIT`]), as a WebSocket
/// server does (RFC 6455 §7.1.1) before it drops TCP: a frame the client sent
/// meanwhile (a heartbeat) is read rather than answered with a TCP reset, which
/// would fail the client's next write and hide our close code from it.
async fn close_reply(stream: &mut futures_util::stream::SplitStream<WebSocket>) {
    let replied = async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, replied).await;
}

/// The text of a binary frame from the bot: JSON in UTF-8, or `None` (close 4002).
fn binary_text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

impl Conn {
    /// Registers a new connection with the simulator.
    fn open(shared: Arc<Shared>) -> (Self, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        // Read with the registration, before the count: a test that saw this
        // connection counted may change the admission of later ones only.
        let (id, admission) = {
            let mut core = shared.core();
            core.next_conn += 1;
            let id = core.next_conn;
            core.connections.insert(id, tx.clone());
            (id, core.admission)
        };
        shared.count(|c| {
            c.connections += 1;
            c.active_connections += 1;
        });
        let mut conn = Conn {
            id,
            shared,
            tx,
            session: None,
            zombie: false,
            delay: Duration::ZERO,
            recent: VecDeque::new(),
            heartbeat_deadline: None,
            admission,
            close_sent: false,
            unreadable_voice_states: (0, false),
        };
        conn.reset_heartbeat_deadline();
        (conn, rx)
    }

    /// Queues HELLO, then a close when the URL asked for an unsupported version or encoding,
    /// or when the gateway closes every new connection after HELLO ([`Fault::CloseAfterHello`]).
    fn hello(&self, version_ok: bool, encoding_ok: bool) {
        let interval =
            u64::try_from(self.shared.config.heartbeat_interval.as_millis()).unwrap_or(41_250);
        self.send(&json!({"op": p::OP_HELLO, "d": {"heartbeat_interval": interval, "_trace": ["[\"coven-sim\",{\"micros\":0}]"]}, "s": null, "t": null}));
        let early_close = if !version_ok {
            Some(p::CLOSE_INVALID_API_VERSION)
        } else if !encoding_ok {
            Some(p::CLOSE_DECODE_ERROR)
        } else if let Admission::CloseAfterHello(code) = self.admission {
            Some(code)
        } else {
            None
        };
        if let Some(code) = early_close {
            let _ = self.tx.send(Out::Fault(Fault::Close { code }));
        }
    }

    fn reset_heartbeat_deadline(&mut self) {
        self.heartbeat_deadline = self
            .shared
            .config
            .heartbeat_timeout
            .map(|t| tokio::time::Instant::now() + t);
    }

    fn apply_fault(&mut self, fault: Fault) -> Action {
        match fault {
            Fault::Reconnect => {
                self.send(&json!({"op": p::OP_RECONNECT, "d": null, "s": null, "t": null}));
            }
            Fault::InvalidSession { resumable } => self.invalid_session(resumable),
            // Unreachable drops, close-after-HELLO closes the open connection too.
            Fault::Close { code } | Fault::CloseAfterHello { code } => return Action::Close(code),
            Fault::DropTcp | Fault::Unreachable => return Action::Drop,
            Fault::Zombie => self.zombie = true,
            Fault::Delay { ms } => self.delay = Duration::from_millis(ms),
            Fault::RequestHeartbeat => {
                self.send(&json!({"op": p::OP_HEARTBEAT, "d": null, "s": null, "t": null}));
            }
            // Only decides what happens to the next connections.
            Fault::Reachable => {}
            Fault::UnreadableVoiceStates {
                count,
                without_user_id,
            } => self.unreadable_voice_states = (count, without_user_id),
        }
        Action::Continue
    }

    /// An outbound frame as the connection's quirks have it.
    fn quirks(&mut self, frame: String) -> String {
        let (count, without_user_id) = self.unreadable_voice_states;
        if count == 0 {
            return frame;
        }
        match super::quirks::unreadable_voice_state(&frame, without_user_id) {
            Some(changed) => {
                self.unreadable_voice_states.0 -= 1;
                changed
            }
            None => frame,
        }
    }

    async fn close(
        &mut self,
        sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
        code: u16,
    ) {
        self.shared.count(|c| {
            c.closes_sent += 1;
            c.last_close_code = Some(code);
        });
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason(code).into(),
            })))
            .await;
        let _ = sink.close().await;
        self.close_sent = true;
    }

    fn send(&self, v: &Value) {
        let _ = self.tx.send(Out::Frame(v.to_string()));
    }

    fn invalid_session(&mut self, resumable: bool) {
        self.shared.count(|c| c.invalid_sessions += 1);
        let mut core = self.shared.core();
        if let Some(id) = self.session.take() {
            if resumable {
                if let Some(s) = core.sessions.get_mut(&id) {
                    s.conn = None;
                    s.detached_at = Some(Instant::now());
                }
            } else {
                core.sessions.remove(&id);
            }
        }
        drop(core);
        self.send(&json!({"op": p::OP_INVALID_SESSION, "d": resumable, "s": null, "t": null}));
    }

    fn finish(&self, end: &End) {
        let mut core = self.shared.core();
        core.connections.remove(&self.id);
        if let Some(id) = &self.session {
            match end {
                End::SessionEnded => {
                    core.sessions.remove(id);
                }
                End::Superseded => {}
                End::Gone | End::Dropped => {
                    if let Some(s) = core.sessions.get_mut(id)
                        && s.conn.as_ref().is_some_and(|(c, _)| *c == self.id)
                    {
                        s.conn = None;
                        s.detached_at = Some(Instant::now());
                    }
                }
            }
        }
        drop(core);
        self.shared
            .count(|c| c.active_connections = c.active_connections.saturating_sub(1));
    }

    fn rate_limited(&mut self) -> bool {
        let now = Instant::now();
        let window = self.shared.config.command_window;
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() > self.shared.config.commands_per_window as usize
    }

    fn handle(&mut self, text: &str) -> Action {
        self.shared.count(|c| c.commands += 1);
        if text.len() > self.shared.config.max_payload_bytes {
            return Action::Close(p::CLOSE_DECODE_ERROR);
        }
        if self.rate_limited() {
            return Action::Close(p::CLOSE_RATE_LIMITED);
        }
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            return Action::Close(p::CLOSE_DECODE_ERROR);
        };
        let Some(op) = payload.get("op").and_then(Value::as_u64) else {
            return Action::Close(p::CLOSE_DECODE_ERROR);
        };
        let d = payload.get("d").cloned().unwrap_or(Value::Null);
        match op {
            p::OP_HEARTBEAT => {
                self.shared.count(|c| c.heartbeats += 1);
                self.reset_heartbeat_deadline();
                if !self.zombie {
                    self.shared.count(|c| c.heartbeat_acks += 1);
                    self.send(&json!({"op": p::OP_HEARTBEAT_ACK, "d": null, "s": null, "t": null}));
                }
                Action::Continue
            }
            p::OP_IDENTIFY => self.identify(&d),
            p::OP_RESUME => self.resume(&d),
            p::OP_PRESENCE_UPDATE
            | p::OP_VOICE_STATE_UPDATE
            | p::OP_REQUEST_GUILD_MEMBERS
            | p::OP_REQUEST_SOUNDBOARD_SOUNDS => {
                let Some(session) = self.session.clone() else {
                    return Action::Close(p::CLOSE_NOT_AUTHENTICATED);
                };
                match op {
                    p::OP_VOICE_STATE_UPDATE => self.voice_state_update(&session, &d),
                    p::OP_REQUEST_GUILD_MEMBERS => self.request_members(&session, &d),
                    _ => Action::Continue,
                }
            }
            _ => Action::Close(p::CLOSE_UNKNOWN_OPCODE),
        }
    }

    fn token_ok(&self, d: &Value) -> bool {
        let token = d.get("token").and_then(Value::as_str).unwrap_or_default();
        let token = token.strip_prefix("Bot ").unwrap_or(token);
        token == self.shared.config.bot_token
    }

    fn identify(&mut self, d: &Value) -> Action {
        if self.session.is_some() {
            return Action::Close(p::CLOSE_ALREADY_AUTHENTICATED);
        }
        if let Admission::RefuseSessions(code) = self.admission {
            return Action::Close(code);
        }
        if !self.token_ok(d) {
            return Action::Close(p::CLOSE_AUTHENTICATION_FAILED);
        }
        let Some(intents) = d.get("intents").and_then(Value::as_u64) else {
            return Action::Close(p::CLOSE_INVALID_INTENTS);
        };
        if intents & !intents::VALID != 0 {
            return Action::Close(p::CLOSE_INVALID_INTENTS);
        }
        if intents & intents::PRIVILEGED != 0 && !self.shared.config.allow_privileged_intents {
            return Action::Close(p::CLOSE_DISALLOWED_INTENTS);
        }
        let shard = match d.get("shard") {
            None | Some(Value::Null) => None,
            Some(v) => match (
                v.get(0).and_then(Value::as_u64),
                v.get(1).and_then(Value::as_u64),
            ) {
                (Some(id), Some(n)) if n > 0 && id < n => Some((id, n)),
                _ => return Action::Close(p::CLOSE_INVALID_SHARD),
            },
        };
        let session_id = random_hex(32);
        self.shared.count(|c| c.identifies += 1);
        let sim = self.shared.clone();
        let mut core = sim.core();
        let window = sim.config.session_resume_window;
        core.sessions
            .retain(|_, s| s.conn.is_some() || s.detached_at.is_none_or(|t| t.elapsed() <= window));
        let mut session = Session::new(
            session_id.clone(),
            intents,
            shard,
            (self.id, self.tx.clone()),
        );
        let world = &core.world;
        let bot = &world.users[&world.bot_user_id()];
        let mut ready = json!({
            "v": 10,
            "user_settings": {},
            "user": shapes::current_user(bot, false),
            "session_type": "normal",
            "session_id": session_id,
            "resume_gateway_url": sim.gateway_url(),
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [{"id": world.guild_id.to_string(), "unavailable": true}],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["simulated"],
            "auth": {},
            "application": {"id": world.bot_user_id().to_string(), "flags": 0},
            "_trace": ["[\"coven-sim\",{\"micros\":0}]"],
        });
        if let Some((id, n)) = shard {
            ready["shard"] = json!([id, n]);
        }
        session.push("READY", &ready);
        if session.wants("GUILD_CREATE", world.guild_id) {
            let guild = shapes::guild_create(world, intents);
            session.push("GUILD_CREATE", &guild);
        }
        let pushed = session.seq;
        core.sessions.insert(session_id.clone(), session);
        drop(core);
        sim.count(|c| c.dispatches += pushed);
        self.session = Some(session_id);
        Action::Continue
    }

    fn resume(&mut self, d: &Value) -> Action {
        if self.session.is_some() {
            return Action::Close(p::CLOSE_ALREADY_AUTHENTICATED);
        }
        if let Admission::RefuseSessions(code) = self.admission {
            return Action::Close(code);
        }
        if !self.token_ok(d) {
            return Action::Close(p::CLOSE_AUTHENTICATION_FAILED);
        }
        let session_id = d
            .get("session_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let shared = self.shared.clone();
        let window = shared.config.session_resume_window;
        let mut core = shared.core();
        let expired = core
            .sessions
            .get(&session_id)
            .is_none_or(|s| s.detached_at.is_some_and(|t| t.elapsed() > window));
        if expired {
            core.sessions.remove(&session_id);
            drop(core);
            shared.count(|c| c.invalid_sessions += 1);
            self.send(&json!({"op": p::OP_INVALID_SESSION, "d": false, "s": null, "t": null}));
            return Action::Continue;
        }
        let Some(s) = core.sessions.get_mut(&session_id) else {
            return Action::Continue;
        };
        if seq > s.seq {
            return Action::Close(p::CLOSE_INVALID_SEQ);
        }
        let Some(frames) = s.replay_after(seq) else {
            core.sessions.remove(&session_id);
            drop(core);
            self.send(&json!({"op": p::OP_INVALID_SESSION, "d": false, "s": null, "t": null}));
            return Action::Continue;
        };
        if let Some((_, old)) = s.conn.take() {
            let _ = old.send(Out::Superseded);
        }
        s.conn = Some((self.id, self.tx.clone()));
        s.detached_at = None;
        for f in frames {
            let _ = self.tx.send(Out::Frame(f));
        }
        s.push(
            "RESUMED",
            &json!({"_trace": ["[\"coven-sim\",{\"micros\":0}]"]}),
        );
        drop(core);
        shared.count(|c| {
            c.resumes += 1;
            c.dispatches += 1;
        });
        self.session = Some(session_id);
        Action::Continue
    }

    fn voice_state_update(&self, session: &str, d: &Value) -> Action {
        let shared = self.shared.clone();
        let mut core = shared.core();
        let guild_id = core.world.guild_id;
        if d.get("guild_id").and_then(Value::as_str) != Some(guild_id.to_string().as_str()) {
            return Action::Continue;
        }
        let bot = core.world.bot_user_id();
        let flags = VoiceFlags {
            self_mute: d.get("self_mute").and_then(Value::as_bool),
            self_deaf: d.get("self_deaf").and_then(Value::as_bool),
            ..VoiceFlags::default()
        };
        let target = d
            .get("channel_id")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<u64>().ok());
        let current = core.world.voice_states.get(&bot).map(|v| v.channel_id);
        let result = match target {
            None => core.world.voice_disconnect(bot),
            Some(c) if current == Some(c) => core.world.voice_flags(bot, flags),
            Some(c) => core.world.voice_connect(bot, c, Some(session.to_owned()), flags).map(|mut ds| {
                let token = random_hex(16);
                let own = shared.voice.get().map(|v| v.grant(&token, bot, session));
                let endpoint = shared.config.voice_endpoint.clone().or(own).unwrap_or_else(|| shared.addr.to_string());
                let mut server = Dispatch::new(
                    "VOICE_SERVER_UPDATE",
                    json!({"token": token, "guild_id": guild_id.to_string(), "endpoint": endpoint}),
                );
                server.only_session = Some(session.to_owned());
                ds.push(server);
                ds
            }),
        };
        if let Ok(ds) = result {
            shared.publish(&mut core, ds);
        }
        Action::Continue
    }

    fn request_members(&self, session: &str, d: &Value) -> Action {
        let shared = self.shared.clone();
        let mut core = shared.core();
        let world = &core.world;
        let query = d.get("query").and_then(Value::as_str);
        let ids: Vec<u64> = d
            .get("user_ids")
            .map(|v| match v {
                Value::Array(a) => a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect(),
                Value::String(s) => s.parse().ok().into_iter().collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        let limit = d
            .get("limit")
            .and_then(Value::as_u64)
            .filter(|l| *l > 0)
            .unwrap_or(u64::MAX);
        let members: Vec<Value> = world
            .members
            .values()
            .filter(|m| {
                if ids.is_empty() {
                    query.is_none_or(|q| {
                        world
                            .users
                            .get(&m.user_id)
                            .is_some_and(|u| u.username.starts_with(&q.to_lowercase()))
                    })
                } else {
                    ids.contains(&m.user_id)
                }
            })
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|m| shapes::member(world, m))
            .collect();
        let mut chunk = json!({
            "guild_id": world.guild_id.to_string(),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
        });
        let found: Vec<u64> = world.members.keys().copied().collect();
        let not_found: Vec<String> = ids
            .iter()
            .filter(|i| !found.contains(i))
            .map(ToString::to_string)
            .collect();
        if !not_found.is_empty() {
            chunk["not_found"] = json!(not_found);
        }
        if let Some(nonce) = d.get("nonce") {
            chunk["nonce"] = nonce.clone();
        }
        let mut dispatch = Dispatch::new("GUILD_MEMBERS_CHUNK", chunk);
        dispatch.only_session = Some(session.to_owned());
        shared.publish(&mut core, vec![dispatch]);
        Action::Continue
    }
}

/// A random lowercase hex string of `len` characters.
pub fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}
