//! The hub's signed requests to the worker (docs/spec.md §8, `docs/contract.md`):
//! `X-Hub-Timestamp`, `X-Hub-Request-Id` and `X-Hub-Request-Signature` over method,
//! path, timestamp, id and body, each id accepted once, checked by `verify_request`
//! (here at a fixed clock).
//!
//! Input layout (`coven_fuzz::Input`): the receiver's replay-cache capacity (0–7);
//! up to four requests, each a method, a path, a key (two accepted secrets or an
//! outsider's), a clock skew (`i16`, s) and an id (`u16`, so ids collide); up to 32
//! sends, each naming a request, how far the receiver's clock moves on (0–15 s) and
//! a tampering (none, method, path, body, a header replaced or dropped, one header
//! byte replaced); then the requests' bodies as parts and the tampering bytes (the
//! rest). Checks (docs/reliability.md, "Fuzzing"):
//! - soundness: nothing is accepted unless the received method, path, timestamp, id
//!   and body are exactly what an accepted secret signed within ±60 s (the MAC is
//!   recomputed here from the documented signing string);
//! - completeness: an untouched request signed by an accepted secret in the window is
//!   accepted the first time;
//! - replay: the same id is never accepted twice, and a full cache refuses with
//!   `Busy` rather than forget a live id; the cache never holds more than its capacity.

#![no_main]

use std::collections::HashMap;

use coven_contract::Secret;
use coven_contract::internal::fuzzing::{sign_request_at, verify_request_at};
use coven_contract::internal::{
    REQUEST_ID_HEADER, REQUEST_SIGNATURE_HEADER, RequestError, RequestVerifier,
};
use coven_contract::signature::{MAX_CLOCK_SKEW_SECS, Signer, TIMESTAMP_HEADER, Verifier};
use coven_fuzz::Input;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const NOW: u64 = 1_730_000_000;
const SECRETS: [&str; 2] = ["current-secret", "previous-secret"];
const OUTSIDER: &str = "outsider-secret";
const PATHS: [&str; 4] = [
    "/commands/join",
    "/commands/leave",
    "/commands/cue",
    "/voice-view",
];

struct Request<'a> {
    method: Method,
    path: &'static str,
    body: &'a [u8],
    signed_at: u64,
    id: String,
    genuine_key: bool,
    headers: HeaderMap,
}

fn method(n: u8) -> Method {
    [Method::GET, Method::POST, Method::PUT, Method::DELETE][usize::from(n % 4)].clone()
}

fn header_name(which: u8) -> HeaderName {
    HeaderName::from_static(
        [
            TIMESTAMP_HEADER,
            REQUEST_ID_HEADER,
            REQUEST_SIGNATURE_HEADER,
        ][usize::from(which % 3)],
    )
}

