//! Why a hub did not start: [`HubStartError`], the builder's answer.
//!
//! Kept apart from `HubError`, which is an HTTP answer (a status and a JSON body):
//! a start-up failure goes to the operator, through the `coven` binary's exit
//! message, never to a browser.

use std::io;

use coven_discord::DiscordError;

/// Why [`crate::HubBuilder::build`] (or [`crate::serve`]) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubStartError {
    /// `REDIS_URL` cannot be used (e.g. it is not a Redis URL). Redis itself is
    /// reached lazily: an unreachable Redis does not stop a hub from starting.
    #[error(transparent)]
    Redis(Box<dyn std::error::Error + Send + Sync>),
    /// The own issuer's key file (`<state_dir>/jwt-keys.json`) cannot be read or
    /// written.
    #[error("JWT signing keys not available: {0}")]
    KeyStore(#[source] io::Error),
    /// The login's OAuth settings are invalid (e.g. the redirect URI).
    #[error("login settings: {0}")]
    Login(#[source] DiscordError),
    /// The listener failed while serving.
    #[error("the listener failed: {0}")]
    Listener(#[source] io::Error),
}
