//! `POST /api/internal/events`: the worker's signed webhook (docs/spec.md §5).
//!
//! Order matters and is the point of this file: the size is checked before the body
//! is read (413), the HMAC is checked before the body is parsed (403 with exactly
//! `{"message":"forbidden"}`), only then is the event parsed (400 when malformed or
//! unknown), filtered to the primary guild (others are acknowledged and dropped) and
//! published once per `X-Hub-Event-Id` (a redelivery is acknowledged, not re-sent).
//! When the broker cannot store the event (Redis unreachable) the answer is 503
//! with `Retry-After`: the worker keeps the event and delivers it again later.
//!
//! It is the hub's busiest request, so it does no work beyond those checks: the
//! headers are read in place (not copied) by names parsed once, the body is taken
//! as the one buffer it arrived in (not collected into a list first), metric
//! handles are registered once (`crate::metrics::ingest`), the answer is a
//! constant body with one header, and its route has its own small state and no
//! per-request tracing span (`crate::routes`); docs/benchmarks.md ("Ingest")
//! measures it against a bare handler.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use coven_contract::Event;
use coven_contract::internal::verify_webhook;
use coven_contract::limits::WEBHOOK_BODY_MAX_BYTES;
use coven_contract::signature::EVENT_ID_HEADER;
use futures_util::StreamExt;

use crate::error::HubError;
use crate::metrics::SIGNATURE_REJECTED;
use crate::once_key::OnceKey;
use crate::state::Ingest;

/// The success body, `OkBody { ok: true }` serialised (docs/spec.md §5).
const OK_BODY: &str = r#"{"ok":true}"#;

/// Longest accepted `X-Hub-Event-Id`.
const EVENT_ID_MAX_LEN: usize = 200;

/// [`EVENT_ID_HEADER`] as a header name, parsed once rather than per lookup.
static EVENT_ID: HeaderName = HeaderName::from_static(EVENT_ID_HEADER);

/// The handler.
pub(crate) async fn ingest(
    State(state): State<Ingest>,
    request: Request,
) -> Result<Response, HubError> {
    let started = Instant::now();
    let metrics = crate::metrics::ingest();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let body = read_body(headers, body).await?;

    let verified = verify_webhook(&state.webhook_verifier, headers, &body).map_err(|error| {
        metrics::counter!(SIGNATURE_REJECTED, "reason" => error.reason()).increment(1);
        tracing::warn!(reason = error.reason(), "webhook refused");
        HubError::WebhookForbidden
    })?;

    let event = Event::from_verified_body(verified).map_err(|error| {
        metrics.invalid.increment(1);
        HubError::validation(error.to_string())
    })?;
    let event_id = headers
        .get(&EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= EVENT_ID_MAX_LEN)
        .ok_or_else(|| HubError::Validation {
            message: "missing or invalid X-Hub-Event-Id".into(),
            field: Some("X-Hub-Event-Id"),
        })?;

    if event.guild_id() != state.settings.primary_guild_id {
        metrics.other_guild.increment(1);
        tracing::debug!(event = event.name(), "event of another guild dropped");
        return Ok(ok());
    }
    let once_keys = OnceKey::for_webhook(event_id, &event);
    let name = event.name();
    let deleted = match &event {
        Event::RoomDeleted(room) => Some(room.channel_id),
        _ => None,
    };
    let published = state
        .broker
        .publish(event, once_keys)
        .await
        .map_err(|error| {
            // Not accepted, so the worker keeps it and retries: nothing is lost.
            metrics.unavailable.increment(1);
            tracing::debug!(%error, "event refused: the broker is unavailable");
            HubError::TryLater {
                message: "events cannot be stored right now".into(),
                retry_after: Duration::from_secs(1),
            }
        })?;
    if let Some(channel) = deleted {
        // No longer a live room of its creator (docs/spec.md §7.1).
        state.access.ended(channel).await;
    }
    if published.is_some() {
        metrics.published.increment(1);
    } else {
        metrics.duplicate.increment(1);
    }
    metrics.latency.record(started.elapsed().as_secs_f64());
    tracing::debug!(event = name, seq = ?published, "webhook accepted");
    Ok(ok())
}

