//! Signed requests, built with the contract's own signing functions so the tests
//! sign exactly as production does: the webhook's headers (docs/spec.md §5, what a
//! worker or a third party sends the hub) and the hub's requests to the worker
//! (docs/spec.md §8: method, path, timestamp, a unique id and body; `docs/contract.md`).

use std::net::SocketAddr;

use coven_contract::Secret;
use coven_contract::internal::sign_request;
use coven_contract::signature::{SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};

use crate::SECRET;

/// Seconds since the Unix epoch, the signature's timestamp.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// `request` with `body`, signed like a webhook (docs/spec.md §5) with `secret`
/// at `timestamp`.
pub fn sign_webhook(
    request: reqwest::RequestBuilder,
    secret: &str,
    timestamp: u64,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let headers = Signer::new(Secret::new(secret)).sign(timestamp, body);
    request
        .header(TIMESTAMP_HEADER, headers.timestamp)
        .header(SIGNATURE_HEADER, headers.signature)
        .body(body.to_vec())
}

/// A `method` request to `path` of the worker at `addr`, signed now as the hub
/// signs it (docs/spec.md §8) with [`SECRET`] under a fresh id.
pub fn signed(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    signed_with(method, addr, path, SECRET, body)
}

/// Like [`signed`], with `secret`.
pub fn signed_with(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    secret: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let headers = sign_request(&Signer::new(Secret::new(secret)), &method, path, body);
    reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .headers(headers)
        .body(body.to_vec())
}
