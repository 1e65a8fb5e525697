//! `GET /api/ws`: one browser's WebSocket session (docs/spec.md §6).
//!
//! Three phases: wait (at most `auth_timeout`) for the `auth` message and verify its
//! JWT; subscribe to the broker, answer `auth.ok` and send the replay; then let the
//! writer shards write the socket's outbox while reading the browser's frames,
//! pinging every `ping_interval`. Failures send an error envelope and close 4401
//! (auth, or the token's `exp` passed), 1008 (malformed) or 1009 (too big); an
//! outbox that overflows closes 1013; shutdown closes 1001. A browser silent for
//! `idle_timeout` is dropped at its own deadline (not at the next ping), and so is
//! one whose writes stall that long. Writes never block anyone but this socket.
//!
//! An idle authenticated socket is mostly this session's task, so its future keeps
//! little (docs/benchmarks.md "Where the memory goes"): its waits hold no state
//! (readiness through tokio's registration of the socket, the outbox's wake-up
//! through a waker slot in the outbox), its deadlines and the shutdown reach it
//! through the hub's one `crate::socket_clock`, and the setup and the closing
//! handshake run in boxed futures of their own.
//!
//! The session works on the raw upgraded TCP stream rather than axum's `WebSocket`:
//! every frame the hub sends is built once and shared ([`Frame`]), and written
//! together with whatever else the socket has queued in one vectored write
//! (`crate::fanout`, `crate::ws_writer`); frames are read only when the socket is
//! readable, into a buffer on the stack (`crate::ws_reader`). The handshake
//! (RFC 6455 §4.2) is answered here, with tungstenite's accept key.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use coven_contract::limits::CLIENT_MESSAGE_MAX_BYTES;
use coven_contract::{
    Ack, AckEvent, ClientMessage, ContractError, ErrorBody, ErrorCode, ErrorEnvelope,
    ServerMessage, Version,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use crate::broker::unix_millis;
use crate::client_ip::ClientIp;
use crate::conn_limits::{Slot, SocketSlots};
use crate::connection::TrackedIo;
use crate::fanout::{Flush, Frame, Outbox};
use crate::jwt::VerifiedUser;
use crate::metrics::{AUTH_FAILED, AUTH_OK, OVERLOADED, SOCKETS};
use crate::rtc_relay::RtcSession;
use crate::state::SocketState;
use crate::ws_reader::{Inbound, MAX_INBOUND_FRAME, Reader};

/// Close codes of docs/spec.md §6.
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_OVERLOADED: u16 = 1013;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_INTERNAL: u16 = 1011;

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
    /// The browser closed (with this close payload): reply, then drop.
    PeerClosed(Bytes),
}

