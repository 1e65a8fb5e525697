//! Follows the world's `VOICE_STATE_UPDATE`s for the voice server: tells connected clients
//! who joined (op 11) or left (op 13) their channel, closes a client's voice connection
//! (4014 Disconnected) when it leaves voice itself, and tells the calls' DAVE groups who
//! came and went (`group.rs`).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::signalling::{close, op};
use super::{ConnCmd, VoiceServer, channel_of, group};
use crate::state::Shared;

/// Runs until aborted.
pub(crate) async fn run(shared: Arc<Shared>, server: Arc<VoiceServer>) {
    let mut rx = shared.events.subscribe();
    loop {
        let d = match rx.recv().await {
            Ok(d) => d,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        if d.event != "VOICE_STATE_UPDATE" {
            continue;
        }
        let Some(user) = d
            .data
            .get("user_id")
            .and_then(Value::as_str)
            .and_then(|u| u.parse::<u64>().ok())
        else {
            continue;
        };
        let channel = d
            .data
            .get("channel_id")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<u64>().ok());
        on_voice_state(&shared, &server, user, channel);
    }
}

fn on_voice_state(shared: &Arc<Shared>, server: &VoiceServer, user: u64, channel: Option<u64>) {
    // Where is each connected client now? (Looked up before taking the voice lock.)
    let clients: Vec<(u32, u64)> = server
        .core()
        .sessions
        .values()
        .map(|s| (s.ssrc, s.user_id))
        .collect();
    let client_channels: Vec<(u32, u64, Option<u64>)> = clients
        .into_iter()
        .map(|(ssrc, u)| (ssrc, u, channel_of(shared, u)))
        .collect();
    let mut closed = false;
    let mut core = server.core();
    for (ssrc, client, client_channel) in client_channels {
        let Some(s) = core.sessions.get_mut(&ssrc) else {
            continue;
        };
        if client == user {
            if channel.is_none() {
                // The client left voice: Discord ends its voice connection.
                if let Some((_, tx)) = s.conn.take() {
                    let _ = tx.send(ConnCmd::Close(close::DISCONNECTED));
                }
                core.sessions.remove(&ssrc);
                closed = true;
            }
            continue;
        }
        let here = channel.is_some() && channel == client_channel;
        if here && s.known_users.insert(user) {
            s.send(json!({"op": op::CLIENTS_CONNECT, "d": {"user_ids": [user.to_string()]}}));
        } else if !here && s.known_users.remove(&user) {
            s.send(json!({"op": op::CLIENT_DISCONNECT, "d": {"user_id": user.to_string()}}));
        }
    }
    if channel.is_none() {
        core.real_users.remove(&user);
    }
    let real = core.real_users.contains(&user);
    let calls: Vec<u64> = core.groups.keys().copied().collect();
    drop(core);
    // DAVE (after op 11 / op 13, which clients check proposals against): who left a call is
    // revoked or proposed for removal; a simulated user joining a call is proposed.
    for call in calls.into_iter().filter(|c| Some(*c) != channel) {
        server.dave_op(shared, call, |g| group::left(g, user));
    }
    if let (Some(channel), false) = (channel, real) {
        server.dave_op(shared, channel, |g| group::sim_joined(g, user));
    }
    if closed {
        server.observe(|s| s.counters.server_closes += 1);
        server.publish_sessions();
    }
}
