//! Publishing through Redis under concurrency (issue 18): webhooks that arrive
//! together go to Redis together, in one script call, and every guarantee of one
//! event at a time holds: a `seq` per event, distinct and gap-free, in the order
//! the events arrived (so per publisher in the order of its acknowledgements),
//! exact dedupe also within one call, each event in the stream once at its `seq`;
//! and the publishing hub delivers its own events without waiting for its reader.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, id, joined};
use coven_contract::{Event, Secret, ServerMessage};
use coven_hub::{Broker, BrokerLimits, OnceKey, Outbox, RedisBroker};
use coven_testkit::RedisServer;
use futures_util::future::join_all;

fn limits() -> BrokerLimits {
    BrokerLimits {
        replay_capacity: 10_000,
        replay_max_age: Duration::from_secs(60),
        dedupe_capacity: 10_000,
        dedupe_max_age: Duration::from_secs(60),
    }
}

fn broker(redis: &RedisServer) -> Arc<RedisBroker> {
    Arc::new(RedisBroker::new(&Secret::new(redis.url()), limits()).unwrap())
}

fn key(id: &str) -> Vec<OnceKey> {
    vec![OnceKey::Event(id.into())]
}

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Publishes a first event (once-key `key`) and waits until `hub`'s reader follows
/// the stream past it; returns its `seq`.
async fn first_event_read(hub: &RedisBroker, key_id: &str) -> u64 {
    let first = hub.publish(joined(1), key(key_id)).await.unwrap().unwrap();
    eventually("the reader follows the stream", async || {
        hub.ring_state(id(common::GUILD)).head_seq == first
    })
    .await;
    first
}

/// How many script calls (`EVALSHA`) Redis has run.
async fn script_calls(redis: &RedisServer) -> u64 {
    calls(redis, "evalsha").await
}

/// How many times Redis has run `command`.
async fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection(redis).await)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// `(seq, user id)` of every stream entry after `after`.
async fn stream_after(redis: &RedisServer, after: u64) -> Vec<(u64, u64)> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("coven:{{{}}}:hub:events", common::GUILD))
        .arg(format!("{}-0", after + 1))
        .arg("+")
        .query_async(&mut connection(redis).await)
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .map(|entry| {
            let seq = entry.id.strip_suffix("-0").unwrap().parse().unwrap();
            let body: String = entry.get("e").unwrap();
            let Event::VoiceJoined(joined) = serde_json::from_str(&body).unwrap() else {
                panic!("{body}");
            };
            (seq, joined.user_id.get())
        })
        .collect()
}

/// A single-threaded runtime: the 64 publishes are all queued before the
/// publishing task runs, so the test knows exactly what one call must carry.
#[tokio::test]
async fn webhooks_that_arrive_together_share_one_script_call_and_keep_every_guarantee() {
    let redis = RedisServer::start_volatile();
    let hub = broker(&redis);
    let first = hub.publish(joined(1), key("k0")).await.unwrap().unwrap();
    // The stream reader's start (its own script call) is over before counting.
    eventually("the reader follows the stream", async || {
        hub.ring_state(id(common::GUILD)).head_seq == first
    })
    .await;
    let calls = script_calls(&redis).await;

    // Users 100.. with their own keys, except: 110 and 111 share one (the second
    // is a duplicate within the call), 120 repeats the first event's key.
    let events: Vec<(u64, String)> = (100..164)
        .map(|user| {
            let id = match user {
                111 => "k110".to_owned(),
                120 => "k0".to_owned(),
                _ => format!("k{user}"),
            };
            (user, id)
        })
        .collect();
    let seqs: Vec<Option<u64>> = join_all(
        events
            .iter()
            .map(|(user, id)| hub.publish(joined(*user), key(id))),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();

    assert_eq!(
        script_calls(&redis).await - calls,
        1,
        "64 publishes waiting together go in one script call"
    );
    let published: Vec<(u64, u64)> = events
        .iter()
        .zip(&seqs)
        .filter_map(|((user, _), seq)| seq.map(|seq| (seq, *user)))
        .collect();
    let refused: Vec<u64> = events
        .iter()
        .zip(&seqs)
        .filter(|(_, seq)| seq.is_none())
        .map(|((user, _), _)| *user)
        .collect();
    assert_eq!(
        refused,
        [111, 120],
        "exactly the two duplicates are refused"
    );
    let expected: Vec<u64> = (first + 1..=first + 62).collect();
    assert_eq!(
        published.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        expected,
        "distinct, gap-free seqs in the order the events arrived"
    );
    assert_eq!(
        stream_after(&redis, first).await,
        published,
        "each published event in the stream once, at its seq"
    );
    eventually("the hub's own stream delivers them", async || {
        hub.ring_state(id(common::GUILD)).head_seq == first + 62
    })
    .await;

    // A redelivery of any of them is still refused, and takes no seq.
    assert_eq!(hub.publish(joined(100), key("k100")).await.unwrap(), None);
    assert_eq!(
        hub.publish(joined(7), key("k-new")).await.unwrap(),
        Some(first + 63)
    );
}

/// Several workers posting one event at a time to two hubs, all at once: each
/// publisher's events get increasing seqs in the order it was acknowledged, and
/// all of them together are one gap-free run with no seq handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_two_hubs_get_one_gap_free_order() {
    const PUBLISHERS: u64 = 8;
    const EACH: u64 = 40;
    let redis = RedisServer::start_volatile();
    let hubs = [broker(&redis), broker(&redis)];
    let first = hubs[0]
        .publish(joined(1), key("start"))
        .await
        .unwrap()
        .unwrap();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let hub = hubs[(publisher % 2) as usize].clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..EACH {
                    let user = 1000 + publisher * EACH + n;
                    let seq = hub
                        .publish(joined(user), key(&format!("p{publisher}-{n}")))
                        .await
                        .unwrap()
                        .expect("a new event is published");
                    // A redelivery right after its acknowledgement is refused.
                    if n % 10 == 0 {
                        assert_eq!(
                            hub.publish(joined(user), key(&format!("p{publisher}-{n}")))
                                .await
                                .unwrap(),
                            None
                        );
                    }
                    acknowledged.push((seq, user));
                }
                acknowledged
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let acknowledged = task.await.unwrap();
        assert!(
            acknowledged.windows(2).all(|w| w[0].0 < w[1].0),
            "a publisher's seqs increase in the order of its acknowledgements: {acknowledged:?}"
        );
        all.extend(acknowledged);
    }
    all.sort_unstable();
    let total = PUBLISHERS * EACH;
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (first + 1..=first + total).collect::<Vec<_>>(),
        "every seq once, no gap"
    );
    assert_eq!(
        stream_after(&redis, first).await,
        all,
        "the stream holds each event once, at its seq"
    );
    for hub in &hubs {
        eventually("both hubs deliver every event", async || {
            hub.ring_state(id(common::GUILD)).head_seq == first + total
        })
        .await;
    }
}

