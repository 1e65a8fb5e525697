//! What the voice server lets tests observe: counters and, per simulated listener, what it
//! received and decrypted from the bot.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::crypto::TransportMode;

/// The Opus frame Discord clients send as silence.
pub const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// Voice server counters (all since start).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VoiceCounters {
    /// Voice WebSocket connections accepted (TLS + upgrade done).
    pub connections: u64,
    /// Voice WebSocket connections open now.
    pub active_connections: u64,
    /// IDENTIFY (op 0) accepted.
    pub identifies: u64,
    /// RESUME (op 7) accepted.
    pub resumes: u64,
    /// `SELECT_PROTOCOL` (op 1) answered with `SESSION_DESCRIPTION`.
    pub sessions_described: u64,
    /// Heartbeats (op 3) acknowledged.
    pub heartbeats: u64,
    /// SPEAKING (op 5) received from clients.
    pub speaking_received: u64,
    /// IP discovery requests answered.
    pub ip_discoveries: u64,
    /// RTP packets received from clients.
    pub rtp_received: u64,
    /// RTP packets that decrypted.
    pub rtp_decrypted: u64,
    /// RTP packets that failed to decrypt or parse.
    pub rtp_rejected: u64,
    /// RTP packets sent to clients by simulated speakers.
    pub rtp_sent: u64,
    /// Of those, audio frames DAVE-encrypted end to end by the speaker's own session.
    pub rtp_sent_e2ee: u64,
    /// Of those, audio frames sent with transport encryption only (no DAVE call).
    pub rtp_sent_transport_only: u64,
    /// RTP packets from one real client forwarded to the other real clients of its call.
    pub rtp_forwarded: u64,
    /// Of those, audio frames DAVE-encrypted end to end (protocol frames).
    pub rtp_forwarded_e2ee: u64,
    /// Of those, audio frames with transport encryption only.
    pub rtp_forwarded_transport_only: u64,
    /// Audio frames a simulated speaker in a DAVE call could not encrypt end to end (not in
    /// the group yet, or encryption failed): not sent, logged as an error.
    pub speaker_e2ee_failures: u64,
    /// Close frames / drops the server caused (faults, bot leaving).
    pub server_closes: u64,
    /// Messages re-delivered after a v8 RESUME (buffered resume).
    pub replayed: u64,
    /// Voice server moves (new `VOICE_SERVER_UPDATE`).
    pub server_moves: u64,
    /// DAVE key packages received from clients (op 26).
    pub dave_key_packages: u64,
    /// DAVE commits accepted (the first valid one of an epoch) and announced (op 29).
    pub dave_commits: u64,
    /// DAVE commits discarded: for a past epoch (another member's won), or not committing
    /// exactly the epoch's unrevoked proposals.
    pub dave_commits_discarded: u64,
    /// DAVE commits held back by the `voice_dave_hold_commits` fault.
    pub dave_commits_held: u64,
    /// DAVE welcomes (op 30) sent to real clients added by another member's commit.
    pub dave_welcomes_sent: u64,
    /// DAVE Add proposals revoked (op 27 revoke): the user left before a commit added it.
    pub dave_revocations: u64,
    /// DAVE sole member resets (op 24 `epoch: 1` + op 21 `transition_id: 0`).
    pub dave_resets: u64,
    /// DAVE calls downgraded to transport-only (op 21 `protocol_version: 0`): a client
    /// without DAVE joined (only when `voice_require_dave` is off).
    pub dave_downgrades: u64,
    /// DAVE calls upgraded again (op 24 `epoch: 1`): the last client without DAVE left.
    pub dave_upgrades: u64,
    /// DAVE transitions executed (op 22) after the timeout, not every client having said it
    /// was ready (op 23).
    pub dave_transition_timeouts: u64,
    /// DAVE transitions a client reported ready (op 23; answered with op 22 execute).
    pub dave_transitions_ready: u64,
    /// Simulated users welcomed into their call's MLS group.
    pub dave_welcomed: u64,
    /// DAVE invalid commit/welcome reports from clients (op 31).
    pub dave_invalid: u64,
    /// DAVE Remove proposals sent (a member left the call, or re-keys).
    pub dave_removals: u64,
    /// DAVE protocol errors (bad key package, commit or welcome).
    pub dave_errors: u64,
    /// The mode chosen by the last `SELECT_PROTOCOL`.
    pub last_mode: Option<TransportMode>,
    /// The voice gateway version (`?v=`) of the last connection.
    pub last_version: Option<u8>,
}

/// What one simulated listener received from the bot (decrypted at the transport layer).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VoiceReceived {
    /// Opus frames other than the 3-byte silence frame.
    pub audio_frames: u64,
    /// Opus silence frames (`F8 FF FE`).
    pub silence_frames: u64,
    /// Opus payload bytes of the audio frames.
    pub audio_bytes: u64,
    /// The sender's SSRC (the bot's).
    pub ssrc: Option<u32>,
    /// When the first audio frame arrived.
    #[serde(skip)]
    pub first_audio_at: Option<Instant>,
    /// When the last audio frame arrived.
    #[serde(skip)]
    pub last_audio_at: Option<Instant>,
    /// Largest gap between consecutive audio frames, in microseconds (pacing check).
    pub max_gap_micros: u64,
    /// The transport mode the frames arrived in.
    pub mode: Option<TransportMode>,
    /// Audio frames that arrived as DAVE protocol frames (end-to-end encrypted).
    pub e2ee_frames: u64,
    /// Audio frames that arrived with transport encryption only (no DAVE protocol frame).
    pub transport_only_frames: u64,
    /// Audio frames that were DAVE-encrypted and that this listener's own DAVE session
    /// decrypted (end to end).
    pub dave_frames: u64,
    /// Audio frames this listener's DAVE session could not decrypt (or that arrived in clear
    /// while it was in a DAVE group).
    pub dave_failures: u64,
}

/// Everything observable at once, published on every change.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VoiceSnapshot {
    /// Counters.
    pub counters: VoiceCounters,
    /// Per simulated user id: what it received from the bot.
    pub received: BTreeMap<u64, VoiceReceived>,
    /// Voice sessions (bot connections) known now, by SSRC: the user id of the connected client.
    #[serde(serialize_with = "crate::snowflake::as_string::id_values")]
    pub sessions: BTreeMap<u32, u64>,
}
