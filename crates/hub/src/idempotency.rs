//! Bounded, time-windowed memories: which once-keys ([`crate::OnceKey`]: webhook
//! event ids, announced rooms) the in-process broker already published, and which
//! `Idempotency-Key`s of the rooms API were already answered.
//!
//! A retried webhook or a retried create must not act twice, yet a hub that runs for
//! weeks must not remember forever: entries expire after an age and the oldest are
//! evicted past a count, so memory stays bounded whatever the traffic.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use hashbrown::hash_table;

/// A set that forgets entries older than `max_age` and keeps at most `capacity`.
///
/// Each key is stored once, in `order` (oldest first, with when it came); the hash
/// index holds only its position there, 8 bytes per slot. So a new key costs one
/// hash lookup and no copy of the key, evicting the oldest one lookup by its
/// position, and when the index doubles (or rehashes in place: evictions leave
/// tombstones) it moves 8 bytes per key rather than the key and its time
/// (40 bytes). Both grow on demand, up to `capacity` keys (at the default 100,000:
/// an index of 262,144 slots, 2.4 MB, and a queue of 4–8 MB): allocating them for
/// the capacity up front showed no difference in the ingest bench
/// (docs/benchmarks.md, "Ingest"), and would hold that memory on a hub that
/// receives few webhooks.
///
/// Hashed with `foldhash` (randomly seeded per set) rather than std's `SipHash`: its
/// keys are the once-keys of webhooks whose HMAC was verified (`crate::ingest`),
/// so only a holder of the webhook secret can choose them, and the set is on every
/// webhook's path (docs/benchmarks.md, "Ingest").
pub(crate) struct SeenSet<K> {
    capacity: usize,
    max_age: Duration,
    hasher: foldhash::fast::RandomState,
    /// Positions in `order` (counted from the first key ever inserted) of the keys
    /// remembered.
    index: HashTable<u64>,
    /// The keys remembered, oldest first, with when each was inserted: the key at
    /// position `p` is `order[p - front]`.
    order: VecDeque<(Instant, K)>,
    /// The position of `order`'s front.
    front: u64,
}

impl<K> fmt::Debug for SeenSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeenSet")
            .field("capacity", &self.capacity)
            .field("max_age", &self.max_age)
            .field("len", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq> SeenSet<K> {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            max_age,
            hasher: foldhash::fast::RandomState::default(),
            index: HashTable::new(),
            order: VecDeque::new(),
            front: 0,
        }
    }

    /// Whether `key` was inserted within the window.
    #[cfg(test)]
    pub(crate) fn contains(&mut self, key: &K, now: Instant) -> bool {
        self.expire(now);
        let (order, front) = (&self.order, self.front);
        self.index
            .find(self.hasher.hash_one(key), |p| {
                key_at(order, front, *p) == key
            })
            .is_some()
    }

    /// Remembers `key`; returns `false` when it was already there.
    ///
    /// One hash lookup for a new key: it is inserted first, then the oldest are
    /// evicted past the capacity (never the new key, the newest).
    pub(crate) fn insert(&mut self, key: K, now: Instant) -> bool {
        self.expire(now);
        let (order, front, hasher) = (&self.order, self.front, &self.hasher);
        let position = front + order.len() as u64;
        match self.index.entry(
            hasher.hash_one(&key),
            |p| *key_at(order, front, *p) == key,
            |p| hasher.hash_one(key_at(order, front, *p)),
        ) {
            hash_table::Entry::Occupied(_) => return false,
            hash_table::Entry::Vacant(vacant) => {
                vacant.insert(position);
            }
        }
        self.order.push_back((now, key));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.index.len(), self.order.len());
        self.order.len()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > self.max_age)
        {
            self.pop_oldest();
        }
    }

    /// Forgets the oldest key.
    fn pop_oldest(&mut self) {
        let Some((_, key)) = self.order.front() else {
            return;
        };
        let front = self.front;
        if let Ok(entry) = self
            .index
            .find_entry(self.hasher.hash_one(key), |p| *p == front)
        {
            entry.remove();
        }
        self.order.pop_front();
        self.front += 1;
    }
}

/// The key at `position` of a queue whose front is at position `front`.
fn key_at<K>(order: &VecDeque<(Instant, K)>, front: u64, position: u64) -> &K {
    // Every position in the index is one of the queue's: keys leave both together.
    let offset = usize::try_from(position - front).unwrap_or(usize::MAX);
    &order[offset].1
}

