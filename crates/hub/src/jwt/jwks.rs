//! An external issuer's keys, fetched from its JWKS URL (`JWT_PUBLIC_JWK_URL`,
//! docs/spec.md §7): why the fetch is fenced in the way it is is in docs/security.md
//! ("Keys and JWKS") — `https` or loopback only, no redirects, a size cap counted while
//! the body streams, a periodic refresh so a withdrawn key stops verifying, and a rate
//! limit on refetches for unknown `kid`s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use url::Url;

use super::{KeySource, VerifyingKey};

/// Longest JWKS document read (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// How often the JWKS is refreshed when its answer says nothing.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// The shortest `Cache-Control: max-age` honoured.
const MIN_JWKS_MAX_AGE: Duration = Duration::from_secs(60);
/// The longest `Cache-Control: max-age` honoured.
const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Keys from a JWKS URL (docs/security.md, "Keys and JWKS"): cached, refetched on an
/// unknown `kid` at most once per `refresh_interval` (so a flood of made-up `kid`s
/// cannot hammer the issuer), and refreshed in the background every `max_age`
/// (10 min), or per the answer's `Cache-Control: max-age` within [1 min, 1 day], so a
/// key the issuer withdrew stops verifying. The URL must be `https` (plain `http`
/// only for a loopback host, see [`check_jwks_url`]); redirects are not followed and
/// the body is cut off past 64 KiB while it streams in.
#[derive(Debug)]
pub struct JwksKeySource {
    inner: Arc<JwksInner>,
    refresher: AtomicBool,
}

#[derive(Debug)]
struct JwksInner {
    url: Url,
    client: reqwest::Client,
    refresh_interval: Duration,
    max_age: Duration,
    keys: RwLock<HashMap<String, Arc<VerifyingKey>>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// When the background refresh fetches next, after the last attempt.
    next_in: std::sync::Mutex<Duration>,
    loaded: AtomicBool,
}

/// Why a JWKS URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksUrlError {
    /// Neither `https` nor `http` to a loopback host.
    #[error("must be https (plain http only for localhost or a loopback address)")]
    NotHttps,
}

/// Whether `url` may serve a JWKS: `https`, or `http` to `localhost` or a loopback
/// address (a local identity provider in development and tests). Anything else could
/// be rewritten in transit, handing an attacker the keys that sign tokens.
pub fn check_jwks_url(url: &Url) -> Result<(), JwksUrlError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(JwksUrlError::NotHttps),
    }
}

/// The refresh period an answer asks for with `Cache-Control: max-age`, kept within
/// [1 min, 1 day] (the floor lowered to `default` when that is shorter, as in tests);
/// `default` without one.
fn cache_max_age(headers: &http::HeaderMap, default: Duration) -> Duration {
    let floor = MIN_JWKS_MAX_AGE.min(default);
    let asked = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        });
    asked.map_or(default, |secs| {
        Duration::from_secs(secs).clamp(floor, MAX_JWKS_MAX_AGE)
    })
}

impl JwksKeySource {
    /// A source reading `url`, refetching on an unknown `kid` at most once per
    /// `refresh_interval`, refreshed every 10 minutes (see [`Self::with_max_age`]).
    pub fn new(url: Url, refresh_interval: Duration) -> Self {
        Self::build(url, refresh_interval, DEFAULT_JWKS_MAX_AGE)
    }

    /// Refreshes the keys every `max_age` when the answer has no
    /// `Cache-Control: max-age` (10 minutes by default).
    #[must_use]
    pub fn with_max_age(self, max_age: Duration) -> Self {
        Self::build(self.inner.url.clone(), self.inner.refresh_interval, max_age)
    }

