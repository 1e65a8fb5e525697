//! Gateway dispatches twilight could not read, and how the view recovers from them.
//!
//! twilight-gateway parses each dispatch into its strict model; when Discord sends
//! something that model refuses (a `VOICE_STATE_UPDATE` with `self_stream: null`, a
//! `member` without `roles`, …) it yields a `Deserializing` error carrying the raw
//! text — after the shard has already counted the dispatch's sequence, so a resume
//! will never replay it. Skipping it would leave the voice view wrong until the
//! next change of that user or channel (a player shown in a room they left).
//!
//! So the gateway loop hands the raw text here: it is kept as a dead letter with
//! serde's reason and counted in `/metrics`, and for a dispatch the view depends
//! on, [`recover`] reads only the fields the tracker needs, tolerating nulls and
//! missing fields, into twilight's own types — the tracker then applies it like
//! any other dispatch. What even that cannot read (or a `GUILD_CREATE` or role
//! update, too large to guess at) asks for a re-sync: a new session, whose
//! `GUILD_CREATE` the tracker diffs against its view, at most once per
//! [`RESYNC_INTERVAL`] (each costs an IDENTIFY, of which Discord allows 1,000 a
//! day). docs/worker.md explains the choice.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use twilight_gateway::Event;
use twilight_gateway::error::{ReceiveMessageError, ReceiveMessageErrorType};
use twilight_model::channel::Channel;
use twilight_model::channel::permission_overwrite::PermissionOverwrite;
use twilight_model::gateway::payload::incoming::{
    ChannelCreate, ChannelDelete, ChannelUpdate, VoiceStateUpdate,
};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, GuildMarker, UserMarker};
use twilight_model::voice::VoiceState;

/// Re-syncs (new sessions) happen at most this often.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(600);

/// Most bytes of a raw payload kept in its dead letter (a `GUILD_CREATE` of a big
/// guild can be megabytes).
const MAX_KEPT_BYTES: usize = 256 * 1024;

/// A dispatch twilight could not read.
#[derive(Debug)]
pub struct Unreadable {
    /// The raw payload, as received.
    pub raw: String,
    /// Its event name (`t`), when the payload says.
    pub event: Option<String>,
    /// Why twilight refused it (serde's message).
    pub reason: String,
}

impl Unreadable {
    /// The unreadable dispatch `error` is about; `None` for other receive errors.
    pub fn from_error(error: &ReceiveMessageError) -> Option<Self> {
        let ReceiveMessageErrorType::Deserializing { event: raw } = error.kind() else {
            return None;
        };
        let reason =
            std::error::Error::source(error).map_or_else(|| error.to_string(), ToString::to_string);
        let event = serde_json::from_str::<Envelope>(raw).ok().and_then(|e| e.t);
        Some(Self {
            raw: raw.clone(),
            event,
            reason,
        })
    }

    /// The event name for metrics and logs (`unknown` when there is none).
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("unknown")
    }

    /// The dead letter's body (cut at 256 KiB) and reason.
    pub fn dead_letter(&self) -> (&str, String) {
        let mut end = self.raw.len().min(MAX_KEPT_BYTES);
        while !self.raw.is_char_boundary(end) {
            end -= 1;
        }
        let mut reason = format!(
            "gateway dispatch {} unreadable: {}",
            self.name(),
            self.reason
        );
        if end < self.raw.len() {
            let _ = write!(reason, " (payload cut from {} bytes)", self.raw.len());
        }
        (&self.raw[..end], reason)
    }
}

/// What the view needs after an unreadable dispatch.
#[derive(Debug)]
pub enum Recovery {
    /// Read leniently: apply it like any dispatch.
    Read(Box<Event>),
    /// The view does not depend on it.
    Nothing,
    /// The view depends on it and it could not be read: re-sync.
    Resync,
}

