//! The internal webhook as the hub receives it (docs/spec.md §5): the
//! `X-Hub-Timestamp` / `X-Hub-Signature` headers over the raw body, checked by
//! `verify_webhook` (here at a fixed clock), then the body parsed as an `Event`.
//!
//! Input layout (`coven_fuzz::Input`): a mask of the four secrets the verifier
//! accepts; who signs (one of the four, or an outsider); the clock skew (`i16`, s);
//! how each header is then sent (as signed, missing, raw, one byte replaced), with
//! the replaced byte's position and value for each; then the raw timestamp and
//! signature values as parts, and the body (the rest). Checks
//! (docs/reliability.md, "Fuzzing"):
//! - soundness: whatever is accepted carries a timestamp within ±60 s and an HMAC of
//!   `"{timestamp}.{body}"` under one of the verifier's secrets, recomputed here
//!   independently; a signature made with any other key is never accepted;
//! - completeness: an untouched signature by an accepted secret within the window is
//!   accepted, and the body comes back unchanged;
//! - the refusal reason is the one the header shapes call for;
//! - an accepted body that parses as an event round-trips (parse, serialise, parse).

#![no_main]

use coven_contract::internal::fuzzing::verify_webhook_at;
use coven_contract::signature::{
    MAX_CLOCK_SKEW_SECS, SIGNATURE_HEADER, SignatureError, Signer, TIMESTAMP_HEADER, Verifier,
};
use coven_contract::{Event, Secret};
use coven_fuzz::Input;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const NOW: u64 = 1_730_000_000;
/// The secrets a verifier may hold (`HUB_SECRET` is a list: rotation).
const SECRETS: [&str; 4] = [
    "s3cret",
    "previous-secret",
    "x",
    "a much longer secret of 64 bytes, as an operator might choose..",
];
const OUTSIDER: &str = "not-a-hub-secret";

/// How a header is sent.
enum Header<'a> {
    Signed,
    Missing,
    Raw(&'a [u8]),
    Flipped { at: u8, byte: u8 },
}

fn header(signed: &str, how: &Header<'_>) -> Option<HeaderValue> {
    match how {
        Header::Signed => Some(HeaderValue::from_str(signed).expect("signed headers are ASCII")),
        Header::Missing => None,
        Header::Raw(bytes) => HeaderValue::from_bytes(bytes).ok(),
        Header::Flipped { at, byte } => {
            let mut bytes = signed.as_bytes().to_vec();
            let at = usize::from(*at) % bytes.len();
            bytes[at] = *byte;
            HeaderValue::from_bytes(&bytes).ok()
        }
    }
}

fn hmac_hex(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mask = input.byte();
    let secrets: Vec<&str> = (0..4)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| SECRETS[i])
        .collect();
    let signing_secret = SECRETS
        .get(usize::from(input.byte()))
        .copied()
        .unwrap_or(OUTSIDER);
    let outsider = !secrets.contains(&signing_secret);
    let signed_at = NOW.wrapping_add_signed(i64::from(input.i16()));
    let modes = [input.choice(4), input.choice(4)];
    let flips = [(input.byte(), input.byte()), (input.byte(), input.byte())];
    let raws = [input.part(), input.part()];
    let body = input.rest();
    let how = |i: usize| match modes[i] {
        0 => Header::Signed,
        1 => Header::Missing,
        2 => Header::Raw(raws[i]),
        _ => Header::Flipped {
            at: flips[i].0,
            byte: flips[i].1,
        },
    };
    let (timestamp_how, signature_how) = (how(0), how(1));

    let signed = Signer::new(Secret::new(signing_secret)).sign(signed_at, body);
    let mut headers = HeaderMap::new();
    let timestamp = header(&signed.timestamp, &timestamp_how);
    let signature = header(&signed.signature, &signature_how);
    if let Some(value) = &timestamp {
        headers.insert(HeaderName::from_static(TIMESTAMP_HEADER), value.clone());
    }
    if let Some(value) = &signature {
        headers.insert(HeaderName::from_static(SIGNATURE_HEADER), value.clone());
    }
    let verifier = Verifier::new(secrets.iter().map(|s| Secret::new(*s)).collect());
    let result = verify_webhook_at(&verifier, &headers, body, NOW);

    let text =
        |value: &Option<HeaderValue>| value.as_ref().map(|v| v.to_str().unwrap_or("").to_owned());
    let (timestamp, signature) = (text(&timestamp), text(&signature));
    match &result {
        Ok(verified) => {
            assert_eq!(verified.body(), body);
            let ts = timestamp.expect("accepted without a timestamp");
            let sig = signature.expect("accepted without a signature");
            assert!(!ts.is_empty() && ts.len() <= 20 && ts.bytes().all(|b| b.is_ascii_digit()));
            let at: u64 = ts.parse().expect("accepted timestamp is a u64");
            assert!(
                at.abs_diff(NOW) <= MAX_CLOCK_SKEW_SECS,
                "accepted a stale timestamp"
            );
            let hex = sig
                .strip_prefix("sha256=")
                .expect("accepted without sha256=");
            assert!(
                secrets.iter().any(|s| hmac_hex(s, &ts, body) == hex),
                "accepted a MAC that no accepted secret made"
            );
            // A raw header may carry a genuine MAC (a captured one); anything derived
            // from the outsider's signature must not pass.
            if !matches!(signature_how, Header::Raw(_)) {
                assert!(
                    !outsider,
                    "accepted a request signed with an outsider's key"
                );
            }
        }
        Err(error) => {
            let untouched =
                matches!(timestamp_how, Header::Signed) && matches!(signature_how, Header::Signed);
            let genuine = untouched && !outsider && signed_at.abs_diff(NOW) <= MAX_CLOCK_SKEW_SECS;
            assert!(!genuine, "a genuine fresh signature was refused: {error:?}");
            match (&timestamp, &signature) {
                (None, _) => assert_eq!(*error, SignatureError::MissingTimestamp),
                (Some(_), None) => assert_eq!(*error, SignatureError::MissingSignature),
                _ => {}
            }
        }
    }

    // What the hub does next with an accepted body.
    if let Ok(verified) = result
        && let Ok(event) = Event::from_verified_body(verified)
    {
        let again: Event =
            serde_json::from_slice(&event.to_webhook_body()).expect("a serialised event parses");
        assert_eq!(again, event);
    }
});
