//! The voice gateway (signalling) WebSocket, one task per connection: TLS, upgrade, HELLO,
//! `IDENTIFY` → `READY`, `SELECT_PROTOCOL` → `SESSION_DESCRIPTION`, heartbeats, `SPEAKING`,
//! `RESUME` → `RESUMED`, and the close codes of Discord's voice gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::crypto::{MODE_AES256_GCM, MODE_XCHACHA20, TransportMode};
use super::outbox::{Frame, Outbox};
use super::{ConnCmd, VoiceServer, VoiceSession, channel_of, users_in};
use crate::state::Shared;

/// Voice opcodes (Discord voice gateway).
pub(crate) mod op {
    pub const IDENTIFY: u64 = 0;
    pub const SELECT_PROTOCOL: u64 = 1;
    pub const READY: u64 = 2;
    pub const HEARTBEAT: u64 = 3;
    pub const SESSION_DESCRIPTION: u64 = 4;
    pub const SPEAKING: u64 = 5;
    pub const HEARTBEAT_ACK: u64 = 6;
    pub const RESUME: u64 = 7;
    pub const HELLO: u64 = 8;
    pub const RESUMED: u64 = 9;
    pub const CLIENTS_CONNECT: u64 = 11;
    pub const CLIENT_DISCONNECT: u64 = 13;
}

/// Voice close codes (Discord voice gateway).
pub(crate) mod close {
    pub const UNKNOWN_OPCODE: u16 = 4001;
    pub const DECODE_ERROR: u16 = 4002;
    pub const NOT_AUTHENTICATED: u16 = 4003;
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    pub const SESSION_INVALID: u16 = 4006;
    pub const DISCONNECTED: u16 = 4014;
    pub const UNKNOWN_ENCRYPTION_MODE: u16 = 4016;
    /// E2EE/DAVE protocol required (Discord, since 2026-03-01, outside stage channels).
    pub const E2EE_REQUIRED: u16 = 4017;
}

enum Step {
    Continue,
    Close(u16),
}

struct Conn {
    shared: Arc<Shared>,
    server: Arc<VoiceServer>,
    id: u64,
    tx: mpsc::UnboundedSender<ConnCmd>,
    ssrc: Option<u32>,
    /// `max_dave_protocol_version` from IDENTIFY.
    dave_max: u16,
    /// The voice gateway version the client asked for (`?v=`).
    version: u8,
}

/// Serves one voice gateway connection until it closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    server: Arc<VoiceServer>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let version = Arc::new(AtomicU8::new(4));
    let v = version.clone();
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let callback = move |req: &Request, resp: Response| {
        let asked = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("v=")))
            .and_then(|v| v.parse::<u8>().ok());
        if let Some(asked) = asked {
            v.store(asked, Ordering::Relaxed);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tls, callback).await else {
        return;
    };
    let version = version.load(Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut core = server.core();
        core.next_conn += 1;
        core.next_conn
    };
    server.observe(|s| {
        s.counters.connections += 1;
        s.counters.active_connections += 1;
        s.counters.last_version = Some(version);
    });
    let mut conn = Conn {
        shared,
        server: server.clone(),
        id,
        tx,
        ssrc: None,
        dave_max: 0,
        version,
    };
    #[allow(clippy::cast_possible_truncation)]
    let interval = server.heartbeat_interval.as_millis() as u64;
    let hello = json!({"op": op::HELLO, "d": {"v": version, "heartbeat_interval": interval}});
    let mut result = ws.send(Message::text(hello.to_string())).await;
    while result.is_ok() {
        let step = tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => conn.on_text(t.as_str()),
                Some(Ok(Message::Binary(b))) => conn.on_binary(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Step::Continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            cmd = rx.recv() => match cmd {
                Some(ConnCmd::Frame(Frame::Text(t))) => {
                    result = ws.send(Message::text(t)).await;
                    Step::Continue
                }
                Some(ConnCmd::Frame(Frame::Binary(b))) => {
                    result = ws.send(Message::binary(b)).await;
                    Step::Continue
                }
                Some(ConnCmd::Close(code)) => Step::Close(code),
                Some(ConnCmd::Drop) | None => break,
            },
        };
        if let Step::Close(code) = step {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            };
            let _ = ws.send(Message::Close(Some(frame))).await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            break;
        }
    }
    drop(ws);
    conn.detach();
}

