//! The ids a receiver has already accepted, so that a captured request cannot be
//! sent again while its timestamp is still inside the window.
//!
//! A signed request names itself with a random 128-bit id (`X-Hub-Request-Id`,
//! docs/contract.md). Once its signature has verified, the id is remembered until
//! the request could no longer pass the clock check anyway (its timestamp plus
//! the allowed skew); a second request with the same id before then is refused.
//! Only requests whose MAC verified are remembered, so only a holder of a
//! `HUB_SECRET` can fill the cache. It is still bounded: at [`ReplayCache::capacity`]
//! live ids, new requests are refused (the receiver answers 503) rather than an
//! unexpired id forgotten, which would reopen the replay. Expired ids are dropped
//! in expiry order on every insert, so the cost stays logarithmic.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

/// Live ids a receiver remembers by default: about 540 requests a second
/// sustained over the two minutes an id can stay live, a few MiB at most.
pub const REPLAY_CACHE_CAPACITY: usize = 65_536;

/// Why an id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The id was already accepted and has not expired.
    Replayed,
    /// The cache holds [`ReplayCache::capacity`] live ids.
    Full,
}

/// A bounded set of accepted request ids with their expiry (Unix seconds).
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    expiry_of: HashMap<u128, u64>,
    by_expiry: BTreeSet<(u64, u128)>,
}

impl ReplayCache {
    /// A cache remembering at most `capacity` live ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The most live ids it holds before refusing new ones.
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// Live ids held now (expired ones are dropped on the next insert).
    pub fn len(&self) -> usize {
        self.lock().expiry_of.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers `id` until `expires_at`, or refuses it: already held and not
    /// expired at `now`, or the cache full of live ids.
    pub(super) fn insert(&self, id: u128, expires_at: u64, now: u64) -> Result<(), Refused> {
        let mut seen = self.lock();
        seen.drop_expired(now);
        if seen.expiry_of.contains_key(&id) {
            return Err(Refused::Replayed);
        }
        if seen.expiry_of.len() >= self.capacity {
            return Err(Refused::Full);
        }
        seen.expiry_of.insert(id, expires_at);
        seen.by_expiry.insert((expires_at, id));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // The set stays consistent even if a holder panicked between its two
        // inserts: a stale `by_expiry` entry only removes its id a little early
        // from a set that no longer has it.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(REPLAY_CACHE_CAPACITY)
    }
}

impl Seen {
    /// Drops every id whose expiry is before `now`.
    fn drop_expired(&mut self, now: u64) {
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.expiry_of.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_730_000_000;

    #[test]
    fn an_id_is_accepted_once_until_it_expires() {
        let cache = ReplayCache::new(8);
        assert_eq!(cache.insert(7, NOW + 60, NOW), Ok(()));
        assert_eq!(cache.insert(7, NOW + 60, NOW), Err(Refused::Replayed));
        assert_eq!(
            cache.insert(7, NOW + 60, NOW + 60),
            Err(Refused::Replayed),
            "still live at its expiry second"
        );
        assert_eq!(cache.insert(8, NOW + 60, NOW), Ok(()));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.insert(7, NOW + 121, NOW + 61), Ok(()), "expired");
        assert_eq!(cache.len(), 1, "the expired ids were dropped");
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = ReplayCache::new(3);
        for id in 0..3 {
            cache
                .insert(id, NOW + 60 + u64::try_from(id).unwrap(), NOW)
                .unwrap();
        }
        assert_eq!(cache.insert(3, NOW + 60, NOW), Err(Refused::Full));
        for id in 0..3 {
            assert_eq!(cache.insert(id, NOW + 60, NOW), Err(Refused::Replayed));
        }
        assert_eq!(cache.len(), 3);
        // Once the oldest expires there is room again, and only for one.
        assert_eq!(cache.insert(3, NOW + 121, NOW + 61), Ok(()));
        assert_eq!(cache.insert(4, NOW + 121, NOW + 61), Err(Refused::Full));
        assert_eq!(cache.insert(1, NOW + 121, NOW + 61), Err(Refused::Replayed));
    }

    #[test]
    fn the_default_capacity() {
        assert_eq!(ReplayCache::default().capacity(), REPLAY_CACHE_CAPACITY);
        assert!(ReplayCache::default().is_empty());
    }
}
