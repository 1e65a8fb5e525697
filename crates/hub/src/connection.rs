//! The hub's own accept loop: every TCP connection counted, timed and drained.
//!
//! `axum::serve` offers neither a header-read timeout nor an idle timeout, so the
//! hub accepts connections itself and serves each with hyper's HTTP/1.1 builder
//! (what `axum::serve` uses underneath; the router is the same tower service):
//! - a connection is admitted by [`ConnLimits`] first (in all, per client IP); a
//!   refused one gets a whole 429/503 response with `Retry-After` written raw, and
//!   nothing else happens to anyone (docs/spec.md §6.6);
//! - hyper closes a connection whose request head is not in within
//!   `header_read_timeout`, counted from when the hub starts waiting for it (a new
//!   connection, or a keep-alive one after its previous response);
//! - a watchdog closes a connection on which no byte moved either way, with no
//!   request running, for `http_idle_timeout`; it stops when a WebSocket takes the
//!   connection over (the socket then has its own ping and silence rules);
//! - shutdown stops accepting and asks every connection to finish its request and
//!   close (hyper's graceful shutdown); `lifecycle` bounds the wait.
//!
//! Every request carries its connection's [`ConnInfo`] for [`crate::client_ip`].

use std::io;
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::client_ip::ConnInfo;
use crate::conn_limits::{ConnLimits, Refusal, Slot};

/// Refused connections answered at once; beyond this they are just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refused connection may take to read its answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections, by `limit` (counter).
const REFUSED: &str = "hub_connections_refused_total";
/// HTTP connections closed by the idle watchdog (counter).
const IDLE_CLOSED: &str = "hub_connections_idle_closed_total";

/// What the accept loop serves, and how.
pub(crate) struct Accept {
    pub(crate) router: Router,
    pub(crate) limits: Arc<ConnLimits>,
    pub(crate) trusted_proxies: Vec<IpAddr>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// Cancelled to stop accepting and drain.
    pub(crate) shutdown: CancellationToken,
}

/// Accepts until shutdown begins; every connection's task runs on `tracker`.
pub(crate) async fn accept(listener: TcpListener, accept: Accept, tracker: &TaskTracker) {
    let accept = Arc::new(accept);
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    loop {
        let accepted = tokio::select! {
            biased;
            () = accept.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_per_connection(&error) => continue,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::error!(%error, "accepting connections failed; retrying in 1 s");
                tokio::select! {
                    () = accept.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let peer_ip = peer.ip().to_canonical();
        let trusted_proxy = accept
            .trusted_proxies
            .iter()
            .any(|proxy| proxy.to_canonical() == peer_ip);
        // A trusted proxy's clients are counted per request (their sockets).
        match accept
            .limits
            .connection((!trusted_proxy).then_some(peer_ip))
        {
            Ok(slot) => {
                let conn = ConnInfo {
                    peer,
                    trusted_proxy,
                };
                tracker.spawn(serve(tcp, conn, slot, accept.clone()));
            }
            Err(refusal) => {
                metrics::counter!(REFUSED, "limit" => refusal_label(refusal)).increment(1);
                tracing::debug!(%peer, limit = refusal_label(refusal), "connection refused");
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(tcp, refusal).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

/// Errors that concern one connection only (it went away before accept).
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn refusal_label(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Total => "total",
        Refusal::PerIp => "per_ip",
        Refusal::UnauthenticatedPerIp => "unauthenticated_per_ip",
        Refusal::PerUser => "per_user",
    }
}

/// Writes the refusal, then reads (and drops) what the client sent for a moment,
/// so that closing does not reset the connection before the answer is read.
async fn refuse(mut tcp: TcpStream, refusal: Refusal) {
    let answer = async {
        tcp.write_all(&refusal.raw_response()).await?;
        tcp.shutdown().await?;
        let mut sink = [0_u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
}

/// Serves one admitted connection until it closes, idles out or drains.
async fn serve(tcp: TcpStream, conn: ConnInfo, slot: Slot, accept: Arc<Accept>) {
    // Small event frames must leave at once: without TCP_NODELAY, Nagle holds a
    // frame back until the previous one is acknowledged (up to 40 ms of delayed ACK).
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
    let activity = Arc::new(Activity::new());
    let io = TrackedIo {
        inner: tcp,
        activity: activity.clone(),
        slot,
    };
    let router = accept.router.clone();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(conn);
        let running = Running::new(requests.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(running);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(accept.header_read_timeout)
        .keep_alive(true);
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    let mut draining = false;
    loop {
        let idle_at = activity.idle_deadline(accept.idle_timeout);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, peer = %conn.peer, "connection ended");
                }
                return;
            }
            () = accept.shutdown.cancelled(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            () = tokio::time::sleep_until(idle_at) => {
                if activity.is_idle(accept.idle_timeout) {
                    metrics::counter!(IDLE_CLOSED).increment(1);
                    tracing::debug!(peer = %conn.peer, "idle connection closed");
                    return;
                }
            }
        }
    }
}

/// When bytes last moved on a connection, and how many requests are running.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last: AtomicU64,
    running: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            running: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// When the connection will have been idle for `limit`, if nothing moves.
    fn idle_deadline(&self, limit: Duration) -> Instant {
        if self.running.load(Ordering::Relaxed) > 0 {
            Instant::now() + limit
        } else {
            self.last() + limit
        }
    }

    fn is_idle(&self, limit: Duration) -> bool {
        self.running.load(Ordering::Relaxed) == 0 && self.last().elapsed() >= limit
    }
}

/// One running request: the connection is not idle while its handler works.
struct Running(Arc<Activity>);

impl Running {
    fn new(activity: Arc<Activity>) -> Self {
        activity.running.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.touch();
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The TCP stream, noting every byte that moves and holding the connection's
/// slot in the limits until it is dropped (also after a WebSocket upgrade, which
/// takes the stream and the slot with [`TrackedIo::into_parts`]).
pub(crate) struct TrackedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    slot: Slot,
}

impl TrackedIo {
    /// The stream and the connection's slot, for a WebSocket session: the idle
    /// watchdog no longer applies (the socket has its own ping and silence rules).
    pub(crate) fn into_parts(self) -> (TcpStream, Slot) {
        (self.inner, self.slot)
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
