//! The JSON shapes of the contract that cross a network: the hub's frames to
//! browsers (`ServerMessage`: event envelopes, acks, errors, docs/spec.md §4/§6), the
//! webhook's event body (`Event`, docs/spec.md §5), and the internal bodies between
//! hub and worker (`VoiceView`, `BotCommandBody`).
//!
//! The first byte picks the shape, the rest is the JSON text. Checks
//! (docs/reliability.md, "Fuzzing"): whatever parses serialises to JSON that parses
//! back to an equal value, and that JSON is a fixed point (serialising the re-parsed
//! value gives the same text); server messages always carry `"v":1`; an event's
//! `name()` is one of `Event::NAMES` and its JSON `event` member; a verified webhook
//! body over 64 KiB is refused as too large.

#![no_main]

use coven_contract::internal::{BotCommandBody, VoiceView};
use coven_contract::limits::WEBHOOK_BODY_MAX_BYTES;
use coven_contract::signature::{Signer, Verifier};
use coven_contract::{ContractError, Event, Secret, ServerMessage};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `json` as `T`; if it parses, the value must survive a round trip.
fn round_trip<T>(json: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(json).ok()?;
    let text = serde_json::to_string(&value).expect("contract values serialise");
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(back, value, "{text}");
    assert_eq!(
        serde_json::to_string(&back).unwrap(),
        text,
        "not a fixed point"
    );
    Some(value)
}

fn server_message(json: &[u8]) {
    let Ok(text) = std::str::from_utf8(json) else {
        return;
    };
    let parsed = ServerMessage::parse(text);
    let via_serde = round_trip::<ServerMessage>(json);
    assert_eq!(parsed.as_ref().ok(), via_serde.as_ref());
    if let Ok(message) = parsed {
        let out: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
        assert_eq!(out["v"], 1, "every server message carries v:1");
        if let ServerMessage::Event(envelope) = &message {
            assert_eq!(out["event"], envelope.event.name());
        }
    }
}

/// The webhook body through the path the hub takes: verify, then parse.
fn webhook_event(body: &[u8]) {
    const NOW: u64 = 1_730_000_000;
    let secret = Secret::new("fuzz-secret");
    let headers = Signer::new(secret.clone()).sign(NOW, body);
    let verified = Verifier::new(vec![secret])
        .verify(
            Some(&headers.timestamp),
            Some(&headers.signature),
            body,
            NOW,
        )
        .expect("a body signed with the verifier's own secret verifies");
    let parsed = Event::from_verified_body(verified);
    if body.len() > WEBHOOK_BODY_MAX_BYTES {
        assert_eq!(
            parsed,
            Err(ContractError::TooLarge {
                limit: WEBHOOK_BODY_MAX_BYTES
            })
        );
        return;
    }
    assert_eq!(parsed.as_ref().ok(), round_trip::<Event>(body).as_ref());
    if let Ok(event) = parsed {
        assert!(Event::NAMES.contains(&event.name()));
        let out: serde_json::Value = serde_json::from_slice(&event.to_webhook_body()).unwrap();
        assert_eq!(out["event"], event.name());
        assert_eq!(out["payload"]["guildId"], event.guild_id().to_string());
        assert_eq!(out["payload"]["channelId"], event.channel_id().to_string());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => server_message(json),
        1 => webhook_event(json),
        2 => {
            round_trip::<VoiceView>(json);
        }
        _ => {
            round_trip::<BotCommandBody>(json);
        }
    }
});