/// Reads the fields the tracker needs from an unreadable dispatch.
pub fn recover(unreadable: &Unreadable) -> Recovery {
    let Some(event) = unreadable.event.as_deref() else {
        return Recovery::Nothing;
    };
    let data = || {
        serde_json::from_str::<Envelope>(&unreadable.raw)
            .ok()
            .map(|e| e.d)
    };
    let read = match event {
        "VOICE_STATE_UPDATE" => data()
            .and_then(voice_state)
            .map(|state| Event::VoiceStateUpdate(Box::new(VoiceStateUpdate(state)))),
        "CHANNEL_CREATE" => data()
            .and_then(channel)
            .map(|c| Event::ChannelCreate(Box::new(ChannelCreate(c)))),
        "CHANNEL_UPDATE" => data()
            .and_then(channel)
            .map(|c| Event::ChannelUpdate(Box::new(ChannelUpdate(c)))),
        "CHANNEL_DELETE" => data()
            .and_then(channel)
            .map(|c| Event::ChannelDelete(Box::new(ChannelDelete(c)))),
        // The whole guild, or `@everyone`'s permissions: too much to guess at.
        "GUILD_CREATE" | "GUILD_ROLE_UPDATE" => None,
        _ => return Recovery::Nothing,
    };
    read.map_or(Recovery::Resync, |event| Recovery::Read(Box::new(event)))
}

/// A dispatch's envelope.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    t: Option<String>,
    #[serde(default)]
    d: Value,
}

/// The voice state fields the tracker (and the bot's voice client) read; a null
/// or missing flag is `false`, a missing session id empty.
#[derive(Deserialize)]
struct LenientVoiceState {
    #[serde(default)]
    guild_id: Option<Id<GuildMarker>>,
    #[serde(default)]
    channel_id: Option<Id<ChannelMarker>>,
    user_id: Id<UserMarker>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    deaf: Option<bool>,
    #[serde(default)]
    mute: Option<bool>,
    #[serde(default)]
    self_deaf: Option<bool>,
    #[serde(default)]
    self_mute: Option<bool>,
    #[serde(default)]
    self_stream: Option<bool>,
    #[serde(default)]
    self_video: Option<bool>,
    #[serde(default)]
    suppress: Option<bool>,
}

fn voice_state(data: Value) -> Option<VoiceState> {
    let s: LenientVoiceState = serde_json::from_value(data).ok()?;
    Some(VoiceState {
        channel_id: s.channel_id,
        deaf: s.deaf.unwrap_or(false),
        guild_id: s.guild_id,
        member: None,
        mute: s.mute.unwrap_or(false),
        self_deaf: s.self_deaf.unwrap_or(false),
        self_mute: s.self_mute.unwrap_or(false),
        self_stream: s.self_stream.unwrap_or(false),
        self_video: s.self_video.unwrap_or(false),
        session_id: s.session_id.unwrap_or_default(),
        suppress: s.suppress.unwrap_or(false),
        user_id: s.user_id,
        request_to_speak_timestamp: None,
    })
}

/// The channel fields the tracker reads (id, type, guild, name, parent, user
/// limit, the overwrites that can be read), nulls dropped, into twilight's type.
fn channel(data: Value) -> Option<Channel> {
    let Value::Object(mut fields) = data else {
        return None;
    };
    let mut kept = Map::new();
    for key in [
        "id",
        "type",
        "guild_id",
        "name",
        "parent_id",
        "user_limit",
        "position",
    ] {
        if let Some(value) = fields.remove(key).filter(|v| !v.is_null()) {
            kept.insert(key.into(), value);
        }
    }
    if let Some(Value::Array(overwrites)) = fields.remove("permission_overwrites") {
        let readable: Vec<Value> = overwrites
            .into_iter()
            .filter(|o| serde_json::from_value::<PermissionOverwrite>(o.clone()).is_ok())
            .collect();
        kept.insert("permission_overwrites".into(), Value::Array(readable));
    }
    serde_json::from_value(Value::Object(kept)).ok()
}

/// When the last re-sync happened, so that they stay at most one per interval.
#[derive(Debug)]
pub struct Resyncs {
    interval: Duration,
    last: Option<tokio::time::Instant>,
    pending: bool,
}

