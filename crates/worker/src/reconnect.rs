//! The pacing of gateway reconnects (docs/worker.md "Reconnects").
//!
//! twilight backs off only after a failed *connect*: a gateway that accepts the
//! connection and closes it at once (right after HELLO, or right after READY)
//! resets its count and is redialled thousands of times a second, and Discord
//! bans IPs that do that. So the gateway loop paces reconnects itself: it tells
//! from the events twilight yields when a connection ended ([`Reconnects`]), and
//! after consecutive *short* sessions — ended before READY/RESUMED, or within a
//! few seconds of it — it stops polling the shard (polling a disconnected shard
//! dials) for a capped, jittered, exponential wait ([`ReconnectPacing`]).

use std::time::{Duration, Instant};

use twilight_gateway::error::{ReceiveMessageError, ReceiveMessageErrorType};
use twilight_gateway::{Event, ShardState};

use crate::backoff::Backoff;
use crate::metrics;

/// How the gateway loop paces reconnects: a session that ends before it is live
/// (READY or RESUMED), or within `stable_after` of it, is *short*; after each of
/// consecutive short sessions the loop waits `backoff.delay(n)` (n = 0, 1, …)
/// before connecting again. A session live for `stable_after` or longer resets the
/// count, and the reconnect after it is immediate (a resume, as Discord expects).
#[derive(Debug, Clone, Copy)]
pub struct ReconnectPacing {
    /// The wait after consecutive short sessions (default 1 s doubling to 60 s, jittered 50–100 %).
    pub backoff: Backoff,
    /// How long a session must stay live to count as a good one (default 5 s).
    pub stable_after: Duration,
}

impl Default for ReconnectPacing {
    fn default() -> Self {
        Self {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
            stable_after: Duration::from_secs(5),
        }
    }
}

/// Follows one gateway loop's connections and says how long to hold the shard
/// after each that ended.
#[derive(Debug)]
pub(crate) struct Reconnects {
    pacer: Pacer,
    link: Link,
}

impl Reconnects {
    pub(crate) fn new(pacing: ReconnectPacing) -> Self {
        Self {
            pacer: Pacer::new(pacing),
            link: Link::default(),
        }
    }

    /// The session went live (READY or RESUMED) now.
    pub(crate) fn live(&mut self) {
        self.pacer.live(Instant::now());
    }

    /// After `event`, with the shard now in `state`: until when the loop must
    /// not poll the shard, if the event ended the connection and the sessions
    /// before were short. The loop asks twilight for every event type,
    /// `GATEWAY_HELLO` and `GATEWAY_CLOSE` included: they are how it tells.
    pub(crate) fn after_event(
        &mut self,
        event: &Event,
        state: ShardState,
    ) -> Option<tokio::time::Instant> {
        match self.link.after(event, state) {
            LinkEnd::No => None,
            // A new connection is already open: nothing to hold any more, but
            // the one before counts.
            LinkEnd::Unseen => {
                metrics::reconnecting(self.pacer.ended(Instant::now()));
                None
            }
            LinkEnd::Now => self.hold(),
        }
    }

    /// After a receive error, with the shard now in `state`: a failed connect
    /// (twilight waits before the next by itself), or a frame it could not
    /// read, which may have dropped the connection.
    pub(crate) fn after_error(
        &mut self,
        error: &ReceiveMessageError,
        state: ShardState,
    ) -> Option<tokio::time::Instant> {
        if matches!(error.kind(), ReceiveMessageErrorType::Reconnect) {
            // The connection before may have gone without a close twilight
            // reports (a TCP close): it ended before this attempt.
            if std::mem::take(&mut self.link.open) {
                self.link.echo_expected = false;
                let _ = self.pacer.ended(Instant::now());
            }
            self.pacer.connect_failed();
            let wait = twilight_connect_wait(state);
            metrics::reconnecting(wait);
            tracing::warn!(
                %error,
                retry_in_ms = millis(wait),
                "could not connect to the gateway"
            );
            return None;
        }
        tracing::warn!(%error, "gateway receive error; twilight will recover");
        if self.link.open && matches!(state, ShardState::Disconnected { .. }) {
            self.link.open = false;
            self.link.echo_expected = true;
            return self.hold();
        }
        None
    }