impl Conn {
    /// Sends on this connection only, unnumbered (`HEARTBEAT_ACK`, `RESUMED`).
    fn send(&self, payload: &Value) {
        let _ = self
            .tx
            .send(ConnCmd::Frame(Frame::Text(payload.to_string())));
    }

    /// Sends through the session (numbered and buffered on v8).
    fn send_session(&self, payload: Value) {
        if let Some(ssrc) = self.ssrc
            && let Some(s) = self.server.core().sessions.get_mut(&ssrc)
        {
            s.send(payload);
        }
    }

    /// Sends a binary `[op][payload]` message through the session.
    fn send_session_binary(&self, message: &[u8]) {
        if let Some(ssrc) = self.ssrc
            && let Some(s) = self.server.core().sessions.get_mut(&ssrc)
        {
            s.send_binary(message);
        }
    }

    fn on_text(&mut self, text: &str) -> Step {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return Step::Close(close::DECODE_ERROR);
        };
        let Some(code) = msg.get("op").and_then(Value::as_u64) else {
            return Step::Close(close::DECODE_ERROR);
        };
        let d = msg.get("d").cloned().unwrap_or(Value::Null);
        match code {
            op::HEARTBEAT => {
                // v4: `d` is the nonce; v8: `{"t": nonce, "seq_ack": n}` and the ACK is `{"t": nonce}`.
                let ack = if d.is_object() {
                    if let Some(acked) = d.get("seq_ack").and_then(Value::as_u64) {
                        self.ack(acked);
                    }
                    json!({"t": d.get("t").cloned().unwrap_or(Value::Null)})
                } else {
                    d
                };
                self.send(&json!({"op": op::HEARTBEAT_ACK, "d": ack}));
                self.server.observe(|s| s.counters.heartbeats += 1);
                Step::Continue
            }
            op::IDENTIFY if self.ssrc.is_some() => Step::Close(close::ALREADY_AUTHENTICATED),
            op::IDENTIFY => self.identify(&d),
            op::RESUME => self.resume(&d),
            _ if self.ssrc.is_none() => Step::Close(close::NOT_AUTHENTICATED),
            op::SELECT_PROTOCOL => self.select_protocol(&d),
            op::SPEAKING => {
                self.speaking(&d);
                Step::Continue
            }
            // DAVE transition ready (23): the group executes it (22) once all are ready.
            23 => {
                let id = d
                    .get("transition_id")
                    .and_then(Value::as_u64)
                    .and_then(|id| u16::try_from(id).ok())
                    .unwrap_or(0);
                self.server
                    .observe(|s| s.counters.dave_transitions_ready += 1);
                match self.user_and_channel() {
                    Some((user, Some(channel))) => {
                        self.server.dave_op(&self.shared, channel, |call| {
                            super::group::ready(call, user, id);
                        });
                    }
                    _ => self.send_session(json!({"op": 22, "d": {"transition_id": id}})),
                }
                Step::Continue
            }
            // DAVE invalid commit/welcome (31): the client is proposed for removal; it resets
            // its group and sends a new key package (op 26), which adds it again.
            31 => {
                self.server.observe(|s| s.counters.dave_invalid += 1);
                if let Some((user, Some(channel))) = self.user_and_channel() {
                    self.server.dave_op(&self.shared, channel, |call| {
                        super::group::invalid(call, user);
                    });
                }
                Step::Continue
            }
            12 | 15 | 16 | 18 | 20 => Step::Continue,
            _ => Step::Close(close::UNKNOWN_OPCODE),
        }
    }

    fn identify(&mut self, d: &Value) -> Step {
        let field = |k: &str| {
            d.get(k).and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
        };
        let (Some(server_id), Some(session_id), Some(token), Some(user_id)) = (
            field("server_id"),
            field("session_id"),
            field("token"),
            field("user_id"),
        ) else {
            return Step::Close(close::DECODE_ERROR);
        };
        let guild_id = self.shared.core().world.guild_id;
        let Ok(user_id) = user_id.parse::<u64>() else {
            return Step::Close(close::AUTHENTICATION_FAILED);
        };
        // (World lookups before the voice lock, never under it.)
        let dave_required = self.requires_dave(user_id);
        let mut core = self.server.core();
        let valid = core
            .grants
            .get(&token)
            .is_some_and(|g| g.session_id == session_id && g.user_id == user_id)
            && server_id == guild_id.to_string();
        if !valid {
            return Step::Close(close::AUTHENTICATION_FAILED);
        }
        self.dave_max = d
            .get("max_dave_protocol_version")
            .and_then(Value::as_u64)
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(0);
        if self.dave_max == 0 && dave_required {
            return Step::Close(close::E2EE_REQUIRED);
        }
        // A client identifies anew after a server move: its older sessions are gone.
        core.sessions.retain(|_, s| s.user_id != user_id);
        let ssrc = core.alloc_ssrc();
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        core.sessions.insert(
            ssrc,
            VoiceSession {
                ssrc,
                user_id,
                session_id,
                token,
                key,
                mode: None,
                udp_peer: None,
                conn: Some((self.id, self.tx.clone())),
                out_nonce: 0,
                known_users: std::collections::HashSet::new(),
                dave_version: 0,
                outbox: Outbox::new(self.version),
            },
        );
        drop(core);
        self.ssrc = Some(ssrc);
        let udp = self.server.udp_addr;
        self.send_session(json!({"op": op::READY, "d": {
            "ssrc": ssrc,
            "ip": udp.ip().to_string(),
            "port": udp.port(),
            "modes": [MODE_AES256_GCM, MODE_XCHACHA20],
            "experiments": [],
        }}));
        self.server.observe(|s| s.counters.identifies += 1);
        self.server.publish_sessions();
        Step::Continue
    }

    /// Whether a client without DAVE is refused: DAVE on and required, and the user's
    /// channel is not a stage channel (stages are exempt on Discord).
    fn requires_dave(&self, user_id: u64) -> bool {
        let config = &self.shared.config;
        if !(config.voice_dave && config.voice_require_dave) {
            return false;
        }
        let core = self.shared.core();
        let stage = core
            .world
            .voice_states
            .get(&user_id)
            .and_then(|v| core.world.channels.get(&v.channel_id))
            .is_some_and(|c| c.kind == crate::world::channel_type::STAGE);
        !stage
    }

    fn select_protocol(&mut self, d: &Value) -> Step {
        let Some(ssrc) = self.ssrc else {
            return Step::Close(close::NOT_AUTHENTICATED);
        };
        let Some(mode) = d
            .pointer("/data/mode")
            .and_then(Value::as_str)
            .and_then(TransportMode::from_name)
        else {
            return Step::Close(close::UNKNOWN_ENCRYPTION_MODE);
        };
        let mut core = self.server.core();
        let Some(session) = core.sessions.get_mut(&ssrc) else {
            return Step::Close(close::SESSION_INVALID);
        };
        session.mode = Some(mode);
        let dave_version =
            if self.server.dave.is_some() && self.dave_max >= super::dave::DAVE_VERSION {
                super::dave::DAVE_VERSION
            } else {
                0
            };
        session.dave_version = dave_version;
        let key = session.key;
        let user_id = session.user_id;
        drop(core);
        self.send_session(json!({"op": op::SESSION_DESCRIPTION, "d": {
            "mode": mode.name(),
            "secret_key": key.to_vec(),
            "audio_codec": "opus",
            "video_codec": "H264",
            "media_session_id": crate::gateway_random_hex(32),
            // DAVE only when configured and announced by the client (docs/simulator.md).
            "dave_protocol_version": dave_version,
        }}));
        if let (true, Some(ds)) = (dave_version > 0, &self.server.dave) {
            self.send_session_binary(&ds.external_sender_message());
        }
        // A client without DAVE (allowed when `voice_require_dave` is off) downgrades a DAVE
        // call to transport-only encryption.
        if let (0, Some(_), Some(channel)) = (
            dave_version,
            &self.server.dave,
            channel_of(&self.shared, user_id),
        ) {
            self.server
                .dave_op(&self.shared, channel, super::group::client_without_dave);
        }
        self.server.observe(|s| {
            s.counters.sessions_described += 1;
            s.counters.last_mode = Some(mode);
        });
        // Who is already in the channel (op 11, as Discord sends it today).
        if let Some(channel) = channel_of(&self.shared, user_id) {
            let others = users_in(&self.shared, channel, user_id);
            if !others.is_empty() {
                if let Some(s) = self.server.core().sessions.get_mut(&ssrc) {
                    s.known_users.extend(others.iter().copied());
                }
                let ids: Vec<String> = others.iter().map(u64::to_string).collect();
                self.send_session(json!({"op": op::CLIENTS_CONNECT, "d": {"user_ids": ids}}));
            }
        }
        Step::Continue
    }

    /// The user of this connection's session and the voice channel it is in.
    fn user_and_channel(&self) -> Option<(u64, Option<u64>)> {
        let ssrc = self.ssrc?;
        let user = self.server.core().sessions.get(&ssrc).map(|s| s.user_id)?;
        Some((user, channel_of(&self.shared, user)))
    }

    /// DAVE binary opcodes from the client: 26 key package, 28 commit + welcome; handled by
    /// the call's group (`group.rs`).
    fn on_binary(&mut self, data: &[u8]) -> Step {
        let (true, Some((&opcode, payload)), Some((user, Some(channel)))) = (
            self.server.dave.is_some(),
            data.split_first(),
            self.user_and_channel(),
        ) else {
            return Step::Continue;
        };
        match opcode {
            super::dave::op::KEY_PACKAGE => {
                self.server.observe(|s| s.counters.dave_key_packages += 1);
                self.server.dave_op(&self.shared, channel, |call| {
                    super::group::key_package(call, user, payload.to_vec());
                });
            }
            super::dave::op::COMMIT_WELCOME => {
                self.server
                    .dave_commit(&self.shared, channel, user, payload);
            }
            _ => {}
        }
        Step::Continue
    }

    /// SPEAKING from a client goes to the other clients of its call with its user id (as
    /// Discord does; they map its SSRC to the user, which DAVE decryption needs).
    fn speaking(&self, d: &Value) {
        self.server.observe(|s| s.counters.speaking_received += 1);
        let (Some(ssrc), Some((user, Some(channel)))) = (self.ssrc, self.user_and_channel()) else {
            return;
        };
        let others = users_in(&self.shared, channel, user);
        let payload = json!({"op": op::SPEAKING, "d": {
            "user_id": user.to_string(),
            "ssrc": ssrc,
            "speaking": d.get("speaking").cloned().unwrap_or(Value::from(0)),
        }});
        let mut core = self.server.core();
        for s in core.sessions.values_mut() {
            if others.contains(&s.user_id) {
                s.send(payload.clone());
            }
        }
    }

    fn resume(&mut self, d: &Value) -> Step {
        if self.ssrc.is_some() {
            return Step::Close(close::ALREADY_AUTHENTICATED);
        }
        let field = |k: &str| {
            d.get(k).and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
        };
        let (Some(session_id), Some(token)) = (field("session_id"), field("token")) else {
            return Step::Close(close::DECODE_ERROR);
        };
        let mut core = self.server.core();
        let found = core
            .sessions
            .values_mut()
            .find(|s| s.session_id == session_id && s.token == token);
        let Some(session) = found else {
            return Step::Close(close::SESSION_INVALID);
        };
        // v8: re-deliver what the client missed after `seq_ack` (absent or -1: nothing
        // numbered received yet); a message no longer buffered ends the session.
        let seq_ack = d
            .get("seq_ack")
            .and_then(Value::as_i64)
            .and_then(|n| u16::try_from(n).ok());
        let missed = if session.outbox.sequenced() {
            match session.outbox.replay(seq_ack) {
                Ok(missed) => missed,
                Err(_) => return Step::Close(close::SESSION_INVALID),
            }
        } else {
            Vec::new()
        };
        if let Some((_, old)) = session.conn.replace((self.id, self.tx.clone())) {
            let _ = old.send(ConnCmd::Drop);
        }
        self.ssrc = Some(session.ssrc);
        // RESUMED, then the missed messages, before any new one (still under the lock).
        self.send(&json!({"op": op::RESUMED, "d": null}));
        let replayed = missed.len() as u64;
        for frame in missed {
            let _ = self.tx.send(ConnCmd::Frame(frame));
        }
        drop(core);
        self.server.observe(|s| s.counters.replayed += replayed);
        self.server.observe(|s| s.counters.resumes += 1);
        self.server.publish_sessions();
        Step::Continue
    }

    /// v8 `seq_ack` from a heartbeat: the client has everything up to it.
    fn ack(&self, acked: u64) {
        if let (Some(ssrc), Ok(acked)) = (self.ssrc, u16::try_from(acked))
            && let Some(s) = self.server.core().sessions.get_mut(&ssrc)
        {
            s.outbox.ack(acked);
        }
    }

    /// The connection ended: the session stays (resumable) but has no connection.
    fn detach(&self) {
        if let Some(ssrc) = self.ssrc
            && let Some(s) = self.server.core().sessions.get_mut(&ssrc)
            && s.conn.as_ref().is_some_and(|(id, _)| *id == self.id)
        {
            s.conn = None;
        }
        self.server.observe(|s| {
            s.counters.active_connections = s.counters.active_connections.saturating_sub(1);
        });
        self.server.publish_sessions();
    }
}
