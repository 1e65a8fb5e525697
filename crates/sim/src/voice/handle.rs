//! Voice controls on [`SimHandle`] and under `/_sim/voice/...`: make simulated users speak,
//! read what they received from the bot, wait on voice counters, and inject voice faults
//! (drop the voice socket, close it with a code, move the voice server).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::stats::{VoiceReceived, VoiceSnapshot};
use super::{ConnCmd, VoiceServer, speaker};
use crate::handle::{SimHandle, WaitTimeout};
use crate::state::Shared;
use crate::world::Dispatch;

impl SimHandle {
    fn voice(&self) -> &Arc<VoiceServer> {
        self.shared
            .voice
            .get()
            .expect("the voice server starts with the simulator")
    }

    /// The voice server's observable state (counters, what each listener received, sessions).
    pub fn voice_snapshot(&self) -> VoiceSnapshot {
        self.voice().snapshot.borrow().clone()
    }

    /// What simulated user `user` has received from the bot so far (transport-decrypted).
    pub fn voice_received(&self, user: u64) -> VoiceReceived {
        self.voice_snapshot()
            .received
            .get(&user)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets what `user` received (to measure the next cue alone).
    pub fn voice_reset_received(&self, user: u64) {
        self.voice().observe(|s| {
            s.received.remove(&user);
        });
    }

    /// Makes `user` (who must be in a voice channel) speak for `duration`: SPEAKING to the
    /// voice clients in the channel, encrypted Opus RTP every 20 ms, then silence and SPEAKING 0.
    /// Returns false when the user is not in voice.
    pub fn voice_user_speak(&self, user: u64, duration: Duration) -> bool {
        speaker::speak(&self.shared, self.voice(), user, duration)
    }

    /// [`Self::voice_user_speak`] with a real voice: a `hz` sine, Opus-encoded at 48 kHz (for
    /// tests of decoded received audio). `Ok(false)` when the user is not in voice; an error
    /// when `hz` is outside [`super::TONE_RANGE_HZ`].
    pub fn voice_user_speak_tone(
        &self,
        user: u64,
        duration: Duration,
        hz: u32,
    ) -> Result<bool, super::ToneError> {
        speaker::speak_tone(&self.shared, self.voice(), user, duration, hz)
    }

    /// Waits until `cond` holds for the voice snapshot, or fails after `timeout`.
    pub async fn voice_wait_for(
        &self,
        mut cond: impl FnMut(&VoiceSnapshot) -> bool,
        timeout: Duration,
    ) -> Result<VoiceSnapshot, WaitTimeout> {
        let mut rx = self.voice().snapshot.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|s| cond(s))).await {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => Err(WaitTimeout {
                timeout,
                last: self.counters(),
            }),
        }
    }

    /// Drops every voice WebSocket's TCP connection without a close frame (sessions stay
    /// resumable). Returns how many connections were reached.
    pub fn voice_drop_sockets(&self) -> usize {
        self.voice_command(|| ConnCmd::Drop)
    }

    /// Closes every voice WebSocket with `code` (e.g. 4015 "voice server crashed", resumable;
    /// 4006 "session no longer valid"). Returns how many connections were reached.
    pub fn voice_close(&self, code: u16) -> usize {
        self.voice_command(|| ConnCmd::Close(code))
    }

    /// DAVE fault: the next commit announced to a client (op 29) is corrupted, as if
    /// damaged in transit. The client cannot process it, reports op 31 and sends a new key
    /// package; the group is formed again (docs/simulator.md, "Voice").
    pub fn voice_dave_corrupt_next_commit(&self) {
        self.voice()
            .dave_corrupt_next
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// DAVE fault: while `hold` is on, the commits clients send (op 28) are held back, as if
    /// delayed in transit; turning it off handles them in the order they came. Lets a test
    /// change the call between a proposal and its commit (a revoked proposal).
    pub fn voice_dave_hold_commits(&self, hold: bool) {
        let voice = self.voice();
        if hold {
            voice
                .dave_hold
                .store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            voice.dave_release(&self.shared);
        }
    }

    /// A real voice client takes simulated user `user`'s place (e.g. a second DAVE client in
    /// a call, as a person's Discord client would be): the simulator stops simulating the
    /// user's voice (no DAVE session, no listening) and issues what `VOICE_STATE_UPDATE` and
    /// `VOICE_SERVER_UPDATE` would give that client. The user then joins a channel as usual
    /// (`user_join`), and the client connects to `endpoint` with `session_id` and `token`.
    /// `None` for a user the guild does not have as a member.
    pub fn voice_user_client(&self, user: u64) -> Option<VoiceClientGrant> {
        let member = {
            let core = self.shared.core();
            core.world.members.contains_key(&user)
        };
        if !member {
            return None;
        }
        let (session_id, token) = (crate::gateway_random_hex(32), crate::gateway_random_hex(16));
        let endpoint = self.voice().grant(&token, user, &session_id);
        let endpoint = self
            .shared
            .config
            .voice_endpoint
            .clone()
            .unwrap_or(endpoint);
        Some(VoiceClientGrant {
            session_id,
            token,
            endpoint,
        })
    }

    fn voice_command(&self, cmd: impl Fn() -> ConnCmd) -> usize {
        let n = {
            let core = self.voice().core();
            core.sessions
                .values()
                .filter_map(|s| s.conn.as_ref())
                .filter(|(_, tx)| tx.send(cmd()).is_ok())
                .count()
        };
        self.voice()
            .observe(|s| s.counters.server_closes += n as u64);
        n
    }

    /// Moves the bot's voice server: sends a new `VOICE_SERVER_UPDATE` (new token, the other
    /// voice endpoint) to the bot's gateway session. Returns the new endpoint, or `None` when
    /// the bot is not in voice.
    pub fn voice_move_server(&self) -> Option<String> {
        let voice = self.voice().clone();
        let mut core = self.shared.core();
        let bot = core.world.bot_user_id();
        let guild_id = core.world.guild_id;
        let session = core.world.voice_states.get(&bot)?.session_id.clone();
        voice
            .current
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = crate::gateway_random_hex(16);
        let endpoint = voice.grant(&token, bot, &session);
        let advertised = self
            .shared
            .config
            .voice_endpoint
            .clone()
            .unwrap_or_else(|| endpoint.clone());
        let mut d = Dispatch::new(
            "VOICE_SERVER_UPDATE",
            json!({"token": token, "guild_id": guild_id.to_string(), "endpoint": advertised}),
        );
        d.only_session = Some(session);
        self.shared.publish(&mut core, vec![d]);
        drop(core);
        voice.observe(|s| s.counters.server_moves += 1);
        Some(endpoint)
    }
}

