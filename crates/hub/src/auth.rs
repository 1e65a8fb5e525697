//! Who calls the HTTP API: the `Authorization: Bearer` JWT as an extractor, and
//! each user's rate limit of the rooms API.
//!
//! A handler that needs a signed-in user takes an [`AuthUser`]; a missing or
//! invalid token answers 401 before the handler runs (docs/contract.md, "HTTP
//! errors"). Where a handler must check something else first (the size of a
//! create's body, a cue's body), it takes `Result<AuthUser, HubError>` and applies
//! it at that point. Rate
//! limiting stays an explicit call ([`rate_limit`]) because each handler spends a
//! request of the user's budget at a different step.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use crate::error::HubError;
use crate::jwt::{JwtVerifier, VerifiedUser};
use crate::shared_limits::RoomsMemory;

/// The token verifier [`AuthUser`] extracts through.
#[derive(Clone)]
pub(crate) struct Auth {
    pub(crate) jwt: Arc<JwtVerifier>,
}

/// The user of a verified `Authorization: Bearer` JWT.
pub(crate) struct AuthUser(pub(crate) VerifiedUser);

impl<S> FromRequestParts<S> for AuthUser
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| HubError::Unauthorized("missing bearer token".into()))?;
        Auth::from_ref(state)
            .jwt
            .verify(token.trim())
            .await
            .map(AuthUser)
            .map_err(|e| HubError::Unauthorized(e.to_string()))
    }
}

/// Takes one request from `user`'s budget of the rooms API: 429 with
/// `Retry-After` beyond it.
pub(crate) async fn rate_limit(limits: &RoomsMemory, user: &VerifiedUser) -> Result<(), HubError> {
    limits.rate_limit(&user.subject).await
}