/// The upgrade handler: checks the handshake and the limits, answers 101 and runs
/// [`session`] on the upgraded connection.
pub(crate) async fn upgrade(
    State(state): State<SocketState>,
    client: ClientIp,
    mut request: Request,
) -> Response {
    let accept = match accept_key(request.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return (StatusCode::BAD_REQUEST, refusal).into_response(),
    };
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return (StatusCode::UPGRADE_REQUIRED, "connection is not upgradable").into_response();
    };
    if state.lifecycle.shutdown().is_cancelled() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // docs/spec.md §6.6: over a per-IP limit the upgrade is answered 429.
    let slots = match state.lifecycle.limits().socket(client) {
        Ok(slots) => slots,
        Err(refusal) => return refusal.into_response(),
    };
    // Keep the upgrade request's span (with its request id) on the whole session.
    tokio::spawn(session(on_upgrade, state, slots).instrument(tracing::Span::current()));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` answering a valid WebSocket handshake request
/// (RFC 6455 §4.2.1), or why the request is not one.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err("Connection header did not include 'upgrade'");
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err("Upgrade header did not include 'websocket'");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != "13")
    {
        return Err("Sec-WebSocket-Version header did not include '13'");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key header missing")?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    HeaderValue::try_from(accept).map_err(|_| "invalid Sec-WebSocket-Key")
}

/// A browser's upgraded connection: its outbox (which owns the stream, shared
/// with the writer shards), its read state with the messages read but not
/// handled yet.
struct Socket {
    outbox: Arc<Outbox>,
    reader: Reader,
    /// The connection's slot in the limits, held as long as the socket.
    _connection: Slot,
}

impl Socket {
    /// The next message from the browser; `None` when the connection ended.
    async fn recv(&mut self) -> Option<Inbound> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Socket::recv`] for a hand-written future: reads only once the socket is
    /// readable. Waiting takes no state (the waker is kept by tokio's registration
    /// of the socket), so an idle session's future does not hold a readiness
    /// future.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            if let Some(inbound) = self.reader.next() {
                return Poll::Ready(Some(inbound));
            }
            if self.reader.is_closed() {
                return Poll::Ready(None);
            }
            let reader = &mut self.reader;
            let read = self.outbox.with_stream(|stream| {
                let ready = stream.poll_read_ready(cx);
                if let Poll::Ready(Ok(())) = ready {
                    reader.read(stream);
                }
                ready
            });
            match read {
                Some(Poll::Pending) => return Poll::Pending,
                Some(Poll::Ready(Ok(()))) => {}
                Some(Poll::Ready(Err(_))) | None => return Poll::Ready(None),
            }
        }
    }

    /// Ready once the socket is writable (an error once it failed or is gone).
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.outbox
            .with_stream(|stream| stream.poll_write_ready(cx))
            .unwrap_or_else(|| Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())))
    }

    /// Writes everything queued, waiting for the socket to be writable as needed;
    /// `false` when the connection failed.
    async fn write_out(&self) -> bool {
        loop {
            match self.outbox.flush_now().0 {
                Flush::Done => return true,
                Flush::Failed => return false,
                Flush::Blocked => {
                    let writable = std::future::poll_fn(|cx| self.poll_write_ready(cx));
                    if writable.await.is_err() {
                        return false;
                    }
                }
            }
        }
    }
}

/// The upgraded connection: its stream, what the HTTP server read past the
/// request (parsed now, so that hyper's buffer is not kept) and its slot.
async fn upgraded(on_upgrade: hyper::upgrade::OnUpgrade) -> Option<(TcpStream, Reader, Slot)> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return None;
        }
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<TrackedIo>>() else {
        tracing::error!("upgraded connection of an unexpected type");
        return None;
    };
    let hyper::upgrade::Parts { io, read_buf, .. } = parts;
    let reader = Reader::with(&read_buf);
    let (stream, connection) = io.into_inner().into_parts();
    Some((stream, reader, connection))
}

/// One browser's session, from the upgrade to the closed connection. Its state
/// is what an idle socket costs: `state` and `slots` are only borrowed (stored
/// once), the setup and the closing handshake run in boxed futures of their own.
///
/// Here and in [`run`] and [`forward`], an `async` block rather than an `async fn`:
/// an `async fn`'s future keeps its arguments twice (as passed, and as the body's
/// locals), which cost every idle socket 192 bytes.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future keeps its arguments twice"
)]
fn session(
    on_upgrade: hyper::upgrade::OnUpgrade,
    state: SocketState,
    mut slots: SocketSlots,
) -> impl Future<Output = ()> + Send {
    async move {
        let Some((stream, reader, connection)) = upgraded(on_upgrade).await else {
            return;
        };
        let _connection = state.lifecycle.connection();
        let mut socket = Socket {
            outbox: Arc::new(Outbox::for_socket(state.settings.max_unsent_bytes, stream)),
            reader,
            _connection: connection,
        };
        let end = run(&state, &mut socket, &mut slots).await;
        Box::pin(end_session(&state, &mut socket, end)).await;
        socket.outbox.close();
    }
}

