//! The hub's signed requests to "the worker", which may be an active/standby pair.
//!
//! `WORKER_ENDPOINT` may list several base URLs (the two workers of a `REDIS_URL`
//! pair). Both the room snapshot (`GET /voice-view`) and the bot's voice commands
//! (`POST /commands/…`) go through one [`WorkerLink`], so the retry rule lives in
//! one place: a request goes first to the endpoint that last answered well; on a
//! connection error, a timeout or a 503 (a standby refusing voice commands, a worker
//! whose session is not ready) the next endpoint is tried, and the one that answers
//! is remembered. Every attempt is signed afresh over its method, its path from the
//! worker's root, a timestamp, a new random id and the body (docs/spec.md §8, the
//! first `HUB_SECRET`): a slow first attempt never sends a stale timestamp, and the
//! next endpoint never sees an id the first one may already have accepted.
//!
//! Each user of the link keeps its own memory: a standby answers the snapshot well
//! (it serves the view from Redis), and that must not make the commands, which only
//! the active takes, start at the standby.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use coven_contract::Secret;
use coven_contract::internal::sign_request;
use coven_contract::signature::Signer;
use reqwest::{Method, StatusCode};
use url::Url;

/// How long connecting to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why no endpoint answered well.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// No endpoint answered at all (connection refused, timeout…): the last error.
    Unreachable(reqwest::Error),
    /// At least one endpoint answered 503 (standby, not ready): the last such
    /// answer, to relay.
    Unavailable(reqwest::Response),
}

/// Signed requests to the worker's endpoints, with failover and memory of the
/// endpoint that last answered well.
#[derive(Debug)]
pub(crate) struct WorkerLink {
    endpoints: Vec<Url>,
    signer: Signer,
    client: reqwest::Client,
    /// Index of the endpoint tried first.
    preferred: AtomicUsize,
}

impl WorkerLink {
    /// A link to `endpoints` (base URLs, at least one), signing with `secret`.
    pub(crate) fn new(endpoints: Vec<Url>, secret: Secret) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A signed request is never replayed somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            endpoints,
            signer: Signer::new(secret),
            client,
            preferred: AtomicUsize::new(0),
        }
    }

    /// Sends `method {endpoint}{path}` with `body` (JSON when not empty), each
    /// attempt signed afresh and bounded by `timeout`, trying the endpoints from
    /// the preferred one on. The first answer that is not 503 is returned, whatever
    /// its status; a connection error, a timeout or a 503 moves on to the next.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<reqwest::Response, LinkError> {
        let count = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let mut failure: Option<LinkError> = None;
        for index in (0..count).map(|offset| (first + offset) % count) {
            let url = endpoint_url(&self.endpoints[index], path);
            match self
                .attempt(method.clone(), url, path, body.clone(), timeout)
                .await
            {
                Ok(response) if response.status() != StatusCode::SERVICE_UNAVAILABLE => {
                    if index != first {
                        self.preferred.store(index, Ordering::Relaxed);
                        tracing::info!(endpoint = index, path, "worker endpoint switched");
                    }
                    return Ok(response);
                }
                Ok(response) => {
                    tracing::debug!(endpoint = index, path, "worker endpoint answered 503");
                    failure = Some(LinkError::Unavailable(response));
                }
                Err(error) => {
                    let error = error.without_url();
                    tracing::debug!(endpoint = index, path, %error, "worker endpoint not reachable");
                    // An answer (503) says more than a refused connection: keep it.
                    if !matches!(failure, Some(LinkError::Unavailable(_))) {
                        failure = Some(LinkError::Unreachable(error));
                    }
                }
            }
        }
        Err(failure.expect("at least one endpoint was tried"))
    }

    /// One signed request to one endpoint: `url` is the endpoint's base with
    /// `path` appended; the signature covers `path` (the worker's own route).
    async fn attempt(
        &self,
        method: Method,
        url: Url,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> reqwest::Result<reqwest::Response> {
        let headers = sign_request(&self.signer, &method, path, &body);
        let mut request = self
            .client
            .request(method, url)
            .timeout(timeout)
            .headers(headers);
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        request.send().await
    }
}

/// `{base}{path}`: the path (from the worker's root, `/voice-view`) appended to the
/// base's own path, any query dropped.
fn endpoint_url(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(None);
    url
}

#[cfg(test)]
mod tests {
    use coven_contract::internal::BotCommand;

    use super::*;

    #[test]
    fn paths_are_appended_to_the_base() {
        for (base, expected) in [
            ("http://w:8080", "http://w:8080/commands/join"),
            ("http://w:8080/", "http://w:8080/commands/join"),
            ("http://w/pair/a/?x=1", "http://w/pair/a/commands/join"),
        ] {
            let url = endpoint_url(&base.parse().unwrap(), BotCommand::Join.path());
            assert_eq!(url.as_str(), expected);
        }
    }
}
