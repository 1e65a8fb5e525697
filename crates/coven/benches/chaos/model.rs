//! What the soak compares: a contract event reduced to a comparable key, a
//! browser's view of the rooms (docs/spec.md §4 events applied to the §7
//! snapshot) and the simulator's truth in the same shape.
//!
//! Ids are read leniently (a JSON number or a decimal string), so the soak reads
//! the simulator's control API whichever way it writes snowflakes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The seven voice flags of `voice.state`, one bit each, in the spec's order.
pub type Flags = u8;

/// Payload field names of the flags (docs/spec.md §4 `voice.state`), in bit order.
const FLAG_FIELDS: [&str; 7] = [
    "selfMute",
    "selfDeaf",
    "mute",
    "deaf",
    "selfVideo",
    "selfStream",
    "suppress",
];
/// The same flags in Discord's voice state shape (the simulator's truth).
const DISCORD_FLAG_FIELDS: [&str; 7] = [
    "self_mute",
    "self_deaf",
    "mute",
    "deaf",
    "self_video",
    "self_stream",
    "suppress",
];

/// A snowflake as a JSON number or a decimal string.
pub fn id(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn flags_of(object: &Value, fields: &[&str; 7]) -> Flags {
    fields
        .iter()
        .enumerate()
        .filter(|(_, name)| object[**name].as_bool() == Some(true))
        .fold(0, |bits, (bit, _)| bits | (1 << bit))
}

/// Flags of a voice state in Discord's shape.
pub fn discord_flags(voice_state: &Value) -> Flags {
    flags_of(voice_state, &DISCORD_FLAG_FIELDS)
}

/// One contract event, reduced to what decides a view: name, channel, user, flags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    /// `voice.joined`, `room.created`, …
    pub event: String,
    /// `payload.channelId`.
    pub channel: u64,
    /// `payload.userId` (0 for room events).
    pub user: u64,
    /// The flags of a `voice.state` (0 otherwise).
    pub flags: Flags,
}

impl EventKey {
    /// A `voice.*` key.
    pub fn voice(event: &str, channel: u64, user: u64, flags: Flags) -> Self {
        Self {
            event: event.to_owned(),
            channel,
            user,
            flags,
        }
    }

    /// The key of `{"event": …, "payload": {…}}` (a webhook body, a stream entry or
    /// an envelope).
    pub fn of(event: &Value) -> Option<Self> {
        let name = event["event"].as_str()?;
        let payload = &event["payload"];
        Some(Self {
            event: name.to_owned(),
            channel: id(&payload["channelId"]).unwrap_or(0),
            user: id(&payload["userId"]).unwrap_or(0),
            flags: if name == "voice.state" {
                flags_of(payload, &FLAG_FIELDS)
            } else {
                0
            },
        })
    }
}

impl std::fmt::Display for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} channel={} user={} flags={:07b}",
            self.event, self.channel, self.user, self.flags
        )
    }
}

/// Rooms and who is in which, with their flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Channel ids of the rooms.
    pub rooms: BTreeSet<u64>,
    /// user → (channel, flags).
    pub members: BTreeMap<u64, (u64, Flags)>,
}

impl View {
    /// The view of a `GET /api/rooms` body and the `seq` it is current at.
    pub fn from_snapshot(body: &Value) -> Option<(Self, u64)> {
        let seq = body["seq"].as_u64()?;
        let mut view = Self::default();
        for room in body["rooms"].as_array()? {
            let channel = id(&room["channelId"])?;
            view.rooms.insert(channel);
            for member in room["members"].as_array()? {
                let user = id(&member["userId"])?;
                view.members
                    .insert(user, (channel, flags_of(member, &FLAG_FIELDS)));
            }
        }
        Some((view, seq))
    }

    /// The simulator's truth from `/_sim/state`: voice channels (type 2) and the
    /// voice states of the primary guild.
    pub fn from_sim_state(body: &Value) -> Option<Self> {
        let guild = id(&body["guild_id"])?;
        let mut view = Self::default();
        for channel in body["channels"].as_array()? {
            if channel["type"].as_u64() == Some(2) && id(&channel["guild_id"]) == Some(guild) {
                view.rooms.insert(id(&channel["id"])?);
            }
        }
        for state in body["voice_states"].as_array()? {
            let (Some(user), Some(channel)) = (id(&state["user_id"]), id(&state["channel_id"]))
            else {
                continue;
            };
            view.members.insert(user, (channel, discord_flags(state)));
        }
        Some(view)
    }

    /// Applies one event idempotently (an event the view already reflects, as
    /// after a snapshot, changes nothing that later events do not set again).
    pub fn apply(&mut self, key: &EventKey) {
        match key.event.as_str() {
            "room.created" => {
                self.rooms.insert(key.channel);
            }
            "room.deleted" => {
                self.rooms.remove(&key.channel);
                self.members
                    .retain(|_, (channel, _)| *channel != key.channel);
            }
            "voice.joined" => {
                self.members.insert(key.user, (key.channel, 0));
            }
            "voice.left" if self.members.get(&key.user).map(|m| m.0) == Some(key.channel) => {
                self.members.remove(&key.user);
            }
            "voice.state" => {
                self.members.insert(key.user, (key.channel, key.flags));
            }
            // voice.speaking and events a v1 client does not know change no view.
            _ => {}
        }
    }

    /// One line per difference from `truth`, at most `limit`.
    pub fn differences(&self, truth: &Self, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        for room in self.rooms.symmetric_difference(&truth.rooms) {
            out.push(format!(
                "room {room}: browser {}, truth {}",
                self.rooms.contains(room),
                truth.rooms.contains(room)
            ));
        }
        let users: BTreeSet<u64> = self
            .members
            .keys()
            .chain(truth.members.keys())
            .copied()
            .collect();
        for user in users {
            let (mine, real) = (self.members.get(&user), truth.members.get(&user));
            if mine != real {
                out.push(format!("user {user}: browser {mine:?}, truth {real:?}"));
            }
        }
        out.truncate(limit);
        out
    }
}

/// A user's voice state: their channel and flags, or `None` out of voice.
pub type State = Option<(u64, Flags)>;

/// The contract events a change of one user's voice state must produce
/// (docs/spec.md §4): a move is `voice.left` then `voice.joined`; a join with any
/// flag set is followed by `voice.state`; a flag change in place is `voice.state`.
pub fn expected_events(user: u64, before: State, after: State) -> Vec<EventKey> {
    let mut out = Vec::new();
    match (before, after) {
        (Some((from, _)), Some((to, flags))) if from == to => {
            if before != after {
                out.push(EventKey::voice("voice.state", to, user, flags));
            }
        }
        (before, after) => {
            if let Some((from, _)) = before {
                out.push(EventKey::voice("voice.left", from, user, 0));
            }
            if let Some((to, flags)) = after {
                out.push(EventKey::voice("voice.joined", to, user, 0));
                if flags != 0 {
                    out.push(EventKey::voice("voice.state", to, user, flags));
                }
            }
        }
    }
    out
}
