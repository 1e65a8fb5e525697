//! Signalling across hubs (docs/spec.md §12): with `REDIS_URL`, the two players of a
//! table may be on different hubs, so a relayed `rtc.signal` is also published on
//! the recipient's own Redis channel, `coven:{<guild>}:hub:rtc:<userId>`.
//!
//! Why per-user channels (pub/sub, not a stream): a signal is useful only now and
//! only to the hubs that hold its recipient's sockets. Each hub subscribes to the
//! channels of the users connected to it (on their first socket, until their last
//! one closes), so a signal costs one `PUBLISH` and reaches exactly those hubs;
//! nothing is stored. A payload is `<origin hub id>\n<frame>`: the publishing hub
//! has already delivered to its own sockets and skips its echo.
//!
//! The sender's hub authorises (both users in the channel, per its live presence)
//! before publishing. Publishes are pipelined by one task, in order; while Redis is
//! unreachable, signals to other hubs are dropped (WebRTC renegotiates when the
//! page retries) and the subscriber reconnects with backoff, subscribing again to
//! every user still connected here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coven_contract::{Secret, Snowflake};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fanout::Frame;
use crate::redis_link::RedisLink;
use crate::rtc_relay::LocalPeers;

/// Signals waiting to be published at most; beyond, new ones are dropped.
const QUEUE: usize = 16 * 1024;
/// Signals published in one pipeline at most.
const BATCH: usize = 256;
/// The subscriber's reconnect backoff: from `BACKOFF_MIN` doubling to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Longest wait for a pub/sub connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

enum Subscription {
    Add(Snowflake),
    Remove(Snowflake),
}

/// This hub's end of the per-user signalling channels.
pub(crate) struct RedisRoute {
    origin: u64,
    guild: Snowflake,
    outgoing: mpsc::Sender<(Snowflake, Frame)>,
    subscriptions: mpsc::UnboundedSender<Subscription>,
}

impl RedisRoute {
    /// Starts the publisher and the subscriber (needs a Tokio runtime) until `stop`.
    pub(crate) fn start(
        link: Arc<RedisLink>,
        url: &Secret,
        guild: Snowflake,
        peers: Arc<LocalPeers>,
        stop: &CancellationToken,
    ) -> Option<Self> {
        let client = redis::Client::open(url.expose()).ok()?;
        let origin = rand::random::<u64>();
        let (outgoing, queue) = mpsc::channel(QUEUE);
        let (subscriptions, changes) = mpsc::unbounded_channel();
        tokio::spawn(publish(link, guild, origin, queue, stop.clone()));
        tokio::spawn(subscribe(
            client,
            guild,
            origin,
            peers,
            changes,
            stop.clone(),
        ));
        Some(Self {
            origin,
            guild,
            outgoing,
            subscriptions,
        })
    }

    /// Publishes `frame` for `user`'s sockets on other hubs (dropped when the queue is full).
    pub(crate) fn publish(&self, user: Snowflake, frame: Frame) {
        if self.outgoing.try_send((user, frame)).is_err() {
            tracing::warn!(guild = %self.guild, origin = self.origin, "rtc.signal queue to Redis is full: signal dropped");
        }
    }

    /// Listens on `user`'s channel (their first socket here).
    pub(crate) fn subscribe(&self, user: Snowflake) {
        let _ = self.subscriptions.send(Subscription::Add(user));
    }

    /// Stops listening on `user`'s channel (their last socket here closed).
    pub(crate) fn unsubscribe(&self, user: Snowflake) {
        let _ = self.subscriptions.send(Subscription::Remove(user));
    }
}

/// `coven:{<guild>}:hub:rtc:<user>`.
fn channel(guild: Snowflake, user: Snowflake) -> String {
    RedisLink::key(guild, &format!("rtc:{user}"))
}

async fn publish(
    link: Arc<RedisLink>,
    guild: Snowflake,
    origin: u64,
    mut queue: mpsc::Receiver<(Snowflake, Frame)>,
    stop: CancellationToken,
) {
    let mut conn = link.conn();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            n = queue.recv_many(&mut batch, BATCH) => if n == 0 { return },
        }
        let mut pipe = redis::pipe();
        for (user, frame) in batch.drain(..) {
            let payload = format!("{origin:x}\n{}", frame.as_str());
            pipe.publish(channel(guild, user), payload).ignore();
        }
        let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        let _ = link.record("rtc_publish", result);
    }
}

async fn subscribe(
    client: redis::Client,
    guild: Snowflake,
    origin: u64,
    peers: Arc<LocalPeers>,
    mut changes: mpsc::UnboundedReceiver<Subscription>,
    stop: CancellationToken,
) {
    let own = format!("{origin:x}");
    let mut wait = BACKOFF_MIN;
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()) => connected,
        };
        let Ok(Ok(pubsub)) = connected else {
            tracing::debug!("rtc signalling: cannot open a Redis pub/sub connection; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(BACKOFF_MAX);
            continue;
        };
        let (mut sink, mut messages) = pubsub.split();
        // Everyone connected here now; later changes arrive through `changes`.
        while changes.try_recv().is_ok() {}
        let mut wanted: HashSet<Snowflake> = peers.users().into_iter().collect();
        let channels: Vec<String> = wanted.iter().map(|&u| channel(guild, u)).collect();
        if !channels.is_empty() && sink.subscribe(&channels).await.is_err() {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(BACKOFF_MAX);
            continue;
        }
        wait = BACKOFF_MIN;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                change = changes.recv() => {
                    let result = match change {
                        None => return,
                        Some(Subscription::Add(user)) => {
                            wanted.insert(user);
                            sink.subscribe(channel(guild, user)).await
                        }
                        Some(Subscription::Remove(user)) => {
                            wanted.remove(&user);
                            sink.unsubscribe(channel(guild, user)).await
                        }
                    };
                    if result.is_err() {
                        break;
                    }
                }
                message = messages.next() => {
                    let Some(message) = message else { break };
                    deliver(&peers, &own, &message);
                }
            }
        }
        tracing::debug!("rtc signalling: Redis pub/sub connection lost; reconnecting");
    }
}

/// Hands a signal from another hub to its recipient's sockets here.
fn deliver(peers: &LocalPeers, own: &str, message: &redis::Msg) {
    let Some(user) = message
        .get_channel_name()
        .rsplit(':')
        .next()
        .and_then(|id| id.parse::<Snowflake>().ok())
    else {
        return;
    };
    let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) else {
        return;
    };
    let Some((origin, frame)) = payload.split_once('\n') else {
        return;
    };
    if origin != own {
        peers.deliver(user, &Frame::from(frame.to_owned()));
    }
}
