//! A door into the hub's token check for the fuzz targets in `fuzz/`
//! (docs/reliability.md, "Fuzzing"). Hidden from the docs: not part of the hub's API.
//!
//! A browser's `auth` token and an API caller's `Authorization: Bearer` token both
//! reach the crate-private `JwtVerifier::verify`; [`verify_token`] builds one exactly
//! as the hub does (issuer, audience, leeway, key sources in order) and runs it on
//! one token, so a fuzz target checks the real header parsing, key choice,
//! algorithm pinning and claims validation, not a copy of them.

use std::sync::Arc;
use std::time::Duration;

use crate::jwt::{JwtError, JwtVerifier, KeySource, VerifiedUser};

/// Verifies `token` as the hub would with `sources` (looked up by `kid` in order),
/// the expected `issuer` and `audience`, and `leeway` on `exp` / `nbf`.
pub async fn verify_token(
    sources: Vec<Arc<dyn KeySource>>,
    issuer: &str,
    audience: &str,
    leeway: Duration,
    token: &str,
) -> Result<VerifiedUser, JwtError> {
    let mut verifier = JwtVerifier::new(issuer.to_owned(), audience.to_owned(), leeway);
    for source in sources {
        verifier.add_source(source);
    }
    verifier.verify(token).await
}
