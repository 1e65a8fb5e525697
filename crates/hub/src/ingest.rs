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
//! headers are read in place (not copied), metric handles are registered once
//! (`crate::metrics::ingest`), the answer is a constant body, and its route has
//! its own small state and no per-request tracing span (`crate::routes`);
//! docs/benchmarks.md ("Ingest") measures it against a bare handler.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use coven_contract::Event;
use coven_contract::internal::verify_webhook;
use coven_contract::limits::WEBHOOK_BODY_MAX_BYTES;
use coven_contract::signature::EVENT_ID_HEADER;

use crate::error::HubError;
use crate::metrics::SIGNATURE_REJECTED;
use crate::once_key::OnceKey;
use crate::state::Ingest;

/// The success body, `OkBody { ok: true }` serialised (docs/spec.md §5).
const OK_BODY: &str = r#"{"ok":true}"#;

/// Longest accepted `X-Hub-Event-Id`.
const EVENT_ID_MAX_LEN: usize = 200;

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
        .get(EVENT_ID_HEADER)
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
/// reading when `Content-Length` says so, while reading otherwise.
async fn read_body(headers: &axum::http::HeaderMap, body: Body) -> Result<bytes::Bytes, HubError> {
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
    axum::body::to_bytes(body, WEBHOOK_BODY_MAX_BYTES)
        .await
        .map_err(|_| too_large())
}

/// 200 `{"ok":true}`.
fn ok() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OK_BODY,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_the_contracts_ok_body() {
        let expected = serde_json::to_string(&coven_contract::OkBody { ok: true }).unwrap();
        assert_eq!(OK_BODY, expected);
    }
}
