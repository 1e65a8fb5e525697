//! The hub's link to Redis (`REDIS_URL`): connections, key names, and whether Redis
//! is reachable right now.
//!
//! Several hubs share events, `seq`, replay, the rooms API's memory and the JWT
//! issuer's keys through one Redis. Every part that talks to Redis goes through a
//! [`RedisLink`], so the "is Redis up?" answer that `/health` and `/metrics` show
//! is fed by every command's result, and an outage is logged once when it starts
//! and once when it ends, never once per request.
//!
//! Connections are `redis`'s `ConnectionManager`s, created lazily (a hub starts
//! even when Redis is down) and reconnecting by themselves. Commands fail fast
//! while Redis is unreachable (no long retry loops inside a request): the caller
//! decides what to refuse.
//!
//! `rediss://` connects over TLS (rustls with the ring provider, like every TLS
//! client of the workspace), verifying the server's certificate against the
//! system's roots, or only against the certificates in `SSL_CERT_FILE` when that
//! is set (a private CA; see docs/scaling.md). A certificate the hub does not
//! trust counts as "Redis unreachable" and is logged with the reason.
//!
//! Every key lives under `coven:{<guild>}:hub:` (the braces are a Redis Cluster
//! hash tag, so a guild's keys share a slot and one Lua script may touch them all):
//!
//! | key | type | what |
//! |---|---|---|
//! | `coven:{g}:hub:seq` | string | last `seq` assigned (INCR; when missing, a new stream starts at a clock-derived base) |
//! | `coven:{g}:hub:events` | stream | the replay window: id `<seq>-0`, fields `e` (event JSON) and `ts` (ms), `MAXLEN ~` replay capacity |
//! | `coven:{g}:hub:once:<key>` | string, TTL | a [`OnceKey`]: a webhook event id (`event:<id>`, the dedupe window) or an announced room (`room.created:<channel>`, while the room exists; the dedupe window after its `room.deleted`) |
//! | `coven:{g}:hub:idem:<user>:<key>` | string, TTL | an `Idempotency-Key` of `POST /api/create-room`: `pending:<token>` then `done:<answer JSON>` |
//! | `coven:{g}:hub:rate:<user>` | string, TTL | the user's GCRA "theoretical arrival time" (ms) |
//! | `coven:{g}:hub:owners` | hash | who created each live room through the API: field channel id, value the creator's `sub` (`crate::room_owners`; a field goes when the room is ended or deleted) |
//! | `coven:{g}:hub:jwt-keys` | string | the own issuer's key set (private keys: protect Redis like a secret store) |
//! | `coven:{g}:hub:login:<cookie id>` | string, TTL login flow | a Discord login in progress: its `state` and PKCE verifier, taken once by whichever hub gets the callback |//!
//! [`OnceKey`]: crate::OnceKey

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use coven_contract::{Secret, Snowflake};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::metrics::{REDIS_ERRORS, REDIS_UP};

/// Longest wait for one Redis command before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Why the link to Redis (`REDIS_URL`) could not be set up. Never repeats the URL,
/// which may carry a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedisLinkError {
    /// `REDIS_URL` does not parse as a Redis URL.
    #[error("REDIS_URL is not a valid Redis URL")]
    InvalidUrl,
    /// The connection manager could not be created.
    #[error("cannot set up the Redis connection")]
    Setup,
}

/// Connections to one Redis and its reachability.
pub(crate) struct RedisLink {
    client: redis::Client,
    conn: ConnectionManager,
    state: AtomicU8,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisLink")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url`; connects lazily, so it fails only on a malformed URL (the
    /// error never repeats the URL, which may carry a password).
    pub(crate) fn new(url: &Secret) -> Result<Self, RedisLinkError> {
        // `rediss://` builds its rustls config from the process-wide provider;
        // another part (the Discord clients) may have installed the same one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(url.expose()).map_err(|_| RedisLinkError::InvalidUrl)?;
        let conn = manager(&client, RESPONSE_TIMEOUT)?;
        metrics::gauge!(REDIS_UP).set(0.0);
        Ok(Self {
            client,
            conn,
            state: AtomicU8::new(UNKNOWN),
        })
    }

    /// The shared, multiplexed connection (cheap to clone).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A dedicated connection for blocking reads (`XREAD BLOCK` would hold up every
    /// other command on a shared connection), with room for `block` in its timeout.
    pub(crate) fn blocking_conn(
        &self,
        block: Duration,
    ) -> Result<ConnectionManager, RedisLinkError> {
        manager(&self.client, RESPONSE_TIMEOUT + block)
    }

    /// Whether the last command succeeded.
    pub(crate) fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Records a command's outcome (logging a change of reachability once) and
    /// passes it on.
    pub(crate) fn record<T>(
        &self,
        what: &'static str,
        result: redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        match &result {
            Ok(_) => {
                let before = self.state.swap(UP, Ordering::Relaxed);
                if before != UP {
                    metrics::gauge!(REDIS_UP).set(1.0);
                    if before == DOWN {
                        tracing::info!("Redis is reachable again");
                    } else {
                        tracing::info!("connected to Redis");
                    }
                }
            }
            Err(error) => {
                metrics::counter!(REDIS_ERRORS, "op" => what).increment(1);
                if is_unreachable(error) {
                    if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
                        metrics::gauge!(REDIS_UP).set(0.0);
                        tracing::warn!(%error, op = what, "Redis is unreachable: serving from memory, refusing what needs Redis");
                    }
                } else {
                    tracing::warn!(%error, op = what, "Redis command failed");
                }
            }
        }
        result
    }

    /// The full name of a key of `guild`: `coven:{<guild>}:hub:<suffix>`.
    pub(crate) fn key(guild: Snowflake, suffix: &str) -> String {
        format!("coven:{{{guild}}}:hub:{suffix}")
    }
}

/// Whether `error` means Redis cannot be reached (as opposed to a command error
/// from a reachable server, e.g. a script bug or a wrong type).
fn is_unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
        )
}

fn manager(
    client: &redis::Client,
    response_timeout: Duration,
) -> Result<ConnectionManager, RedisLinkError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        // Fail fast while Redis is down: the next command starts a new attempt.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|_| RedisLinkError::Setup)
}
