//! Snowflake ids as they arrive in every contract payload: any string either parses
//! to the id whose canonical spelling it is, or is refused for the right reason.
//!
//! Checks (docs/reliability.md, "Fuzzing"): `parse(s)` then `to_string()` gives `s`
//! back byte for byte (one spelling per id); acceptance matches an independent
//! oracle (non-empty ASCII digits, no leading zero, non-zero, fits in `u64`) and each
//! refusal names the oracle's reason; the JSON form accepts exactly the same strings,
//! as strings only, and serialises back to the same text.

#![no_main]

use coven_contract::{Snowflake, SnowflakeError};
use libfuzzer_sys::fuzz_target;

/// What the contract says of `s`, computed without the crate's parser.
fn oracle(s: &str) -> Result<u64, SnowflakeError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(SnowflakeError::Empty);
    }
    if bytes[0] == b'0' {
        return Err(SnowflakeError::LeadingZero);
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err(SnowflakeError::NotDecimal);
    }
    let mut value: u64 = 0;
    for &b in bytes {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(SnowflakeError::Overflow)?;
    }
    Ok(value)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = text.parse::<Snowflake>();
    assert_eq!(parsed.map(Snowflake::get), oracle(text), "{text:?}");
    if let Ok(id) = parsed {
        assert_eq!(id.to_string(), text, "the canonical spelling round-trips");
        assert_eq!(format!("{id:?}"), text);
        assert_eq!(Snowflake::new(id.get()), Some(id));
    }

    // The same text as a JSON string: accepted exactly when the plain text is.
    let json = serde_json::to_string(text).expect("strings serialise");
    let from_json = serde_json::from_str::<Snowflake>(&json);
    assert_eq!(from_json.is_ok(), parsed.is_ok(), "{json}");
    if let Ok(id) = from_json {
        assert_eq!(serde_json::to_string(&id).unwrap(), json);
    }
    // Never a bare JSON number, whatever the digits.
    if parsed.is_ok() {
        assert!(serde_json::from_str::<Snowflake>(text).is_err());
    }

    // Arbitrary JSON text: whatever parses is a canonical id and round-trips.
    if let Ok(id) = serde_json::from_slice::<Snowflake>(data) {
        let back: Snowflake = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(back, id);
    }
});
