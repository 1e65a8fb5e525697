//! The hub's life: serve, drain on shutdown, and the background work in between.
//!
//! [`Lifecycle`] is the run state every part shares: ready or shutting down, the
//! JWT keys loaded or not, how many browser sockets are open, the connection
//! limits (`conn_limits`). [`Hub::serve`] runs the accept loop (`connection`) until
//! its shutdown future completes, then drains: readiness turns 503, every browser
//! is closed with 1001 (`socket` watches the shutdown token), in-flight requests
//! finish, all for at most `drain_timeout`; idle sessions hear of the shutdown
//! through the [`SocketClock`], which also keeps their deadlines. In the background
//! the JWT keys are warmed up (`/health` is 503 until then) and the own issuer's
//! signing key is rotated when due.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn_limits::ConnLimits;
use crate::connection::{self, Accept};
use crate::settings::HubSettings;
use crate::socket_clock::SocketClock;
use crate::state::Hub;
use crate::{fd_limit, issuer};

/// Ready or shutting down, keys loaded, open sockets: shared by every part.
#[derive(Clone)]
pub(crate) struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: CancellationToken,
    /// Set until shutdown begins.
    ready: AtomicBool,
    /// Every JWT key source can verify tokens (e.g. the JWKS was fetched once).
    keys_ready: AtomicBool,
    /// The key warm-up task was started (once per hub).
    warming: AtomicBool,
    connections: AtomicUsize,
    drained: Notify,
    /// What each client may hold open (docs/spec.md §6.6).
    limits: Arc<ConnLimits>,
    /// The sockets' deadlines, and their wake-up at shutdown.
    clock: Arc<SocketClock>,
}

impl Lifecycle {
    /// A hub that serves, keys not yet loaded, no socket open.
    pub(crate) fn new(settings: &HubSettings) -> Self {
        let shutdown = CancellationToken::new();
        Self {
            inner: Arc::new(Inner {
                clock: SocketClock::new(shutdown.clone()),
                shutdown,
                ready: AtomicBool::new(true),
                keys_ready: AtomicBool::new(false),
                warming: AtomicBool::new(false),
                connections: AtomicUsize::new(0),
                drained: Notify::new(),
                limits: ConnLimits::new(settings),
            }),
        }
    }

    /// Cancelled once shutdown begins: sessions close with 1001.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Serving, not shutting down.
    pub(crate) fn serving(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed) && !self.inner.shutdown.is_cancelled()
    }

    /// Every JWT key source can verify tokens.
    pub(crate) fn keys_ready(&self) -> bool {
        self.inner.keys_ready.load(Ordering::Relaxed)
    }

    /// Counts one open browser socket until the guard drops.
    pub(crate) fn connection(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.inner.clone())
    }

    /// Open browser sockets.
    pub(crate) fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// The browser sockets' deadlines; it also wakes every idle session at shutdown.
    pub(crate) fn clock(&self) -> &Arc<SocketClock> {
        &self.inner.clock
    }

    /// The connection limits the accept loop and the sockets count against.
    pub(crate) fn limits(&self) -> &Arc<ConnLimits> {
        &self.inner.limits
    }

    /// Readiness turns 503 and every browser is closed with 1001.
    fn begin_shutdown(&self) {
        self.inner.ready.store(false, Ordering::Relaxed);
        self.inner.shutdown.cancel();
    }

    /// Waits until every socket closed, for at most `limit`.
    async fn wait_for_sockets(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.drained.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.connections() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(
                    sockets = self.connections(),
                    "sockets still open after the drain timeout"
                );
                return;
            }
        }
    }
}

/// Decrements the socket count on drop.
pub(crate) struct ConnectionGuard(Arc<Inner>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

impl Hub {
    /// Loads the JWT keys in the background (once per hub), retrying every
    /// `jwks_refresh_interval` until every source is ready (`/health` is 503 until
    /// then); then keeps the own issuer's signing key fresh.
    pub(crate) fn warm_up_keys(&self) {
        if self.lifecycle.inner.warming.swap(true, Ordering::Relaxed) {
            return;
        }
        let lifecycle = self.lifecycle.clone();
        let jwt = self.app.auth.jwt.clone();
        let issuer = self.issuer();
        let key_max_age = self.settings.jwt_key_max_age;
        // Sources rate-limit their own fetches; this only bounds how soon a source
        // that failed (a JWKS URL, Redis for the shared issuer keys) is tried again.
        let retry = self
            .settings
            .jwks_refresh_interval
            .min(Duration::from_secs(1));
        tokio::spawn(async move {
            let shutdown = lifecycle.shutdown();
            loop {
                if jwt.warm_up().await {
                    lifecycle.inner.keys_ready.store(true, Ordering::Relaxed);
                    break;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
            }
            // The own issuer replaces its signing key when it is due, and a shared one
            // re-reads the key set now and then (rotations by other hubs).
            let Some(issuer) = issuer else {
                return;
            };
            loop {
                match issuer.rotate_if_older_than(key_max_age).await {
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "JWT signing key due but not rotated"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(issuer::SHARED_SYNC_INTERVAL) => {}
                }
                if issuer.is_shared() {
                    issuer.sync_shared().await;
                }
            }
        });
    }

    /// Starts shutting down: readiness turns 503 and every browser is closed with 1001.
    pub fn begin_shutdown(&self) {
        self.lifecycle.begin_shutdown();
    }

    /// Serves on `listener` until `shutdown` completes (or [`Hub::begin_shutdown`]),
    /// then drains: browsers get 1001, in-flight requests finish, for at most the
    /// drain timeout.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        self.warm_up_keys();
        fd_limit::check(self.settings.max_connections);
        let settings = &self.settings;
        let drain = settings.drain_timeout;
        // The listener stops when `shutdown` completes; after a bare
        // `begin_shutdown` (readiness already 503) it still serves for `drain`.
        let stop = CancellationToken::new();
        let signal = tokio::spawn({
            let hub = self.clone();
            let stop = stop.clone();
            async move {
                let begun = async {
                    hub.lifecycle.shutdown().cancelled().await;
                    tokio::time::sleep(drain).await;
                };
                tokio::select! {
                    () = shutdown => {
                        tracing::info!("hub shutting down");
                        hub.begin_shutdown();
                    }
                    () = begun => {}
                }
                stop.cancel();
            }
        });
        let accept = Accept {
            router: self.router(),
            limits: self.lifecycle.limits().clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            header_read_timeout: settings.header_read_timeout,
            idle_timeout: settings.http_idle_timeout,
            shutdown: stop,
        };
        let requests = TaskTracker::new();
        connection::accept(listener, accept, &requests).await;
        signal.abort();
        requests.close();
        if tokio::time::timeout(drain, requests.wait()).await.is_err() {
            tracing::warn!("HTTP requests still running after the drain timeout");
        }
        self.lifecycle.wait_for_sockets(drain).await;
        tracing::info!("hub stopped");
        Ok(())
    }
}
