//! The webcams' signalling relay (docs/spec.md §12): `rtc.signal` from one browser
//! to the sockets of another user, only while both are in the named voice channel.
//!
//! The hub never carries video: browsers connect to each other over WebRTC and
//! only exchange their offers, answers and ICE candidates through their hub
//! sockets. Who may talk to whom is Discord's voice presence ([`Presence`]), which
//! the hub follows live; a refused signal gets `FORBIDDEN` and the socket stays
//! open. Each socket's signalling is rate-limited in messages and bytes
//! (`RATE_LIMITED`, the socket stays open), so one browser cannot flood another's
//! outbox. A signal reaches every socket of its recipient on this hub directly
//! and, with Redis, the recipient's sockets on other hubs through the per-user
//! channel of [`RedisRoute`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coven_contract::{
    ErrorBody, ErrorCode, ErrorEnvelope, IceServer, RtcSignal, RtcSignalEnvelope, ServerMessage,
    Snowflake, Version,
};

use crate::broker::unix_millis;
use crate::fanout::{Frame, Outbox};
use crate::rtc_presence::Presence;
use crate::rtc_route::RedisRoute;
use crate::rtc_turn::IceSettings;

/// `rtc.signal` messages by outcome (`relayed`, `forbidden`, `rate_limited`).
const SIGNALS: &str = "hub_rtc_signals_total";
/// Signalling bytes a socket may send at once, then refilled at [`BYTES_PER_SEC`]:
/// a mesh of six needs five offers of a few KiB and their candidates.
const BYTES_BURST: f64 = 256.0 * 1024.0;
const BYTES_PER_SEC: f64 = 64.0 * 1024.0;

/// How much signalling one socket may send.
#[derive(Debug, Clone, Copy)]
pub struct RtcLimits {
    /// Messages at once (200)...
    pub burst: u32,
    /// ...then one more per this period (20 ms: 50 a second).
    pub period: Duration,
}

impl Default for RtcLimits {
    fn default() -> Self {
        Self {
            burst: 200,
            period: Duration::from_millis(20),
        }
    }
}

/// Every socket of every signed-in user on this hub, by user.
#[derive(Debug, Default)]
pub(crate) struct LocalPeers {
    sockets: Mutex<HashMap<Snowflake, Vec<Arc<Outbox>>>>,
}

impl LocalPeers {
    /// Adds a socket; `true` when it is the user's first on this hub.
    fn add(&self, user: Snowflake, outbox: Arc<Outbox>) -> bool {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        let list = sockets.entry(user).or_default();
        list.retain(|o| o.is_open());
        list.push(outbox);
        list.len() == 1
    }

    /// Removes a socket; `true` when the user has none left on this hub.
    fn remove(&self, user: Snowflake, outbox: &Arc<Outbox>) -> bool {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(list) = sockets.get_mut(&user) else {
            return false;
        };
        list.retain(|o| !Arc::ptr_eq(o, outbox) && o.is_open());
        if list.is_empty() {
            sockets.remove(&user);
            return true;
        }
        false
    }

    /// Hands `frame` to every socket of `user` here; returns how many took it.
    pub(crate) fn deliver(&self, user: Snowflake, frame: &Frame) -> usize {
        let sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        sockets
            .get(&user)
            .map_or(0, |list| list.iter().filter(|o| o.deliver(frame)).count())
    }

    /// The users with a socket here (to subscribe again after a Redis reconnect).
    pub(crate) fn users(&self) -> Vec<Snowflake> {
        let sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        sockets.keys().copied().collect()
    }
}

/// The relay: presence, the local sockets and, with Redis, the other hubs.
pub(crate) struct RtcRelay {
    presence: Arc<Presence>,
    peers: Arc<LocalPeers>,
    route: Option<RedisRoute>,
    ice: IceSettings,
    limits: RtcLimits,
}

impl std::fmt::Debug for RtcRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcRelay")
            .field("presence", &self.presence)
            .field("redis", &self.route.is_some())
            .finish_non_exhaustive()
    }
}

impl RtcRelay {
    /// A relay over `presence`, reaching other hubs through `route` when set.
    pub(crate) fn new(
        presence: Arc<Presence>,
        peers: Arc<LocalPeers>,
        route: Option<RedisRoute>,
        ice: IceSettings,
        limits: RtcLimits,
    ) -> Self {
        Self {
            presence,
            peers,
            route,
            ice,
            limits,
        }
    }

    /// Registers an authenticated socket of `subject` (the token's `sub`, a Discord
    /// user id for signalling to work) until the returned session is dropped.
    pub(crate) fn attach(self: &Arc<Self>, subject: &str, outbox: &Arc<Outbox>) -> RtcSession {
        self.presence.wanted();
        let user = subject.parse::<Snowflake>().ok();
        if let Some(user) = user
            && self.peers.add(user, outbox.clone())
            && let Some(route) = &self.route
        {
            route.subscribe(user);
        }
        RtcSession {
            relay: self.clone(),
            user,
            outbox: outbox.clone(),
            budget: None,
        }
    }
}

