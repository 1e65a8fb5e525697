//! HMAC-SHA256 signatures of the internal webhook (docs/spec.md §5).
//!
//! The signer puts `X-Hub-Timestamp: <unix seconds>` and
//! `X-Hub-Signature: sha256=<64 lowercase hex>` on a request, where the MAC covers
//! `"{timestamp}.{raw body}"`. The verifier accepts a request when the timestamp is
//! within ±60 s of its clock and the MAC matches any configured secret, so secrets
//! can be rotated: add the new one to every verifier, switch signers to it, then
//! drop the old one.
//!
//! Both header values are checked for their exact shape before any MAC is computed,
//! the comparison is the MAC's own constant-time `verify_slice`, and a successful
//! verification returns [`Verified`], the only input from which
//! [`Event::from_verified_body`](crate::Event::from_verified_body) parses.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Secret;

/// Header carrying the signing time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-hub-timestamp";
/// Header carrying `sha256=` and the hex MAC.
pub const SIGNATURE_HEADER: &str = "x-hub-signature";
/// Header carrying the event's stable id, identical on every redelivery.
pub const EVENT_ID_HEADER: &str = "x-hub-event-id";
/// How far a timestamp may be from the verifier's clock, either way.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;

const PREFIX: &str = "sha256=";
const MAC_HEX_LEN: usize = 64;
/// `u64::MAX` has 20 digits; anything longer cannot be a valid timestamp.
const TIMESTAMP_MAX_DIGITS: usize = 20;

type HmacSha256 = Hmac<Sha256>;

/// The header values that sign one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// Value of `X-Hub-Timestamp`.
    pub timestamp: String,
    /// Value of `X-Hub-Signature`.
    pub signature: String,
}

/// Why a request's signature was refused. [`SignatureError::reason`] names it
/// for metrics; none of these carry the offending input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Timestamp` header.
    #[error("missing timestamp")]
    MissingTimestamp,
    /// No `X-Hub-Signature` header.
    #[error("missing signature")]
    MissingSignature,
    /// The timestamp is not a plain unsigned decimal number.
    #[error("malformed timestamp")]
    MalformedTimestamp,
    /// The signature is not `sha256=` followed by 64 lowercase hex digits.
    #[error("malformed signature")]
    MalformedSignature,
    /// The timestamp is more than 60 s away from the verifier's clock.
    #[error("timestamp outside the allowed window")]
    Stale,
    /// The MAC matches none of the secrets.
    #[error("signature mismatch")]
    Mismatch,
}

impl SignatureError {
    /// A short, stable label for metrics and logs.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::MissingTimestamp => "missing_timestamp",
            Self::MissingSignature => "missing_signature",
            Self::MalformedTimestamp => "malformed_timestamp",
            Self::MalformedSignature => "malformed_signature",
            Self::Stale => "stale",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Signs requests with one secret (the first of `HUB_SECRET`).
#[derive(Debug, Clone)]
pub struct Signer {
    secret: Secret,
}

impl Signer {
    /// A signer using `secret`.
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }

    /// The headers that sign `body` at `timestamp` (Unix seconds).
    pub fn sign(&self, timestamp: u64, body: &[u8]) -> SignatureHeaders {
        let timestamp = timestamp.to_string();
        let mac = mac(&self.secret, &timestamp, body).finalize().into_bytes();
        SignatureHeaders {
            signature: format!("{PREFIX}{}", hex::encode(mac)),
            timestamp,
        }
    }

    /// The secret this signer uses, for the internal requests' own MAC
    /// ([`crate::internal::sign_request`]).
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }
}

/// Verifies requests against every accepted secret.
///
/// It keeps, next to each secret, an HMAC already keyed with it: keying hashes
/// the two padded key blocks, so a request clones the keyed state instead of
/// paying two SHA-256 compressions again (docs/benchmarks.md, "Ingest").
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Secret>,
    keyed: Vec<HmacSha256>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keyed states are derived from the secrets: never printed either.
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier accepting any of `secrets`. An empty list accepts nothing.
    pub fn new(secrets: Vec<Secret>) -> Self {
        let keyed = secrets.iter().map(keyed).collect();
        Self { secrets, keyed }
    }

    /// Checks the headers of one request against its raw `body` at time `now`
    /// (Unix seconds). On success the body is returned wrapped in [`Verified`].
    pub fn verify<'a>(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &'a [u8],
        now: u64,
    ) -> Result<Verified<'a>, SignatureError> {
        let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
        let signature = signature.ok_or(SignatureError::MissingSignature)?;
        let signed_at = parse_timestamp(timestamp)?;
        let expected = parse_signature(signature)?;
        if signed_at.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
            return Err(SignatureError::Stale);
        }
        let matches = self.keyed.iter().any(|key| {
            signed(key.clone(), timestamp, body)
                .verify_slice(&expected)
                .is_ok()
        });
        if matches {
            Ok(Verified { body })
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Every accepted secret, for the internal requests' own MAC
    /// ([`crate::internal::verify_request`]).
    pub(crate) fn secrets(&self) -> &[Secret] {
        &self.secrets
    }
}

