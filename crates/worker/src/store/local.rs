//! The single worker's store: its memory of what it owes the hub, in one file.
//!
//! One redb file under `STATE_DIR` holds, in one place and updated in one
//! transaction, the events not yet delivered, the voice view that produced them and
//! the gateway session (id, sequence, resume URL). Because they commit together, a
//! crash at any instant leaves a consistent state: either the dispatch's events are
//! queued *and* its sequence is recorded, or neither is and Discord replays the
//! dispatch on resume. Events are delivered in id order; each id, prefixed with a
//! random epoch chosen when the file is created, is the stable `X-Hub-Event-Id`.
//!
//! Events that the hub rejects for good, and events that would overflow the
//! configured bound, move to a dead-letter table: counted, logged, kept for an
//! operator, never silently dropped.
//!
//! With `REDIS_URL`, the same records live in Redis instead ([`super::RedisStore`]);
//! [`super::Store`] hides which. The file's name and format are fixed: a state
//! file written by an earlier version opens unchanged (see `docs/worker.md`).

use std::path::Path;
use std::sync::Arc;

use coven_contract::Event;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::records::{DeadLetter, Pending, StoredSession, event_id};
use super::{Gauges, StoreError};
use crate::tracker::VoiceView;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const EPOCH_KEY: &str = "epoch";
const NEXT_ID_KEY: &str = "next_id";
const SESSION_KEY: &str = "session";
const VIEW_KEY: &str = "view";

/// Everything a state file holds, read at once: what [`super::migrate`] moves
/// to Redis when a single worker becomes one of a pair.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// The random prefix of the file's event ids.
    pub epoch: String,
    /// The outbox position the next event would get.
    pub next_id: u64,
    /// The stored session, if any.
    pub session: Option<StoredSession>,
    /// The stored voice view, if any.
    pub view: Option<VoiceView>,
    /// The undelivered events, oldest first.
    pub pending: Vec<Pending>,
    /// The dead letters with their outbox positions, oldest first.
    pub dead: Vec<(u64, DeadLetter)>,
}

/// A single worker's store: the durable outbox in a redb file, plus the
/// session and voice view committed with it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalStore {
    db: Arc<Database>,
    epoch: Arc<str>,
    gauges: Gauges,
}