/// While a hub publishes, its stream reader does not read its own events back:
/// a blocking `XREAD` would be woken by every call's `XADD`s and return entries
/// the hub delivered already (`crate::publish_activity`). Before, the reader made
/// about one `XREAD` per script call; now hardly any while the calls go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_hub_does_not_read_its_own_events_back() {
    const PUBLISHERS: u64 = 8;
    const EACH: u64 = 40;
    let redis = RedisServer::start_volatile();
    let hub = broker(&redis);
    let guild = id(common::GUILD);
    let first = first_event_read(&hub, "start").await;
    let (xreads, scripts) = (calls(&redis, "xread").await, script_calls(&redis).await);
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let user = 1000 + publisher * EACH + n;
                    hub.publish(joined(user), key(&format!("p{publisher}-{n}")))
                        .await
                        .unwrap()
                        .expect("a new event is published");
                }
            })
        })
        .collect();
    for task in join_all(tasks).await {
        task.unwrap();
    }
    let xreads = calls(&redis, "xread").await - xreads;
    let scripts = script_calls(&redis).await - scripts;
    assert_eq!(hub.ring_state(guild).head_seq, first + PUBLISHERS * EACH);
    assert!(
        scripts >= 8 && xreads * 4 <= scripts,
        "{xreads} XREADs during {scripts} script calls"
    );
}

/// The hub that published hands its own events to its sockets as soon as Redis
/// answered, without waiting for its stream reader: here the reader is held back
/// (its blocked `XREAD` is answered with an error, after which it waits at least
/// 50 ms before reading again), yet the event is in the hub's stream when
/// `publish` returns, once and in order.
#[tokio::test]
async fn the_publishing_hub_delivers_its_own_events_without_waiting_for_its_reader() {
    let redis = RedisServer::start_volatile();
    let hub = broker(&redis);
    let guild = id(common::GUILD);
    let first = first_event_read(&hub, "k1").await;
    let mut conn = connection(&redis).await;
    let reader = eventually("the reader waits in XREAD", async || {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        clients
            .lines()
            .find(|line| line.contains("cmd=xread"))
            .and_then(|line| line.strip_prefix("id="))
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_owned)
    })
    .await;
    let unblocked: u64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(&reader)
        .arg("ERROR")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(unblocked, 1);

    let seq = hub.publish(joined(2), key("k2")).await.unwrap().unwrap();
    assert_eq!(seq, first + 1);
    let ring = hub.ring_state(guild);
    assert_eq!(
        (ring.head_seq, ring.len),
        (seq, 2),
        "delivered by the time its publish returned"
    );
    let resume = async |last| {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let subscription = hub.subscribe(guild, Some(last), outbox).await.unwrap();
        assert_eq!(subscription.resumed, Some(true));
        subscription
            .replay
            .iter()
            .map(|frame| match ServerMessage::parse(frame).unwrap() {
                ServerMessage::Event(event) => event.seq,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<u64>>()
    };
    assert_eq!(resume(first - 1).await, [first, seq]);
    // The reader comes back and goes on after it: nothing twice, nothing missed.
    let third = hub.publish(joined(3), key("k3")).await.unwrap().unwrap();
    eventually("the third event", async || {
        hub.ring_state(guild).head_seq == third
    })
    .await;
    assert_eq!(resume(first - 1).await, [first, seq, third]);
}