    fn build(url: Url, refresh_interval: Duration, max_age: Duration) -> Self {
        let max_age = max_age.max(Duration::from_millis(100));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(JwksInner {
                url,
                client,
                refresh_interval,
                max_age,
                keys: RwLock::new(HashMap::new()),
                last_fetch: tokio::sync::Mutex::new(None),
                next_in: std::sync::Mutex::new(max_age),
                loaded: AtomicBool::new(false),
            }),
            refresher: AtomicBool::new(false),
        }
    }

    /// Starts the background refresh (once), which ends when the source is dropped.
    fn start_refresher(&self) {
        if self.refresher.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let wait = match weak.upgrade() {
                    Some(inner) => *inner.next_in.lock().unwrap_or_else(PoisonError::into_inner),
                    None => return,
                };
                tokio::time::sleep(wait).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                inner.refresh(true).await;
            }
        });
    }
}

impl JwksInner {
    fn cached(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Fetches the set; unless `periodic`, at most once per `refresh_interval`.
    async fn refresh(&self, periodic: bool) {
        let mut last = self.last_fetch.lock().await;
        if !periodic && last.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        let next_in = match self.fetch().await {
            Ok((keys, max_age)) => {
                tracing::info!(keys = keys.len(), url = %self.url, "JWKS refreshed");
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
                self.loaded.store(true, Ordering::Relaxed);
                max_age
            }
            Err(error) => {
                // The keys fetched before stay in use; try again sooner.
                tracing::warn!(%error, url = %self.url, "JWKS fetch failed");
                self.refresh_interval.min(self.max_age)
            }
        };
        *self.next_in.lock().unwrap_or_else(PoisonError::into_inner) = next_in;
    }

    async fn fetch(&self) -> Result<(HashMap<String, Arc<VerifyingKey>>, Duration), String> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        check_jwks_url(&self.url).map_err(|e| format!("JWT_PUBLIC_JWK_URL {e}"))?;
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!(
                "JWKS answered {status}: redirects are not followed"
            ));
        }
        if !status.is_success() {
            return Err(format!("JWKS answered {status}"));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err("JWKS too large".into());
        }
        let max_age = cache_max_age(response.headers(), self.max_age);
        // Counted as it streams in: a server that never stops is cut off here.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("JWKS too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let set: RawSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        // One unusable key must not hide the others.
        let keys = set
            .keys
            .into_iter()
            .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                VerifyingKey::from_jwk(&jwk).map(|key| (kid, Arc::new(key)))
            })
            .collect();
        Ok((keys, max_age))
    }
}

impl KeySource for JwksKeySource {
    fn key(&self, kid: &str) -> BoxFuture<'_, Option<Arc<VerifyingKey>>> {
        let kid = kid.to_owned();
        Box::pin(async move {
            if let Some(key) = self.inner.cached(&kid) {
                return Some(key);
            }
            self.inner.refresh(false).await;
            self.inner.cached(&kid)
        })
    }

    fn warm_up(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if !self.inner.loaded.load(Ordering::Relaxed) {
                self.inner.refresh(false).await;
            }
            let loaded = self.inner.loaded.load(Ordering::Relaxed);
            if loaded {
                self.start_refresher();
            }
            loaded
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cache_control(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CACHE_CONTROL, value.parse().unwrap());
        headers
    }

    #[test]
    fn cache_control_max_age_is_honoured_within_bounds() {
        let ten_minutes = DEFAULT_JWKS_MAX_AGE;
        let age = |value: &str| cache_max_age(&with_cache_control(value), ten_minutes);
        assert_eq!(
            cache_max_age(&http::HeaderMap::new(), ten_minutes),
            ten_minutes
        );
        assert_eq!(age("public, max-age=3600"), Duration::from_secs(3600));
        assert_eq!(age("max-age=0"), MIN_JWKS_MAX_AGE, "not a fetch per token");
        assert_eq!(
            age("Max-Age=\"31536000\""),
            MAX_JWKS_MAX_AGE,
            "not for a year"
        );
        assert_eq!(age("no-cache"), ten_minutes);
        assert_eq!(age("max-age=soon"), ten_minutes);
        // A test's short period lowers the floor.
        let short = Duration::from_secs(1);
        assert_eq!(
            cache_max_age(&with_cache_control("max-age=0"), short),
            short
        );
    }
}
