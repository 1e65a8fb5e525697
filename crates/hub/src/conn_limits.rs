//! What one stranger can hold open: the connection limits of docs/spec.md §6.6.
//!
//! Four counters, each released by a guard's `Drop`, so that no path (an error, a
//! panic, a peer that vanishes) can leak a slot: every TCP connection in all
//! (`max_connections`), connections per client IP (`max_connections_per_ip`),
//! unauthenticated sockets per client IP (`max_unauthenticated_per_ip`) and
//! authenticated sockets per user (`max_sockets_per_user`). A refusal leaves every
//! existing connection alone: it is answered 429 (per IP, per user) or 503 (in all)
//! with `Retry-After`. The maps hold one entry per IP or user that has something
//! open right now, so they are bounded by the connections themselves. IPv6 clients
//! are counted per /64, the smallest block a home or a cloud VM gets.
//! docs/security.md lists each limit, its setting and its test.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coven_contract::{ApiError, ErrorCode};

use crate::client_ip::ClientIp;
use crate::settings::HubSettings;

/// What a refused client is told to wait before trying again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Which limit refused a connection or a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections`: the hub is full (503).
    Total,
    /// `max_connections_per_ip` (429).
    PerIp,
    /// `max_unauthenticated_per_ip` (429).
    UnauthenticatedPerIp,
    /// `max_sockets_per_user` (429, or `RATE_LIMITED` at `auth`).
    PerUser,
}

impl Refusal {
    /// 503 when the hub is full, 429 for everything one client holds.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Total => StatusCode::SERVICE_UNAVAILABLE,
            Self::PerIp | Self::UnauthenticatedPerIp | Self::PerUser => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    /// What the client reads; names the limit, never a count of other clients.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Total => "the hub is at its connection limit",
            Self::PerIp => "too many connections from this address",
            Self::UnauthenticatedPerIp => "too many unauthenticated sockets from this address",
            Self::PerUser => "too many sockets for this user",
        }
    }

    fn body(self) -> ApiError {
        ApiError {
            message: self.message().to_owned(),
            code: match self {
                Self::Total => ErrorCode::InternalError,
                _ => ErrorCode::RateLimited,
            },
            details: Some(serde_json::json!({ "retryAfter": RETRY_AFTER.as_secs() })),
        }
    }

    /// A whole HTTP/1.1 response, for a connection refused before HTTP is parsed.
    pub(crate) fn raw_response(self) -> Vec<u8> {
        let body = serde_json::to_string(&self.body()).unwrap_or_default();
        let status = self.status();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nretry-after: {}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default(),
            RETRY_AFTER.as_secs(),
            body.len(),
        )
        .into_bytes()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER.as_secs()),
        );
        response
    }
}

/// The counters behind every limit, shared by the accept loop and the sockets.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    max_connections: usize,
    max_per_ip: usize,
    max_unauthenticated_per_ip: usize,
    max_per_user: usize,
    total: AtomicUsize,
    per_ip: Counts<IpAddr>,
    unauthenticated: Counts<IpAddr>,
    per_user: Counts<String>,
}

impl ConnLimits {
    /// Limits as `settings` set them.
    pub(crate) fn new(settings: &HubSettings) -> Arc<Self> {
        Arc::new(Self {
            max_connections: settings.max_connections,
            max_per_ip: settings.max_connections_per_ip,
            max_unauthenticated_per_ip: settings.max_unauthenticated_per_ip,
            max_per_user: settings.max_sockets_per_user,
            total: AtomicUsize::new(0),
            per_ip: Counts::default(),
            unauthenticated: Counts::default(),
            per_user: Counts::default(),
        })
    }

    /// One more TCP connection in all; `ip` also counts it against that client
    /// (`None` for a trusted proxy, whose clients are counted per request).
    pub(crate) fn connection(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Slot, Refusal> {
        let total = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            });
        if total.is_err() {
            return Err(Refusal::Total);
        }
        let mut slot = Slot {
            limits: self.clone(),
            kind: SlotKind::Total,
        };
        if let Some(ip) = ip {
            let key = ip_key(ip);
            // On refusal, dropping `slot` gives the total back.
            if !self.per_ip.try_add(&key, self.max_per_ip) {
                return Err(Refusal::PerIp);
            }
            slot.kind = SlotKind::TotalAndIp(key);
        }
        Ok(slot)
    }

    /// One more connection for a client seen behind a trusted proxy (its socket).
    pub(crate) fn client_connection(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = ip_key(ip);
        if !self.per_ip.try_add(&key, self.max_per_ip) {
            return Err(Refusal::PerIp);
        }
        Ok(Slot {
            limits: self.clone(),
            kind: SlotKind::Ip(key),
        })
    }

    /// One more unauthenticated socket from `ip`, until it authenticates.
    pub(crate) fn unauthenticated(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = ip_key(ip);
        if !self
            .unauthenticated
            .try_add(&key, self.max_unauthenticated_per_ip)
        {
            return Err(Refusal::UnauthenticatedPerIp);
        }
        Ok(Slot {
            limits: self.clone(),
            kind: SlotKind::Unauthenticated(key),
        })
    }

    /// One more authenticated socket for `user` (the token's `sub`).
    pub(crate) fn user_socket(self: &Arc<Self>, user: &str) -> Result<Slot, Refusal> {
        let key = user.to_owned();
        if !self.per_user.try_add(&key, self.max_per_user) {
            return Err(Refusal::PerUser);
        }
        Ok(Slot {
            limits: self.clone(),
            kind: SlotKind::User(key),
        })
    }

    /// Admits a WebSocket from `client` as unauthenticated: counted against its
    /// IP until [`SocketSlots::authenticated`] (and, for a client behind a trusted
    /// proxy, also against its IP's connections, which the accept loop could not).
    pub(crate) fn socket(self: &Arc<Self>, client: ClientIp) -> Result<SocketSlots, Refusal> {
        let mut slots = SocketSlots {
            limits: self.clone(),
            connection: None,
            socket: None,
        };
        if let Some(ip) = client.ip {
            if client.forwarded {
                slots.connection = Some(self.client_connection(ip)?);
            }
            slots.socket = Some(self.unauthenticated(ip)?);
        }
        Ok(slots)
    }
}

