//! Counters of what the simulator saw and did, observable through a `watch` channel.

use serde::Serialize;

/// Running totals since start. Read with [`crate::SimHandle::counters`], wait on with
/// [`crate::SimHandle::wait_for`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub active_connections: u64,
    /// Successful IDENTIFYs.
    pub identifies: u64,
    /// Successful RESUMEs.
    pub resumes: u64,
    /// Heartbeats (op 1) received.
    pub heartbeats: u64,
    /// Heartbeat ACKs (op 11) sent.
    pub heartbeat_acks: u64,
    /// Gateway payloads received (every opcode).
    pub commands: u64,
    /// Dispatches (op 0) queued to sessions.
    pub dispatches: u64,
    /// Invalid sessions (op 9) sent.
    pub invalid_sessions: u64,
    /// Close frames sent by the simulator.
    pub closes_sent: u64,
    /// The last close code the simulator sent.
    pub last_close_code: Option<u16>,
    /// REST requests received (Discord API paths).
    pub rest_requests: u64,
    /// 429 responses served (route, global and injected shared).
    pub rest_429s: u64,
    /// Injected 5xx responses served.
    pub rest_5xx_injected: u64,
    /// OAuth2 tokens issued (code and refresh grants).
    pub oauth_tokens_issued: u64,
}