/// One remembered answer slot: a per-key async lock so that concurrent retries with
/// the same key wait for the first one instead of acting in parallel.
pub(crate) type Slot<V> = Arc<tokio::sync::Mutex<Option<V>>>;

/// The store's map and its insertion order.
type Entries<K, V> = (HashMap<K, (Instant, Slot<V>)>, VecDeque<(Instant, K)>);

/// `Idempotency-Key` → answer, bounded by count and age.
#[derive(Debug)]
pub(crate) struct IdempotencyStore<K, V> {
    capacity: usize,
    max_age: Duration,
    inner: std::sync::Mutex<Entries<K, V>>,
}

impl<K: Hash + Eq + Clone, V> IdempotencyStore<K, V> {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            max_age,
            inner: std::sync::Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The slot for `key`, created empty when the key is new or expired.
    pub(crate) fn slot(&self, key: K) -> Slot<V> {
        let now = Instant::now();
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *guard;
        while let Some((at, _)) = order.front() {
            if now.saturating_duration_since(*at) <= self.max_age && map.len() < self.capacity {
                break;
            }
            if let Some((at, old)) = order.pop_front() {
                // Only drop the entry this queue position refers to.
                if map.get(&old).is_some_and(|(created, _)| *created == at) {
                    map.remove(&old);
                }
            }
        }
        map.entry(key.clone())
            .or_insert_with(|| {
                order.push_back((now, key));
                (now, Arc::new(tokio::sync::Mutex::new(None)))
            })
            .1
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_set_is_bounded_by_count_and_age() {
        let start = Instant::now();
        let mut set = SeenSet::new(2, Duration::from_secs(10));
        assert!(set.insert("a", start));
        assert!(!set.insert("a", start));
        assert!(set.insert("b", start));
        assert!(set.insert("c", start));
        assert!(!set.contains(&"a", start), "evicted by count");
        assert!(set.contains(&"b", start));
        assert!(
            !set.contains(&"b", start + Duration::from_secs(11)),
            "expired"
        );
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn a_repeated_key_at_capacity_evicts_nothing() {
        let start = Instant::now();
        let mut set = SeenSet::new(3, Duration::from_secs(10));
        for key in ["a", "b", "c"] {
            assert!(set.insert(key, start));
        }
        for key in ["a", "b", "c"] {
            assert!(!set.insert(key, start), "{key}");
        }
        assert_eq!(set.len(), 3);
        assert!(set.insert("d", start));
        assert_eq!(set.len(), 3);
        assert!(!set.contains(&"a", start), "the oldest went");
        assert!(set.contains(&"b", start) && set.contains(&"c", start));
        assert!(!set.insert("d", start), "the newest stayed");
    }

    #[test]
    fn the_index_agrees_with_a_plain_queue_under_churn() {
        // The plain model: the remembered keys, oldest first, scanned in full.
        let start = Instant::now();
        let (capacity, max_age) = (50, Duration::from_secs(30));
        let mut set = SeenSet::new(capacity, max_age);
        let mut model: VecDeque<(Instant, u32)> = VecDeque::new();
        let mut state = 0x2545_f491_u32;
        let mut now = start;
        for step in 0..20_000_u64 {
            // xorshift: keys from a small range, so repeats, evictions and expiries mix.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let key = state % 200;
            // Now and then a pause longer than the window: everything expires.
            now = start + Duration::from_millis(step * 7 + (step / 1000) * 31_000);
            model.retain(|(at, _)| now.saturating_duration_since(*at) <= max_age);
            let new = !model.iter().any(|(_, k)| *k == key);
            if new {
                model.push_back((now, key));
                while model.len() > capacity {
                    model.pop_front();
                }
            }
            assert_eq!(set.insert(key, now), new, "step {step}, key {key}");
            assert_eq!(set.len(), model.len(), "step {step}");
        }
        for key in 0..200 {
            let remembered = model.iter().any(|(_, k)| *k == key);
            assert_eq!(set.contains(&key, now), remembered, "key {key}");
        }
    }

    #[tokio::test]
    async fn idempotency_slots_are_shared_per_key() {
        let store = IdempotencyStore::<&str, u32>::new(10, Duration::from_secs(60));
        *store.slot("k").lock().await = Some(7);
        assert_eq!(*store.slot("k").lock().await, Some(7));
        assert_eq!(*store.slot("other").lock().await, None);
    }
}
