//! Names and avatars the room snapshot shows: a bounded cache in front of
//! [`RoomsBackend::member_profile`], filled by logins too (which know the avatar).
//!
//! Entries expire after `max_age` and the cache holds at most `capacity`
//! (the oldest entries go first); "not a member" is cached like a hit so an unknown
//! user costs one Discord call per `max_age`, not one per snapshot.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use coven_contract::Snowflake;

use crate::rooms::{MemberProfile, RoomsBackend};

/// A bounded cache of member profiles.
pub(crate) struct Profiles {
    capacity: usize,
    max_age: Duration,
    entries: Mutex<HashMap<Snowflake, (Option<MemberProfile>, Instant)>>,
}

impl Profiles {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            max_age,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Records what a login learned (name and avatar).
    pub(crate) fn remember(&self, user_id: Snowflake, profile: MemberProfile) {
        self.put(user_id, Some(profile));
    }

    fn put(&self, user_id: Snowflake, profile: Option<MemberProfile>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if entries.len() >= self.capacity && !entries.contains_key(&user_id) {
            entries.retain(|_, (_, at)| now.duration_since(*at) < self.max_age);
            while entries.len() >= self.capacity {
                let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                entries.remove(&oldest);
            }
        }
        entries.insert(user_id, (profile, now));
    }

    /// `None`: not cached; `Some(None)`: cached as "not a member".
    #[allow(clippy::option_option)]
    fn cached(&self, user_id: Snowflake) -> Option<Option<MemberProfile>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&user_id)
            .filter(|(_, at)| at.elapsed() < self.max_age)
            .map(|(profile, _)| profile.clone())
    }

    /// The profile of `user_id`: cached, else asked of `rooms` (a failed lookup is
    /// not cached and answers `None`).
    pub(crate) async fn get(
        &self,
        rooms: &dyn RoomsBackend,
        guild_id: Snowflake,
        user_id: Snowflake,
    ) -> Option<MemberProfile> {
        if let Some(hit) = self.cached(user_id) {
            return hit;
        }
        match rooms.member_profile(guild_id, user_id).await {
            Ok(profile) => {
                // A login's avatar beats a member lookup that knows none.
                let profile = profile.map(|mut p| {
                    if p.avatar_url.is_none() {
                        p.avatar_url = self.cached(user_id).flatten().and_then(|c| c.avatar_url);
                    }
                    p
                });
                self.put(user_id, profile.clone());
                profile
            }
            Err(error) => {
                tracing::debug!(%error, user = %user_id, "member profile lookup failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    #[test]
    fn bounded_and_expiring() {
        let profiles = Profiles::new(2, Duration::from_secs(60));
        for n in 1..=3 {
            profiles.remember(
                id(n),
                MemberProfile {
                    name: format!("u{n}"),
                    avatar_url: None,
                },
            );
        }
        assert_eq!(profiles.entries.lock().unwrap().len(), 2);
        assert!(profiles.cached(id(1)).is_none());
        assert_eq!(profiles.cached(id(3)).flatten().unwrap().name, "u3");
        let expired = Profiles::new(2, Duration::ZERO);
        expired.remember(
            id(1),
            MemberProfile {
                name: "x".into(),
                avatar_url: None,
            },
        );
        assert!(expired.cached(id(1)).is_none());
    }
}