/// What a real voice client taking a user's place needs ([`SimHandle::voice_user_client`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct VoiceClientGrant {
    /// The user's "gateway session id" (IDENTIFY's `session_id`).
    pub session_id: String,
    /// The voice token (IDENTIFY's `token`).
    pub token: String,
    /// The voice endpoint, `host:port` without a scheme, as `VOICE_SERVER_UPDATE` gives it.
    pub endpoint: String,
}

/// The `/_sim/voice/...` routes.
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/voice", get(snapshot))
        .route("/_sim/voice/users/{user_id}/speak", post(speak))
        .route(
            "/_sim/voice/users/{user_id}/received",
            get(received).delete(reset_received),
        )
        .route(
            "/_sim/voice/drop",
            post(|State(s): State<Arc<Shared>>| async move {
                Json(json!({"connections": SimHandle { shared: s }.voice_drop_sockets()}))
            }),
        )
        .route("/_sim/voice/close", post(close))
        .route("/_sim/voice/users/{user_id}/client", post(client))
        .route("/_sim/voice/dave/hold-commits", post(hold_commits))
        .route(
            "/_sim/voice/dave/corrupt-next-commit",
            post(|State(s): State<Arc<Shared>>| async move {
                SimHandle { shared: s }.voice_dave_corrupt_next_commit();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/_sim/voice/move",
            post(|State(s): State<Arc<Shared>>| async move {
                match (SimHandle { shared: s }).voice_move_server() {
                    Some(endpoint) => Json(json!({"endpoint": endpoint})).into_response(),
                    None => (
                        StatusCode::CONFLICT,
                        Json(json!({"message": "the bot is not in voice"})),
                    )
                        .into_response(),
                }
            }),
        )
}

async fn snapshot(State(s): State<Arc<Shared>>) -> Json<VoiceSnapshot> {
    Json(SimHandle { shared: s }.voice_snapshot())
}

#[derive(Deserialize)]
struct SpeakBody {
    /// Milliseconds to speak (default 1000).
    ms: Option<u64>,
    /// Speak a sine of this many Hz (real Opus) instead of the stand-in payload.
    tone_hz: Option<u32>,
}

async fn speak(
    State(s): State<Arc<Shared>>,
    Path(user): Path<String>,
    body: Option<Json<SpeakBody>>,
) -> Response {
    let Ok(user) = user.parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "user id must be a snowflake"})),
        )
            .into_response();
    };
    let (ms, tone_hz) = body.map_or((None, None), |b| (b.ms, b.tone_hz));
    let duration = Duration::from_millis(ms.unwrap_or(1000));
    let handle = SimHandle { shared: s };
    let spoke = match tone_hz {
        None => handle.voice_user_speak(user, duration),
        Some(hz) => match handle.voice_user_speak_tone(user, duration, hz) {
            Ok(spoke) => spoke,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"message": e.to_string()})),
                )
                    .into_response();
            }
        },
    };
    if spoke {
        Json(json!({"ok": true})).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            Json(json!({"message": "user is not in a voice channel"})),
        )
            .into_response()
    }
}

async fn received(State(s): State<Arc<Shared>>, Path(user): Path<String>) -> Response {
    match user.parse::<u64>() {
        Ok(user) => Json(SimHandle { shared: s }.voice_received(user)).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn reset_received(State(s): State<Arc<Shared>>, Path(user): Path<String>) -> Response {
    match user.parse::<u64>() {
        Ok(user) => {
            SimHandle { shared: s }.voice_reset_received(user);
            Json(json!({"ok": true})).into_response()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[derive(Deserialize)]
struct CloseBody {
    code: u16,
}

async fn close(
    State(s): State<Arc<Shared>>,
    Json(body): Json<CloseBody>,
) -> Json<serde_json::Value> {
    Json(json!({"connections": SimHandle { shared: s }.voice_close(body.code)}))
}

async fn client(State(s): State<Arc<Shared>>, Path(user): Path<String>) -> Response {
    let Ok(user) = user.parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "user id must be a snowflake"})),
        )
            .into_response();
    };
    match (SimHandle { shared: s }).voice_user_client(user) {
        Some(grant) => Json(grant).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "unknown member"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct HoldBody {
    hold: bool,
}

async fn hold_commits(State(s): State<Arc<Shared>>, Json(body): Json<HoldBody>) -> Response {
    SimHandle { shared: s }.voice_dave_hold_commits(body.hold);
    Json(json!({"ok": true})).into_response()
}
