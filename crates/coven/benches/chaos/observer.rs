//! What reached the hubs: the guild's event stream in Redis
//! (`coven:{<guild>}:hub:events`, one entry `<seq>-0` per accepted event,
//! docs/scaling.md "The event path with Redis"), read continuously with `XREAD`.
//!
//! A hub answers the webhook 200 only after its script has `XADD`ed the event,
//! so "reached the hub" means "is in this stream". The reader reconnects across
//! Redis restarts and continues after the last id it read; a hole in the `seq`s
//! it reads (trimmed before it could read them) is counted, never hidden.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};

use crate::model::EventKey;

/// The stream as read: `(seq, event, when it was read)`, in `seq` order.
#[derive(Debug, Default)]
pub struct Stream {
    /// Every entry read.
    pub entries: Vec<(u64, EventKey, Instant)>,
    /// Entries whose body was not a contract event.
    pub malformed: u64,
    /// `seq` holes in what was read (the stream was trimmed past the reader).
    pub holes: u64,
    /// Times the reader lost Redis and reconnected.
    pub reconnects: u64,
}

impl Stream {
    /// The last `seq` read, 0 before any.
    pub fn head(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.0)
    }

    /// The key at `seq`, when read.
    pub fn at(&self, seq: u64) -> Option<&EventKey> {
        self.entries
            .binary_search_by_key(&seq, |e| e.0)
            .ok()
            .map(|i| &self.entries[i].1)
    }
}

/// Shared view of the stream.
pub type Observed = Arc<Mutex<Stream>>;

/// Reads `coven:{guild}:hub:events` from `redis_url` into `observed` until `stop`.
pub async fn follow(redis_url: String, guild: u64, observed: Observed, stop: Arc<AtomicBool>) {
    let key = format!("coven:{{{guild}}}:hub:events");
    let mut last_id = "0-0".to_owned();
    let client = redis::Client::open(redis_url).expect("a Redis URL");
    // Above the `BLOCK` time (the client's default response timeout is 500 ms).
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    while !stop.load(Ordering::Relaxed) {
        let connection = tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        let Ok(Ok(mut connection)) = connection else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let options = StreamReadOptions::default().block(500).count(1000);
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let reply: redis::RedisResult<Option<StreamReadReply>> = connection
                .xread_options(&[&key], &[&last_id], &options)
                .await;
            let Ok(reply) = reply else {
                observed.lock().unwrap().reconnects += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            };
            let now = Instant::now();
            let mut stream = observed.lock().unwrap();
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                last_id.clone_from(&entry.id);
                let seq: Option<u64> = entry.id.strip_suffix("-0").and_then(|s| s.parse().ok());
                let body: Option<String> = entry.get("e");
                let key = body
                    .and_then(|b| serde_json::from_str(&b).ok())
                    .and_then(|v| EventKey::of(&v));
                match (seq, key) {
                    (Some(seq), Some(key)) => {
                        let head = stream.head();
                        if head != 0 && seq != head + 1 {
                            stream.holes += 1;
                        }
                        stream.entries.push((seq, key, now));
                    }
                    _ => stream.malformed += 1,
                }
            }
        }
    }
}
