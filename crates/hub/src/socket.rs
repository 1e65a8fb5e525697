//! `GET /api/ws`: one browser's WebSocket session (docs/spec.md §6).
//!
//! Three phases: wait (at most `auth_timeout`) for the `auth` message and verify its
//! JWT; subscribe to the broker, answer `auth.ok` and send the replay; then forward
//! the socket's outbox while reading the browser's frames, pinging every
//! `ping_interval`. Failures send an error envelope and close 4401 (auth, or the
//! token's `exp` passed), 1008 (malformed) or 1009 (too big); an outbox that
//! overflows closes 1013; shutdown closes 1001. A browser silent for `idle_timeout`
//! is dropped by its own timer, and so is one whose writes stall that long. Writes
//! never block anyone but this socket.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coven_contract::limits::CLIENT_MESSAGE_MAX_BYTES;
use coven_contract::{
    Ack, AckEvent, ClientMessage, ContractError, ErrorBody, ErrorCode, ErrorEnvelope,
    ServerMessage, Version,
};
use futures_util::SinkExt;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;
use tracing::Instrument;

use crate::broker::unix_millis;
use crate::client_ip::ClientIp;
use crate::conn_limits::SocketSlots;
use crate::fanout::{Frame, Outbox};
use crate::jwt::VerifiedUser;
use crate::metrics::{AUTH_FAILED, AUTH_OK, OVERLOADED, SOCKETS};
use crate::rtc_relay::RtcSession;
use crate::state::SocketState;

/// Close codes of docs/spec.md §6.
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_OVERLOADED: u16 = 1013;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_INTERNAL: u16 = 1011;