/// What one WebSocket holds against the limits, for as long as it lives.
#[derive(Debug)]
pub(crate) struct SocketSlots {
    limits: Arc<ConnLimits>,
    connection: Option<Slot>,
    /// The unauthenticated socket's slot (per IP), then the user's (one field: a
    /// socket lives as long as the connection, so it holds what it needs only).
    socket: Option<Slot>,
}

impl SocketSlots {
    /// The socket authenticated as `user` (the token's `sub`): it no longer counts
    /// as unauthenticated, and counts against the user's sockets instead.
    pub(crate) fn authenticated(&mut self, user: &str) -> Result<(), Refusal> {
        // Released first: a refusal leaves nothing held.
        self.socket = None;
        self.socket = Some(self.limits.user_socket(user)?);
        Ok(())
    }
}

/// The per-/64 key of an IPv6 address; IPv4 (also IPv4-mapped) as it is.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Counts per key; a key leaves the map when its count returns to zero.
#[derive(Debug)]
struct Counts<K>(Mutex<HashMap<K, usize>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn try_add(&self, key: &K, max: usize) -> bool {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.get(key).copied().unwrap_or(0);
        if count >= max {
            return false;
        }
        map.insert(key.clone(), count + 1);
        true
    }

    fn remove(&self, key: &K) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                map.remove(key);
            }
        }
    }
}

/// One counted connection or socket; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<ConnLimits>,
    kind: SlotKind,
}

#[derive(Debug)]
enum SlotKind {
    /// Nothing held any more (while dropping).
    None,
    Total,
    TotalAndIp(IpAddr),
    Ip(IpAddr),
    Unauthenticated(IpAddr),
    User(String),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let limits = &self.limits;
        match std::mem::replace(&mut self.kind, SlotKind::None) {
            SlotKind::None => {}
            SlotKind::Total => {
                limits.total.fetch_sub(1, Ordering::AcqRel);
            }
            SlotKind::TotalAndIp(key) => {
                limits.per_ip.remove(&key);
                limits.total.fetch_sub(1, Ordering::AcqRel);
            }
            SlotKind::Ip(key) => limits.per_ip.remove(&key),
            SlotKind::Unauthenticated(key) => limits.unauthenticated.remove(&key),
            SlotKind::User(key) => limits.per_user.remove(&key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coven_contract::{Secret, Snowflake};

    fn limits(total: usize, per_ip: usize, unauth: usize, per_user: usize) -> Arc<ConnLimits> {
        let mut settings = HubSettings::new(
            Snowflake::new(1).unwrap(),
            vec![Secret::new("s")],
            "https://issuer".into(),
        );
        settings.max_connections = total;
        settings.max_connections_per_ip = per_ip;
        settings.max_unauthenticated_per_ip = unauth;
        settings.max_sockets_per_user = per_user;
        ConnLimits::new(&settings)
    }

    #[test]
    fn every_slot_is_released_on_drop() {
        let limits = limits(3, 2, 1, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = limits.connection(Some(a)).unwrap();
        let two = limits.connection(Some(a)).unwrap();
        assert_eq!(limits.connection(Some(a)).unwrap_err(), Refusal::PerIp);
        // The refused per-IP attempt gave its total slot back.
        let three = limits.connection(Some(b)).unwrap();
        assert_eq!(limits.connection(None).unwrap_err(), Refusal::Total);
        drop((one, two, three));
        assert_eq!(limits.total.load(Ordering::Acquire), 0);
        assert!(limits.per_ip.0.lock().unwrap().is_empty());

        let socket = limits.unauthenticated(a).unwrap();
        assert_eq!(
            limits.unauthenticated(a).unwrap_err(),
            Refusal::UnauthenticatedPerIp
        );
        drop(socket);
        let user = limits.user_socket("7").unwrap();
        assert_eq!(limits.user_socket("7").unwrap_err(), Refusal::PerUser);
        drop(user);
        assert!(limits.user_socket("7").is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let limits = limits(10, 1, 1, 1);
        let _held = limits
            .connection(Some("2001:db8::1".parse().unwrap()))
            .unwrap();
        assert_eq!(
            limits
                .connection(Some("2001:db8::ffff".parse().unwrap()))
                .unwrap_err(),
            Refusal::PerIp
        );
        assert!(
            limits
                .connection(Some("2001:db8:0:1::1".parse().unwrap()))
                .is_ok()
        );
    }
}