/// The whole body, refused with 413 past [`WEBHOOK_BODY_MAX_BYTES`]: before
/// reading when `Content-Length` says so, while reading otherwise (also when
/// reading fails, as axum's `to_bytes` does).
///
/// A webhook's body arrives in one chunk (hyper hands over a slice of its read
/// buffer), which is returned as it is; only a body in several chunks is copied
/// into one buffer. `axum::body::to_bytes` collected even a single chunk into a
/// list first (docs/benchmarks.md, "Ingest").
async fn read_body(headers: &axum::http::HeaderMap, body: Body) -> Result<Bytes, HubError> {
    let too_large = || HubError::PayloadTooLarge {
        limit: WEBHOOK_BODY_MAX_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > WEBHOOK_BODY_MAX_BYTES as u64) {
        return Err(too_large());
    }
    let mut chunks = body.into_data_stream();
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| too_large())?;
        let len = joined.as_ref().map_or(first.len(), BytesMut::len);
        if len + chunk.len() > WEBHOOK_BODY_MAX_BYTES {
            return Err(too_large());
        }
        match &mut joined {
            Some(joined) => joined.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut buf = BytesMut::with_capacity(len + chunk.len());
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&chunk);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

/// 200 `{"ok":true}` with its content type, built directly (a `(headers, &str)`
/// tuple sets `text/plain` and then replaces it).
fn ok() -> Response {
    let mut response = Response::new(Body::from(OK_BODY));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_answer_is_the_contracts_ok_body() {
        let expected = serde_json::to_string(&coven_contract::OkBody { ok: true }).unwrap();
        assert_eq!(OK_BODY, expected);
        let answer = ok();
        assert_eq!(answer.status(), axum::http::StatusCode::OK);
        let types: Vec<_> = answer
            .headers()
            .get_all(header::CONTENT_TYPE)
            .iter()
            .collect();
        assert_eq!(types, ["application/json"]);
        let body = axum::body::to_bytes(answer.into_body(), 64).await.unwrap();
        assert_eq!(body, OK_BODY.as_bytes());
    }

    /// A body arriving in `chunks`, without `Content-Length`.
    fn chunked(chunks: &[&'static str]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn the_body_is_read_whole_and_bounded() {
        let none = axum::http::HeaderMap::new();
        // One chunk: handed back as it came, not copied.
        let chunk = Bytes::from_static(b"{\"event\":1}");
        let body = read_body(&none, Body::from(chunk.clone())).await.unwrap();
        assert_eq!((body.as_ptr(), body.len()), (chunk.as_ptr(), chunk.len()));
        // Several chunks, empty ones among them: joined in order.
        let body = read_body(&none, chunked(&["", "ab", "", "cd", "e"])).await;
        assert_eq!(body.unwrap(), "abcde");
        assert_eq!(read_body(&none, chunked(&[])).await.unwrap(), "");
        // Exactly the limit is read; one byte more is 413, also across chunks.
        let max: &'static str = "x".repeat(WEBHOOK_BODY_MAX_BYTES).leak();
        assert_eq!(
            read_body(&none, chunked(&[max])).await.unwrap().len(),
            max.len()
        );
        let (half, rest) = max.split_at(10);
        let body = read_body(&none, chunked(&[half, rest, "y"])).await;
        assert!(matches!(body, Err(HubError::PayloadTooLarge { .. })));
        // A declared length past the limit is refused before reading.
        let mut declared = axum::http::HeaderMap::new();
        declared.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(WEBHOOK_BODY_MAX_BYTES + 1),
        );
        let body = read_body(&declared, chunked(&["small"])).await;
        assert!(matches!(body, Err(HubError::PayloadTooLarge { .. })));
        // A body that fails while being read is refused too.
        let failing = Body::from_stream(futures_util::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("reset")),
        ]));
        let body = read_body(&none, failing).await;
        assert!(matches!(body, Err(HubError::PayloadTooLarge { .. })));
    }
}
