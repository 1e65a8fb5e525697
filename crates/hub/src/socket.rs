//! `GET /api/ws`: one browser's WebSocket session (docs/spec.md §6).
//!
//! Three phases: wait (at most `auth_timeout`) for the `auth` message and verify its
//! JWT; subscribe to the broker, answer `auth.ok` and send the replay; then forward
//! the socket's outbox while reading the browser's frames, pinging every
//! `ping_interval` and dropping a browser silent for `idle_timeout`. Failures send an
//! error envelope and close 4401 (auth) or 1008 (malformed); an outbox that overflows
//! closes 1013; shutdown closes 1001. Writes never block anyone but this socket.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coven_contract::{
    Ack, AckEvent, ClientMessage, ErrorBody, ErrorCode, ErrorEnvelope, ServerMessage, Version,
};
use futures_util::SinkExt;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;
use tracing::Instrument;

use crate::broker::unix_millis;
use crate::client_ip::ClientIp;
use crate::conn_limits::SocketSlots;
use crate::fanout::{Frame, Outbox};
use crate::metrics::{AUTH_FAILED, AUTH_OK, OVERLOADED, SOCKETS};
use crate::state::SocketState;

/// Close codes of docs/spec.md §6.
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_OVERLOADED: u16 = 1013;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_INTERNAL: u16 = 1011;

/// Frames written before one flush.
const MAX_BATCH: usize = 64;
/// Batch capacity an idle socket keeps between writes.
const RETAINED_BATCH: usize = 4;
/// Largest frame read from a browser; the contract's 4 KiB limit is enforced on
/// parse so that an oversized message gets `INVALID_MESSAGE`, not a dropped TCP.
const MAX_INBOUND_FRAME: usize = 16 * 1024;

/// How a session ends.
enum End {
    /// Send an optional error, then close with this code and reason.
    Close(u16, &'static str, Option<(ErrorCode, String)>),
    /// The browser is gone or silent: just drop the connection.
    Drop,
    /// The browser closed: flush tungstenite's queued close reply, then drop.
    PeerClosed,
}

/// The upgrade handler: tunes tungstenite's buffers and hands over to [`session`].
pub(crate) async fn upgrade(
    State(state): State<SocketState>,
    client: ClientIp,
    ws: WebSocketUpgrade,
) -> Response {
    if state.lifecycle.shutdown().is_cancelled() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // docs/spec.md §6.6: over a per-IP limit the upgrade is answered 429.
    let slots = match state.lifecycle.limits().socket(client) {
        Ok(slots) => slots,
        Err(refusal) => return refusal.into_response(),
    };
    let settings = &state.settings;
    ws.read_buffer_size(settings.ws_read_buffer_size)
        .write_buffer_size(settings.ws_write_buffer_size)
        .max_write_buffer_size(settings.max_unsent_bytes.saturating_mul(2).max(64 * 1024))
        .max_message_size(MAX_INBOUND_FRAME)
        .max_frame_size(MAX_INBOUND_FRAME)
        // Keep the upgrade request's span (with its request id) on the whole session.
        .on_upgrade(move |socket| {
            session(state, socket, slots).instrument(tracing::Span::current())
        })
}

async fn session(state: SocketState, mut socket: WebSocket, mut slots: SocketSlots) {
    let _connection = state.lifecycle.connection();
    let end = run(&state, &mut socket, &mut slots).await;
    if let End::Close(code, reason, error) = end {
        let error = error.map(|(code, message)| {
            Frame::from(
                ServerMessage::Error(ErrorEnvelope {
                    v: Version,
                    error: ErrorBody { code, message },
                    ts: unix_millis(),
                })
                .to_json(),
            )
        });
        close(
            &mut socket,
            code,
            reason,
            error,
            state.settings.close_timeout,
        )
        .await;
    } else if let End::PeerClosed = end {
        let _ = tokio::time::timeout(state.settings.close_timeout, socket.flush()).await;
    }
}

async fn run(state: &SocketState, socket: &mut WebSocket, slots: &mut SocketSlots) -> End {
    // Boxed so that the verifier's large state is freed once authentication is over
    // instead of sizing every idle session's future.
    let last_seq = match Box::pin(authenticate(state, socket, slots)).await {
        Ok(last_seq) => last_seq,
        Err(end) => return end,
    };
    metrics::counter!(AUTH_OK).increment(1);
    let _authenticated = SocketGauge::new();
    let outbox = Arc::new(Outbox::new(state.settings.max_unsent_bytes));
    let subscription = match state
        .broker
        .subscribe(state.settings.primary_guild_id, last_seq, outbox.clone())
        .await
    {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%error, "subscription failed");
            return End::Close(CLOSE_INTERNAL, "unavailable", None);
        }
    };
    let end = forward(
        state,
        socket,
        &outbox,
        subscription.resumed,
        subscription.replay,
    )
    .await;
    outbox.close();
    if matches!(end, End::Close(CLOSE_OVERLOADED, ..)) {
        metrics::counter!(OVERLOADED).increment(1);
        tracing::info!("socket closed 1013: fell too far behind");
    }
    end
}

