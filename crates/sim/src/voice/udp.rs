//! The voice UDP socket: IP discovery (the 74-byte request/response) and RTP from clients,
//! decrypted with the session's transport mode, recorded for every simulated listener in
//! the sender's channel and forwarded to the other real clients there (an SFU's job).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::crypto;
use super::stats::OPUS_SILENCE;
use super::{VoiceServer, channel_of, users_in};
use crate::state::Shared;

const DISCOVERY_LEN: usize = 74;

/// Serves the UDP socket until aborted.
pub(crate) async fn run(shared: Arc<Shared>, server: Arc<VoiceServer>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((len, from)) = server.udp.recv_from(&mut buf).await else {
            continue;
        };
        let packet = &buf[..len];
        if len == DISCOVERY_LEN && packet[0..2] == [0, 1] {
            discovery(&server, packet, from).await;
        } else if len >= 12 && packet[0] >> 6 == 2 {
            // RTCP (payload types 200–204 appear as 72–76 with the marker bit) is ignored.
            if (72..=76).contains(&(packet[1] & 0x7f)) {
                continue;
            }
            rtp(&shared, &server, packet, from);
        }
    }
}

async fn discovery(server: &VoiceServer, packet: &[u8], from: SocketAddr) {
    let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let known = match server.core().sessions.get_mut(&ssrc) {
        Some(s) => {
            s.udp_peer = Some(from);
            true
        }
        None => false,
    };
    if !known {
        return;
    }
    let mut out = [0u8; DISCOVERY_LEN];
    out[0..2].copy_from_slice(&2u16.to_be_bytes());
    out[2..4].copy_from_slice(&70u16.to_be_bytes());
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    let ip = from.ip().to_string();
    out[8..8 + ip.len()].copy_from_slice(ip.as_bytes());
    out[72..74].copy_from_slice(&from.port().to_be_bytes());
    let _ = server.udp.send_to(&out, from).await;
    server.observe(|s| s.counters.ip_discoveries += 1);
}

fn rtp(shared: &Shared, server: &VoiceServer, packet: &[u8], from: SocketAddr) {
    let now = Instant::now();
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let found = server.core().sessions.get_mut(&ssrc).map(|s| {
        s.udp_peer.get_or_insert(from);
        (s.mode, s.key, s.user_id)
    });
    let opened = match found {
        Some((Some(mode), key, sender)) => {
            crypto::open(mode, &key, packet).map(|o| (o, mode, sender))
        }
        _ => None,
    };
    let Some((opened, mode, sender)) = opened else {
        server.observe(|s| {
            s.counters.rtp_received += 1;
            s.counters.rtp_rejected += 1;
        });
        return;
    };
    let present = channel_of(shared, sender)
        .map(|c| users_in(shared, c, sender))
        .unwrap_or_default();
    // Simulated users listen; the real clients of the call get the packet forwarded (SFU).
    let (listeners, clients): (Vec<u64>, Vec<u64>) = {
        let core = server.core();
        present
            .into_iter()
            .partition(|u| !core.real_users.contains(u))
    };
    let forwarded = forward(server, &opened, &clients);
    let silence = opened.payload == OPUS_SILENCE;
    let e2ee = super::dave::is_protocol_frame(&opened.payload);
    // Each listener in a DAVE group decrypts the frame end to end with its own session.
    // (A transport-only frame is not tried: it is counted as such.)
    let dave: Vec<(u64, bool)> = if silence || !e2ee {
        Vec::new()
    } else {
        let mut core = server.core();
        listeners
            .iter()
            .filter_map(|u| {
                let session = core.dave_users.get_mut(u)?;
                session.is_ready().then(|| {
                    (
                        *u,
                        session
                            .decrypt(sender, davey::MediaType::AUDIO, &opened.payload)
                            .is_ok(),
                    )
                })
            })
            .collect()
    };
    let audio = !silence;
    server.observe(|s| {
        s.counters.rtp_received += 1;
        s.counters.rtp_decrypted += 1;
        s.counters.rtp_forwarded += forwarded;
        match (audio, e2ee) {
            (true, true) => s.counters.rtp_forwarded_e2ee += forwarded,
            (true, false) => s.counters.rtp_forwarded_transport_only += forwarded,
            (false, _) => {}
        }
        for user in listeners {
            let r = s.received.entry(user).or_default();
            r.ssrc = Some(opened.ssrc);
            r.mode = Some(mode);
            if silence {
                r.silence_frames += 1;
                continue;
            }
            r.audio_frames += 1;
            if e2ee {
                r.e2ee_frames += 1;
            } else {
                r.transport_only_frames += 1;
            }
            match dave.iter().find(|(u, _)| *u == user) {
                Some((_, true)) => r.dave_frames += 1,
                Some((_, false)) => r.dave_failures += 1,
                None => {}
            }
            r.audio_bytes += opened.payload.len() as u64;
            if let Some(last) = r.last_audio_at {
                let gap = u64::try_from(now.duration_since(last).as_micros()).unwrap_or(u64::MAX);
                r.max_gap_micros = r.max_gap_micros.max(gap);
            }
            r.first_audio_at.get_or_insert(now);
            r.last_audio_at = Some(now);
        }
    });
}

/// Re-seals the packet for each real client in `clients` with its own transport key and
/// sends it (same SSRC, sequence and timestamp; the payload untouched, so a DAVE frame stays
/// end-to-end encrypted). Returns how many were sent.
fn forward(server: &VoiceServer, opened: &crypto::Opened, clients: &[u64]) -> u64 {
    if clients.is_empty() {
        return 0;
    }
    let header = crypto::rtp_header(opened.sequence, opened.timestamp, opened.ssrc);
    let mut packets = Vec::new();
    {
        let mut core = server.core();
        for s in core.sessions.values_mut() {
            if !clients.contains(&s.user_id) {
                continue;
            }
            let (Some(mode), Some(peer)) = (s.mode, s.udp_peer) else {
                continue;
            };
            s.out_nonce = s.out_nonce.wrapping_add(1);
            packets.push((
                crypto::seal(mode, &s.key, &header, &opened.payload, s.out_nonce),
                peer,
            ));
        }
    }
    let sent = packets.len() as u64;
    for (packet, peer) in packets {
        // Non-blocking: a full socket buffer drops the packet, as UDP would.
        let _ = server.udp.try_send_to(&packet, peer);
    }
    sent
}
