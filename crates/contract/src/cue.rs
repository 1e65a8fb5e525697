//! The audio cues the bot can play in a room (docs/spec.md §7), named once.
//!
//! A browser reads the list from `GET /api/cues` ([`CueList`]) and asks for one by
//! name with `POST /api/rooms/{channelId}/cue` `{"cue":"turn_chime"}`. The hub
//! refuses a name that is not a [`Cue`] before it contacts the worker; the worker
//! receives the name in [`BotCommandBody`](crate::internal::BotCommandBody), maps it
//! back with [`Cue::from_name`] and plays the sound `coven_discord` synthesises for
//! it. A new cue is one variant here and its sound there; the page, the hub and the
//! worker follow (docs/contract.md, "The bot's cues").

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A named audio cue, serialised as its wire name (`"turn_chime"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cue {
    /// Two rising notes, 400 ms: "your turn".
    TurnChime,
    /// One short blip, 100 ms: a timer tick.
    TimerTick,
    /// Three beeps, 600 ms: the timer ran out.
    TimerEnd,
}

impl Cue {
    /// Every cue, in the order `GET /api/cues` lists them.
    pub const ALL: [Self; 3] = [Self::TurnChime, Self::TimerTick, Self::TimerEnd];

    /// The cue's wire name (`turn_chime`, `timer_tick`, `timer_end`), as serde writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TurnChime => "turn_chime",
            Self::TimerTick => "timer_tick",
            Self::TimerEnd => "timer_end",
        }
    }

    /// The cue with this wire name, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|cue| cue.name() == name)
    }

    /// A short human label for a button (`Turn chime`, …).
    pub const fn label(self) -> &'static str {
        match self {
            Self::TurnChime => "Turn chime",
            Self::TimerTick => "Timer tick",
            Self::TimerEnd => "Timer end",
        }
    }

    /// How long the cue plays.
    pub const fn duration(self) -> Duration {
        Duration::from_millis(match self {
            Self::TurnChime => 400,
            Self::TimerTick => 100,
            Self::TimerEnd => 600,
        })
    }

    /// Every wire name, comma-separated (for error messages).
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for Cue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of [`CueList`]: `{"name":"turn_chime","label":"Turn chime","durationMs":400}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CueInfo {
    /// The name to send in `POST /api/rooms/{channelId}/cue`.
    pub name: Cue,
    /// A label for a button.
    pub label: String,
    /// How long the cue plays, in milliseconds.
    pub duration_ms: u64,
}

impl From<Cue> for CueInfo {
    fn from(cue: Cue) -> Self {
        Self {
            name: cue,
            label: cue.label().to_owned(),
            duration_ms: u64::try_from(cue.duration().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The body of `GET /api/cues`: `{"cues":[{"name":"turn_chime",…},…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CueList {
    /// Every cue the bot can play, in [`Cue::ALL`] order.
    pub cues: Vec<CueInfo>,
}

impl CueList {
    /// The list of every [`Cue`].
    pub fn all() -> Self {
        Self {
            cues: Cue::ALL.into_iter().map(CueInfo::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_writes_the_wire_name() {
        for cue in Cue::ALL {
            assert_eq!(serde_json::to_value(cue).unwrap(), cue.name());
            assert_eq!(
                serde_json::from_value::<Cue>(cue.name().into()).unwrap(),
                cue
            );
            assert_eq!(Cue::from_name(cue.name()), Some(cue));
            assert_eq!(cue.to_string(), cue.name());
        }
        for unknown in ["chime", "air_horn", "TurnChime", ""] {
            assert_eq!(Cue::from_name(unknown), None, "{unknown}");
        }
        assert_eq!(Cue::names(), "turn_chime, timer_tick, timer_end");
    }

    #[test]
    fn the_list_keeps_its_shape() {
        let list = serde_json::to_value(CueList::all()).unwrap();
        assert_eq!(
            list,
            serde_json::json!({"cues": [
                {"name": "turn_chime", "label": "Turn chime", "durationMs": 400},
                {"name": "timer_tick", "label": "Timer tick", "durationMs": 100},
                {"name": "timer_end", "label": "Timer end", "durationMs": 600},
            ]})
        );
        let back: CueList = serde_json::from_value(list).unwrap();
        assert_eq!(back, CueList::all());
    }
}