/// A request body whose signature has been verified.
#[derive(Debug, Clone, Copy)]
pub struct Verified<'a> {
    body: &'a [u8],
}

impl<'a> Verified<'a> {
    /// Wraps a body whose signature this crate has just checked (the internal
    /// requests' verifier).
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self { body }
    }

    /// The verified raw bytes.
    pub fn body(self) -> &'a [u8] {
        self.body
    }
}

/// An HMAC keyed with `secret`, before any input.
fn keyed(secret: &Secret) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts keys of any length")
}

/// The MAC of `timestamp.body` with `secret`.
fn mac(secret: &Secret, timestamp: &str, body: &[u8]) -> HmacSha256 {
    signed(keyed(secret), timestamp, body)
}

/// `mac` fed `timestamp.body`: the signed message (docs/spec.md §5).
fn signed(mut mac: HmacSha256, timestamp: &str, body: &[u8]) -> HmacSha256 {
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Accepts only ASCII digits (no sign, no spaces, no exponent) that fit in a `u64`.
pub(crate) fn parse_timestamp(raw: &str) -> Result<u64, SignatureError> {
    let plain = !raw.is_empty()
        && raw.len() <= TIMESTAMP_MAX_DIGITS
        && raw.bytes().all(|b| b.is_ascii_digit());
    if !plain {
        return Err(SignatureError::MalformedTimestamp);
    }
    raw.parse().map_err(|_| SignatureError::MalformedTimestamp)
}

/// Accepts exactly `sha256=` and 64 lowercase hex digits, and decodes them.
fn parse_signature(raw: &str) -> Result<[u8; 32], SignatureError> {
    let hex_digits = raw
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::MalformedSignature)?;
    let lowercase_hex = hex_digits.len() == MAC_HEX_LEN
        && hex_digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lowercase_hex {
        return Err(SignatureError::MalformedSignature);
    }
    let mut mac = [0_u8; 32];
    hex::decode_to_slice(hex_digits, &mut mac).map_err(|_| SignatureError::MalformedSignature)?;
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_730_000_000;
    const BODY: &[u8] = br#"{"event":"room.deleted","payload":{"channelId":"2","guildId":"1"}}"#;

    fn secret(value: &str) -> Secret {
        Secret::new(value)
    }

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(secrets.iter().map(|s| secret(s)).collect())
    }

    fn verify(v: &Verifier, ts: &str, sig: &str) -> Result<(), SignatureError> {
        v.verify(Some(ts), Some(sig), BODY, NOW).map(|_| ())
    }

    #[test]
    fn known_vector() {
        // Independently computed: printf '1730000000.{body}' | openssl dgst -sha256 -hmac s3cret
        let headers = Signer::new(secret("s3cret")).sign(NOW, BODY);
        assert_eq!(headers.timestamp, "1730000000");
        assert_eq!(
            headers.signature,
            "sha256=aefa7666d67a15d3b1918ea8dae8e097b6ad0753e9dc61a2057bc71fc0ea0d99"
        );
    }

    #[test]
    fn accepts_a_fresh_signature() {
        let headers = Signer::new(secret("s3cret")).sign(NOW, BODY);
        let verified = verifier(&["s3cret"])
            .verify(
                Some(&headers.timestamp),
                Some(&headers.signature),
                BODY,
                NOW,
            )
            .unwrap();
        assert_eq!(verified.body(), BODY);
    }

    #[test]
    fn window_is_sixty_seconds_each_way() {
        let v = verifier(&["s3cret"]);
        let signer = Signer::new(secret("s3cret"));
        for (at, ok) in [
            (NOW - 60, true),
            (NOW + 60, true),
            (NOW - 61, false),
            (NOW + 61, false),
            (0, false),
        ] {
            let h = signer.sign(at, BODY);
            let result = verify(&v, &h.timestamp, &h.signature);
            assert_eq!(result.is_ok(), ok, "signed at {at}");
            if !ok {
                assert_eq!(result, Err(SignatureError::Stale));
            }
        }
    }

    #[test]
    fn missing_headers() {
        let v = verifier(&["s3cret"]);
        let h = Signer::new(secret("s3cret")).sign(NOW, BODY);
        assert_eq!(
            v.verify(None, Some(&h.signature), BODY, NOW).unwrap_err(),
            SignatureError::MissingTimestamp
        );
        assert_eq!(
            v.verify(Some(&h.timestamp), None, BODY, NOW).unwrap_err(),
            SignatureError::MissingSignature
        );
    }

    #[test]
    fn malformed_signatures_are_refused_before_any_mac() {
        let v = verifier(&["s3cret"]);
        let h = Signer::new(secret("s3cret")).sign(NOW, BODY);
        let hex_part = &h.signature[7..];
        let cases = [
            String::new(),
            "sha256=".to_owned(),
            hex_part.to_owned(),
            format!("sha1={hex_part}"),
            format!("SHA256={hex_part}"),
            format!("sha256={}", &hex_part[..63]),
            format!("sha256={hex_part}0"),
            format!("sha256={hex_part}{hex_part}"),
            format!("sha256={}", hex_part.to_uppercase()),
            format!("sha256= {}", &hex_part[1..]),
            format!(" sha256={hex_part}"),
            format!("sha256={hex_part} "),
            format!("sha256={}g", &hex_part[..63]),
            format!("v1,{hex_part}"),
        ];
        for case in cases {
            assert_eq!(
                verify(&v, &h.timestamp, &case),
                Err(SignatureError::MalformedSignature),
                "{case:?}"
            );
        }
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        let v = verifier(&["s3cret"]);
        let h = Signer::new(secret("s3cret")).sign(NOW, BODY);
        for ts in [
            "",
            " 1730000000",
            "1730000000 ",
            "+1730000000",
            "-1730000000",
            "1.73e9",
            "1730000000.0",
            "0x6720",
            "abc",
            "99999999999999999999",
            "184467440737095516160",
        ] {
            assert_eq!(
                verify(&v, ts, &h.signature),
                Err(SignatureError::MalformedTimestamp),
                "{ts:?}"
            );
        }
    }

    #[test]
    fn the_timestamp_is_part_of_the_mac() {
        let v = verifier(&["s3cret"]);
        let h = Signer::new(secret("s3cret")).sign(NOW, BODY);
        // Same instant spelled differently, and a neighbouring second.
        assert_eq!(
            verify(&v, &format!("0{}", h.timestamp), &h.signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&v, &(NOW + 1).to_string(), &h.signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn each_request_starts_from_the_keyed_state() {
        // The verifier clones a keyed HMAC per request: nothing of one request's
        // input may carry into the next, in either secret's state.
        let during = verifier(&["new-secret", "old-secret"]);
        for signer in [
            Signer::new(secret("old-secret")),
            Signer::new(secret("new-secret")),
        ] {
            let h = signer.sign(NOW, BODY);
            for _ in 0..2 {
                assert!(verify(&during, &h.timestamp, &h.signature).is_ok());
                let tampered = during.verify(
                    Some(&h.timestamp),
                    Some(&h.signature),
                    br#"{"event":"room.deleted","payload":{"channelId":"3","guildId":"1"}}"#,
                    NOW,
                );
                assert_eq!(tampered.unwrap_err(), SignatureError::Mismatch);
            }
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let printed = format!("{:?}", verifier(&["hunter2-very-secret"]));
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn rotation() {
        let old = Signer::new(secret("old-secret")).sign(NOW, BODY);
        let new = Signer::new(secret("new-secret")).sign(NOW, BODY);
        let before = verifier(&["old-secret"]);
        let during = verifier(&["new-secret", "old-secret"]);
        let after = verifier(&["new-secret"]);
        assert!(verify(&before, &old.timestamp, &old.signature).is_ok());
        assert_eq!(
            verify(&before, &new.timestamp, &new.signature),
            Err(SignatureError::Mismatch)
        );
        assert!(verify(&during, &old.timestamp, &old.signature).is_ok());
        assert!(verify(&during, &new.timestamp, &new.signature).is_ok());
        assert_eq!(
            verify(&after, &old.timestamp, &old.signature),
            Err(SignatureError::Mismatch)
        );
        assert!(verify(&after, &new.timestamp, &new.signature).is_ok());
        assert_eq!(
            verify(&verifier(&[]), &new.timestamp, &new.signature),
            Err(SignatureError::Mismatch)
        );
    }
}
