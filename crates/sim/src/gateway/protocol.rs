//! Gateway opcodes and close codes as Discord defines them.

/// Dispatch.
pub const OP_DISPATCH: u64 = 0;
/// Heartbeat (both directions).
pub const OP_HEARTBEAT: u64 = 1;
/// Identify.
pub const OP_IDENTIFY: u64 = 2;
/// Presence update.
pub const OP_PRESENCE_UPDATE: u64 = 3;
/// Voice state update.
pub const OP_VOICE_STATE_UPDATE: u64 = 4;
/// Resume.
pub const OP_RESUME: u64 = 6;
/// Reconnect.
pub const OP_RECONNECT: u64 = 7;
/// Request guild members.
pub const OP_REQUEST_GUILD_MEMBERS: u64 = 8;
/// Invalid session.
pub const OP_INVALID_SESSION: u64 = 9;
/// Hello.
pub const OP_HELLO: u64 = 10;
/// Heartbeat ACK.
pub const OP_HEARTBEAT_ACK: u64 = 11;
/// Request soundboard sounds.
pub const OP_REQUEST_SOUNDBOARD_SOUNDS: u64 = 31;

/// 4000 Unknown error.
pub const CLOSE_UNKNOWN_ERROR: u16 = 4000;
/// 4001 Unknown opcode.
pub const CLOSE_UNKNOWN_OPCODE: u16 = 4001;
/// 4002 Decode error (bad JSON or a payload over 4096 bytes).
pub const CLOSE_DECODE_ERROR: u16 = 4002;
/// 4003 Not authenticated.
pub const CLOSE_NOT_AUTHENTICATED: u16 = 4003;
/// 4004 Authentication failed.
pub const CLOSE_AUTHENTICATION_FAILED: u16 = 4004;
/// 4005 Already authenticated.
pub const CLOSE_ALREADY_AUTHENTICATED: u16 = 4005;
/// 4007 Invalid seq.
pub const CLOSE_INVALID_SEQ: u16 = 4007;
/// 4008 Rate limited.
pub const CLOSE_RATE_LIMITED: u16 = 4008;
/// 4009 Session timed out.
pub const CLOSE_SESSION_TIMED_OUT: u16 = 4009;
/// 4010 Invalid shard.
pub const CLOSE_INVALID_SHARD: u16 = 4010;
/// 4012 Invalid API version.
pub const CLOSE_INVALID_API_VERSION: u16 = 4012;
/// 4013 Invalid intents.
pub const CLOSE_INVALID_INTENTS: u16 = 4013;
/// 4014 Disallowed intents.
pub const CLOSE_DISALLOWED_INTENTS: u16 = 4014;

/// Whether a close code is fatal at Discord: its cause (the token, the intents, the
/// shard, the API version) lasts, so a client must not connect again.
pub fn is_fatal(code: u16) -> bool {
    matches!(code, 4004 | 4010..=4014)
}

/// Whether a close code ends the session (no resume afterwards).
pub fn ends_session(code: u16) -> bool {
    matches!(code, 1000 | 1001 | 4007 | 4009) || is_fatal(code)
}

/// Discord's reason text for a close code.
pub fn reason(code: u16) -> &'static str {
    match code {
        CLOSE_UNKNOWN_ERROR => "Unknown error.",
        CLOSE_UNKNOWN_OPCODE => "Unknown opcode.",
        CLOSE_DECODE_ERROR => "Error while decoding payload.",
        CLOSE_NOT_AUTHENTICATED => "Not authenticated.",
        CLOSE_AUTHENTICATION_FAILED => "Authentication failed.",
        CLOSE_ALREADY_AUTHENTICATED => "Already authenticated.",
        CLOSE_INVALID_SEQ => "Invalid seq.",
        CLOSE_RATE_LIMITED => "Rate limited.",
        CLOSE_SESSION_TIMED_OUT => "Session timed out.",
        CLOSE_INVALID_SHARD => "Invalid shard.",
        4011 => "Sharding required.",
        CLOSE_INVALID_API_VERSION => "Invalid API version.",
        CLOSE_INVALID_INTENTS => "Invalid intent(s).",
        CLOSE_DISALLOWED_INTENTS => "Disallowed intent(s).",
        _ => "Unknown error.",
    }
}