/// Sends what `end` calls for before the connection closes.
async fn end_session(state: &SocketState, socket: &mut Socket, end: End) {
    let limit = state.settings.close_timeout;
    let unread = matches!(end, End::CloseUnread(..));
    match end {
        End::Close(code, reason, error) | End::CloseUnread(code, reason, error) => {
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
            close(socket, code, reason, error, limit, unread).await;
        }
        End::PeerClosed(payload) => {
            socket.outbox.finish([Frame::close_reply(&payload)]);
            let _ = tokio::time::timeout(limit, socket.write_out()).await;
        }
        End::Drop => {}
    }
}

/// An authenticated, subscribed session: what it keeps while it lives.
struct Live {
    rtc: RtcSession,
    expires: Instant,
    _authenticated: SocketGauge,
}

/// Authenticates, subscribes and forwards until the session ends. The setup runs
/// in a boxed future of its own, so that its state (the token, the subscription)
/// is freed before the socket idles in [`forward`].
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future keeps its arguments twice"
)]
fn run<'a>(
    state: &'a SocketState,
    socket: &'a mut Socket,
    slots: &'a mut SocketSlots,
) -> impl Future<Output = End> + Send + 'a {
    async move {
        let mut live = match Box::pin(start(state, socket, slots)).await {
            Ok(live) => live,
            Err(end) => return end,
        };
        let end = forward(state, socket, &mut live).await;
        if matches!(end, End::Close(CLOSE_OVERLOADED, ..)) {
            metrics::counter!(OVERLOADED).increment(1);
            tracing::info!("socket closed 1013: fell too far behind");
        }
        end
    }
}