impl LocalStore {
    /// Opens (or creates) the state file at `path`, holding at most `capacity` events.
    pub fn open(path: &Path, capacity: u64) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        let epoch = {
            let mut meta = txn.open_table(META)?;
            let stored = meta.get(EPOCH_KEY)?.map(|v| v.value().to_vec());
            if let Some(epoch) = stored {
                String::from_utf8_lossy(&epoch).into_owned()
            } else {
                let epoch = format!("{:016x}", rand::random::<u64>());
                meta.insert(EPOCH_KEY, epoch.as_bytes())?;
                epoch
            }
        };
        let depth = txn.open_table(EVENTS)?.len()?;
        let dead = txn.open_table(DEAD_LETTERS)?.len()?;
        txn.commit()?;
        Ok(Self {
            db: Arc::new(db),
            epoch: epoch.into(),
            gauges: Gauges::new(capacity, depth, dead),
        })
    }

    /// The stored session and voice view, if any.
    pub fn load(&self) -> Result<(Option<StoredSession>, Option<VoiceView>), StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let session = match meta.get(SESSION_KEY)? {
            Some(raw) => Some(serde_json::from_slice(raw.value())?),
            None => None,
        };
        let view = match meta.get(VIEW_KEY)? {
            Some(raw) => Some(serde_json::from_slice(raw.value())?),
            None => None,
        };
        Ok((session, view))
    }

    /// Durably appends `events` and records `view` and `session` in one transaction.
    /// Returns how many events had to be dead-lettered because the outbox was full.
    pub fn commit(
        &self,
        events: &[Event],
        view: Option<&VoiceView>,
        session: Option<&StoredSession>,
    ) -> Result<usize, StoreError> {
        let txn = self.db.begin_write()?;
        let mut overflowed = 0;
        {
            let mut meta = txn.open_table(META)?;
            let mut queue = txn.open_table(EVENTS)?;
            let mut dead = txn.open_table(DEAD_LETTERS)?;
            let mut next_id = match meta.get(NEXT_ID_KEY)? {
                Some(raw) => u64::from_be_bytes(raw.value().try_into().unwrap_or([0; 8])),
                None => 1,
            };
            let mut depth = queue.len()?;
            for event in events {
                let body = event.to_webhook_body();
                if depth < self.gauges.capacity() {
                    queue.insert(next_id, body.as_slice())?;
                    depth += 1;
                } else {
                    let letter = self.dead_letter(next_id, &body, "outbox full");
                    dead.insert(next_id, serde_json::to_vec(&letter)?.as_slice())?;
                    overflowed += 1;
                }
                next_id += 1;
            }
            meta.insert(NEXT_ID_KEY, next_id.to_be_bytes().as_slice())?;
            if let Some(view) = view {
                meta.insert(VIEW_KEY, serde_json::to_vec(view)?.as_slice())?;
            }
            if let Some(session) = session {
                meta.insert(SESSION_KEY, serde_json::to_vec(session)?.as_slice())?;
            }
        }
        txn.commit()?;
        let queued = (events.len() - overflowed) as u64;
        self.gauges.add(queued, overflowed as u64);
        if queued > 0 {
            self.gauges.wake();
        }
        Ok(overflowed)
    }

    /// Records the session alone (periodically and at shutdown).
    pub fn save_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        self.commit(&[], None, Some(session)).map(drop)
    }

    /// The oldest undelivered event.
    pub fn peek(&self) -> Result<Option<Pending>, StoreError> {
        let txn = self.db.begin_read()?;
        let queue = txn.open_table(EVENTS)?;
        let first = queue.first()?.map(|(id, body)| Pending {
            id: id.value(),
            event_id: self.event_id(id.value()),
            body: body.value().to_vec(),
        });
        Ok(first)
    }

    /// Removes a delivered event. Not synced to disk at once: losing an ack in a
    /// crash only means the hub sees the event again, and it deduplicates by id.
    pub fn ack(&self, id: u64) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let removed = txn.open_table(EVENTS)?.remove(id)?.is_some();
        txn.commit()?;
        if removed {
            self.gauges.remove_one();
        }
        Ok(())
    }

    /// Moves an event the hub refused for good to the dead-letter table.
    pub fn bury(&self, pending: &Pending, reason: &str) -> Result<(), StoreError> {
        let letter = self.dead_letter(pending.id, &pending.body, reason);
        let txn = self.db.begin_write()?;
        let removed = txn.open_table(EVENTS)?.remove(pending.id)?.is_some();
        txn.open_table(DEAD_LETTERS)?
            .insert(pending.id, serde_json::to_vec(&letter)?.as_slice())?;
        txn.commit()?;
        if removed {
            self.gauges.remove_one();
        }
        self.gauges.add(0, 1);
        Ok(())
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEAD_LETTERS)?;
        let mut letters = Vec::new();
        for entry in table.iter()? {
            let (_, raw) = entry?;
            letters.push(serde_json::from_slice(raw.value())?);
        }
        Ok(letters)
    }

    /// Everything the file holds, read in one transaction.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let next_id = match meta.get(NEXT_ID_KEY)? {
            Some(raw) => u64::from_be_bytes(raw.value().try_into().unwrap_or([0; 8])),
            None => 1,
        };
        let session = match meta.get(SESSION_KEY)? {
            Some(raw) => Some(serde_json::from_slice(raw.value())?),
            None => None,
        };
        let view = match meta.get(VIEW_KEY)? {
            Some(raw) => Some(serde_json::from_slice(raw.value())?),
            None => None,
        };
        let mut pending = Vec::new();
        for entry in txn.open_table(EVENTS)?.iter()? {
            let (id, body) = entry?;
            pending.push(Pending {
                id: id.value(),
                event_id: self.event_id(id.value()),
                body: body.value().to_vec(),
            });
        }
        let mut dead = Vec::new();
        for entry in txn.open_table(DEAD_LETTERS)?.iter()? {
            let (id, raw) = entry?;
            dead.push((id.value(), serde_json::from_slice(raw.value())?));
        }
        Ok(Snapshot {
            epoch: self.epoch.to_string(),
            next_id,
            session,
            view,
            pending,
            dead,
        })
    }

    /// The outbox's length, dead-letter count, bound and wake-up.
    pub fn gauges(&self) -> &Gauges {
        &self.gauges
    }

    fn event_id(&self, id: u64) -> String {
        event_id(&self.epoch, id)
    }

    fn dead_letter(&self, id: u64, body: &[u8], reason: &str) -> DeadLetter {
        DeadLetter {
            event_id: self.event_id(id),
            body: String::from_utf8_lossy(body).into_owned(),
            reason: reason.to_owned(),
        }
    }
}