impl Resyncs {
    /// At most one re-sync per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            pending: false,
        }
    }

    /// A re-sync is needed (it happens when [`Self::take_due`] allows).
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// Whether a requested re-sync may happen now; if so, it counts as done.
    pub fn take_due(&mut self, now: tokio::time::Instant) -> bool {
        let allowed = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if self.pending && allowed {
            self.pending = false;
            self.last = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(raw: &str) -> Unreadable {
        Unreadable {
            raw: raw.to_owned(),
            event: serde_json::from_str::<Envelope>(raw).unwrap().t,
            reason: "invalid type: null, expected a boolean".into(),
        }
    }

    #[test]
    fn a_voice_state_with_nulls_and_a_member_without_roles_is_read() {
        let raw = r#"{"op":0,"s":9,"t":"VOICE_STATE_UPDATE","d":{"guild_id":"1","channel_id":"2","user_id":"3","session_id":"x","deaf":false,"mute":false,"self_deaf":false,"self_mute":true,"self_stream":null,"self_video":false,"suppress":false,"member":{"user":{"id":"3"}},"request_to_speak_timestamp":null}}"#;
        let Recovery::Read(event) = recover(&unreadable(raw)) else {
            panic!("read")
        };
        let Event::VoiceStateUpdate(update) = *event else {
            panic!("{event:?}")
        };
        assert_eq!(update.0.user_id.get(), 3);
        assert_eq!(update.0.channel_id.map(Id::get), Some(2));
        assert!(update.0.self_mute && !update.0.self_stream);
    }

    #[test]
    fn a_channel_with_an_unreadable_field_is_read() {
        let raw = r#"{"op":0,"s":9,"t":"CHANNEL_CREATE","d":{"id":"5","type":2,"guild_id":"1","name":"Table","user_limit":4,"flags":"nonsense","permission_overwrites":[{"id":"1","type":0,"allow":"0","deny":"1024"},{"id":"7"}]}}"#;
        let Recovery::Read(event) = recover(&unreadable(raw)) else {
            panic!("read")
        };
        let Event::ChannelCreate(channel) = *event else {
            panic!("{event:?}")
        };
        assert_eq!(channel.0.id.get(), 5);
        assert_eq!(
            channel.0.permission_overwrites.as_ref().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn what_cannot_be_read_asks_for_a_resync_unless_the_view_ignores_it() {
        let no_user = r#"{"op":0,"t":"VOICE_STATE_UPDATE","d":{"channel_id":"2"}}"#;
        assert!(matches!(recover(&unreadable(no_user)), Recovery::Resync));
        let guild = r#"{"op":0,"t":"GUILD_CREATE","d":{"id":"1"}}"#;
        assert!(matches!(recover(&unreadable(guild)), Recovery::Resync));
        let presence = r#"{"op":0,"t":"PRESENCE_UPDATE","d":{}}"#;
        assert!(matches!(recover(&unreadable(presence)), Recovery::Nothing));
    }

    #[test]
    fn resyncs_are_rate_limited() {
        let start = tokio::time::Instant::now();
        let mut resyncs = Resyncs::new(Duration::from_secs(600));
        assert!(!resyncs.take_due(start), "none requested");
        resyncs.request();
        assert!(resyncs.take_due(start));
        resyncs.request();
        assert!(!resyncs.take_due(start + Duration::from_secs(599)));
        assert!(resyncs.take_due(start + Duration::from_secs(600)));
        assert!(!resyncs.take_due(start + Duration::from_secs(2000)), "done");
    }

    #[test]
    fn a_huge_payload_is_cut_in_its_dead_letter() {
        let raw = format!(r#"{{"t":"GUILD_CREATE","d":"{}"}}"#, "é".repeat(200_000));
        let unreadable = unreadable(&raw);
        let (body, reason) = unreadable.dead_letter();
        assert!(body.len() <= MAX_KEPT_BYTES);
        assert!(reason.contains("cut from"), "{reason}");
        assert!(reason.contains("GUILD_CREATE"), "{reason}");
    }
}
