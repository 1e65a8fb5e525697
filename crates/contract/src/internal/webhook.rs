//! Signing and verifying the internal webhook (worker → hub) on its HTTP headers.
//!
//! The webhook carries the headers `X-Hub-Timestamp` and `X-Hub-Signature` over
//! its raw body (`docs/contract.md`, "The internal webhook"; docs/spec.md §5),
//! exactly as third-party senders produce and verify them. [`sign_webhook`] puts
//! them on a request, [`verify_webhook`] finds them on one and checks them with a
//! [`Verifier`] against the clock: the "now, look the headers up, verify" block is
//! written once, here, instead of at every sender and receiver. Both work on
//! [`http::HeaderMap`], which the HTTP client and the server share. The webhook's
//! `X-Hub-Event-Id` is not part of the signature; its sender adds it alongside,
//! and the hub's idempotency on it is what makes a replayed webhook harmless.
//!
//! The hub's requests to the worker are signed differently (over method, path and
//! a unique id too): see [`sign_request`](super::sign_request).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::clock::unix_now;
use crate::signature::{
    SIGNATURE_HEADER, SignatureError, Signer, TIMESTAMP_HEADER, Verified, Verifier,
};

/// The headers that sign `body` now with `signer`: `X-Hub-Timestamp` and
/// `X-Hub-Signature`, to send with the request (more may be added to the map).
pub fn sign_webhook(signer: &Signer, body: &[u8]) -> HeaderMap {
    sign_at(signer, body, unix_now())
}

/// Checks the signature headers of a received request against its raw `body`
/// now. A header that is not visible ASCII is refused as malformed, not as
/// missing. On success the body comes back as [`Verified`].
pub fn verify_webhook<'a>(
    verifier: &Verifier,
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<Verified<'a>, SignatureError> {
    verify_at(verifier, headers, body, unix_now())
}

fn sign_at(signer: &Signer, body: &[u8], now: u64) -> HeaderMap {
    let values = signer.sign(now, body);
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(
        HeaderName::from_static(TIMESTAMP_HEADER),
        value(values.timestamp),
    );
    headers.insert(
        HeaderName::from_static(SIGNATURE_HEADER),
        value(values.signature),
    );
    headers
}

pub(super) fn verify_at<'a>(
    verifier: &Verifier,
    headers: &HeaderMap,
    body: &'a [u8],
    now: u64,
) -> Result<Verified<'a>, SignatureError> {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    verifier.verify(text(TIMESTAMP_HEADER), text(SIGNATURE_HEADER), body, now)
}

/// A header value from what [`Signer::sign`] produces: digits, or `sha256=` and
/// hex, always visible ASCII.
fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("signature headers are visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    const NOW: u64 = 1_730_000_000;
    const BODY: &[u8] = br#"{"event":"room.deleted","payload":{"channelId":"2","guildId":"1"}}"#;

    fn signer() -> Signer {
        Signer::new(Secret::new("s3cret"))
    }

    fn verifier() -> Verifier {
        Verifier::new(vec![Secret::new("s3cret")])
    }

    #[test]
    fn signs_with_the_spec_headers() {
        let headers = sign_at(&signer(), BODY, NOW);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers["x-hub-timestamp"], "1730000000");
        assert_eq!(
            headers["x-hub-signature"],
            "sha256=aefa7666d67a15d3b1918ea8dae8e097b6ad0753e9dc61a2057bc71fc0ea0d99"
        );
    }

    #[test]
    fn a_signed_request_verifies() {
        let headers = sign_webhook(&signer(), BODY);
        let verified = verify_webhook(&verifier(), &headers, BODY).unwrap();
        assert_eq!(verified.body(), BODY);
        let headers = sign_at(&signer(), b"", NOW);
        assert!(verify_at(&verifier(), &headers, b"", NOW + 60).is_ok());
    }

    #[test]
    fn refusals() {
        let signed = sign_at(&signer(), BODY, NOW);
        let verify = |headers: &HeaderMap, body: &[u8]| {
            verify_at(&verifier(), headers, body, NOW).map(|_| ())
        };
        assert_eq!(
            verify(&signed, b"{}"),
            Err(SignatureError::Mismatch),
            "another body"
        );
        assert_eq!(
            verify_at(&verifier(), &signed, BODY, NOW + 61).map(|_| ()),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&HeaderMap::new(), BODY),
            Err(SignatureError::MissingTimestamp)
        );
        let mut no_signature = signed.clone();
        no_signature.remove(SIGNATURE_HEADER);
        assert_eq!(
            verify(&no_signature, BODY),
            Err(SignatureError::MissingSignature)
        );
        let mut not_ascii = signed.clone();
        not_ascii.insert(
            HeaderName::from_static(TIMESTAMP_HEADER),
            HeaderValue::from_bytes(b"17300\xff0000").unwrap(),
        );
        assert_eq!(
            verify(&not_ascii, BODY),
            Err(SignatureError::MalformedTimestamp)
        );
    }
}
