//! Signing and verifying the hub's requests to the worker: over method, path,
//! timestamp, a unique id and body, each id accepted once (docs/spec.md §8).
//!
//! The webhook's signature (docs/spec.md §5, [`sign_webhook`](super::sign_webhook))
//! covers only `timestamp.body`, so a captured `POST /commands/join` could be sent
//! again within the ±60 s window, or re-aimed at `/commands/leave` (same body).
//! The hub's requests to the worker (`GET /voice-view`, `POST /commands/…`)
//! therefore carry their own headers (`docs/contract.md`, "The hub's requests to
//! the worker"):
//!
//! | header | value |
//! |---|---|
//! | `X-Hub-Timestamp` | Unix seconds, as for the webhook |
//! | `X-Hub-Request-Id` | 32 lowercase hex digits: 128 random bits, new for every request |
//! | `X-Hub-Request-Signature` | `v1=` + lowercase hex of HMAC-SHA256(secret, signing string) |
//!
//! The signing string is five lines after a fixed first one, joined by `\n`:
//! `coven-request-v1`, the method (`POST`), the path from the worker's root
//! (`/commands/join`, whatever prefix the hub's `WORKER_ENDPOINT` has), the
//! timestamp, the id, and the lowercase hex SHA-256 of the raw body. Its first
//! line starts with a letter where the webhook's `"{timestamp}.{body}"` starts
//! with a digit, so neither MAC can stand for the other; and these requests carry
//! no `X-Hub-Signature`, so one cannot be re-aimed at the hub's webhook either.
//!
//! The receiver checks the shapes of the three headers, the clock (±60 s), the MAC
//! against every `HUB_SECRET` (the comparison is the MAC's constant-time
//! `verify_slice`; rotation works as for the webhook), and only then remembers
//! the id in its [`ReplayCache`] until the timestamp leaves the window: the same
//! id again is refused ([`RequestError::Replayed`]), and a cache full of live ids
//! refuses new requests ([`RequestError::Busy`]) rather than forget one.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};

use super::clock::unix_now;
use super::replay::{REPLAY_CACHE_CAPACITY, Refused, ReplayCache};
use crate::Secret;
use crate::signature::{
    MAX_CLOCK_SKEW_SECS, SignatureError, Signer, TIMESTAMP_HEADER, Verified, Verifier,
    parse_timestamp,
};

/// Header carrying the request's unique id (32 lowercase hex digits).
pub const REQUEST_ID_HEADER: &str = "x-hub-request-id";
/// Header carrying `v1=` and the hex MAC over the signing string.
pub const REQUEST_SIGNATURE_HEADER: &str = "x-hub-request-signature";

/// First line of the signing string: the scheme and its version.
const SCHEME: &str = "coven-request-v1";
const SIGNATURE_PREFIX: &str = "v1=";
const MAC_HEX_LEN: usize = 64;
const ID_HEX_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a request to the worker was refused. [`RequestError::reason`] names it for
/// metrics and logs; none of these carry the offending input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The timestamp or the signature is missing or malformed, the timestamp is
    /// outside the window, or the MAC matches no secret (as for the webhook).
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// No `X-Hub-Request-Id` header.
    #[error("missing request id")]
    MissingId,
    /// The id is not 32 lowercase hex digits.
    #[error("malformed request id")]
    MalformedId,
    /// A request with this id was already accepted and its window is still open.
    #[error("request id already used")]
    Replayed,
    /// The receiver remembers as many live ids as it may; it takes no new request
    /// until some expire (answer 503, the sender may retry).
    #[error("too many requests to remember their ids")]
    Busy,
}

impl RequestError {
    /// A short, stable label for metrics and logs.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Signature(error) => error.reason(),
            Self::MissingId => "missing_request_id",
            Self::MalformedId => "malformed_request_id",
            Self::Replayed => "replayed",
            Self::Busy => "replay_cache_full",
        }
    }
}

/// What a receiver verifies requests with: the accepted secrets and the ids it
/// has already accepted. One per receiver, shared by its routes' handlers.
#[derive(Debug)]
pub struct RequestVerifier {
    verifier: Verifier,
    seen: ReplayCache,
}

