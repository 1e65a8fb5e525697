//! The writer shards: a thread per core that writes browsers' frames.
//!
//! Two kinds of work reach a shard, and neither costs the publisher a step per
//! socket:
//!
//! - **Publications.** An event for a guild's stream is handed to each shard once,
//!   with the [`Audience`] (that stream's sockets on this shard) it is for. The
//!   shard's thread takes every publication that queued up and writes each socket
//!   all of them in vectored writes of up to 64 frames (`Outbox::publish`),
//!   straight from the shared frames: the floor's design (`benches/floor/`), with
//!   a socket's own queue as the exception path. So when events come faster than
//!   sockets can be written (a burst of joins, a large guild) the writes coalesce,
//!   and when they come one at a time each reaches a socket in one system call.
//! - **Sockets with frames of their own** (an ack and replay, a pong, webcam
//!   signalling, or publications that met a full kernel buffer): the socket is put
//!   on its shard's list once, however many frames it gets meanwhile, and the
//!   shard writes everything it has queued.
//!
//! No task is woken per delivery. Sockets are spread over the shards round-robin,
//! so one event's deliveries are written by every core in parallel.
//!
//! Why threads rather than tokio tasks: a shard's work is a loop of non-blocking
//! system calls with nothing to await, and threads of their own keep it apart
//! from the runtime that reads sockets and serves HTTP. The shards are shared by
//! every hub in the process and live as long as it does (docs/benchmarks.md, "Hub
//! fan-out").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::fanout::{Frame, Outbox};
use crate::metrics::DELIVERIES;

/// WebSocket frames written to browsers (counter).
pub(crate) const WS_FRAMES: &str = "hub_ws_frames_total";
/// Vectored writes that carried them (counter): far fewer than frames when
/// frames queue up.
pub(crate) const WS_WRITES: &str = "hub_ws_writes_total";

/// Most shards, whatever the core count.
const MAX_SHARDS: usize = 8;
/// Sockets whose outboxes are read together before they are written
/// ([`Audience::write`]).
const WARM_BATCH: usize = 8;

/// One writer thread and its work.
pub(crate) struct Shard {
    work: Mutex<Work>,
    ready: Condvar,
}

/// What a shard's thread has to write.
#[derive(Default)]
struct Work {
    /// Sockets with frames of their own queued.
    sockets: Vec<Arc<Outbox>>,
    /// Events for audiences on this shard, in publication order.
    published: Vec<Publication>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.sockets.is_empty() && self.published.is_empty()
    }
}

/// One event for one audience.
struct Publication {
    audience: Arc<Audience>,
    seq: u64,
    frame: Frame,
}

/// The sockets of one guild's stream that one shard writes. Its stream hands it
/// each event once ([`Audience::publish`]); the shard's thread writes the event to
/// every socket in it.
pub(crate) struct Audience {
    shard: &'static Shard,
    /// Registered since the shard's last pass; moved into `sockets` by the shard
    /// before it writes the next publication, so a registration never waits for a
    /// pass to end.
    joining: Mutex<Vec<Arc<Outbox>>>,
    /// The sockets the shard writes; closed ones are dropped as it meets them.
    sockets: Mutex<Vec<Arc<Outbox>>>,
}

/// What one pass wrote, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) writes: u64,
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
    /// Event frames written or queued to sockets by publications.
    pub(crate) delivered: u64,
}

impl Stats {
    /// Adds these writes to the hub's counters.
    pub(crate) fn record(&self) {
        if self.writes > 0 {
            metrics::counter!(WS_WRITES).increment(self.writes);
            metrics::counter!(WS_FRAMES).increment(self.frames as u64);
        }
        if self.delivered > 0 {
            metrics::counter!(DELIVERIES).increment(self.delivered);
        }
    }
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds work under the lock, waking the thread if it had none.
    fn add(&self, add: impl FnOnce(&mut Work)) {
        let mut work = self.lock();
        let was_empty = work.is_empty();
        add(&mut work);
        if was_empty {
            drop(work);
            self.ready.notify_one();
        }
    }