/// Waits for `auth`; returns its `lastSeq` once the token verified.
async fn authenticate(
    state: &SocketState,
    socket: &mut WebSocket,
    slots: &mut SocketSlots,
) -> Result<Option<u64>, End> {
    let deadline = Instant::now() + state.settings.auth_timeout;
    let fail = |reason: &'static str, message: String| {
        metrics::counter!(AUTH_FAILED, "reason" => reason).increment(1);
        End::Close(
            CLOSE_UNAUTHORIZED,
            "unauthorized",
            Some((ErrorCode::Unauthorized, message)),
        )
    };
    loop {
        let message = tokio::select! {
            () = state.lifecycle.shutdown().cancelled() => return Err(End::Close(CLOSE_GOING_AWAY, "server shutting down", None)),
            received = tokio::time::timeout_at(deadline, socket.recv()) => match received {
                Err(_) => return Err(fail("timeout", "no auth message in time".into())),
                Ok(None | Some(Err(_))) => return Err(End::Drop),
                Ok(Some(Ok(message))) => message,
            },
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return Err(End::PeerClosed),
            Message::Binary(_) => {
                metrics::counter!(AUTH_FAILED, "reason" => "invalid_message").increment(1);
                return Err(invalid("binary messages are not supported"));
            }
        };
        let (token, last_seq) = match ClientMessage::parse(&text) {
            Ok(ClientMessage::Auth { token, last_seq }) => (token, last_seq),
            Err(error) => {
                metrics::counter!(AUTH_FAILED, "reason" => "invalid_message").increment(1);
                return Err(invalid(&error.to_string()));
            }
        };
        return match state.jwt.verify(&token).await {
            Ok(user) => {
                // Over MAX_SOCKETS_PER_USER (known only now): RATE_LIMITED, close 1008.
                if let Err(refusal) = slots.authenticated(&user.subject) {
                    let error = (ErrorCode::RateLimited, refusal.message().to_owned());
                    return Err(End::Close(CLOSE_POLICY, "too many sockets", Some(error)));
                }
                tracing::debug!(user = %user.subject, ?last_seq, "browser authenticated");
                Ok(last_seq)
            }
            Err(error) => Err(fail(error.reason(), error.to_string())),
        };
    }
}

fn invalid(message: &str) -> End {
    End::Close(
        CLOSE_POLICY,
        "invalid message",
        Some((ErrorCode::InvalidMessage, message.to_owned())),
    )
}

