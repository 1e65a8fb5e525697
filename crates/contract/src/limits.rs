//! Size limits on everything the system reads from outside, as named constants.
//!
//! Every input has a bound so that a misbehaving or hostile peer cannot make a
//! process allocate without limit. The hub enforces these before reading a body.

/// Largest accepted internal webhook body (docs/spec.md §5): 64 KiB. Larger bodies get 413.
pub const WEBHOOK_BODY_MAX_BYTES: usize = 64 * 1024;

/// Largest accepted browser → hub WebSocket message (docs/spec.md §6): 4 KiB.
pub const CLIENT_MESSAGE_MAX_BYTES: usize = 4 * 1024;

/// Largest accepted `rtc.signal` message (docs/spec.md §12: `data` at most 16 KiB),
/// the whole message held to the 16 KiB frame limit of docs/spec.md §6.
pub const RTC_SIGNAL_MAX_BYTES: usize = 16 * 1024;

/// Longest room (voice channel) name Discord accepts, in characters.
pub const ROOM_NAME_MAX_CHARS: usize = 100;

/// Largest voice channel user limit Discord accepts (0 means unlimited).
pub const USER_LIMIT_MAX: u8 = 99;
