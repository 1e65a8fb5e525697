//! Moving a single worker's state into Redis when it becomes one of a pair.
//!
//! A worker that ran alone kept its session, voice view and outbox in
//! `STATE_DIR/worker.redb` ([`super::LocalStore`]). Restarted with `REDIS_URL`, it
//! would leave that state behind: the pair would IDENTIFY afresh and the events
//! still queued in the file would never reach the hub. So when a worker of the
//! pair becomes active and finds such a file, it imports the file into Redis —
//! in one fenced script, and only if the pair has no state yet — then renames
//! the file to `worker.redb.migrated-<unix time>`, so it is never imported
//! twice. The events keep their ids: the hub drops any it had already received.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{LocalStore, RedisStore, StoreError};

/// The single worker's state file, under `STATE_DIR`.
pub(crate) const STATE_FILE: &str = "worker.redb";

/// Imports `state_dir`'s state file into `redis` if it holds a session, events
/// or dead letters and the pair has no state yet, then renames the file. Leaves
/// the file alone, with a warning, when Redis already holds the pair's state.
///
/// Called by the active worker, before it opens the session. A Redis error or
/// a lost lease ([`StoreError::is_transient`], [`StoreError::Fenced`]) wrote
/// nothing: the next active worker tries again. A file that cannot be read is
/// an error for the operator (it would otherwise be left behind silently).
pub(crate) async fn import_local_state(
    redis: &RedisStore,
    state_dir: &Path,
) -> Result<(), StoreError> {
    let path = state_dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(());
    }
    let file = path.clone();
    // The outbox (and with it the file) is closed when the closure returns.
    let local = tokio::task::spawn_blocking(move || LocalStore::open(&file, u64::MAX)?.snapshot())
        .await
        .map_err(|_| StoreError::Panicked)??;
    if local.session.is_none() && local.pending.is_empty() && local.dead.is_empty() {
        return Ok(());
    }
    if !redis.import(&local).await? {
        tracing::warn!(
            path = %path.display(),
            "ignoring the local state file: redis already holds this worker pair's state"
        );
        return Ok(());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let migrated = state_dir.join(format!("{STATE_FILE}.migrated-{now}"));
    tracing::info!(
        session = local.session.is_some(),
        view = local.view.is_some(),
        events = local.pending.len(),
        dead_letters = local.dead.len(),
        renamed_to = %migrated.display(),
        "imported the local state file into redis"
    );
    if let Err(error) = std::fs::rename(&path, &migrated) {
        // Redis holds state now, so the file will not be imported again.
        tracing::error!(%error, path = %path.display(), "could not rename the imported state file; move it away by hand");
    }
    Ok(())
}