fn mac_hex(secret: &str, method: &Method, path: &str, ts: &str, id: &str, body: &[u8]) -> String {
    let text = format!(
        "coven-request-v1\n{}\n{path}\n{ts}\n{id}\n{}",
        method.as_str(),
        hex::encode(Sha256::digest(body))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let capacity = usize::from(input.choice(8));
    let specs: Vec<_> = (0..=input.choice(4))
        .map(|_| {
            (
                input.byte(),
                input.byte(),
                input.byte(),
                input.i16(),
                input.u16(),
            )
        })
        .collect();
    let sends: Vec<_> = (0..input.choice(33))
        .map(|_| {
            (
                input.byte(),
                input.choice(16),
                input.choice(7),
                input.byte(),
                input.byte(),
            )
        })
        .collect();
    let requests: Vec<Request<'_>> = specs
        .iter()
        .map(|&(m, path, key, skew, id)| {
            let secret = SECRETS.get(usize::from(key)).copied().unwrap_or(OUTSIDER);
            let signed_at = NOW.wrapping_add_signed(i64::from(skew));
            let id = u128::from(id) * 0x0001_0001_0001_0001_0001_0001_0001_0001;
            let (method, path, body) = (method(m), PATHS[usize::from(path % 4)], input.part());
            let headers = sign_request_at(
                &Signer::new(Secret::new(secret)),
                &method,
                path,
                body,
                signed_at,
                id,
            );
            Request {
                method,
                path,
                body,
                signed_at,
                id: format!("{id:032x}"),
                genuine_key: key < 2,
                headers,
            }
        })
        .collect();
    let tampering = input.rest();

    let verifier = RequestVerifier::with_capacity(
        Verifier::new(SECRETS.iter().map(|s| Secret::new(*s)).collect()),
        capacity,
    );
    // Each accepted id and when it expires; the receiver's clock only moves forward.
    let mut accepted_ids: HashMap<String, u64> = HashMap::new();
    let mut now = NOW;
    for (which, later, tamper, arg, byte) in sends {
        let request = &requests[usize::from(which) % requests.len()];
        now += u64::from(later);
        let mut m = request.method.clone();
        let mut path = request.path.to_owned();
        let mut body = request.body.to_vec();
        let mut headers = request.headers.clone();
        match tamper {
            0 | 1 => {}
            2 => m = method(arg),
            3 => path = String::from_utf8_lossy(tampering).into_owned(),
            4 => body = tampering.to_vec(),
            5 => {
                match HeaderValue::from_bytes(tampering) {
                    Ok(value) => headers.insert(header_name(arg), value),
                    Err(_) => headers.remove(header_name(arg)),
                };
            }
            _ => {
                let name = header_name(arg);
                let mut bytes = headers[&name].as_bytes().to_vec();
                let at = usize::from(byte) % bytes.len();
                bytes[at] = tampering.first().copied().unwrap_or(b'0');
                match HeaderValue::from_bytes(&bytes) {
                    Ok(value) => headers.insert(name, value),
                    Err(_) => headers.remove(name),
                };
            }
        }
        let untouched = m == request.method
            && path == request.path
            && body == request.body
            && headers == request.headers;
        let result = verify_request_at(&verifier, &m, &path, &headers, &body, now);
        assert!(
            verifier.seen().len() <= capacity,
            "the replay cache outgrew its capacity"
        );

        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match result {
            Ok(verified) => {
                assert_eq!(verified.body(), &body[..]);
                let ts = text(TIMESTAMP_HEADER).expect("accepted without a timestamp");
                let id = text(REQUEST_ID_HEADER).expect("accepted without an id");
                let sig = text(REQUEST_SIGNATURE_HEADER).expect("accepted without a signature");
                let at: u64 = ts.parse().expect("accepted timestamp is a u64");
                assert!(
                    at.abs_diff(now) <= MAX_CLOCK_SKEW_SECS,
                    "accepted a stale request"
                );
                let hex = sig.strip_prefix("v1=").expect("accepted without v1=");
                assert!(
                    SECRETS
                        .iter()
                        .any(|s| mac_hex(s, &m, &path, &ts, &id, &body) == hex),
                    "accepted a MAC that no accepted secret made over what was received"
                );
                assert!(
                    request.genuine_key || !untouched,
                    "accepted an outsider's request"
                );
                let live = accepted_ids.get(&id).is_some_and(|expires| *expires >= now);
                assert!(!live, "the same id was accepted twice while live");
                accepted_ids.insert(id, at + MAX_CLOCK_SKEW_SECS);
            }
            Err(error) => {
                let genuine = untouched
                    && request.genuine_key
                    && request.signed_at.abs_diff(now) <= MAX_CLOCK_SKEW_SECS;
                let live = accepted_ids
                    .get(&request.id)
                    .is_some_and(|expires| *expires >= now);
                if genuine && live {
                    assert_eq!(error, RequestError::Replayed);
                } else if genuine {
                    assert_eq!(
                        error,
                        RequestError::Busy,
                        "a genuine, unused, fresh request was refused"
                    );
                    assert_eq!(
                        verifier.seen().len(),
                        capacity,
                        "Busy with room in the cache"
                    );
                }
            }
        }
    }
});
