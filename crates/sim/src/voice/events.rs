//! Follows the world's `VOICE_STATE_UPDATE`s for the voice server: tells connected clients
//! who joined (op 11) or left (op 13) their channel, and closes a client's voice connection
//! (4014 Disconnected) when it leaves voice itself.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::signalling::{close, op};
use super::{ConnCmd, VoiceServer, channel_of};
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

fn on_voice_state(shared: &Shared, server: &VoiceServer, user: u64, channel: Option<u64>) {
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
    let mut proposals = Vec::new();
    let mut leaving = Vec::new();
    let mut removals = 0;
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
            // A user joining a DAVE call is proposed for the client's group at its epoch
            // (0: the group is still pending — the client has sent its key package but no
            // one has committed yet, e.g. a bot alone in the channel until now).
            if let (Some(ds), Some(channel), true) = (&server.dave, channel, s.dave_version > 0) {
                let epoch = s.dave_epoch;
                let proposed = ds
                    .new_user_session(user, channel)
                    .and_then(|(session, kp)| {
                        Ok((session, ds.add_proposals_message(channel, epoch, &[kp])?))
                    });
                match proposed {
                    Ok((session, message)) => {
                        s.send_binary(&message);
                        proposals.push((user, session, message));
                    }
                    Err(e) => tracing::warn!(error = %e, user, "DAVE proposal for a joining user"),
                }
            }
        } else if !here && s.known_users.remove(&user) {
            s.send(json!({"op": op::CLIENT_DISCONNECT, "d": {"user_id": user.to_string()}}));
            if s.dave_version > 0 {
                leaving.push((ssrc, client_channel));
            }
        }
    }
    // A user who left a DAVE call is proposed for removal from the client's group (Remove
    // proposal by the external sender); the remaining members store the proposal too.
    for (ssrc, client_channel) in leaving {
        removals += propose_removal(server, &mut core, ssrc, user, client_channel);
    }
    // The simulated users already in the group receive the proposals too (a commit refers to
    // them); the commits they would make themselves are not sent (the client's wins).
    for (user, session, message) in proposals {
        for (other, member) in &mut core.dave_users {
            if *other != user
                && member.is_ready()
                && let Err(e) = member.process_proposals(
                    davey::ProposalsOperationType::APPEND,
                    &message[2..],
                    None,
                )
            {
                tracing::warn!(error = ?e, user = other, "simulated member's DAVE proposals");
            }
        }
        core.dave_users.insert(user, session);
    }
    drop(core);
    if removals > 0 {
        server.observe(|s| s.counters.dave_removals += removals);
    }
    if closed {
        server.observe(|s| s.counters.server_closes += 1);
        server.publish_sessions();
    }
}

/// Sends the client at `ssrc` a Remove proposal for `user` (who left its channel) and has the
/// remaining simulated members store it; forgets the user's DAVE session. Returns 1 when a
/// proposal was sent. A user who never got into the group (pending, no commit yet) has no
/// leaf to remove and is only forgotten.
fn propose_removal(
    server: &VoiceServer,
    core: &mut super::VoiceCore,
    ssrc: u32,
    user: u64,
    channel: Option<u64>,
) -> u64 {
    let Some(gone) = core.dave_users.remove(&user) else {
        return 0;
    };
    let (Some(ds), Some(channel), Some(leaf)) = (&server.dave, channel, gone.own_leaf_index())
    else {
        return 0;
    };
    let Some(s) = core.sessions.get_mut(&ssrc) else {
        return 0;
    };
    if s.dave_epoch == 0 {
        return 0;
    }
    let message = match ds.remove_proposal_message(channel, s.dave_epoch, leaf) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, user, "DAVE remove proposal");
            return 0;
        }
    };
    s.send_binary(&message);
    for (other, member) in &mut core.dave_users {
        if member.is_ready()
            && let Err(e) =
                member.process_proposals(davey::ProposalsOperationType::APPEND, &message[2..], None)
        {
            tracing::warn!(error = ?e, user = other, "simulated member's DAVE remove proposal");
        }
    }
    1
}
