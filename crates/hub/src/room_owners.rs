//! Who created each live room through the API (docs/spec.md §7.1), kept durably.
//!
//! Two rules need it: the creator of a room may end it and command the bot in it,
//! and a user holds at most a few live API-created rooms (the guild a few dozen).
//! Both must hold across restarts and across hubs, so the record is not a map in
//! memory:
//!
//! - one hub: a small redb file, `<STATE_DIR>/hub/room-owners.redb` (table
//!   `room_owner`: channel id → the creator's token `sub`), like the once-keys of
//!   `crate::once_store`; without a state dir the same table lives in memory;
//! - several hubs (`REDIS_URL`): the hash `coven:{<guild>}:hub:owners` (field:
//!   channel id, value: the creator's `sub`), see `crate::redis_link`.
//!
//! A row is written once Discord created the channel and removed when the room is
//! ended through the API or its `room.deleted` reaches the hub (`crate::ingest`).
//! The count of live rooms is the number of rows, so it stays bounded by the
//! limits it enforces (plus the few creates that race across hubs).

use std::path::Path;
use std::sync::Arc;

use coven_contract::Snowflake;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableTable, TableDefinition};

use crate::redis_link::RedisLink;

/// The file's name inside the hub's state dir.
pub const ROOM_OWNERS_FILE_NAME: &str = "room-owners.redb";

/// Channel id → the creator's `sub`.
const OWNERS: TableDefinition<u64, &str> = TableDefinition::new("room_owner");

/// The record could not be read or written (a file error, or Redis unreachable).
#[derive(Debug, thiserror::Error)]
pub enum RoomOwnersError {
    /// The redb file failed (I/O, a corrupt or locked file).
    #[error("room owners store: {0}")]
    File(#[from] redb::Error),
    /// Redis did not answer.
    #[error("room owners store: Redis is unavailable")]
    Redis,
}

/// The live rooms created through the API, and by whom.
pub(crate) enum RoomOwners {
    /// This hub's own file (or memory).
    Local(Database),
    /// Shared by every hub of the guild.
    Shared {
        /// The Redis link.
        link: Arc<RedisLink>,
        /// `coven:{<guild>}:hub:owners`.
        key: String,
    },
}

impl std::fmt::Debug for RoomOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local(_) => "RoomOwners::Local",
            Self::Shared { .. } => "RoomOwners::Shared",
        })
    }
}

impl RoomOwners {
    /// A record that ends with the process.
    pub(crate) fn in_memory() -> Self {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("an in-memory redb database always opens");
        Self::Local(db)
    }

