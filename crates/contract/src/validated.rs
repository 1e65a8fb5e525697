//! Small validated values of the contract: a room name and a voice user limit.
//!
//! They are checked when they are built or deserialised, so a value of these types
//! is always one Discord accepts and code holding one need not check again.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{ROOM_NAME_MAX_CHARS, USER_LIMIT_MAX};

/// A voice channel name: 1 to 100 characters, not blank.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomName(String);

/// A string of 1 to 100 characters that is not blank.
impl schemars::JsonSchema for RoomName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RoomName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A voice channel name: 1 to 100 characters, not blank.",
            "type": "string",
            "minLength": 1,
            "maxLength": ROOM_NAME_MAX_CHARS,
            "pattern": "\\S",
        })
    }
}

impl RoomName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomName {
    type Error = &'static str;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let chars = name.chars().count();
        if name.trim().is_empty() {
            Err("name must not be empty")
        } else if chars > ROOM_NAME_MAX_CHARS {
            Err("name must be at most 100 characters")
        } else {
            Ok(Self(name))
        }
    }
}

impl TryFrom<&str> for RoomName {
    type Error = &'static str;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        Self::try_from(name.to_owned())
    }
}

impl From<RoomName> for String {
    fn from(name: RoomName) -> Self {
        name.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A voice channel's user limit, 0 (unlimited) to 99.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct UserLimit(u8);

/// An integer from 0 (unlimited) to 99.
impl schemars::JsonSchema for UserLimit {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UserLimit".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How many users may join a voice channel: 0 (unlimited) to 99.",
            "type": "integer",
            "minimum": 0,
            "maximum": USER_LIMIT_MAX,
        })
    }
}

impl UserLimit {
    /// No limit on how many users may join.
    pub const UNLIMITED: Self = Self(0);

    /// The limit as a number (0 = unlimited).
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// Unlimited, the limit of a channel that sets none.
impl Default for UserLimit {
    fn default() -> Self {
        Self::UNLIMITED
    }
}

impl TryFrom<u8> for UserLimit {
    type Error = &'static str;

    fn try_from(limit: u8) -> Result<Self, Self::Error> {
        if limit > USER_LIMIT_MAX {
            Err("userLimit must be between 0 and 99")
        } else {
            Ok(Self(limit))
        }
    }
}

impl From<UserLimit> for u8 {
    fn from(limit: UserLimit) -> Self {
        limit.0
    }
}

impl fmt::Debug for UserLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_name_bounds() {
        assert!(RoomName::try_from("a").is_ok());
        assert!(RoomName::try_from("é".repeat(100)).is_ok());
        assert!(RoomName::try_from("é".repeat(101)).is_err());
        assert!(RoomName::try_from("").is_err());
        assert!(RoomName::try_from("   ").is_err());
        assert!(serde_json::from_str::<RoomName>("\"\"").is_err());
    }

    #[test]
    fn user_limit_bounds() {
        assert_eq!(UserLimit::try_from(99).unwrap().get(), 99);
        assert!(UserLimit::try_from(100).is_err());
        assert!(serde_json::from_str::<UserLimit>("100").is_err());
        assert!(serde_json::from_str::<UserLimit>("-1").is_err());
        assert!(serde_json::from_str::<UserLimit>("4").is_ok());
    }
}
