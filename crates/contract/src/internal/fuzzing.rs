//! Doors into the signing code with the clock and the request id given instead of
//! read, for the fuzz targets in `fuzz/` (docs/reliability.md, "Fuzzing").
//!
//! A fuzz target must decide the time a signature is checked at, or the same input
//! would pass today and fail in a minute, and no crash could be replayed. These
//! functions are the crate's own `sign_at` / `verify_at`, which the public
//! [`sign_webhook`](super::sign_webhook), [`verify_webhook`](super::verify_webhook),
//! [`sign_request`](super::sign_request) and [`verify_request`](super::verify_request)
//! call with the wall clock. Hidden from the docs: not part of the contract.

use http::{HeaderMap, Method};

use super::request::{self, RequestError, RequestVerifier};
use super::webhook;
use crate::signature::{SignatureError, Signer, Verified, Verifier};

/// [`verify_webhook`](super::verify_webhook) at `now` (Unix seconds).
pub fn verify_webhook_at<'a>(
    verifier: &Verifier,
    headers: &HeaderMap,
    body: &'a [u8],
    now: u64,
) -> Result<Verified<'a>, SignatureError> {
    webhook::verify_at(verifier, headers, body, now)
}

/// [`sign_request`](super::sign_request) at `now` (Unix seconds) under the id `id`.
pub fn sign_request_at(
    signer: &Signer,
    method: &Method,
    path: &str,
    body: &[u8],
    now: u64,
    id: u128,
) -> HeaderMap {
    request::sign_at(signer, method, path, body, now, id)
}

/// [`verify_request`](super::verify_request) at `now` (Unix seconds).
pub fn verify_request_at<'a>(
    verifier: &RequestVerifier,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &'a [u8],
    now: u64,
) -> Result<Verified<'a>, RequestError> {
    request::verify_at(verifier, method, path, headers, body, now)
}
