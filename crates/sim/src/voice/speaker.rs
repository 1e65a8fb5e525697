//! Simulated users who speak: SPEAKING (op 5) with their SSRC and user id to every voice
//! client in their channel, then one encrypted Opus RTP packet per 20 ms, five silence frames
//! and SPEAKING 0 at the end — what a Discord client does. The speech is a stand-in payload,
//! or with [`speak_tone`] a real Opus-encoded sine (`tone.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::crypto::{rtp_header, seal};
use super::signalling::op;
use super::stats::OPUS_SILENCE;
use super::tone::{ToneEncoder, ToneError};
use super::{Speaker, VoiceServer, channel_of, users_in};
use crate::state::Shared;

/// One 20 ms frame at 48 kHz.
const FRAME_SAMPLES: u32 = 960;

/// A stand-in Opus payload for speech: TOC byte 0xFC (CELT fullband 20 ms, stereo, one
/// frame) and a fixed body. The bot only decrypts, it does not need to decode it.
fn speech_frame(n: u32) -> Vec<u8> {
    let mut frame = vec![0xfc];
    frame.extend((0..40u32).map(|i| u8::try_from((i * 7 + n) % 251).unwrap_or(0)));
    frame
}

/// Sends op 5 to every connected client session in `channel` (other than `user`).
fn announce(
    server: &VoiceServer,
    shared: &Shared,
    user: u64,
    channel: u64,
    ssrc: u32,
    speaking: u8,
) {
    let payload = json!({"op": op::SPEAKING, "d": {
        "user_id": user.to_string(), "ssrc": ssrc, "speaking": speaking, "delay": 0,
    }});
    let members: HashSet<u64> = users_in(shared, channel, user).into_iter().collect();
    let mut core = server.core();
    for s in core.sessions.values_mut() {
        if members.contains(&s.user_id) {
            s.send(payload.clone());
        }
    }
}

/// Sends one frame from `user` to every client session in `channel` that has a transport.
/// Returns false (nothing sent) once the user is no longer in `channel`: who left stops
/// speaking there.
async fn send_frame(
    server: &VoiceServer,
    shared: &Shared,
    user: u64,
    channel: u64,
    payload: &[u8],
) -> bool {
    if channel_of(shared, user) != Some(channel) {
        return false;
    }
    let members: HashSet<u64> = users_in(shared, channel, user).into_iter().collect();
    let mut packets = Vec::new();
    let audio;
    {
        let mut core = server.core();
        let Some(sp) = core.speakers.get_mut(&user) else {
            return false;
        };
        sp.sequence = sp.sequence.wrapping_add(1);
        sp.timestamp = sp.timestamp.wrapping_add(FRAME_SAMPLES);
        let header = rtp_header(sp.sequence, sp.timestamp, sp.ssrc);
        // In a DAVE call the user's audio frames must be end-to-end encrypted first; a
        // speaker that cannot (not in the group, or encryption fails) sends nothing rather
        // than falling back to transport encryption only (docs/simulator.md, "Voice").
        let silence = payload == OPUS_SILENCE;
        let dave_call = core
            .sessions
            .values()
            .any(|s| members.contains(&s.user_id) && s.dave_version > 0)
            && !super::group::downgraded(&core, channel);
        let e2ee = if silence || !dave_call {
            None
        } else {
            let encrypted = core
                .dave_users
                .get_mut(&user)
                .filter(|s| s.is_ready())
                .map(|s| s.encrypt_opus(payload).map(std::borrow::Cow::into_owned));
            match encrypted {
                Some(Ok(frame)) => Some(frame),
                Some(Err(e)) => return refuse(server, user, &format!("{e:?}")),
                None => return refuse(server, user, "not in the call's DAVE group"),
            }
        };
        let payload = e2ee.as_deref().unwrap_or(payload);
        for s in core.sessions.values_mut() {
            if !members.contains(&s.user_id) {
                continue;
            }
            let (Some(mode), Some(peer)) = (s.mode, s.udp_peer) else {
                continue;
            };
            s.out_nonce = s.out_nonce.wrapping_add(1);
            packets.push((seal(mode, &s.key, &header, payload, s.out_nonce), peer));
        }
        audio = (!silence, e2ee.is_some());
    }
    let sent = packets.len() as u64;
    for (packet, peer) in packets {
        let _ = server.udp.send_to(&packet, peer).await;
    }
    server.observe(|s| {
        s.counters.rtp_sent += sent;
        match audio {
            (true, true) => s.counters.rtp_sent_e2ee += sent,
            (true, false) => s.counters.rtp_sent_transport_only += sent,
            (false, _) => {}
        }
    });
    true
}

