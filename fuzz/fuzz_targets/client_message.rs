//! The browser's WebSocket text frames (docs/spec.md §6) through the parse the hub
//! runs on every frame (`ClientMessage::parse`, before and after `auth`).
//!
//! Checks (docs/reliability.md, "Fuzzing"): a frame over 4 KiB is always refused
//! as too large, whatever it holds; anything accepted is an `auth` whose JSON
//! (re-serialised) parses back to the same message and stays under the limit when
//! the input did; an accepted input is a JSON object whose `type` is `"auth"`; the
//! `Debug` form never shows the token.

#![no_main]

use coven_contract::limits::CLIENT_MESSAGE_MAX_BYTES;
use coven_contract::{ClientMessage, ContractError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = ClientMessage::parse(&text);
    if text.len() > CLIENT_MESSAGE_MAX_BYTES {
        assert_eq!(
            parsed,
            Err(ContractError::TooLarge {
                limit: CLIENT_MESSAGE_MAX_BYTES
            })
        );
        return;
    }
    let message = match parsed {
        Ok(message) => message,
        Err(ContractError::Malformed(_)) => return,
        Err(other) => panic!("a frame under the limit refused as {other:?}"),
    };
    let value: serde_json::Value = serde_json::from_str(&text).expect("accepted input is JSON");
    assert_eq!(value["type"], "auth", "only `auth` is a client message");

    let again = serde_json::to_string(&message).expect("client messages serialise");
    assert_eq!(
        ClientMessage::parse(&again).as_ref(),
        Ok(&message),
        "{again}"
    );

    let ClientMessage::Auth { token, last_seq } = &message;
    assert_eq!(value["token"].as_str(), Some(token.as_str()));
    assert_eq!(
        value.get("lastSeq").and_then(serde_json::Value::as_u64),
        *last_seq
    );
    let debug = format!("{message:?}");
    // A token that is not a fragment of the redacted form itself must not appear.
    let template = format!(
        "{:?}",
        ClientMessage::Auth {
            token: String::new(),
            last_seq: *last_seq
        }
    );
    if !template.contains(token.as_str()) {
        assert!(!debug.contains(token.as_str()), "Debug shows the token");
    }
});
