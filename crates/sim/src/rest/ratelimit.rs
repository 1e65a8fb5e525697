//! Discord-style REST rate limits: per-route buckets per major parameter, the global
//! per-second limit, the `X-RateLimit-*` headers and 429 responses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::BucketConfig;
use crate::snowflake::now_ms;

/// A fixed window that resets `per` after its first request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub reset_at: Instant,
    pub remaining: u32,
}

/// The outcome of taking a token from a bucket.
pub(crate) struct Taken {
    pub bucket: String,
    pub limit: u32,
    pub remaining: u32,
    pub reset_after: Duration,
}

/// Bucket and global windows.
#[derive(Default)]
pub(crate) struct Limiter {
    buckets: HashMap<(String, u64), Window>,
    global: Option<(Instant, u32)>,
}

/// Discord-like opaque bucket hash of a route.
pub(crate) fn bucket_hash(route: &str) -> String {
    let digest = Sha256::digest(route.as_bytes());
    digest.iter().take(16).fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Limiter {
    /// Counts one request against the global limit; `Err(retry_after)` when over it.
    pub fn global(&mut self, per_second: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let (start, count) = self.global.get_or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count >= per_second {
            return Err(Duration::from_secs(1).saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }

    /// Takes a token of the route's bucket for a major parameter; `Err` carries the state for a 429.
    pub fn take(&mut self, route: &str, major: u64, cfg: BucketConfig) -> Result<Taken, Taken> {
        let now = Instant::now();
        let w = self
            .buckets
            .entry((route.to_owned(), major))
            .or_insert(Window {
                reset_at: now + cfg.per,
                remaining: cfg.limit,
            });
        if now >= w.reset_at {
            *w = Window {
                reset_at: now + cfg.per,
                remaining: cfg.limit,
            };
        }
        let bucket = bucket_hash(route);
        let reset_after = w.reset_at.saturating_duration_since(now);
        if w.remaining == 0 {
            return Err(Taken {
                bucket,
                limit: cfg.limit,
                remaining: 0,
                reset_after,
            });
        }
        w.remaining -= 1;
        Ok(Taken {
            bucket,
            limit: cfg.limit,
            remaining: w.remaining,
            reset_after,
        })
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Adds `X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket/Scope` to a response.
pub(crate) fn add_headers(headers: &mut HeaderMap, t: &Taken) {
    #[allow(clippy::cast_precision_loss)]
    let reset = (now_ms() as f64 + t.reset_after.as_secs_f64() * 1000.0) / 1000.0;
    headers.insert("x-ratelimit-limit", value(&t.limit.to_string()));
    headers.insert("x-ratelimit-remaining", value(&t.remaining.to_string()));
    headers.insert("x-ratelimit-reset", value(&format!("{reset:.3}")));
    headers.insert("x-ratelimit-reset-after", value(&secs(t.reset_after)));
    headers.insert("x-ratelimit-bucket", value(&t.bucket));
    headers.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
}

/// A 429 response of the given scope (`user`, `shared` or `global`).
pub(crate) fn too_many(
    scope: &'static str,
    retry_after: Duration,
    taken: Option<&Taken>,
) -> Response {
    let global = scope == "global";
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": (retry_after.as_secs_f64() * 1000.0).ceil() / 1000.0,
        "global": global,
    });
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let h = resp.headers_mut();
    if let Some(t) = taken {
        add_headers(h, t);
    }
    h.insert("x-ratelimit-scope", HeaderValue::from_static(scope));
    h.insert(
        "retry-after",
        value(&retry_after.as_secs_f64().ceil().max(1.0).to_string()),
    );
    if global {
        h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
    }
    resp
}