/// A speaker in a DAVE call that cannot encrypt end to end: loud, counted, nothing sent
/// (the speaker goes on: the next frame may be encryptable).
fn refuse(server: &VoiceServer, user: u64, why: &str) -> bool {
    tracing::error!(
        user,
        why,
        "simulated speaker cannot DAVE-encrypt its frame; not sent"
    );
    server.observe(|s| s.counters.speaker_e2ee_failures += 1);
    true
}

/// What a speaking user sends.
enum Voice {
    /// The stand-in payload of [`speech_frame`] (not decodable audio).
    Placeholder,
    /// A sine, Opus-encoded frame by frame.
    Tone(ToneEncoder),
}

impl Voice {
    fn frame(&mut self, n: u32) -> Vec<u8> {
        match self {
            Self::Placeholder => speech_frame(n),
            // libopus does not fail on valid 960-sample mono input; should it, send silence.
            Self::Tone(t) => t.next_frame().unwrap_or_else(|_| OPUS_SILENCE.to_vec()),
        }
    }
}

/// Starts `user` speaking for `duration` (rounded up to whole 20 ms frames). Returns false
/// when the user is not in a voice channel.
pub(crate) fn speak(
    shared: &Arc<Shared>,
    server: &Arc<VoiceServer>,
    user: u64,
    duration: Duration,
) -> bool {
    start(shared, server, user, duration, Voice::Placeholder)
}

/// [`speak`], the speech being a `hz` sine tone (Opus, 48 kHz). `Ok(false)` when the user is
/// not in a voice channel; an error for a frequency outside `tone::TONE_RANGE_HZ`.
pub(crate) fn speak_tone(
    shared: &Arc<Shared>,
    server: &Arc<VoiceServer>,
    user: u64,
    duration: Duration,
    hz: u32,
) -> Result<bool, ToneError> {
    let voice = Voice::Tone(ToneEncoder::new(hz)?);
    Ok(start(shared, server, user, duration, voice))
}

fn start(
    shared: &Arc<Shared>,
    server: &Arc<VoiceServer>,
    user: u64,
    duration: Duration,
    mut voice: Voice,
) -> bool {
    let Some(channel) = channel_of(shared, user) else {
        return false;
    };
    let ssrc = {
        let mut core = server.core();
        if let Some(sp) = core.speakers.get(&user) {
            sp.ssrc
        } else {
            let ssrc = core.alloc_ssrc();
            core.speakers.insert(
                user,
                Speaker {
                    ssrc,
                    sequence: rand::random(),
                    timestamp: rand::random(),
                },
            );
            ssrc
        }
    };
    let frames = u32::try_from(duration.as_millis().div_ceil(20))
        .unwrap_or(u32::MAX)
        .max(1);
    let (shared, server) = (shared.clone(), server.clone());
    tokio::spawn(async move {
        announce(&server, &shared, user, channel, ssrc, 1);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for n in 0..frames {
            tick.tick().await;
            let frame = voice.frame(n);
            if !send_frame(&server, &shared, user, channel, &frame).await {
                return;
            }
        }
        for _ in 0..5 {
            tick.tick().await;
            if !send_frame(&server, &shared, user, channel, &OPUS_SILENCE).await {
                return;
            }
        }
        announce(&server, &shared, user, channel, ssrc, 0);
    });
    true
}
