//! What can go wrong with the worker's store, for both backends.
//!
//! One error type for the redb file and for Redis, so the callers of
//! [`super::Store`] handle failures the same way whichever backend is behind it:
//! [`StoreError::is_transient`] says whether trying again may help (Redis down
//! or slow), and [`StoreError::Fenced`] says another worker of the pair holds
//! the lease now (see `docs/worker.md`).

use std::time::Duration;

/// A failure of the state file (or of Redis, for a pair of workers).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, …).
    #[error("state database: {0}")]
    Database(#[from] redb::Error),
    /// A stored value could not be decoded.
    #[error("state database holds an unreadable value: {0}")]
    Decode(#[from] serde_json::Error),
    /// `REDIS_URL` is not a URL the Redis client accepts (its value is never shown).
    #[error(
        "REDIS_URL is invalid: expected redis://[user][:password@]host[:port][/db] \
         or rediss://… for TLS"
    )]
    InvalidRedisUrl,
    /// Redis failed (unreachable, restarting, …): retried with backoff.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time: retried with backoff.
    #[error("redis did not answer within {0:?}")]
    RedisTimeout(Duration),
    /// The thread writing the state file panicked.
    #[error("internal error: the state file's writer panicked")]
    Panicked,
    /// The write was refused because this worker no longer holds the lease:
    /// another worker is active now.
    #[error("refused: another worker holds the lease now")]
    Fenced,
}

impl StoreError {
    /// Whether trying again later may succeed (Redis down or slow), as opposed
    /// to a broken state file or a lost lease.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Redis(_) | Self::RedisTimeout(_))
    }
}

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(error: $t) -> Self {
                Self::Database(error.into())
            }
        }
    )*};
}
impl_from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
