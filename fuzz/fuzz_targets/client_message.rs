//! The browser's WebSocket text frames (docs/spec.md §6, §12) through the parse the
//! hub runs on every frame (`ClientMessage::parse`, before and after `auth`).
//!
//! Checks (docs/reliability.md, "Fuzzing"): a frame over 16 KiB is always refused as
//! too large, whatever it holds, and one over 4 KiB unless it is an `rtc.signal`;
//! anything accepted (re-serialised) parses back to the same message; an accepted
//! input is a JSON object whose `type` is the message's (`auth` or `rtc.signal`) and
//! whose fields are the message's; the `Debug` form never shows an `auth` token.

#![no_main]

use coven_contract::limits::{CLIENT_MESSAGE_MAX_BYTES, RTC_SIGNAL_MAX_BYTES};
use coven_contract::{ClientMessage, ContractError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = ClientMessage::parse(&text);
    if text.len() > RTC_SIGNAL_MAX_BYTES {
        assert_eq!(
            parsed,
            Err(ContractError::TooLarge {
                limit: RTC_SIGNAL_MAX_BYTES
            })
        );
        return;
    }
    let message = match parsed {
        Ok(message) => message,
        Err(ContractError::Malformed(_)) => return,
        Err(ContractError::TooLarge { limit }) => {
            assert_eq!(limit, CLIENT_MESSAGE_MAX_BYTES);
            assert!(text.len() > CLIENT_MESSAGE_MAX_BYTES, "refused as too large");
            return;
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text).expect("accepted input is JSON");

    let again = serde_json::to_string(&message).expect("client messages serialise");
    assert_eq!(
        ClientMessage::parse(&again).as_ref(),
        Ok(&message),
        "{again}"
    );

    match &message {
        ClientMessage::Auth { token, last_seq } => {
            assert_eq!(value["type"], "auth");
            assert!(text.len() <= CLIENT_MESSAGE_MAX_BYTES, "an auth over 4 KiB");
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
        }
        ClientMessage::RtcSignal(signal) => {
            assert_eq!(value["type"], "rtc.signal");
            assert_eq!(value["to"].as_str(), Some(signal.to.to_string().as_str()));
            assert_eq!(
                value["channelId"].as_str(),
                Some(signal.channel_id.to_string().as_str())
            );
            assert_eq!(value["data"].as_object(), Some(&signal.data));
        }
    }
});