/// Waits for `auth`, subscribes, and puts the ack and the replay first.
async fn start(
    state: &SocketState,
    socket: &mut Socket,
    slots: &mut SocketSlots,
) -> Result<Live, End> {
    let (user, last_seq) = authenticate(state, socket, slots).await?;
    metrics::counter!(AUTH_OK).increment(1);
    let authenticated = SocketGauge::new();
    let outbox = socket.outbox.clone();
    // Live events queue behind the ack and the replay.
    outbox.hold();
    let subscription = match state
        .broker
        .subscribe(state.settings.primary_guild_id, last_seq, outbox.clone())
        .await
    {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%error, "subscription failed");
            return Err(End::Close(CLOSE_INTERNAL, "unavailable", None));
        }
    };
    // docs/spec.md §12: this socket's webcam signalling, until the session ends.
    let rtc = state.rtc.attach(&user.subject, &outbox);
    let ack = Frame::from(
        ServerMessage::Ack(Ack {
            v: Version,
            event: AckEvent::AuthOk,
            guild_id: state.settings.primary_guild_id,
            ts: unix_millis(),
            resumed: subscription.resumed,
            ice_servers: rtc.ice_servers(&user.subject),
        })
        .to_json(),
    );
    outbox.start(std::iter::once(ack).chain(subscription.replay).collect());
    Ok(Live {
        rtc,
        expires: expiry(&user, state.settings.jwt_leeway),
        _authenticated: authenticated,
    })
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
    socket: &mut Socket,
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
                Ok(Some(message)) => message,
            },
        };
        let text = match message {
            Inbound::Text(text) => text,
            Inbound::Ping(payload) => {
                socket.outbox.deliver(&Frame::pong(&payload));
                continue;
            }
            Inbound::Pong => continue,
            Inbound::Close(payload) => return Err(End::PeerClosed(payload)),
            Inbound::Binary(len) => {
                metrics::counter!(AUTH_FAILED, "reason" => "invalid_message").increment(1);
                return Err(binary_refused(len));
            }
            Inbound::TooBig => return Err(too_big()),
            Inbound::Invalid => return Err(End::Drop),
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

/// A frame or message over [`MAX_INBOUND_FRAME`]: refused with 1009 from its
/// header, the rest left unread.
fn too_big() -> End {
    End::CloseUnread(
        CLOSE_TOO_BIG,
        "message too big",
        Some((
            ErrorCode::InvalidMessage,
            format!("frame or message is larger than {MAX_INBOUND_FRAME} bytes"),
        )),
    )
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

/// What woke an idle session.
enum Wake {
    /// The outbox (blocked, failed or overloaded) or the socket clock.
    Outbox,
    /// The blocked socket is writable (`false`: it failed).
    Writable(bool),
    Received(Option<Inbound>),
    /// The armed deadline passed.
    Deadline,
}

/// An authenticated session's deadlines: the next ping, silence (`last_seen +
/// idle_timeout`), a stalled write (`stalled + idle_timeout`) and the token's
/// expiry. The earliest is armed on the hub's
/// [`SocketClock`](crate::socket_clock::SocketClock); a received frame only moves
/// `last_seen`, and when the armed deadline passes the next earliest is armed. A
/// browser answering pings costs one deadline per ping period, and a silent one is
/// dropped at its deadline, not at the next ping.
struct Deadlines {
    last_seen: Instant,
    next_ping: Instant,
    /// Since when writes wait for the socket (its last progress), while they do.
    stalled: Option<Instant>,
    /// The deadline the clock wakes the session for.
    armed: Instant,
}

impl Deadlines {
    /// Starts the timers now and arms the first deadline.
    fn start(state: &SocketState, outbox: &Arc<Outbox>, expires: Instant) -> Self {
        let now = Instant::now();
        let mut deadlines = Self {
            last_seen: now,
            next_ping: now + state.settings.ping_interval,
            stalled: None,
            armed: now,
        };
        deadlines.armed = deadlines.earliest(state, expires);
        state.lifecycle.clock().wake_at(deadlines.armed, outbox);
        deadlines
    }

    fn earliest(&self, state: &SocketState, expires: Instant) -> Instant {
        let idle = state.settings.idle_timeout;
        let next = self.next_ping.min(self.last_seen + idle).min(expires);
        self.stalled.map_or(next, |since| next.min(since + idle))
    }

    /// Writes wait for the socket (`blocked`) or not; a new stall arms its deadline
    /// when it is the earliest.
    fn blocked(&mut self, blocked: bool, state: &SocketState, outbox: &Arc<Outbox>) {
        if !blocked {
            self.stalled = None;
        } else if self.stalled.is_none() {
            let since = Instant::now();
            self.stalled = Some(since);
            let due = since + state.settings.idle_timeout;
            if due < self.armed {
                self.armed = due;
                state.lifecycle.clock().wake_at(due, outbox);
            }
        }
    }

    /// The armed deadline passed: ends the session, or pings and arms the next.
    fn fire(
        &mut self,
        state: &SocketState,
        outbox: &Arc<Outbox>,
        expires: Instant,
    ) -> Result<(), End> {
        let now = Instant::now();
        let idle = state.settings.idle_timeout;
        if now >= expires {
            return Err(expired());
        }
        if now >= self.last_seen + idle {
            tracing::debug!("browser silent too long: dropped");
            return Err(End::Drop);
        }
        if self.stalled.is_some_and(|since| now >= since + idle) {
            tracing::debug!("write stalled: socket dropped");
            return Err(End::Drop);
        }
        if now >= self.next_ping {
            outbox.deliver(&Frame::ping());
            self.next_ping = now + state.settings.ping_interval;
        }
        self.armed = self.earliest(state, expires);
        state.lifecycle.clock().wake_at(self.armed, outbox);
        Ok(())
    }
}

/// Reads the browser's frames and keeps the socket's deadlines while the writer
/// shards send its outbox, until the session ends. When the socket's kernel buffer
/// fills up, the shards leave it to this task, which writes once it is writable.
///
/// Every wait keeps its state outside this future, which is what an idle socket
/// costs: tokio's registration of the socket holds the read and write wakers, the
/// outbox the session's waker, and the hub's
/// [`SocketClock`](crate::socket_clock::SocketClock) the deadline and the wake-up
/// at shutdown.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future keeps its arguments twice"
)]
fn forward<'a>(
    state: &'a SocketState,
    socket: &'a mut Socket,
    live: &'a mut Live,
) -> impl Future<Output = End> + Send + 'a {
    async move {
        let mut deadlines = Deadlines::start(state, &socket.outbox, live.expires);
        loop {
            if state.lifecycle.shutdown().is_cancelled() {
                return End::Close(CLOSE_GOING_AWAY, "server shutting down", None);
            }
            if socket.outbox.is_overloaded() {
                return End::Close(CLOSE_OVERLOADED, "overloaded", None);
            }
            let blocked = match socket.outbox.state() {
                Some(Flush::Failed) => return End::Drop,
                Some(Flush::Blocked) => true,
                _ => false,
            };
            deadlines.blocked(blocked, state, &socket.outbox);
            let wake = std::future::poll_fn(|cx| {
                if socket.outbox.poll_ready(cx).is_ready() {
                    return Poll::Ready(Wake::Outbox);
                }
                if blocked && let Poll::Ready(writable) = socket.poll_write_ready(cx) {
                    return Poll::Ready(Wake::Writable(writable.is_ok()));
                }
                if let Poll::Ready(received) = socket.poll_recv(cx) {
                    return Poll::Ready(Wake::Received(received));
                }
                // Looked at after `recv`, so a frame already received counts.
                if Instant::now() >= deadlines.armed {
                    return Poll::Ready(Wake::Deadline);
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Outbox => {}
                Wake::Writable(writable) => {
                    if !writable {
                        return End::Drop;
                    }
                    match socket.outbox.flush_now() {
                        (Flush::Failed, _) => return End::Drop,
                        (_, written) if written > 0 => deadlines.stalled = Some(Instant::now()),
                        _ => {}
                    }
                }
                Wake::Received(received) => {
                    let Some(message) = received else {
                        return End::Drop;
                    };
                    deadlines.last_seen = Instant::now();
                    if let Some(end) = handle(message, &socket.outbox, &mut live.rtc) {
                        return end;
                    }
                }
                Wake::Deadline => {
                    if let Err(end) = deadlines.fire(state, &socket.outbox, live.expires) {
                        return end;
                    }
                }
            }
        }
    }
}

/// Handles a message from an authenticated browser; `Some` when it ends the session.
fn handle(message: Inbound, outbox: &Arc<Outbox>, rtc: &mut RtcSession) -> Option<End> {
    match message {
        // A repeated `auth` is harmless; a refused `rtc.signal` is answered and the
        // socket stays open; anything else is a protocol error.
        Inbound::Text(text) => match ClientMessage::parse(&text) {
            Ok(ClientMessage::RtcSignal(signal)) => rtc.signal(signal, text.len()),
            Ok(ClientMessage::Auth { .. }) => {}
            Err(error) => return Some(refused(&error)),
        },
        Inbound::Binary(len) => return Some(binary_refused(len)),
        Inbound::Close(payload) => return Some(End::PeerClosed(payload)),
        // Queued like events and counted against the same limit: a browser that
        // pings without reading overflows (1013).
        Inbound::Ping(payload) => {
            outbox.deliver(&Frame::pong(&payload));
        }
        Inbound::Pong => {}
        Inbound::TooBig => return Some(too_big()),
        Inbound::Invalid => return Some(End::Drop),
    }
    None
}

/// Sends `error` (if any) and a close frame, then waits briefly for the browser's
/// close so that it reads everything before the TCP connection goes away. With
/// `unread`, the browser's close cannot be read: the socket lingers until `limit`.
async fn close(
    socket: &mut Socket,
    code: u16,
    reason: &'static str,
    error: Option<Frame>,
    limit: Duration,
    unread: bool,
) {
    socket
        .outbox
        .finish(error.into_iter().chain([Frame::close(code, reason)]));
    let handshake = async {
        if !socket.write_out().await {
            return;
        }
        if unread {
            std::future::pending::<()>().await;
        }
        while let Some(message) = socket.recv().await {
            if matches!(
                message,
                Inbound::Close(_) | Inbound::Invalid | Inbound::TooBig
            ) {
                break;
            }
        }
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