    /// The connection ended now: counts it and returns the hold, if any.
    fn hold(&mut self) -> Option<tokio::time::Instant> {
        let wait = self.pacer.ended(Instant::now());
        metrics::reconnecting(wait);
        if wait.is_zero() {
            return None;
        }
        tracing::warn!(
            wait_ms = millis(wait),
            short_sessions = self.pacer.short_sessions(),
            "the gateway session ended early; waiting before reconnecting"
        );
        Some(tokio::time::Instant::now() + wait)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// [`ReconnectPacing`] applied to consecutive sessions.
#[derive(Debug)]
struct Pacer {
    pacing: ReconnectPacing,
    /// Consecutive short sessions (and failed connects) so far.
    short: u32,
    /// When the current session went live, if it did.
    live_since: Option<Instant>,
}

impl Pacer {
    fn new(pacing: ReconnectPacing) -> Self {
        Self {
            pacing,
            short: 0,
            live_since: None,
        }
    }

    fn live(&mut self, now: Instant) {
        self.live_since = Some(now);
    }

    /// The connection ended at `now`: how long to wait before connecting again.
    fn ended(&mut self, now: Instant) -> Duration {
        let stable = self
            .live_since
            .take()
            .is_some_and(|since| now.saturating_duration_since(since) >= self.pacing.stable_after);
        if stable {
            self.short = 0;
            return Duration::ZERO;
        }
        let delay = self.pacing.backoff.delay(self.short);
        self.short = self.short.saturating_add(1);
        delay
    }

    /// A connect attempt failed: twilight waits by itself (1 s doubling), so no
    /// wait of ours, but it counts as a short session: a gateway that then
    /// closes right after HELLO is waited for as long as the outage lasted.
    fn connect_failed(&mut self) {
        self.live_since = None;
        self.short = self.short.saturating_add(1);
    }

    fn short_sessions(&self) -> u32 {
        self.short
    }
}

/// Whether a gateway connection is open, told from the events twilight yields.
#[derive(Debug, Default)]
struct Link {
    /// A HELLO came and the connection has not ended since.
    open: bool,
    /// The shard closed the connection itself (op 7, op 9, zombie…): the
    /// gateway's reply to its close frame is no new connection's end.
    echo_expected: bool,
}

/// What an event says about the connection.
#[derive(Debug, PartialEq, Eq)]
enum LinkEnd {
    /// Nothing: it is open, or it already counted as ended.
    No,
    /// It ended with this event: the shard is disconnected and dials again when polled.
    Now,
    /// A new connection said HELLO while the last one was never seen ending.
    Unseen,
}

impl Link {
    fn after(&mut self, event: &Event, state: ShardState) -> LinkEnd {
        match event {
            Event::GatewayHello(_) => {
                let unseen = std::mem::replace(&mut self.open, true);
                self.echo_expected = false;
                if unseen { LinkEnd::Unseen } else { LinkEnd::No }
            }
            // The gateway closed the connection, or it broke (twilight reports
            // both as a close, 1006 for a break); or it closed before HELLO, in
            // which case it was never open but still ends an attempt.
            Event::GatewayClose(_) => {
                self.open = false;
                if std::mem::take(&mut self.echo_expected) {
                    LinkEnd::No
                } else {
                    LinkEnd::Now
                }
            }
            _ if self.open && matches!(state, ShardState::Disconnected { .. }) => {
                self.open = false;
                self.echo_expected = true;
                LinkEnd::Now
            }
            _ => LinkEnd::No,
        }
    }
}

/// How long twilight waits before its next connect after `state`'s failed
/// attempts: 2^(n−1) s, at most 255 s (twilight-gateway 0.18, `Shard::poll_connect`).
fn twilight_connect_wait(state: ShardState) -> Duration {
    match state {
        ShardState::Disconnected { reconnect_attempts } if reconnect_attempts > 0 => {
            Duration::from_secs(
                2_u64
                    .saturating_pow(u32::from(reconnect_attempts) - 1)
                    .min(255),
            )
        }
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use twilight_model::gateway::CloseFrame;
    use twilight_model::gateway::payload::incoming::Hello;

    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn short_sessions_back_off_and_a_stable_one_starts_over() {
        let pacing = ReconnectPacing::default();
        let mut pacer = Pacer::new(pacing);
        let t0 = Instant::now();
        // Closed right after HELLO, five times: 0.5–1 s, 1–2 s, 2–4 s, 4–8 s, 8–16 s.
        for n in 0..5 {
            let delay = pacer.ended(t0);
            let ceiling = secs(f64::from(1_u32 << n));
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{n}: {delay:?}");
        }
        // Live, but closed within `stable_after`: still short.
        pacer.live(t0);
        assert!(pacer.ended(t0 + secs(4.9)) >= secs(16.0));
        // A failed connect counts without a wait of its own.
        pacer.connect_failed();
        assert_eq!(pacer.short_sessions(), 7);
        // Capped at 60 s.
        for _ in 0..10 {
            assert!(pacer.ended(t0) <= secs(60.0));
        }
        // Live long enough: the next reconnect is immediate and the count starts over.
        pacer.live(t0);
        assert_eq!(pacer.ended(t0 + pacing.stable_after), Duration::ZERO);
        assert_eq!(pacer.short_sessions(), 0);
        assert!(pacer.ended(t0) <= secs(1.0));
    }

    #[test]
    fn a_connection_ends_once_whoever_closes_it() {
        let hello = Event::GatewayHello(Hello {
            heartbeat_interval: 41_250,
        });
        let close = Event::GatewayClose(Some(CloseFrame::new(4000, "")));
        let connected = ShardState::Identifying;
        let gone = ShardState::Disconnected {
            reconnect_attempts: 0,
        };
        let mut link = Link::default();
        // The gateway closes after HELLO.
        assert_eq!(link.after(&hello, connected), LinkEnd::No);
        assert_eq!(link.after(&close, gone), LinkEnd::Now);
        // The gateway closes before HELLO: an attempt ended all the same.
        assert_eq!(link.after(&close, gone), LinkEnd::Now);
        // The shard closes (op 7): the end is seen at once, the gateway's reply is no new end.
        assert_eq!(link.after(&hello, connected), LinkEnd::No);
        assert_eq!(link.after(&Event::GatewayReconnect, gone), LinkEnd::Now);
        assert_eq!(link.after(&close, gone), LinkEnd::No);
        // A connection that went without a word ends at the next HELLO.
        assert_eq!(link.after(&hello, connected), LinkEnd::No);
        assert_eq!(link.after(&hello, connected), LinkEnd::Unseen);
    }

    #[test]
    fn twilight_waits_are_known() {
        let after = |reconnect_attempts| {
            twilight_connect_wait(ShardState::Disconnected { reconnect_attempts })
        };
        assert_eq!(after(0), Duration::ZERO);
        assert_eq!(after(1), secs(1.0));
        assert_eq!(after(4), secs(8.0));
        assert_eq!(after(200), secs(255.0));
    }
}