/// Frames written before one flush.
const MAX_BATCH: usize = 64;
/// Batch capacity an idle socket keeps between writes.
const RETAINED_BATCH: usize = 4;
/// Largest frame, and largest reassembled message, read from a browser
/// (docs/spec.md §6): tungstenite refuses a larger frame from its header, before
/// buffering its payload. The contract's 4 KiB message limit is checked on the
/// whole message, so such a message leaves the socket readable and gets a complete
/// closing handshake.
const MAX_INBOUND_FRAME: usize = 16 * 1024;
/// Longest wait for the token's expiry: a token valid for longer (years) is timed
/// for a year, so that the clock arithmetic cannot overflow.
const MAX_EXPIRY_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How a session ends.
enum End {
    /// Send an optional error, then close with this code and reason.
    Close(u16, &'static str, Option<(ErrorCode, String)>),
    /// Like `Close`, but a read error ended the stream (the rest of an oversized
    /// frame is still unread), so the browser's close reply cannot be read: wait
    /// out `close_timeout` instead, so that the error and close frames reach the
    /// browser before the connection is reset.
    CloseUnread(u16, &'static str, Option<(ErrorCode, String)>),
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
    let unread = matches!(end, End::CloseUnread(..));
    if let End::Close(code, reason, error) | End::CloseUnread(code, reason, error) = end {
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
            unread,
        )
        .await;
    } else if let End::PeerClosed = end {
        let _ = tokio::time::timeout(state.settings.close_timeout, socket.flush()).await;
    }
}

async fn run(state: &SocketState, socket: &mut WebSocket, slots: &mut SocketSlots) -> End {
    // Boxed so that the verifier's large state is freed once authentication is over
    // instead of sizing every idle session's future.
    let (user, last_seq) = match Box::pin(authenticate(state, socket, slots)).await {
        Ok(authenticated) => authenticated,
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
    // docs/spec.md §12: this socket's webcam signalling, until the session ends.
    let mut rtc = state.rtc.attach(&user.subject, &outbox);
    let end = forward(
        state,
        socket,
        &outbox,
        &mut rtc,
        expiry(&user, state.settings.jwt_leeway),
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

/// When the token stops being accepted: its `exp` plus the leeway the verifier
/// allows (docs/spec.md §6), so that a socket lives exactly as long as its token
/// would still sign in, and a browser whose clock lags is not closed right after
/// signing in.
fn expiry(user: &VerifiedUser, leeway: Duration) -> Instant {
    let expires = Duration::from_secs(user.expires_at).saturating_add(leeway);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::now() + expires.saturating_sub(now).min(MAX_EXPIRY_WAIT)
}

/// Waits for `auth`; returns the verified user and `lastSeq` once the token
/// verified and the user's socket slot was taken.
async fn authenticate(
    state: &SocketState,
    socket: &mut WebSocket,
    slots: &mut SocketSlots,
) -> Result<(VerifiedUser, Option<u64>), End> {
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
                Ok(None) => return Err(End::Drop),
                Ok(Some(Err(error))) => return Err(read_failed(error)),
                Ok(Some(Ok(message))) => message,
            },
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return Err(End::PeerClosed),
            Message::Binary(binary) => {
                metrics::counter!(AUTH_FAILED, "reason" => "invalid_message").increment(1);
                return Err(binary_refused(binary.len()));
            }
        };
        let (token, last_seq) = match ClientMessage::parse(&text) {
            Ok(ClientMessage::Auth { token, last_seq }) => (token, last_seq),
            Ok(ClientMessage::RtcSignal(_)) => {
                return Err(fail("not_authenticated", "send auth first".into()));
            }
            Err(error) => {
                metrics::counter!(AUTH_FAILED, "reason" => "invalid_message").increment(1);
                return Err(refused(&error));
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
                Ok((user, last_seq))
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

/// A browser message the contract refuses: 1009 when too big, 1008 otherwise.
fn refused(error: &ContractError) -> End {
    match error {
        ContractError::TooLarge { .. } => End::Close(
            CLOSE_TOO_BIG,
            "message too big",
            Some((ErrorCode::InvalidMessage, error.to_string())),
        ),
        ContractError::Malformed(_) => invalid(&error.to_string()),
    }
}

/// Binary messages are not part of the contract; one over the size limit is
/// refused as too big first.
fn binary_refused(len: usize) -> End {
    if len > CLIENT_MESSAGE_MAX_BYTES {
        refused(&ContractError::TooLarge {
            limit: CLIENT_MESSAGE_MAX_BYTES,
        })
    } else {
        invalid("binary messages are not supported")
    }
}

/// A read error: a frame or message over [`MAX_INBOUND_FRAME`] is refused with
/// 1009; anything else (a reset, a protocol violation) just drops the connection.
fn read_failed(error: axum::Error) -> End {
    match error.into_inner().downcast::<tungstenite::Error>() {
        Ok(error) if matches!(*error, tungstenite::Error::Capacity(_)) => End::CloseUnread(
            CLOSE_TOO_BIG,
            "message too big",
            Some((
                ErrorCode::InvalidMessage,
                format!("frame or message is larger than {MAX_INBOUND_FRAME} bytes"),
            )),
        ),
        _ => End::Drop,
    }
}

/// Closes 4401 when the token's `exp` has passed.
fn expired() -> End {
    tracing::debug!("token expired: socket closed 4401");
    End::Close(
        CLOSE_UNAUTHORIZED,
        "token expired",
        Some((ErrorCode::Unauthorized, "token expired".to_owned())),
    )
}

/// Sends the ack and the replay, then live frames, until the session ends.
async fn forward(
    state: &SocketState,
    socket: &mut WebSocket,
    outbox: &Outbox,
    rtc: &mut RtcSession,
    expires: Instant,
    resumed: Option<bool>,
    replay: Vec<Frame>,
) -> End {
    let settings = &state.settings;
    let idle = settings.idle_timeout;
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
            ice_servers: rtc.ice_servers(),
        })
        .to_json(),
    );
    let mut batch = Vec::new();
    {
        // The ack and the replay, in batches bounded like live ones.
        let mut first = std::iter::once(ack).chain(replay);
        loop {
            batch.extend(first.by_ref().take(MAX_BATCH));
            if batch.is_empty() {
                break;
            }
            let send = write_batch(socket, &mut batch, shutdown.as_mut(), outbox, idle);
            if let Some(end) = send.await {
                return end;
            }
        }
    }

    // One timer for the session's three deadlines: the next ping, silence
    // (`last_seen + idle`) and the token's expiry. A received frame only moves
    // `last_seen`; when the timer fires and that deadline moved, it is re-armed for
    // the earliest one. A browser answering pings costs one timer per ping period,
    // and a silent one is dropped at its deadline, not at the next ping.
    let mut last_seen = Instant::now();
    let mut next_ping = last_seen + settings.ping_interval;
    let deadline = tokio::time::sleep_until(next_ping.min(last_seen + idle).min(expires));
    tokio::pin!(deadline);
    loop {
        if outbox.is_overloaded() {
            return End::Close(CLOSE_OVERLOADED, "overloaded", None);
        }
        let bytes = outbox.take(&mut batch, MAX_BATCH);
        if !batch.is_empty() {
            let send = write_batch(socket, &mut batch, shutdown.as_mut(), outbox, idle);
            if let Some(end) = send.await {
                return end;
            }
            outbox.sent(bytes);
            if batch.capacity() > RETAINED_BATCH {
                // Do not keep a burst's batch capacity on an idle socket.
                batch = Vec::new();
            }
            // A steady flow of events can keep this loop away from the select
            // below for a while: the expiry is checked here too.
            if Instant::now() >= expires {
                return expired();
            }
            continue;
        }
        tokio::select! {
            biased;
            () = &mut shutdown => return End::Close(CLOSE_GOING_AWAY, "server shutting down", None),
            () = outbox.ready() => {}
            received = socket.recv() => {
                let message = match received {
                    None => return End::Drop,
                    Some(Err(error)) => return read_failed(error),
                    Some(Ok(message)) => message,
                };
                last_seen = Instant::now();
                match message {
                    // A repeated `auth` is harmless; a refused `rtc.signal` is answered
                    // and the socket stays open; anything else is a protocol error.
                    Message::Text(text) => match ClientMessage::parse(&text) {
                        Ok(ClientMessage::RtcSignal(signal)) => rtc.signal(signal, text.len()),
                        Ok(ClientMessage::Auth { .. }) => {}
                        Err(error) => return refused(&error),
                    },
                    Message::Binary(binary) => return binary_refused(binary.len()),
                    Message::Close(_) => return End::PeerClosed,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            // Polled after `recv`, so a frame already received counts.
            () = &mut deadline => {
                let now = Instant::now();
                if now >= expires {
                    return expired();
                }
                if now >= last_seen + idle {
                    tracing::debug!("browser silent too long: dropped");
                    return End::Drop;
                }
                if now >= next_ping {
                    let progress = Progress::new();
                    let send = socket.send(Message::Ping(bytes::Bytes::new()));
                    let send = guarded(shutdown.as_mut(), outbox, idle, &progress, send);
                    if let Some(end) = send.await {
                        return end;
                    }
                    next_ping = Instant::now() + settings.ping_interval;
                }
                deadline.as_mut().reset(next_ping.min(last_seen + idle).min(expires));
            }
        }
    }
}

/// Writes and flushes `batch` through [`guarded`]; each frame handed to the
/// socket counts as progress.
async fn write_batch(
    socket: &mut WebSocket,
    batch: &mut Vec<Frame>,
    shutdown: Pin<&mut WaitForCancellationFuture<'_>>,
    outbox: &Outbox,
    stall: Duration,
) -> Option<End> {
    let progress = Progress::new();
    let send = async {
        for frame in batch.drain(..) {
            socket.feed(Message::Text(frame)).await?;
            progress.mark();
        }
        socket.flush().await
    };
    guarded(shutdown, outbox, stall, &progress, send).await
}

/// Runs a write, abandoning it when the socket overflows or the hub shuts down,
/// and dropping the socket when the write makes no progress for `stall` (the idle
/// timeout: a browser that stopped reading is as gone as a silent one).
async fn guarded(
    shutdown: Pin<&mut WaitForCancellationFuture<'_>>,
    outbox: &Outbox,
    stall: Duration,
    progress: &Progress,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Option<End> {
    // Only polled (and its timer only armed) when the write does not finish at once.
    let stalled = async {
        loop {
            let deadline = progress.last() + stall;
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        biased;
        () = shutdown => Some(End::Close(CLOSE_GOING_AWAY, "server shutting down", None)),
        () = outbox.overloaded() => Some(End::Close(CLOSE_OVERLOADED, "overloaded", None)),
        result = write => result.err().map(|_| End::Drop),
        () = stalled => {
            tracing::debug!("write stalled: socket dropped");
            Some(End::Drop)
        }
    }
}

/// When a write last made progress (shared by the write and its stall timer, which
/// run in the same task: an atomic only because the session future must be `Send`).
struct Progress {
    start: Instant,
    nanos: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// Sends `error` (if any) and a close frame, then waits briefly for the browser's
/// close so that it reads everything before the TCP connection goes away. With
/// `unread`, the browser's close cannot be read: the socket lingers until `limit`.
async fn close(
    socket: &mut WebSocket,
    code: u16,
    reason: &'static str,
    error: Option<Frame>,
    limit: Duration,
    unread: bool,
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
        if unread {
            std::future::pending::<()>().await;
        }
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
