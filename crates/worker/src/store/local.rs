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
//! Events that the hub rejects for good, events that would overflow the
//! configured bound, and gateway payloads the worker could not read move to a
//! dead-letter table: counted, logged, kept for an operator. That table is bounded
//! too: past its own bound the oldest letters are dropped in the same
//! transaction, counted in `/metrics` ([`Gauges::dead_letters_trimmed`]). Its keys
//! are in the order letters were written (a burial gets a key above every other,
//! even when the event's own outbox position is lower), so "oldest" means
//! buried first, as in Redis; each letter carries its own event id.
//!
//! With `REDIS_URL`, the same records live in Redis instead ([`super::RedisStore`]);
//! [`super::Store`] hides which. The file's name and format are fixed: a state
//! file written by an earlier version opens unchanged (see `docs/worker.md`).

use std::path::Path;
use std::sync::Arc;

use coven_contract::Event;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition,
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

    /// Keeps at most `capacity` dead letters (default 10,000): beyond, each write
    /// drops the oldest.
    #[must_use]
    pub fn with_dead_letter_capacity(self, capacity: u64) -> Self {
        self.gauges.set_dead_letter_capacity(capacity);
        self
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
        let mut trimmed = None;
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
                    let key = next_dead_key(&dead, next_id)?;
                    dead.insert(key, serde_json::to_vec(&letter)?.as_slice())?;
                    overflowed += 1;
                }
                next_id += 1;
            }
            if overflowed > 0 {
                trimmed = Some(self.trim(&mut dead)?);
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
        self.gauges.add(queued, 0);
        if let Some((dead, dropped)) = trimmed {
            self.gauges.dead_letters_trimmed(dead, dropped);
        }
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
        let (dead, dropped) = {
            let mut table = txn.open_table(DEAD_LETTERS)?;
            let key = next_dead_key(&table, pending.id)?;
            table.insert(key, serde_json::to_vec(&letter)?.as_slice())?;
            self.trim(&mut table)?
        };
        txn.commit()?;
        if removed {
            self.gauges.remove_one();
        }
        self.gauges.dead_letters_trimmed(dead, dropped);
        Ok(())
    }

    /// Keeps `body`, something the worker received but could not turn into
    /// events (a gateway payload it could not read), as a dead letter with
    /// `reason`, under a new outbox position (so its id is unique).
    pub fn bury_raw(&self, body: &str, reason: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let (dead, dropped) = {
            let mut meta = txn.open_table(META)?;
            let id = match meta.get(NEXT_ID_KEY)? {
                Some(raw) => u64::from_be_bytes(raw.value().try_into().unwrap_or([0; 8])),
                None => 1,
            };
            meta.insert(NEXT_ID_KEY, (id + 1).to_be_bytes().as_slice())?;
            let letter = self.dead_letter(id, body.as_bytes(), reason);
            let mut table = txn.open_table(DEAD_LETTERS)?;
            let key = next_dead_key(&table, id)?;
            table.insert(key, serde_json::to_vec(&letter)?.as_slice())?;
            self.trim(&mut table)?
        };
        txn.commit()?;
        self.gauges.dead_letters_trimmed(dead, dropped);
        Ok(())
    }

    /// Drops the oldest (first written) dead letters beyond the bound; returns how many are left
    /// and how many were dropped.
    fn trim(&self, table: &mut Table<'_, u64, &[u8]>) -> Result<(u64, u64), StoreError> {
        let capacity = self.gauges.dead_letter_capacity();
        let mut len = table.len()?;
        let mut dropped = 0;
        while len > capacity && table.pop_first()?.is_some() {
            len -= 1;
            dropped += 1;
        }
        Ok((len, dropped))
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
            let (key, raw) = entry?;
            let letter: DeadLetter = serde_json::from_slice(raw.value())?;
            // The outbox position is the event id's tail (the key, for letters
            // written before keys followed burial order, is the same number).
            let id = letter
                .event_id
                .rsplit('-')
                .next()
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .unwrap_or(key.value());
            dead.push((id, letter));
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

/// The key of a new dead letter: `id` (its outbox position) when that is above
/// every key, else one above the last, so that keys follow burial order.
fn next_dead_key(table: &Table<'_, u64, &[u8]>, id: u64) -> Result<u64, StoreError> {
    let last = table.last()?.map(|(key, _)| key.value());
    Ok(match last {
        Some(last) if last >= id => last + 1,
        _ => id,
    })
}
