//! Bounded, time-windowed memories: which once-keys ([`crate::OnceKey`]: webhook
//! event ids, announced rooms) the in-process broker already published, and which
//! `Idempotency-Key`s of the rooms API were already answered.
//!
//! A retried webhook or a retried create must not act twice, yet a hub that runs for
//! weeks must not remember forever: entries expire after an age and the oldest are
//! evicted past a count, so memory stays bounded whatever the traffic.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A set that forgets entries older than `max_age` and keeps at most `capacity`.
///
/// Hashed with `foldhash` (randomly seeded per set) rather than std's `SipHash`: its
/// keys are the once-keys of webhooks whose HMAC was verified (`crate::ingest`),
/// so only a holder of the webhook secret can choose them, and the set is on every
/// webhook's path (docs/benchmarks.md, "Ingest").
#[derive(Debug)]
pub(crate) struct SeenSet<K> {
    capacity: usize,
    max_age: Duration,
    entries: HashMap<K, Instant, foldhash::fast::RandomState>,
    order: VecDeque<(Instant, K)>,
}

impl<K: Hash + Eq + Clone> SeenSet<K> {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            max_age,
            entries: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Whether `key` was inserted within the window.
    #[cfg(test)]
    pub(crate) fn contains(&mut self, key: &K, now: Instant) -> bool {
        self.expire(now);
        self.entries.contains_key(key)
    }

    /// Remembers `key`; returns `false` when it was already there.
    ///
    /// One hash lookup for a new key: it is inserted first, then the oldest are
    /// evicted past the capacity (never the new key, the newest).
    pub(crate) fn insert(&mut self, key: K, now: Instant) -> bool {
        self.expire(now);
        match self.entries.entry(key) {
            Entry::Occupied(_) => return false,
            Entry::Vacant(vacant) => {
                self.order.push_back((now, vacant.key().clone()));
                vacant.insert(now);
            }
        }
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) <= self.max_age {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }
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

    #[tokio::test]
    async fn idempotency_slots_are_shared_per_key() {
        let store = IdempotencyStore::<&str, u32>::new(10, Duration::from_secs(60));
        *store.slot("k").lock().await = Some(7);
        assert_eq!(*store.slot("k").lock().await, Some(7));
        assert_eq!(*store.slot("other").lock().await, None);
    }
}
