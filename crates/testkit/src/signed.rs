//! Requests signed like the webhook and the worker's commands (timestamp and
//! HMAC headers, `docs/` describe them), built with the contract's `Signer` so
//! the tests sign exactly as production does.

use std::net::SocketAddr;

use coven_contract::Secret;
use coven_contract::signature::{SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};

use crate::SECRET;

/// Seconds since the Unix epoch, the signature's timestamp.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// `request` with `body`, signed with `secret` at `timestamp`.
pub fn sign_request(
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

/// A request to `path` of the server at `addr`, signed now with [`SECRET`].
pub fn signed(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let request = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
    sign_request(request, SECRET, now_secs(), body)
}