/// Sends the ack and the replay, then live frames, until the session ends.
async fn forward(
    state: &SocketState,
    socket: &mut WebSocket,
    outbox: &Outbox,
    resumed: Option<bool>,
    replay: Vec<Frame>,
) -> End {
    let settings = &state.settings;
    // Registered once for the whole session, not once per frame.
    let shutdown = state.lifecycle.shutdown().cancelled();
    tokio::pin!(shutdown);
    let ack = Frame::from(
        ServerMessage::Ack(Ack {
            v: Version,
            event: AckEvent::AuthOk,
            guild_id: settings.primary_guild_id,
            ts: unix_millis(),
            resumed,
        })
        .to_json(),
    );
    let first = Box::pin(async {
        socket.feed(Message::Text(ack)).await?;
        for frame in replay {
            socket.feed(Message::Text(frame)).await?;
        }
        socket.flush().await
    });
    if let Some(end) = guarded(shutdown.as_mut(), outbox, first).await {
        return end;
    }

    let mut last_seen = Instant::now();
    let mut ping =
        tokio::time::interval_at(last_seen + settings.ping_interval, settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    loop {
        if outbox.is_overloaded() {
            return End::Close(CLOSE_OVERLOADED, "overloaded", None);
        }
        let bytes = outbox.take(&mut batch, MAX_BATCH);
        if !batch.is_empty() {
            let send = async {
                for frame in batch.drain(..) {
                    socket.feed(Message::Text(frame)).await?;
                }
                socket.flush().await
            };
            if let Some(end) = guarded(shutdown.as_mut(), outbox, send).await {
                return end;
            }
            outbox.sent(bytes);
            if batch.capacity() > RETAINED_BATCH {
                // Do not keep a burst's batch capacity on an idle socket.
                batch = Vec::new();
            }
            continue;
        }
        tokio::select! {
            biased;
            () = &mut shutdown => return End::Close(CLOSE_GOING_AWAY, "server shutting down", None),
            () = outbox.ready() => {}
            received = socket.recv() => {
                let Some(Ok(message)) = received else { return End::Drop };
                last_seen = Instant::now();
                match message {
                    Message::Text(text) => {
                        // A repeated `auth` is harmless; anything else is a protocol error.
                        if let Err(error) = ClientMessage::parse(&text) {
                            return invalid(&error.to_string());
                        }
                    }
                    Message::Binary(_) => return invalid("binary messages are not supported"),
                    Message::Close(_) => return End::PeerClosed,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= settings.idle_timeout {
                    tracing::debug!("browser silent too long: dropped");
                    return End::Drop;
                }
                let send = socket.send(Message::Ping(bytes::Bytes::new()));
                if let Some(end) = guarded(shutdown.as_mut(), outbox, send).await {
                    return end;
                }
            }
        }
    }
}

/// Runs a write, abandoning it when the socket overflows or the hub shuts down.
async fn guarded(
    shutdown: Pin<&mut WaitForCancellationFuture<'_>>,
    outbox: &Outbox,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Option<End> {
    tokio::select! {
        biased;
        () = shutdown => Some(End::Close(CLOSE_GOING_AWAY, "server shutting down", None)),
        () = outbox.overloaded() => Some(End::Close(CLOSE_OVERLOADED, "overloaded", None)),
        result = write => result.err().map(|_| End::Drop),
    }
}

/// Sends `error` (if any) and a close frame, then waits briefly for the browser's
/// close so that it reads everything before the TCP connection goes away.
async fn close(
    socket: &mut WebSocket,
    code: u16,
    reason: &'static str,
    error: Option<Frame>,
    limit: Duration,
) {
    let handshake = async {
        if let Some(error) = error {
            socket.feed(Message::Text(error)).await?;
        }
        socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await?;
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), axum::Error>(())
    };
    let _ = tokio::time::timeout(limit, handshake).await;
}

/// Counts authenticated sockets in the gauge while alive.
struct SocketGauge;

impl SocketGauge {
    fn new() -> Self {
        metrics::gauge!(SOCKETS).increment(1.0);
        Self
    }
}

impl Drop for SocketGauge {
    fn drop(&mut self) {
        metrics::gauge!(SOCKETS).decrement(1.0);
    }
}
