//! `POST /api/internal/events`: the worker's signed webhook (SPEC §5).
//!
//! Order matters and is the point of this file: the size is checked before the body
//! is read (413), the HMAC is checked before the body is parsed (403 with exactly
//! `{"message":"forbidden"}`), only then is the event parsed (400 when malformed or
//! unknown), filtered to the primary guild (others are acknowledged and dropped) and
//! published once per `X-Hub-Event-Id` (a redelivery is acknowledged, not re-sent).
//! When the broker cannot store the event (Redis unreachable) the answer is 503
//! with `Retry-After`: the worker keeps the event and delivers it again later.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use coven_contract::limits::WEBHOOK_BODY_MAX_BYTES;
use coven_contract::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use coven_contract::{Event, OkBody, Snowflake};

use crate::error::HubError;
use crate::metrics::{EVENTS_IN, INGEST_LATENCY, SIGNATURE_REJECTED};
use crate::state::Ingest;

/// Longest accepted `X-Hub-Event-Id`.
const EVENT_ID_MAX_LEN: usize = 200;

/// The once-key that makes `room.created` unique per channel across the API and
/// webhook paths.
pub(crate) fn room_created_key(channel_id: Snowflake) -> String {
    format!("room.created:{channel_id}")
}

/// The handler.
pub(crate) async fn ingest(
    State(state): State<Ingest>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<OkBody>, HubError> {
    let started = Instant::now();
    let too_large = HubError::PayloadTooLarge {
        limit: WEBHOOK_BODY_MAX_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > WEBHOOK_BODY_MAX_BYTES as u64) {
        return Err(too_large);
    }
    let body = axum::body::to_bytes(body, WEBHOOK_BODY_MAX_BYTES)
        .await
        .map_err(|_| too_large)?;

    // A header that is not visible ASCII cannot be a valid value: give the verifier
    // an empty one so it is refused as malformed, not as missing.
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verified = state
        .webhook_verifier
        .verify(text(TIMESTAMP_HEADER), text(SIGNATURE_HEADER), &body, now)
        .map_err(|error| {
            metrics::counter!(SIGNATURE_REJECTED, "reason" => error.reason()).increment(1);
            tracing::warn!(reason = error.reason(), "webhook refused");
            HubError::WebhookForbidden
        })?;

    let event = Event::from_verified_body(verified).map_err(|error| {
        metrics::counter!(EVENTS_IN, "result" => "invalid").increment(1);
        HubError::validation(error.to_string())
    })?;
    let event_id = text(EVENT_ID_HEADER)
        .filter(|id| !id.is_empty() && id.len() <= EVENT_ID_MAX_LEN)
        .ok_or_else(|| HubError::Validation {
            message: "missing or invalid X-Hub-Event-Id".into(),
            field: Some("X-Hub-Event-Id"),
        })?;

    if event.guild_id() != state.settings.primary_guild_id {
        metrics::counter!(EVENTS_IN, "result" => "other_guild").increment(1);
        tracing::debug!(event = event.name(), "event of another guild dropped");
        return Ok(Json(OkBody { ok: true }));
    }
    let mut once_keys = vec![format!("event:{event_id}")];
    if let Event::RoomCreated(room) = &event {
        once_keys.push(room_created_key(room.channel_id));
    }
    let name = event.name();
    let published = state
        .broker
        .publish(event, once_keys)
        .await
        .map_err(|error| {
            // Not accepted, so the worker keeps it and retries: nothing is lost.
            metrics::counter!(EVENTS_IN, "result" => "unavailable").increment(1);
            tracing::debug!(%error, "event refused: the broker is unavailable");
            HubError::TryLater {
                message: "events cannot be stored right now".into(),
                retry_after: Duration::from_secs(1),
            }
        })?;
    let result = if published.is_some() {
        "published"
    } else {
        "duplicate"
    };
    metrics::counter!(EVENTS_IN, "result" => result).increment(1);
    metrics::histogram!(INGEST_LATENCY).record(started.elapsed().as_secs_f64());
    tracing::debug!(event = name, seq = ?published, result, "webhook accepted");
    Ok(Json(OkBody { ok: true }))
}
