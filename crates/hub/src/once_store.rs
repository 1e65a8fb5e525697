//! The in-process broker's memory of announced rooms, kept on disk so that
//! "exactly one `room.created` per channel" (see `docs/contract.md`) survives a
//! hub restart.
//!
//! Why a file: the rooms API announces a room as soon as Discord created it, and
//! the gateway's webhook for the same channel may arrive after the hub restarted
//! (the worker retries until a hub accepts it). A memory that ended with the old
//! process would announce the room a second time. So each announced channel is
//! one row of a small redb file, `<STATE_DIR>/hub/once-keys.redb`, committed
//! before the event is published. (With Redis, the shared key
//! `room.created:<channel>` plays this part for every hub, see
//! `crate::redis_broker`.) Without a state dir the same table lives in memory.
//!
//! How long: a row lives as long as its channel does (refreshed on every
//! sighting, bounded by [`ROOM_KEY_MAX_AGE`]); when the room is deleted it is
//! kept only for the dedupe window, so a late webhook is still recognised; at most
//! [`ROOM_KEYS_MAX`] rows are kept (the soonest to expire go first), so the file
//! stays small whatever happens.

use std::path::Path;
use std::time::Duration;

use coven_contract::Snowflake;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::once_key::{ROOM_KEY_MAX_AGE, ROOM_KEYS_MAX};

/// The file's name inside the hub's state dir.
pub const ONCE_KEYS_FILE_NAME: &str = "once-keys.redb";

/// Channel id → when its key expires (Unix ms).
const ROOMS: TableDefinition<u64, u64> = TableDefinition::new("room_created");

/// The store failed (I/O, a corrupt or locked file).
#[derive(Debug, thiserror::Error)]
#[error("announced rooms store: {0}")]
pub struct OnceStoreError(#[from] redb::Error);

/// Which rooms were announced, on disk or in memory.
#[derive(Debug)]
pub(crate) struct RoomOnceStore {
    db: Database,
    /// How long a deleted room's key is kept (the dedupe window), in ms.
    window_ms: u64,
}

impl RoomOnceStore {
    /// A store that ends with the process.
    pub(crate) fn in_memory(window: Duration) -> Self {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("an in-memory redb database always opens");
        Self {
            db,
            window_ms: millis(window),
        }
    }

    /// Opens (or creates) the store in `dir`.
    pub(crate) fn open(dir: &Path, window: Duration) -> Result<Self, OnceStoreError> {
        std::fs::create_dir_all(dir).map_err(redb::Error::from)?;
        let db = Database::create(dir.join(ONCE_KEYS_FILE_NAME)).map_err(redb::Error::from)?;
        Ok(Self {
            db,
            window_ms: millis(window),
        })
    }

    /// Remembers that `channel` was announced (at `now_ms`) and returns whether it
    /// already was: then the announcement must not be published again. Either way
    /// the key lives [`ROOM_KEY_MAX_AGE`] from now on.
    pub(crate) fn announce(&self, channel: Snowflake, now_ms: u64) -> Result<bool, OnceStoreError> {
        let expires = now_ms.saturating_add(millis(ROOM_KEY_MAX_AGE));
        self.write(|table| {
            let seen = table
                .get(channel.get())?
                .is_some_and(|expiry| expiry.value() > now_ms);
            table.insert(channel.get(), expires)?;
            if table.len()? > ROOM_KEYS_MAX {
                evict(table, now_ms)?;
            }
            Ok(seen)
        })
    }

    /// The room was deleted: its key is kept for the dedupe window only.
    pub(crate) fn release(&self, channel: Snowflake, now_ms: u64) -> Result<(), OnceStoreError> {
        let expires = now_ms.saturating_add(self.window_ms);
        self.write(|table| {
            let current = table.get(channel.get())?.map(|expiry| expiry.value());
            if current.is_some_and(|current| current > expires) {
                table.insert(channel.get(), expires)?;
            }
            Ok(())
        })
    }

    fn write<T>(
        &self,
        change: impl FnOnce(&mut redb::Table<'_, u64, u64>) -> Result<T, redb::Error>,
    ) -> Result<T, OnceStoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        let result = {
            let mut table = txn.open_table(ROOMS).map_err(redb::Error::from)?;
            change(&mut table)?
        };
        txn.commit().map_err(redb::Error::from)?;
        Ok(result)
    }
}

/// Drops expired keys, then the soonest to expire until [`ROOM_KEYS_MAX`] remain.
fn evict(table: &mut redb::Table<'_, u64, u64>, now_ms: u64) -> Result<(), redb::Error> {
    table.retain(|_, expiry| expiry > now_ms)?;
    let len = table.len()?;
    if len <= ROOM_KEYS_MAX {
        return Ok(());
    }
    let mut rows = table
        .iter()?
        .map(|row| row.map(|(channel, expiry)| (expiry.value(), channel.value())))
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_unstable();
    let excess = usize::try_from(len - ROOM_KEYS_MAX).unwrap_or(usize::MAX);
    for (_, channel) in rows.into_iter().take(excess) {
        table.remove(channel)?;
    }
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    const WINDOW: Duration = Duration::from_secs(60);

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    #[test]
    fn a_room_is_announced_once_also_after_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("coven-once-{:016x}", rand::random::<u64>()));
        let store = RoomOnceStore::open(&dir, WINDOW).unwrap();
        assert!(!store.announce(id(7), 1_000).unwrap());
        assert!(store.announce(id(7), 2_000).unwrap());
        drop(store);
        let reopened = RoomOnceStore::open(&dir, WINDOW).unwrap();
        assert!(
            reopened.announce(id(7), 3_000).unwrap(),
            "survives a restart"
        );
        assert!(!reopened.announce(id(8), 3_000).unwrap());
        drop(reopened);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_deleted_room_is_remembered_for_the_window_only() {
        let store = RoomOnceStore::in_memory(WINDOW);
        store.release(id(9), 0).unwrap();
        assert!(
            !store.announce(id(9), 0).unwrap(),
            "release remembers nothing"
        );
        store.release(id(9), 1_000).unwrap();
        assert!(store.announce(id(9), 60_000).unwrap(), "a late webhook");
        store.release(id(9), 100_000).unwrap();
        assert!(!store.announce(id(9), 160_001).unwrap(), "window over");
        // A live room's key outlasts the dedupe window by far.
        let later = 1_000 + millis(ROOM_KEY_MAX_AGE) - 1;
        assert!(store.announce(id(9), later).unwrap());
    }

    #[test]
    fn the_store_is_bounded() {
        let store = RoomOnceStore::in_memory(WINDOW);
        for channel in 1..=ROOM_KEYS_MAX + 5 {
            store.announce(id(channel), channel).unwrap();
        }
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(ROOMS).unwrap();
        assert_eq!(table.len().unwrap(), ROOM_KEYS_MAX);
        assert!(table.get(1).unwrap().is_none(), "the oldest went first");
        assert!(table.get(ROOM_KEYS_MAX + 5).unwrap().is_some());
    }
}