/// One socket's side of the relay. It lives as long as the socket, so it keeps
/// little: the rate budget is made on the first `rtc.signal` (a full budget then,
/// as it would have refilled to full since the socket opened).
pub(crate) struct RtcSession {
    relay: Arc<RtcRelay>,
    user: Option<Snowflake>,
    outbox: Arc<Outbox>,
    budget: Option<Box<Budget>>,
}

/// A socket's signalling budget: messages and bytes.
struct Budget {
    messages: Bucket,
    bytes: Bucket,
}

impl RtcSession {
    /// The `iceServers` of the `auth.ok` of this socket of `subject` (the token's
    /// `sub`).
    pub(crate) fn ice_servers(&self, subject: &str) -> Vec<IceServer> {
        self.relay.ice.ice_servers(subject)
    }

    /// Relays `signal` (a message of `size` bytes) or answers this socket with
    /// `FORBIDDEN` / `RATE_LIMITED`; the socket stays open either way.
    pub(crate) fn signal(&mut self, signal: RtcSignal, size: usize) {
        let outcome = self.relay_or_refuse(signal, size);
        let label = match &outcome {
            Ok(()) => "relayed",
            Err((ErrorCode::RateLimited, _)) => "rate_limited",
            Err(_) => "forbidden",
        };
        metrics::counter!(SIGNALS, "outcome" => label).increment(1);
        if let Err((code, message)) = outcome {
            let error = ServerMessage::Error(ErrorEnvelope {
                v: Version,
                error: ErrorBody { code, message },
                ts: unix_millis(),
            });
            self.outbox.deliver(&Frame::from(error.to_json()));
        }
    }

    fn relay_or_refuse(
        &mut self,
        signal: RtcSignal,
        size: usize,
    ) -> Result<(), (ErrorCode, String)> {
        let forbidden = |message: String| (ErrorCode::Forbidden, message);
        let Some(from) = self.user else {
            return Err(forbidden(
                "rtc.signal needs a Discord user id as the token's sub".into(),
            ));
        };
        let now = Instant::now();
        #[allow(clippy::cast_precision_loss)]
        let cost = size as f64;
        let limits = self.relay.limits;
        let budget = self.budget.get_or_insert_with(|| {
            Box::new(Budget {
                messages: Bucket::new(
                    f64::from(limits.burst.max(1)),
                    1.0 / limits.period.as_secs_f64().max(1e-6),
                ),
                bytes: Bucket::new(BYTES_BURST, BYTES_PER_SEC),
            })
        });
        if !budget.messages.can_take(now, 1.0) || !budget.bytes.can_take(now, cost) {
            return Err((
                ErrorCode::RateLimited,
                "too much rtc.signal traffic on this socket: slow down".into(),
            ));
        }
        budget.messages.take(1.0);
        budget.bytes.take(cost);
        let channel = signal.channel_id;
        if signal.to == from {
            return Err(forbidden("rtc.signal cannot be sent to yourself".into()));
        }
        if !self.relay.presence.both_in(from, signal.to, channel) {
            return Err(forbidden(format!(
                "rtc.signal: you and {} are not both in voice channel {channel}",
                signal.to
            )));
        }
        let frame = Frame::from(
            ServerMessage::RtcSignal(RtcSignalEnvelope {
                v: Version,
                from,
                channel_id: channel,
                data: signal.data,
                ts: unix_millis(),
            })
            .to_json(),
        );
        self.relay.peers.deliver(signal.to, &frame);
        if let Some(route) = &self.relay.route {
            route.publish(signal.to, frame);
        }
        Ok(())
    }
}

impl Drop for RtcSession {
    fn drop(&mut self) {
        if let Some(user) = self.user
            && self.relay.peers.remove(user, &self.outbox)
            && let Some(route) = &self.relay.route
        {
            route.unsubscribe(user);
        }
    }
}

/// A token bucket of `burst` refilled at `rate` per second.
struct Bucket {
    burst: f64,
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(burst: f64, rate: f64) -> Self {
        Self {
            burst,
            rate,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Refills up to `now`; whether `cost` tokens are there.
    fn can_take(&mut self, now: Instant, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        self.tokens >= cost
    }

    fn take(&mut self, cost: f64) {
        self.tokens -= cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let mut bucket = Bucket::new(2.0, 10.0);
        let start = bucket.at;
        assert!(bucket.can_take(start, 1.0));
        bucket.take(1.0);
        assert!(bucket.can_take(start, 1.0));
        bucket.take(1.0);
        assert!(!bucket.can_take(start, 1.0));
        assert!(bucket.can_take(start + Duration::from_millis(100), 1.0));
        assert!(
            !bucket.can_take(start + Duration::from_secs(100), 3.0),
            "capped"
        );
    }
}
