//! Discord snowflake ids, which travel as decimal strings everywhere in the contract.
//!
//! Only the canonical form is accepted: ASCII digits, no sign, no whitespace, no
//! leading zero, a non-zero value that fits in a `u64`. Accepting exactly one
//! spelling per id means that two strings naming the same id are always equal,
//! which matters for idempotency keys and per-channel rules.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A Discord id: a non-zero `u64` written as a decimal string on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(NonZeroU64);

/// Why a string is not a snowflake. The messages never repeat the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnowflakeError {
    /// The string was empty.
    #[error("id is empty")]
    Empty,
    /// The string held something other than ASCII digits.
    #[error("id must contain only decimal digits")]
    NotDecimal,
    /// The string started with `0` (ids are written without leading zeros).
    #[error("id must not start with 0")]
    LeadingZero,
    /// The number does not fit in 64 bits.
    #[error("id does not fit in 64 bits")]
    Overflow,
}

impl Snowflake {
    /// Wraps a raw id; `None` for zero, which Discord never uses.
    pub const fn new(id: u64) -> Option<Self> {
        match NonZeroU64::new(id) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// The id as a number.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl FromStr for Snowflake {
    type Err = SnowflakeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        match bytes.first() {
            None => return Err(SnowflakeError::Empty),
            Some(b'0') => return Err(SnowflakeError::LeadingZero),
            Some(_) => {}
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(SnowflakeError::NotDecimal);
        }
        // All digits and no leading zero: the only possible failure is overflow.
        let id: u64 = s.parse().map_err(|_| SnowflakeError::Overflow)?;
        Self::new(id).ok_or(SnowflakeError::LeadingZero)
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Snowflake> for u64 {
    fn from(id: Snowflake) -> Self {
        id.get()
    }
}

impl From<NonZeroU64> for Snowflake {
    fn from(id: NonZeroU64) -> Self {
        Self(id)
    }
}

impl Serialize for Snowflake {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A decimal string in canonical form (docs/contract.md "Ids"); the range check
/// (at most `u64::MAX`) is beyond what a pattern says.
impl schemars::JsonSchema for Snowflake {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Snowflake".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Discord id: a decimal string, digits only, no leading zero, not \"0\", at most 18446744073709551615.",
            "type": "string",
            "pattern": "^[1-9][0-9]{0,19}$",
            "examples": ["175928847299117063"],
        })
    }
}

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Snowflake;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a snowflake as a decimal string")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Snowflake, E> {
                value.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_ids() {
        assert_eq!("1".parse::<Snowflake>().unwrap().get(), 1);
        let max = u64::MAX.to_string();
        assert_eq!(max.parse::<Snowflake>().unwrap().get(), u64::MAX);
        assert_eq!(
            "175928847299117063".parse::<Snowflake>().unwrap().get(),
            175_928_847_299_117_063
        );
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            ("", SnowflakeError::Empty),
            ("0", SnowflakeError::LeadingZero),
            ("007", SnowflakeError::LeadingZero),
            ("-1", SnowflakeError::NotDecimal),
            ("+1", SnowflakeError::NotDecimal),
            (" 1", SnowflakeError::NotDecimal),
            ("1 ", SnowflakeError::NotDecimal),
            ("1.0", SnowflakeError::NotDecimal),
            ("1e3", SnowflakeError::NotDecimal),
            ("١٢", SnowflakeError::NotDecimal),
            ("18446744073709551616", SnowflakeError::Overflow),
            ("99999999999999999999999", SnowflakeError::Overflow),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Snowflake>(), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn json_is_a_string_only() {
        let id: Snowflake = serde_json::from_str("\"42\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"42\"");
        assert!(serde_json::from_str::<Snowflake>("42").is_err());
        assert!(serde_json::from_str::<Snowflake>("\"0\"").is_err());
        assert!(serde_json::from_str::<Snowflake>("null").is_err());
    }
}