impl RequestVerifier {
    /// Verifies with `verifier`'s secrets, remembering up to
    /// [`REPLAY_CACHE_CAPACITY`] live ids.
    pub fn new(verifier: Verifier) -> Self {
        Self::with_capacity(verifier, REPLAY_CACHE_CAPACITY)
    }

    /// Verifies with `verifier`'s secrets, remembering up to `capacity` live ids.
    pub fn with_capacity(verifier: Verifier, capacity: usize) -> Self {
        Self {
            verifier,
            seen: ReplayCache::new(capacity),
        }
    }

    /// The ids accepted and still live.
    pub fn seen(&self) -> &ReplayCache {
        &self.seen
    }
}

/// The headers that sign a `method` request to `path` (from the worker's root,
/// e.g. `/commands/join`) with `body`, now, under a fresh random id:
/// `X-Hub-Timestamp`, `X-Hub-Request-Id` and `X-Hub-Request-Signature`. Sign every
/// attempt afresh: a retry with the same headers would be refused as a replay.
pub fn sign_request(signer: &Signer, method: &Method, path: &str, body: &[u8]) -> HeaderMap {
    sign_at(signer, method, path, body, unix_now(), rand::random())
}

/// Checks a received `method` request to `path` (the route the receiver serves,
/// from its root) against its headers and raw `body` now, and remembers its id.
/// A header that is not visible ASCII is refused as malformed, not as missing.
/// On success the body comes back as [`Verified`].
pub fn verify_request<'a>(
    verifier: &RequestVerifier,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<Verified<'a>, RequestError> {
    verify_at(verifier, method, path, headers, body, unix_now())
}

pub(super) fn sign_at(
    signer: &Signer,
    method: &Method,
    path: &str,
    body: &[u8],
    now: u64,
    id: u128,
) -> HeaderMap {
    let timestamp = now.to_string();
    let id = format!("{id:032x}");
    let message = signing_string(method, path, &timestamp, &id, body);
    let mac = mac(signer.secret(), &message).finalize().into_bytes();
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(HeaderName::from_static(TIMESTAMP_HEADER), value(timestamp));
    headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), value(id));
    headers.insert(
        HeaderName::from_static(REQUEST_SIGNATURE_HEADER),
        value(format!("{SIGNATURE_PREFIX}{}", hex::encode(mac))),
    );
    headers
}

pub(super) fn verify_at<'a>(
    verifier: &RequestVerifier,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &'a [u8],
    now: u64,
) -> Result<Verified<'a>, RequestError> {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    let timestamp = text(TIMESTAMP_HEADER).ok_or(SignatureError::MissingTimestamp)?;
    let signature = text(REQUEST_SIGNATURE_HEADER).ok_or(SignatureError::MissingSignature)?;
    let id_text = text(REQUEST_ID_HEADER).ok_or(RequestError::MissingId)?;
    let signed_at = parse_timestamp(timestamp)?;
    let expected = parse_signature(signature)?;
    let id = parse_id(id_text)?;
    if signed_at.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(SignatureError::Stale.into());
    }
    let message = signing_string(method, path, timestamp, id_text, body);
    let matches = verifier
        .verifier
        .secrets()
        .iter()
        .any(|secret| mac(secret, &message).verify_slice(&expected).is_ok());
    if !matches {
        return Err(SignatureError::Mismatch.into());
    }
    // Only now, with the MAC verified, is the id remembered: until the timestamp
    // leaves the window, after which the clock check refuses the request anyway.
    let expires_at = signed_at.saturating_add(MAX_CLOCK_SKEW_SECS);
    verifier
        .seen
        .insert(id, expires_at, now)
        .map_err(|refused| match refused {
            Refused::Replayed => RequestError::Replayed,
            Refused::Full => RequestError::Busy,
        })?;
    Ok(Verified::new(body))
}

