//! Gateway intent bits the simulator understands, and which dispatch needs which intent.

/// `GUILDS`: guild and channel lifecycle events.
pub const GUILDS: u64 = 1 << 0;
/// `GUILD_MEMBERS` (privileged): member add/update/remove.
pub const GUILD_MEMBERS: u64 = 1 << 1;
/// `GUILD_INVITES`: invite create/delete.
pub const GUILD_INVITES: u64 = 1 << 6;
/// `GUILD_VOICE_STATES`: voice state updates.
pub const GUILD_VOICE_STATES: u64 = 1 << 7;
/// `GUILD_PRESENCES` (privileged).
pub const GUILD_PRESENCES: u64 = 1 << 8;
/// `GUILD_MESSAGES`: message events in guild channels.
pub const GUILD_MESSAGES: u64 = 1 << 9;
/// `MESSAGE_CONTENT` (privileged).
pub const MESSAGE_CONTENT: u64 = 1 << 15;

/// Every bit Discord defines (bits 0–16, 20, 21, 24, 25); any other bit is closed with 4013.
pub const VALID: u64 = ((1 << 17) - 1) | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);

/// The privileged intents (closed with 4014 when the application may not use them).
pub const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;

/// The intent a dispatch event requires, or `None` when it is always sent.
pub fn required_for(event: &str) -> Option<u64> {
    match event {
        "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE" | "CHANNEL_CREATE" | "CHANNEL_UPDATE"
        | "CHANNEL_DELETE" => Some(GUILDS),
        "GUILD_MEMBER_ADD" | "GUILD_MEMBER_UPDATE" | "GUILD_MEMBER_REMOVE" => Some(GUILD_MEMBERS),
        "INVITE_CREATE" | "INVITE_DELETE" => Some(GUILD_INVITES),
        "VOICE_STATE_UPDATE" => Some(GUILD_VOICE_STATES),
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" => Some(GUILD_MESSAGES),
        _ => None,
    }
}
