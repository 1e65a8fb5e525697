//! The writer shards: a thread per core that writes browsers' queued frames.
//!
//! Publishing an event only appends it to each socket's [`Outbox`] and puts the
//! socket on its shard's list (once, however many frames it gets meanwhile). A
//! shard's thread takes its whole list and writes, for each socket, everything it
//! has queued in vectored writes (`crate::fanout`); frames that arrived while it
//! was busy are written together on its next pass. So when events come faster
//! than sockets can be written (a burst of joins, a large guild) the writes
//! coalesce up to 64 frames each, and when they come one at a time each reaches
//! the socket in one system call, with no task wake-up per delivery. Sockets are
//! spread over the shards round-robin, so one event's deliveries are written by
//! every core in parallel.
//!
//! Why threads rather than tokio tasks: a shard's work is a loop of non-blocking
//! system calls with nothing to await, and threads of their own keep it apart
//! from the runtime that reads sockets and serves HTTP. The shards are shared by
//! every hub in the process and live as long as it does (docs/benchmarks.md, "Hub
//! fan-out").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use crate::fanout::Outbox;

/// WebSocket frames written to browsers (counter).
pub(crate) const WS_FRAMES: &str = "hub_ws_frames_total";
/// Vectored writes that carried them (counter): far fewer than frames when
/// frames queue up.
pub(crate) const WS_WRITES: &str = "hub_ws_writes_total";

/// Most shards, whatever the core count.
const MAX_SHARDS: usize = 8;

/// One writer thread's list of sockets with frames to write.
pub(crate) struct Shard {
    dirty: Mutex<Vec<Arc<Outbox>>>,
    ready: Condvar,
}

/// What one pass wrote, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) writes: u64,
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

impl Stats {
    /// Adds these writes to the hub's counters.
    pub(crate) fn record(&self) {
        if self.writes > 0 {
            metrics::counter!(WS_WRITES).increment(self.writes);
            metrics::counter!(WS_FRAMES).increment(self.frames as u64);
        }
    }
}

impl Shard {
    /// Puts `outbox` on this shard's list, waking its thread if the list was empty.
    pub(crate) fn schedule(&self, outbox: Arc<Outbox>) {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        dirty.push(outbox);
        if dirty.len() == 1 {
            drop(dirty);
            self.ready.notify_one();
        }
    }

    /// Puts `outboxes` on this shard's list at once.
    fn schedule_all(&self, outboxes: &mut Vec<Arc<Outbox>>) {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        let was_empty = dirty.is_empty();
        dirty.append(outboxes);
        if was_empty {
            drop(dirty);
            self.ready.notify_one();
        }
    }

    /// The thread's loop: take the list, write every socket on it, repeat.
    fn run(&self) {
        let mut batch = Vec::new();
        loop {
            {
                let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
                while dirty.is_empty() {
                    dirty = self
                        .ready
                        .wait(dirty)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                std::mem::swap(&mut batch, &mut *dirty);
            }
            let mut stats = Stats::default();
            for outbox in batch.drain(..) {
                outbox.flush_scheduled(&mut stats);
            }
            stats.record();
        }
    }
}

/// Sockets to schedule after one frame was queued to many (a publication): put on
/// their shards together when the batch is dropped.
#[derive(Default)]
pub(crate) struct Batch {
    shards: Vec<(&'static Shard, Vec<Arc<Outbox>>)>,
}

impl Batch {
    /// Adds `outbox`, to be put on `shard`.
    pub(crate) fn add(&mut self, shard: &'static Shard, outbox: Arc<Outbox>) {
        match self
            .shards
            .iter_mut()
            .find(|(s, _)| std::ptr::eq(*s, shard))
        {
            Some((_, list)) => list.push(outbox),
            None => self.shards.push((shard, vec![outbox])),
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        for (shard, list) in &mut self.shards {
            shard.schedule_all(list);
        }
    }
}

/// The shard for the next socket (round-robin), starting the threads on first use.
pub(crate) fn next_shard() -> &'static Shard {
    static SHARDS: OnceLock<Vec<&'static Shard>> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let shards = SHARDS.get_or_init(|| {
        let count = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_SHARDS);
        (0..count)
            .map(|n| {
                let shard: &'static Shard = Box::leak(Box::new(Shard {
                    dirty: Mutex::new(Vec::new()),
                    ready: Condvar::new(),
                }));
                std::thread::Builder::new()
                    .name(format!("coven-ws-writer-{n}"))
                    .spawn(move || shard.run())
                    .expect("a writer thread starts");
                shard
            })
            .collect()
    });
    shards[NEXT.fetch_add(1, Ordering::Relaxed) % shards.len()]
}