    /// Opens (or creates) the record in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, RoomOwnersError> {
        std::fs::create_dir_all(dir).map_err(redb::Error::from)?;
        let db = Database::create(dir.join(ROOM_OWNERS_FILE_NAME)).map_err(redb::Error::from)?;
        Ok(Self::Local(db))
    }

    /// The record shared through Redis by every hub of `guild`.
    pub(crate) fn shared(link: Arc<RedisLink>, guild: Snowflake) -> Self {
        Self::Shared {
            link,
            key: RedisLink::key(guild, "owners"),
        }
    }

    /// Who created `channel` through the API, if anyone (and it is still live).
    pub(crate) async fn creator(
        &self,
        channel: Snowflake,
    ) -> Result<Option<String>, RoomOwnersError> {
        match self {
            Self::Local(db) => {
                let txn = db.begin_write().map_err(redb::Error::from)?;
                let found = {
                    let table = txn.open_table(OWNERS).map_err(redb::Error::from)?;
                    table
                        .get(channel.get())
                        .map_err(redb::Error::from)?
                        .map(|user| user.value().to_owned())
                };
                txn.abort().map_err(redb::Error::from)?;
                Ok(found)
            }
            Self::Shared { link, key } => {
                let result: redis::RedisResult<Option<String>> = redis::cmd("HGET")
                    .arg(key)
                    .arg(channel.get())
                    .query_async(&mut link.conn())
                    .await;
                link.record("room_owners", result)
                    .map_err(|_| RoomOwnersError::Redis)
            }
        }
    }

    /// Every live room with its creator.
    pub(crate) async fn all(&self) -> Result<Vec<(Snowflake, String)>, RoomOwnersError> {
        let rows: Vec<(u64, String)> = match self {
            Self::Local(db) => {
                let txn = db.begin_write().map_err(redb::Error::from)?;
                let rows = {
                    let table = txn.open_table(OWNERS).map_err(redb::Error::from)?;
                    table
                        .iter()
                        .map_err(redb::Error::from)?
                        .map(|row| row.map(|(c, u)| (c.value(), u.value().to_owned())))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(redb::Error::from)?
                };
                txn.abort().map_err(redb::Error::from)?;
                rows
            }
            Self::Shared { link, key } => {
                let result: redis::RedisResult<Vec<(u64, String)>> = redis::cmd("HGETALL")
                    .arg(key)
                    .query_async(&mut link.conn())
                    .await;
                link.record("room_owners", result)
                    .map_err(|_| RoomOwnersError::Redis)?
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(|(channel, user)| Snowflake::new(channel).map(|c| (c, user)))
            .collect())
    }

    /// Remembers that `user` created `channel`.
    pub(crate) async fn record(
        &self,
        channel: Snowflake,
        user: &str,
    ) -> Result<(), RoomOwnersError> {
        match self {
            Self::Local(db) => write(db, |table| {
                table.insert(channel.get(), user)?;
                Ok(())
            }),
            Self::Shared { link, key } => {
                let result: redis::RedisResult<()> = redis::cmd("HSET")
                    .arg(key)
                    .arg(channel.get())
                    .arg(user)
                    .query_async(&mut link.conn())
                    .await;
                link.record("room_owners", result)
                    .map_err(|_| RoomOwnersError::Redis)
            }
        }
    }

    /// The room is gone (ended, or deleted in Discord): it no longer counts.
    pub(crate) async fn forget(&self, channel: Snowflake) -> Result<(), RoomOwnersError> {
        match self {
            Self::Local(db) => write(db, |table| {
                table.remove(channel.get())?;
                Ok(())
            }),
            Self::Shared { link, key } => {
                let result: redis::RedisResult<()> = redis::cmd("HDEL")
                    .arg(key)
                    .arg(channel.get())
                    .query_async(&mut link.conn())
                    .await;
                link.record("room_owners", result)
                    .map_err(|_| RoomOwnersError::Redis)
            }
        }
    }

    /// How many rows the local table has (tests).
    #[cfg(test)]
    fn len(&self) -> u64 {
        match self {
            Self::Local(db) => {
                use redb::ReadableTableMetadata;
                let txn = db.begin_write().unwrap();
                let len = txn.open_table(OWNERS).unwrap().len().unwrap();
                txn.abort().unwrap();
                len
            }
            Self::Shared { .. } => 0,
        }
    }
}

fn write(
    db: &Database,
    change: impl FnOnce(&mut redb::Table<'_, u64, &str>) -> Result<(), redb::Error>,
) -> Result<(), RoomOwnersError> {
    let txn = db.begin_write().map_err(redb::Error::from)?;
    {
        let mut table = txn.open_table(OWNERS).map_err(redb::Error::from)?;
        change(&mut table)?;
    }
    txn.commit().map_err(redb::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Snowflake {
        Snowflake::new(n).unwrap()
    }

    #[tokio::test]
    async fn creators_survive_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("coven-owners-{:016x}", rand::random::<u64>()));
        let owners = RoomOwners::open(&dir).unwrap();
        owners.record(id(7), "alice").await.unwrap();
        owners.record(id(8), "bob").await.unwrap();
        owners.forget(id(8)).await.unwrap();
        drop(owners);
        let reopened = RoomOwners::open(&dir).unwrap();
        assert_eq!(
            reopened.creator(id(7)).await.unwrap().as_deref(),
            Some("alice")
        );
        assert_eq!(reopened.creator(id(8)).await.unwrap(), None);
        assert_eq!(reopened.all().await.unwrap(), vec![(id(7), "alice".into())]);
        assert_eq!(reopened.len(), 1);
        drop(reopened);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