/// `coven-request-v1\n{METHOD}\n{path}\n{timestamp}\n{id}\n{hex sha256(body)}`.
fn signing_string(method: &Method, path: &str, timestamp: &str, id: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "{SCHEME}\n{}\n{path}\n{timestamp}\n{id}\n{body_hash}",
        method.as_str()
    )
}

fn mac(secret: &Secret, message: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    mac
}

/// Accepts exactly `v1=` and 64 lowercase hex digits, and decodes them.
fn parse_signature(raw: &str) -> Result<[u8; 32], SignatureError> {
    let digits = raw
        .strip_prefix(SIGNATURE_PREFIX)
        .filter(|digits| lowercase_hex(digits, MAC_HEX_LEN))
        .ok_or(SignatureError::MalformedSignature)?;
    let mut mac = [0_u8; 32];
    hex::decode_to_slice(digits, &mut mac).map_err(|_| SignatureError::MalformedSignature)?;
    Ok(mac)
}

/// Accepts exactly 32 lowercase hex digits: a 128-bit id.
fn parse_id(raw: &str) -> Result<u128, RequestError> {
    if !lowercase_hex(raw, ID_HEX_LEN) {
        return Err(RequestError::MalformedId);
    }
    u128::from_str_radix(raw, 16).map_err(|_| RequestError::MalformedId)
}