    /// Puts `outbox` on this shard's list of sockets with frames of their own.
    pub(crate) fn schedule(&self, outbox: Arc<Outbox>) {
        self.add(|work| work.sockets.push(outbox));
    }

    /// The thread's loop: take the work, write it, repeat.
    fn run(&self) {
        let mut taken = Work::default();
        loop {
            {
                let mut work = self.lock();
                while work.is_empty() {
                    work = self
                        .ready
                        .wait(work)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                std::mem::swap(&mut taken, &mut *work);
            }
            let mut stats = Stats::default();
            for outbox in taken.sockets.drain(..) {
                outbox.flush_scheduled(&mut stats);
            }
            write_publications(&mut taken.published, &mut stats);
            stats.record();
        }
    }
}

/// Writes each audience's publications to its sockets: all of an audience's
/// events that queued up go to each socket together, in `seq` order.
fn write_publications(published: &mut Vec<Publication>, stats: &mut Stats) {
    let mut events: Vec<(u64, Frame)> = Vec::new();
    while let Some(first) = published.first() {
        let audience = first.audience.clone();
        // This audience's events, in order; other audiences' wait their turn.
        published.retain_mut(|publication| {
            if Arc::ptr_eq(&publication.audience, &audience) {
                events.push((publication.seq, publication.frame.clone()));
                false
            } else {
                true
            }
        });
        audience.write(&events, stats);
        events.clear();
    }
}

impl Audience {
    /// A new, empty audience written by `shard`.
    pub(crate) fn new(shard: &'static Shard) -> Self {
        Self {
            shard,
            joining: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
        }
    }

    /// Whether this audience is the one written by `shard`.
    pub(crate) fn is_on(&self, shard: &'static Shard) -> bool {
        std::ptr::eq(self.shard, shard)
    }

    /// Adds a socket: it gets the events published from now on whose `seq` is
    /// above the one it was registered at (`Outbox::follow_after`).
    pub(crate) fn join(&self, outbox: Arc<Outbox>) {
        let mut joining = lock(&self.joining);
        // Sockets that closed before the next publication are forgotten whenever
        // the list is full, so reconnections in a quiet guild keep it bounded; it
        // grows only when most of it is open (amortised O(1) per join).
        if joining.len() == joining.capacity() {
            joining.retain(|o| o.is_open());
            if joining.len() > joining.capacity() / 2 {
                let more = joining.len();
                joining.reserve(more);
            }
        }
        joining.push(outbox);
    }

    /// Hands `frame` (event `seq`) to the shard, for every socket of this audience.
    pub(crate) fn publish(self: &Arc<Self>, seq: u64, frame: &Frame) {
        let publication = Publication {
            audience: self.clone(),
            seq,
            frame: frame.clone(),
        };
        self.shard.add(|work| work.published.push(publication));
    }

    /// The sockets still open.
    pub(crate) fn open(&self) -> usize {
        let joining = lock(&self.joining).iter().filter(|o| o.is_open()).count();
        joining + lock(&self.sockets).iter().filter(|o| o.is_open()).count()
    }

    /// Marks every socket overloaded (they close 1013 and their browsers resume)
    /// and forgets them.
    pub(crate) fn overflow_all(&self) {
        for outbox in lock(&self.joining).drain(..) {
            outbox.overflow();
        }
        for outbox in lock(&self.sockets).drain(..) {
            outbox.overflow();
        }
    }