fn lowercase_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A header value from what [`sign_at`] produces: digits, hex, `v1=`; always
/// visible ASCII.
fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("request signature headers are visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::{BotCommand, VOICE_VIEW_PATH, sign_webhook, verify_webhook};
    use crate::signature::SIGNATURE_HEADER;

    const NOW: u64 = 1_730_000_000;
    const ID: u128 = 0x0001_0203_0405_0607_0809_0a0b_0c0d_0e0f;
    const BODY: &[u8] = br#"{"channelId":"77"}"#;
    const JOIN: &str = "/commands/join";

    fn signer(secret: &str) -> Signer {
        Signer::new(Secret::new(secret))
    }

    fn verifier(secrets: &[&str]) -> RequestVerifier {
        RequestVerifier::new(Verifier::new(
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        ))
    }

    fn join(id: u128) -> HeaderMap {
        sign_at(&signer("s3cret"), &Method::POST, JOIN, BODY, NOW, id)
    }

    /// Verifies a `POST /commands/join` with `BODY` at `NOW`.
    fn check(verifier: &RequestVerifier, headers: &HeaderMap) -> Result<(), RequestError> {
        verify_at(verifier, &Method::POST, JOIN, headers, BODY, NOW).map(|_| ())
    }

    fn with(headers: &HeaderMap, name: &'static str, text: &str) -> HeaderMap {
        let mut headers = headers.clone();
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(text).unwrap(),
        );
        headers
    }

    #[test]
    fn the_signing_string() {
        let text = signing_string(
            &Method::POST,
            JOIN,
            "1730000000",
            &format!("{ID:032x}"),
            BODY,
        );
        assert_eq!(
            text,
            "coven-request-v1\nPOST\n/commands/join\n1730000000\n\
             000102030405060708090a0b0c0d0e0f\n\
             e9b4c0c6ceaf4188b692eab6c45492e7d4817b86586c9194171ac2f53cacabae"
        );
        let empty = signing_string(&Method::GET, VOICE_VIEW_PATH, "1", "ab", b"");
        assert_eq!(
            empty,
            "coven-request-v1\nGET\n/voice-view\n1\nab\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn known_vector() {
        // Independently computed:
        // printf 'coven-request-v1\nPOST\n/commands/join\n1730000000\n0001…0e0f\n%s' \
        //   "$(printf '{"channelId":"77"}' | sha256sum | cut -d' ' -f1)" \
        //   | openssl dgst -sha256 -hmac s3cret
        let headers = join(ID);
        assert_eq!(headers.len(), 3, "{headers:?}");
        assert_eq!(headers["x-hub-timestamp"], "1730000000");
        assert_eq!(
            headers["x-hub-request-id"],
            "000102030405060708090a0b0c0d0e0f"
        );
        assert_eq!(
            headers["x-hub-request-signature"],
            "v1=97619e3985814d3fbdfd46f031e25cdf4c3a0d26030aefcdd8618d8324351bfc"
        );
        assert!(
            headers.get(SIGNATURE_HEADER).is_none(),
            "no webhook signature"
        );
    }

    #[test]
    fn a_signed_request_verifies_once() {
        let verifier = verifier(&["s3cret"]);
        let headers = sign_request(&signer("s3cret"), &Method::POST, JOIN, BODY);
        let body = verify_request(&verifier, &Method::POST, JOIN, &headers, BODY)
            .unwrap()
            .body();
        assert_eq!(body, BODY);
        assert_eq!(
            verify_request(&verifier, &Method::POST, JOIN, &headers, BODY).map(|_| ()),
            Err(RequestError::Replayed)
        );
        let again = sign_request(&signer("s3cret"), &Method::POST, JOIN, BODY);
        assert_ne!(again[REQUEST_ID_HEADER], headers[REQUEST_ID_HEADER]);
        assert!(verify_request(&verifier, &Method::POST, JOIN, &again, BODY).is_ok());
        assert_eq!(verifier.seen().len(), 2);
    }

    #[test]
    fn every_part_is_signed() {
        let verifier = verifier(&["s3cret"]);
        let headers = join(ID);
        let mismatch = Err(RequestError::Signature(SignatureError::Mismatch));
        let leave = BotCommand::Leave.path();
        let at = |method: &Method, path: &str, headers: &HeaderMap, body: &[u8]| {
            verify_at(&verifier, method, path, headers, body, NOW).map(|_| ())
        };
        assert_eq!(at(&Method::POST, leave, &headers, BODY), mismatch, "path");
        assert_eq!(at(&Method::PUT, JOIN, &headers, BODY), mismatch, "method");
        assert_eq!(at(&Method::POST, JOIN, &headers, b"{}"), mismatch, "body");
        let later = with(&headers, TIMESTAMP_HEADER, &(NOW + 1).to_string());
        assert_eq!(at(&Method::POST, JOIN, &later, BODY), mismatch, "timestamp");
        let other_id = with(&headers, REQUEST_ID_HEADER, &format!("{:032x}", ID + 1));
        assert_eq!(at(&Method::POST, JOIN, &other_id, BODY), mismatch, "id");
        let mut flipped = headers[REQUEST_SIGNATURE_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let last = if flipped.ends_with('0') { "1" } else { "0" };
        flipped.replace_range(flipped.len() - 1.., last);
        let flipped = with(&headers, REQUEST_SIGNATURE_HEADER, &flipped);
        assert_eq!(at(&Method::POST, JOIN, &flipped, BODY), mismatch, "mac");
        // None of the refusals used the id up: the genuine request still passes.
        assert_eq!(at(&Method::POST, JOIN, &headers, BODY), Ok(()));
        assert_eq!(
            at(&Method::POST, leave, &headers, BODY),
            mismatch,
            "re-aimed after use"
        );
        assert_eq!(
            at(&Method::POST, JOIN, &headers, BODY),
            Err(RequestError::Replayed)
        );
    }

    #[test]
    fn the_window_is_sixty_seconds_each_way() {
        let signer = signer("s3cret");
        for (at, ok) in [
            (NOW - 60, true),
            (NOW + 60, true),
            (NOW - 61, false),
            (NOW + 61, false),
        ] {
            let verifier = verifier(&["s3cret"]);
            let headers = sign_at(&signer, &Method::POST, JOIN, BODY, at, ID);
            let result = check(&verifier, &headers);
            assert_eq!(result.is_ok(), ok, "signed at {at}");
            if !ok {
                assert_eq!(result, Err(SignatureError::Stale.into()));
            }
        }
    }

    #[test]
    fn an_id_is_remembered_until_its_window_closes() {
        let verifier = verifier(&["s3cret"]);
        let headers = join(ID);
        let at = |now| verify_at(&verifier, &Method::POST, JOIN, &headers, BODY, now);
        assert!(at(NOW - 60).is_ok());
        assert_eq!(at(NOW).map(|_| ()), Err(RequestError::Replayed));
        assert_eq!(at(NOW + 60).map(|_| ()), Err(RequestError::Replayed));
        assert_eq!(
            at(NOW + 61).map(|_| ()),
            Err(SignatureError::Stale.into()),
            "past the window the clock refuses it"
        );
    }

    #[test]
    fn rotation() {
        let old = sign_at(&signer("old-secret"), &Method::POST, JOIN, BODY, NOW, 1);
        let new = sign_at(&signer("new-secret"), &Method::POST, JOIN, BODY, NOW, 2);
        let mismatch = Err(RequestError::Signature(SignatureError::Mismatch));
        assert_eq!(check(&verifier(&["old-secret"]), &old), Ok(()));
        assert_eq!(check(&verifier(&["old-secret"]), &new), mismatch);
        let during = verifier(&["new-secret", "old-secret"]);
        assert_eq!(check(&during, &old), Ok(()));
        assert_eq!(check(&during, &new), Ok(()));
        assert_eq!(check(&verifier(&["new-secret"]), &old), mismatch);
        assert_eq!(check(&verifier(&["new-secret"]), &new), Ok(()));
        assert_eq!(check(&verifier(&[]), &new), mismatch);
    }

    #[test]
    fn missing_and_malformed_headers() {
        let verifier = verifier(&["s3cret"]);
        let headers = join(ID);
        let without = |name: &str| {
            let mut headers = headers.clone();
            headers.remove(name);
            headers
        };
        assert_eq!(
            check(&verifier, &without(TIMESTAMP_HEADER)),
            Err(SignatureError::MissingTimestamp.into())
        );
        assert_eq!(
            check(&verifier, &without(REQUEST_SIGNATURE_HEADER)),
            Err(SignatureError::MissingSignature.into())
        );
        assert_eq!(
            check(&verifier, &without(REQUEST_ID_HEADER)),
            Err(RequestError::MissingId)
        );
        let id = format!("{ID:032x}");
        for bad in [
            String::new(),
            id[1..].to_owned(),
            format!("{id}0"),
            id.to_uppercase(),
            format!("{}g", &id[1..]),
            format!(" {}", &id[1..]),
        ] {
            assert_eq!(
                check(&verifier, &with(&headers, REQUEST_ID_HEADER, &bad)),
                Err(RequestError::MalformedId),
                "{bad:?}"
            );
        }
        let mac = headers[REQUEST_SIGNATURE_HEADER].to_str().unwrap()[3..].to_owned();
        for bad in [
            mac.clone(),
            format!("sha256={mac}"),
            format!("v2={mac}"),
            format!("v1={}", &mac[1..]),
            format!("v1={}", mac.to_uppercase()),
        ] {
            assert_eq!(
                check(&verifier, &with(&headers, REQUEST_SIGNATURE_HEADER, &bad)),
                Err(SignatureError::MalformedSignature.into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_full_cache_refuses_new_requests() {
        let verifier =
            RequestVerifier::with_capacity(Verifier::new(vec![Secret::new("s3cret")]), 2);
        assert_eq!(check(&verifier, &join(1)), Ok(()));
        assert_eq!(check(&verifier, &join(2)), Ok(()));
        assert_eq!(check(&verifier, &join(3)), Err(RequestError::Busy));
        assert_eq!(RequestError::Busy.reason(), "replay_cache_full");
        assert_eq!(check(&verifier, &join(1)), Err(RequestError::Replayed));
    }

    #[test]
    fn webhook_and_request_signatures_do_not_stand_for_each_other() {
        let verifier = verifier(&["s3cret"]);
        let webhook = sign_webhook(&signer("s3cret"), BODY);
        assert_eq!(
            check(&verifier, &webhook),
            Err(SignatureError::MissingSignature.into()),
            "a webhook's headers are no request signature"
        );
        let request = join(ID);
        let webhook_verifier = Verifier::new(vec![Secret::new("s3cret")]);
        assert_eq!(
            verify_webhook(&webhook_verifier, &request, BODY).map(|_| ()),
            Err(SignatureError::MissingSignature),
            "a request's headers are no webhook signature"
        );
    }
}