    /// The shard's write of `events` to every socket; sockets that closed or fell
    /// behind are dropped.
    ///
    /// The sockets are taken [`WARM_BATCH`] at a time, and a batch's outboxes are
    /// read before any of them is written: each outbox is a cache miss (the only
    /// one of the hub's own per delivery), and misses issued together overlap,
    /// where one per write would each stall the thread before its system call
    /// (docs/benchmarks.md "Hub fan-out").
    fn write(&self, events: &[(u64, Frame)], stats: &mut Stats) {
        let mut sockets = lock(&self.sockets);
        sockets.append(&mut lock(&self.joining));
        // Sockets still taking events are moved, in order, to the front.
        let mut kept = 0;
        for start in (0..sockets.len()).step_by(WARM_BATCH) {
            let end = sockets.len().min(start + WARM_BATCH);
            for outbox in &sockets[start..end] {
                outbox.warm();
            }
            for i in start..end {
                if sockets[i].publish(events, stats) {
                    sockets.swap(kept, i);
                    kept += 1;
                }
            }
        }
        sockets.truncate(kept);
    }
}

impl std::fmt::Debug for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audience").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
                    work: Mutex::new(Work::default()),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A socket's outbox (on its writer shard) and the browser's end.
    async fn socket() -> (Arc<Outbox>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let browser = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (hub, _) = listener.accept().await.unwrap();
        (Arc::new(Outbox::for_socket(1 << 20, hub)), browser)
    }

    fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, Frame)> {
        seqs.map(|seq| (seq, Frame::from(format!("e{seq}"))))
            .collect()
    }

    /// Reads until `expected` bytes arrived (or two seconds passed).
    async fn read(browser: &mut TcpStream, expected: &[u8]) -> Vec<u8> {
        let mut got = vec![0; expected.len()];
        tokio::time::timeout(Duration::from_secs(2), browser.read_exact(&mut got))
            .await
            .expect("the frames arrive")
            .unwrap();
        got
    }

    fn wire(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.wire().to_vec()).collect()
    }

    #[tokio::test]
    async fn an_audience_writes_each_socket_its_queued_events_in_one_write() {
        let (early, mut early_browser) = socket().await;
        let (late, mut late_browser) = socket().await;
        let audience = Audience::new(early.shard().unwrap());
        early.follow_after(0);
        audience.join(early);
        // Registered at seq 2: events 1 and 2 are before its time (or in its replay).
        late.follow_after(2);
        audience.join(late);
        let published = events(1..=5);
        let mut stats = Stats::default();
        audience.write(&published, &mut stats);
        // One vectored write per socket for all the events that queued up.
        assert_eq!(stats.writes, 2);
        assert_eq!(stats.frames, 5 + 3);
        assert_eq!(stats.delivered, 5 + 3);
        let all: Vec<Frame> = published.iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(read(&mut early_browser, &wire(&all)).await, wire(&all));
        assert_eq!(
            read(&mut late_browser, &wire(&all[2..])).await,
            wire(&all[2..])
        );
    }

    #[tokio::test]
    async fn events_for_a_held_socket_wait_behind_what_it_puts_first() {
        let (outbox, mut browser) = socket().await;
        let audience = Audience::new(outbox.shard().unwrap());
        outbox.hold();
        audience.join(outbox.clone());
        let published = events(1..=3);
        audience.write(&published, &mut Stats::default());
        // The ack (and a replay) go first, then the events that arrived meanwhile.
        let ack = Frame::from("ack");
        outbox.start(vec![ack.clone()]);
        let mut expected = vec![ack];
        expected.extend(published.into_iter().map(|(_, f)| f));
        assert_eq!(read(&mut browser, &wire(&expected)).await, wire(&expected));
    }

    #[test]
    fn sockets_closed_before_any_event_do_not_pile_up() {
        let audience = Audience::new(next_shard());
        for _ in 0..10_000 {
            let outbox = Arc::new(Outbox::new(1024));
            audience.join(outbox.clone());
            outbox.close();
        }
        assert!(lock(&audience.joining).len() <= 8);
        let open: Vec<_> = (0..100).map(|_| Arc::new(Outbox::new(1024))).collect();
        for outbox in &open {
            audience.join(outbox.clone());
        }
        assert_eq!(audience.open(), 100);
    }

    #[tokio::test]
    async fn a_closed_socket_leaves_its_audience() {
        let (open, _browser) = socket().await;
        let (closed, _other) = socket().await;
        let audience = Audience::new(open.shard().unwrap());
        audience.join(open);
        audience.join(closed.clone());
        assert_eq!(audience.open(), 2);
        closed.close();
        audience.write(&events(1..=1), &mut Stats::default());
        assert_eq!(audience.open(), 1);
        assert_eq!(lock(&audience.sockets).len(), 1);
    }
}
