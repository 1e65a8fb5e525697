//! The per-socket side of fan-out: a frame built once, and each browser's bounded
//! outbox, written in coalesced vectored writes (docs/spec.md §6; docs/benchmarks.md
//! "Hub fan-out" for the design and its numbers).
//!
//! An event is serialised and framed exactly once: a [`Frame`] holds the complete
//! WebSocket frame (header + JSON payload) in one reference-counted buffer, shared
//! by every socket that sends it. Publishing an event hands it once to each writer
//! shard ([`crate::ws_writer`], a thread per core) with the guild's sockets on that
//! shard; the shard writes each socket every event that queued up meanwhile in one
//! vectored write (`sendmsg`) of up to [`MAX_WRITE_FRAMES`] frames /
//! [`MAX_WRITE_BYTES`] bytes, straight from the shared frames
//! ([`Outbox::publish`]). A socket's [`Outbox`] queue holds only what cannot go
//! that way: the socket's own frames (an ack and replay, pongs, webcam signalling,
//! closes, written by the shard it is scheduled on) and events that arrive while
//! something is queued ahead of them or the socket is blocked. No task is woken per
//! delivery while a socket is writable: when its kernel buffer is full
//! (`WouldBlock` or a partial write) the rest is queued, the outbox is marked
//! blocked, its own session task is woken once and waits for the socket to become
//! writable, and the shards only queue behind it until it has caught up. Frames
//! leave in exactly the order they were queued: every write, by a shard or by the
//! session, happens under the outbox's lock and only when nothing is queued ahead.
//!
//! When a socket's unsent data passes the limit it is marked overloaded and its
//! session closes it with 1013, so one stalled browser costs only its own bounded
//! memory and never delays the others. An outbox without a socket (in tests) is
//! drained by its owner with `Outbox::take`; the hub's own listeners
//! (`crate::rtc_presence`) observe the stream without an outbox
//! (`crate::local_stream::Observer`).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;

use crate::rtc_presence::{NOTE_LEN, VoiceChange};
use crate::ws_writer::{self, Shard};

/// Most frames written by one vectored write.
pub(crate) const MAX_WRITE_FRAMES: usize = 64;
/// Most bytes gathered for one vectored write (a frame is never split to fit).
pub(crate) const MAX_WRITE_BYTES: usize = 64 * 1024;
/// Queue capacity kept after a burst drains; more is released, so an idle socket
/// does not hold on to the memory of its busiest moment.
#[cfg(test)]
const RETAINED_CAPACITY: usize = 8;
/// WebSocket opcodes of the frames the hub sends (RFC 6455 §5.2).
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// Longest frame header: opcode byte, length byte, 64-bit extended length (RFC 6455 §5.2).
const MAX_HEADER: usize = 10;
/// Room reserved in front of a payload being framed: the note, then the header.
const PREFIX: usize = NOTE_LEN + MAX_HEADER;
/// Largest scratch buffer a thread keeps between frames ([`Frame::event`]).
const SCRATCH_KEPT: usize = 64 * 1024;

/// One server → browser WebSocket frame, built once and shared by every socket that
/// sends it: the unmasked frame header followed by the payload, in one
/// reference-counted buffer (a queued frame is one 16-byte handle). Dereferences
/// to the payload text (the JSON envelope).
///
/// An event's frame also carries, in front of the wire bytes, what the hub's own
/// voice presence reads of the event (`VoiceChange`, `crate::rtc_presence`), so
/// that it never parses the JSON back: it is set where the event is framed
/// (`crate::broker::event_frame`, also for the events read from Redis) and costs
/// every frame `NOTE_LEN` bytes of its buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// The [`VoiceChange`] note, then the wire bytes.
    buf: Arc<[u8]>,
}

impl Frame {
    /// A text frame carrying `text` (a JSON envelope).
    pub fn text(text: &str) -> Self {
        Self::build(OP_TEXT, text.as_bytes())
    }

    /// A ping with an empty payload.
    pub(crate) fn ping() -> Self {
        Self::build(OP_PING, &[])
    }

    /// A pong echoing `payload` (at most 125 bytes, as the ping's was).
    pub(crate) fn pong(payload: &[u8]) -> Self {
        Self::build(OP_PONG, payload)
    }

    /// A close frame with `code` and `reason` (docs/spec.md §6 close codes).
    pub(crate) fn close(code: u16, reason: &str) -> Self {
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        Self::build(OP_CLOSE, &payload)
    }

    /// A close frame echoing the browser's close `payload` (its code, if any).
    pub(crate) fn close_reply(payload: &[u8]) -> Self {
        Self::build(OP_CLOSE, payload.get(..2).unwrap_or(&[]))
    }

    /// A text frame whose payload is the event envelope `value` serialised as
    /// JSON, noting its `voice` change for the hub's voice presence
    /// ([`Frame::voice`]). The JSON is written straight into the frame's buffer
    /// behind room for the note and the header: one allocation (the shared buffer)
    /// and one copy, instead of a `String`, then a frame `Vec`, then the shared
    /// buffer (docs/benchmarks.md, "Ingest").
    ///
    /// # Panics
    ///
    /// When `value` cannot be serialised to JSON (a map with non-string keys, or a
    /// `Serialize` impl that fails); the hub's server messages never do.
    pub(crate) fn event<T: serde::Serialize + ?Sized>(
        value: &T,
        voice: Option<VoiceChange>,
    ) -> Self {
        Self::with_scratch(|buf| {
            buf.resize(PREFIX, 0);
            serde_json::to_writer(&mut *buf, value).expect("server messages always serialise");
            Self::framed(OP_TEXT, buf, voice)
        })
    }

    fn build(opcode: u8, payload: &[u8]) -> Self {
        Self::with_scratch(|buf| {
            buf.resize(PREFIX, 0);
            buf.extend_from_slice(payload);
            Self::framed(opcode, buf, None)
        })
    }

    /// Runs `build` with this thread's scratch buffer, emptied: a frame is laid
    /// out there and then copied once into its shared buffer, so building one
    /// allocates only that. A scratch buffer grown past [`SCRATCH_KEPT`] by a
    /// large frame is released afterwards.
    fn with_scratch(build: impl FnOnce(&mut Vec<u8>) -> Self) -> Self {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| {
            // A frame built while another is being built on this thread (a
            // `Serialize` impl that builds frames) gets a buffer of its own.
            let Ok(mut buf) = scratch.try_borrow_mut() else {
                return build(&mut Vec::new());
            };
            buf.clear();
            let frame = build(&mut buf);
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            frame
        })
    }

    /// The frame of the payload `buf[PREFIX..]`: its header is written just before
    /// the payload and the note before the header, and all three are copied into
    /// the shared buffer.
    fn framed(opcode: u8, buf: &mut [u8], voice: Option<VoiceChange>) -> Self {
        let len = buf.len() - PREFIX;
        let mut header = [0_u8; MAX_HEADER];
        header[0] = 0x80 | opcode;
        let header_len = if len < 126 {
            header[1] = u8::try_from(len).unwrap_or_default();
            2
        } else if let Ok(len) = u16::try_from(len) {
            header[1] = 126;
            header[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let start = PREFIX - header_len;
        buf[start..PREFIX].copy_from_slice(&header[..header_len]);
        buf[start - NOTE_LEN..start].copy_from_slice(&VoiceChange::note(voice));
        Self {
            buf: Arc::from(&buf[start - NOTE_LEN..]),
        }
    }

    /// The complete frame as written to the socket.
    pub(crate) fn wire(&self) -> &[u8] {
        self.buf.get(NOTE_LEN..).unwrap_or_default()
    }

    /// The voice change of an event's frame, as noted when it was framed
    /// ([`Frame::event`]); `None` for any other frame.
    pub(crate) fn voice(&self) -> Option<VoiceChange> {
        self.buf
            .first_chunk::<NOTE_LEN>()
            .and_then(VoiceChange::from_note)
    }

    /// The payload text (empty for a control frame whose payload is not UTF-8).
    pub fn as_str(&self) -> &str {
        let wire = self.wire();
        // The header's length follows from its second byte (RFC 6455 §5.2).
        let header = match wire.get(1).map(|len| len & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        std::str::from_utf8(wire.get(header..).unwrap_or_default()).unwrap_or_default()
    }
}

impl Deref for Frame {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Self {
        Self::text(&text)
    }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Frame").field(&self.as_str()).finish()
    }
}

/// What a write attempt left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Everything queued was written.
    Done,
    /// The kernel buffer is full: the session waits for the socket to be writable.
    Blocked,
    /// The connection failed (or the socket is gone): the session drops it.
    Failed,
}

/// A socket's queue of frames not yet written, with its byte count.
///
/// Laid out for the writer shards (`repr(C)`): what a delivery reads (the lock,
/// the state in `Inner`'s first fields, the socket, the `closed` and
/// `overloaded` flags) lies within the first 128 bytes, and `Outbox::warm` reads
/// both ends of it. Wherever the allocation falls that is two or three cache
/// lines, and the two reads load two of them. Aligning the outbox to a line
/// would make it always two, at 0.25 KiB more per socket (the allocator's
/// padding): measured, and not worth it (docs/benchmarks.md "Hub fan-out").
#[repr(C)]
pub struct Outbox {
    inner: Mutex<Inner>,
    overloaded: AtomicBool,
    closed: AtomicBool,
    /// Set by [`Outbox::wake`] until the owner sees it (a wake-up while the owner is
    /// busy is not lost).
    woken: AtomicBool,
    limit: usize,
    /// The owner's waker: the session (blocked, failed, overloaded, a timer of
    /// `crate::socket_clock`) or, for an outbox without a socket, its reader (frames
    /// arrived). A waker slot rather than a `Notify`: waiting on it takes no state
    /// in the waiting future, which an idle socket's task would hold.
    waker: AtomicWaker,
    /// The writer shard of a socket's outbox; `None` for the hub's own listeners.
    shard: Option<&'static Shard>,
}

/// An outbox's state under its lock, in the order a delivery reads it
/// (`repr(C)`, see [`Outbox`]).
#[derive(Default)]
#[repr(C)]
struct Inner {
    /// A write failed; nothing more is written.
    failed: bool,
    /// Not written by the shards: the kernel buffer was full (the session writes
    /// once the socket is writable), or the session holds it (ack and replay first).
    blocked: bool,
    /// On its shard's list of sockets to write.
    scheduled: bool,
    /// The `seq` the socket was registered at: published events at or below it
    /// are not its (`Outbox::publish`).
    after: u64,
    queue: VecDeque<Frame>,
    /// The socket, owned here, in the outbox's own allocation: a shard's write
    /// finds the descriptor next to the state it has just read, instead of one
    /// more allocation per delivery (docs/benchmarks.md "Hub fan-out"). The
    /// session reaches it through [`Outbox::with_stream`]. Dropped when the
    /// session ends ([`Outbox::close`]), closing the connection.
    stream: Option<TcpStream>,
    /// Bytes of the queue's front frame already written.
    written: usize,
    /// Bytes queued and not yet written.
    bytes: usize,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("limit", &self.limit)
            .field("overloaded", &self.is_overloaded())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// A new outbox without a socket (its owner drains it), that overflows
    /// past `limit` unsent bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limit,
            overloaded: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            shard: None,
        }
    }

    /// The outbox of a browser's socket: frames are written to `stream` by a writer
    /// shard, or by the session when the socket is blocked.
    pub(crate) fn for_socket(limit: usize, stream: TcpStream) -> Self {
        Self {
            inner: Mutex::new(Inner {
                stream: Some(stream),
                ..Inner::default()
            }),
            shard: Some(ws_writer::next_shard()),
            ..Self::new(limit)
        }
    }

    /// The writer shard of a socket's outbox.
    pub(crate) fn shard(&self) -> Option<&'static Shard> {
        self.shard
    }

    /// Runs `use_stream` with the socket, under the outbox's lock (the session's
    /// reads and readiness waits; a shard's write of this socket waits for it).
    /// `None` once the outbox is closed, or for an outbox without a socket.
    pub(crate) fn with_stream<R>(&self, use_stream: impl FnOnce(&TcpStream) -> R) -> Option<R> {
        self.lock().stream.as_ref().map(use_stream)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame`; returns `false` when this outbox no longer takes frames
    /// (closed, or overloaded by this very frame), so the publisher can forget it.
    pub fn deliver(self: &Arc<Self>, frame: &Frame) -> bool {
        let Some(inner) = self.queue(frame) else {
            return false;
        };
        self.schedule(inner);
        true
    }

    /// Sets the `seq` this socket was registered at: publications at or below it
    /// are skipped (they were before its time, or are in its replay).
    pub(crate) fn follow_after(&self, seq: u64) {
        self.lock().after = seq;
    }

    /// A writer shard's delivery of `events` (`seq` order) published to this
    /// socket's stream: those above its registration `seq` are written straight
    /// from the shared frames when nothing is queued ahead of them, else queued
    /// behind what is. Returns `false` when the socket no longer takes events
    /// (closed, failed, or overloaded by them), so the audience can forget it.
    pub(crate) fn publish(&self, events: &[(u64, Frame)], stats: &mut ws_writer::Stats) -> bool {
        if !self.is_open() {
            return false;
        }
        let mut inner = self.lock();
        if inner.failed {
            return false;
        }
        let first = events.partition_point(|(seq, _)| *seq <= inner.after);
        let events = &events[first..];
        if events.is_empty() {
            return true;
        }
        stats.delivered += events.len() as u64;
        let flush = if inner.blocked || !inner.queue.is_empty() {
            if !self.queue_all(&mut inner, events.iter().map(|(_, frame)| frame)) {
                drop(inner);
                self.overflow();
                return false;
            }
            if inner.blocked {
                return true;
            }
            write_queued(&mut inner, stats)
        } else {
            write_direct(&mut inner, events, stats)
        };
        match flush {
            Flush::Done => true,
            // What the kernel did not take may be more than the limit allows.
            Flush::Blocked if inner.bytes > self.limit => {
                drop(inner);
                self.overflow();
                false
            }
            flush => {
                inner.blocked = flush == Flush::Blocked;
                drop(inner);
                self.wake();
                flush != Flush::Failed
            }
        }
    }

    /// Queues `frames` behind what is queued; `false` (nothing queued) when they
    /// would pass the limit.
    fn queue_all<'a>(
        &self,
        inner: &mut Inner,
        frames: impl Iterator<Item = &'a Frame> + Clone,
    ) -> bool {
        let len: usize = frames.clone().map(|frame| frame.wire().len()).sum();
        if inner.bytes + len > self.limit {
            return false;
        }
        inner.bytes += len;
        inner.queue.extend(frames.cloned());
        true
    }

    /// Appends `frame` unless the outbox is closed or `frame` overflows it (then
    /// marked overloaded); returns the locked queue.
    fn queue(&self, frame: &Frame) -> Option<MutexGuard<'_, Inner>> {
        if !self.is_open() {
            return None;
        }
        let mut inner = self.lock();
        let len = frame.wire().len();
        if inner.bytes + len > self.limit {
            drop(inner);
            self.overflow();
            return None;
        }
        inner.bytes += len;
        inner.queue.push_back(frame.clone());
        Some(inner)
    }

    /// Puts the outbox on its shard's list (or wakes its reader), unless it is
    /// already there or blocked.
    fn schedule(self: &Arc<Self>, mut inner: MutexGuard<'_, Inner>) {
        let Some(shard) = self.shard else {
            drop(inner);
            self.wake();
            return;
        };
        if !inner.scheduled && !inner.blocked {
            inner.scheduled = true;
            drop(inner);
            shard.schedule(self.clone());
        }
    }

    /// Reads both ends of what a delivery reads (the lock's poison flag, next to
    /// the lock word, and the `closed` flag: see [`Outbox`]), so that their cache
    /// lines are loaded when the outbox is written a little later
    /// ([`ws_writer`]'s batches).
    pub(crate) fn warm(&self) {
        std::hint::black_box((
            self.inner.is_poisoned(),
            self.closed.load(Ordering::Relaxed),
        ));
    }

    /// Whether this outbox still takes frames.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && !self.is_overloaded()
    }

    /// Whether unsent data passed the limit.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::Relaxed)
    }

    /// Marks the outbox overloaded, so its socket closes with 1013 and the browser
    /// reconnects and resumes: used when its unsent data passes the limit, and when
    /// this hub can no longer give it a gap-free stream (its Redis reader fell
    /// behind the stream's retention).
    pub(crate) fn overflow(&self) {
        self.overloaded.store(true, Ordering::Relaxed);
        self.wake();
    }

    /// Holds the shards off until [`Outbox::start`]: live events queue up behind
    /// the ack and replay the session is about to put first.
    pub(crate) fn hold(&self) {
        self.lock().blocked = true;
    }

    /// Puts `first` (the ack and the replay) ahead of everything queued and lets
    /// the shards write.
    pub(crate) fn start(self: &Arc<Self>, first: Vec<Frame>) {
        let mut inner = self.lock();
        for frame in first.into_iter().rev() {
            inner.bytes += frame.wire().len();
            inner.queue.push_front(frame);
        }
        inner.blocked = false;
        self.schedule(inner);
    }

    /// Ends the stream with `frames` (an error and a close): nothing queued after
    /// them. Unsent events are discarded when the socket is overloaded (the browser
    /// resumes anyway), except the rest of a frame already begun.
    pub(crate) fn finish(&self, frames: impl IntoIterator<Item = Frame>) {
        self.closed.store(true, Ordering::Relaxed);
        let mut inner = self.lock();
        if self.is_overloaded() {
            let keep = usize::from(inner.written > 0);
            inner.queue.truncate(keep);
            inner.bytes = inner
                .queue
                .front()
                .map_or(0, |frame| frame.wire().len() - inner.written);
        }
        for frame in frames {
            inner.bytes += frame.wire().len();
            inner.queue.push_back(frame);
        }
    }

    /// Marks the outbox closed and drops the socket (closing the connection) and
    /// everything queued.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let mut inner = self.lock();
        inner.stream = None;
        inner.queue = VecDeque::new();
        inner.bytes = 0;
        inner.written = 0;
    }

    /// Writes what is queued now, from the caller's thread (the session's own
    /// writes while blocked or closing); marks the outbox blocked when the kernel
    /// buffer fills up. Returns the bytes written with the outcome.
    pub(crate) fn flush_now(&self) -> (Flush, usize) {
        let mut inner = self.lock();
        let mut stats = ws_writer::Stats::default();
        let flush = write_queued(&mut inner, &mut stats);
        inner.blocked = flush == Flush::Blocked;
        drop(inner);
        stats.record();
        (flush, stats.bytes)
    }

    /// The shard's write of a scheduled outbox: skipped while the session holds it.
    pub(crate) fn flush_scheduled(&self, stats: &mut ws_writer::Stats) {
        let mut inner = self.lock();
        inner.scheduled = false;
        if inner.blocked {
            return;
        }
        let flush = write_queued(&mut inner, stats);
        if flush != Flush::Done {
            inner.blocked = flush == Flush::Blocked;
            drop(inner);
            self.wake();
        }
    }

    /// Whether the session must write (the kernel buffer was full) or drop it.
    pub(crate) fn state(&self) -> Option<Flush> {
        let inner = self.lock();
        if inner.failed {
            Some(Flush::Failed)
        } else if inner.blocked {
            Some(Flush::Blocked)
        } else {
            None
        }
    }

    /// Moves up to `max` queued frames into `batch` (an outbox without a socket);
    /// returns their total size, which counts against the limit until
    /// [`Outbox::sent`]. Tests read what an outbox got with it.
    #[cfg(test)]
    pub(crate) fn take(&self, batch: &mut Vec<Frame>, max: usize) -> usize {
        let mut inner = self.lock();
        let n = inner.queue.len().min(max);
        let mut bytes = 0;
        for frame in inner.queue.drain(..n) {
            bytes += frame.wire().len();
            batch.push(frame);
        }
        if inner.queue.is_empty() && inner.queue.capacity() > RETAINED_CAPACITY {
            inner.queue.shrink_to(RETAINED_CAPACITY);
        }
        bytes
    }

    /// Called by the reader once taken frames are handled: frees their room.
    #[cfg(test)]
    pub(crate) fn sent(&self, len: usize) {
        let mut inner = self.lock();
        inner.bytes = inner.bytes.saturating_sub(len);
    }

    /// Completes when frames may have arrived, the outbox overflowed, or (a
    /// socket's outbox) its session must write or drop the socket.
    #[cfg(test)]
    pub(crate) async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await;
    }

    /// [`Outbox::ready`] for a hand-written future: ready once per wake-up, and
    /// only the last task that polled is woken.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Wakes the owner (see [`Outbox::poll_ready`]); a wake-up before it waits is
    /// kept until it looks.
    pub(crate) fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Writes the queue's front in vectored writes of up to [`MAX_WRITE_FRAMES`]
/// frames until it is empty or the kernel takes no more.
fn write_queued(inner: &mut Inner, stats: &mut ws_writer::Stats) -> Flush {
    if inner.failed {
        return Flush::Failed;
    }
    lend_stream(inner, |stream, inner| write_queued_to(stream, inner, stats))
}

/// Runs `write` with the socket lent out of `inner`; `Failed` without a socket.
fn lend_stream(inner: &mut Inner, write: impl FnOnce(&TcpStream, &mut Inner) -> Flush) -> Flush {
    let Some(stream) = inner.stream.take() else {
        return Flush::Failed;
    };
    let flush = write(&stream, inner);
    inner.stream = Some(stream);
    flush
}

/// Writes `slices` in one system call: `send` for one (the usual delivery at a
/// low rate, and a cheaper call than `writev`), else `sendmsg`.
///
/// The call goes straight to the socket, without tokio's readiness check first:
/// that check reads the socket's registration, one more cache line per delivery
/// that the kernel call does not need (docs/benchmarks.md "Hub fan-out"). Only
/// when the kernel answers `WouldBlock` is the write made again through tokio's
/// `try_io`, which reads the readiness before its call and clears it on
/// `WouldBlock`: so tokio learns that the socket is full, the session's wait for
/// it to become writable is not fooled by a stale flag, and a wake-up that came
/// after the first attempt is not lost.
fn write_slices(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    let socket = socket2::SockRef::from(stream);
    let send = || match slices {
        [one] => socket.send_with_flags(one, libc::MSG_NOSIGNAL),
        many => socket.send_vectored_with_flags(many, libc::MSG_NOSIGNAL),
    };
    match send() {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            stream.try_io(tokio::io::Interest::WRITABLE, send)
        }
        done => done,
    }
}

/// [`write_queued`] to `stream`.
fn write_queued_to(stream: &TcpStream, inner: &mut Inner, stats: &mut ws_writer::Stats) -> Flush {
    while !inner.queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_FRAMES];
        let rest = inner.queue.iter().enumerate().map(|(i, frame)| {
            if i == 0 {
                &frame.wire()[inner.written..]
            } else {
                frame.wire()
            }
        });
        let (count, total) = gather(rest, &mut slices);
        match write_slices(stream, &slices[..count]) {
            Ok(0) => {
                inner.failed = true;
                return Flush::Failed;
            }
            Ok(n) => {
                stats.writes += 1;
                stats.bytes += n;
                stats.frames += advance(inner, n);
                if n < total {
                    return Flush::Blocked;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                inner.failed = true;
                return Flush::Failed;
            }
        }
    }
    // An idle socket keeps no queue memory.
    inner.queue = VecDeque::new();
    Flush::Done
}

/// Puts the first of `frames` into `slices`, up to [`MAX_WRITE_FRAMES`] frames
/// and [`MAX_WRITE_BYTES`] bytes (always at least one frame); returns how many
/// and their total size.
fn gather<'a>(
    frames: impl Iterator<Item = &'a [u8]>,
    slices: &mut [IoSlice<'a>; MAX_WRITE_FRAMES],
) -> (usize, usize) {
    let mut count = 0;
    let mut total = 0;
    for bytes in frames.take(MAX_WRITE_FRAMES) {
        if count > 0 && total + bytes.len() > MAX_WRITE_BYTES {
            break;
        }
        slices[count] = IoSlice::new(bytes);
        count += 1;
        total += bytes.len();
    }
    (count, total)
}

/// Writes `events` (nothing is queued) in vectored writes of up to
/// [`MAX_WRITE_FRAMES`] frames straight from the shared frames; what the kernel
/// does not take is queued, the first frame possibly begun.
fn write_direct(inner: &mut Inner, events: &[(u64, Frame)], stats: &mut ws_writer::Stats) -> Flush {
    lend_stream(inner, |stream, inner| {
        write_direct_to(stream, inner, events, stats)
    })
}

/// [`write_direct`] to `stream`.
fn write_direct_to(
    stream: &TcpStream,
    inner: &mut Inner,
    events: &[(u64, Frame)],
    stats: &mut ws_writer::Stats,
) -> Flush {
    let mut next = 0;
    while next < events.len() {
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_FRAMES];
        let (count, total) = gather(events[next..].iter().map(|(_, f)| f.wire()), &mut slices);
        let written = match write_slices(stream, &slices[..count]) {
            Ok(0) => {
                inner.failed = true;
                return Flush::Failed;
            }
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                inner.failed = true;
                return Flush::Failed;
            }
        };
        if written > 0 {
            stats.writes += 1;
            stats.bytes += written;
        }
        if written == total {
            stats.frames += count;
            next += count;
            continue;
        }
        // The kernel took part: queue the rest, beginning with the frame it stopped in.
        let mut skip = written;
        for (_, frame) in &events[next..] {
            let len = frame.wire().len();
            if skip < len {
                break;
            }
            skip -= len;
            next += 1;
            stats.frames += 1;
        }
        inner.written = skip;
        for (_, frame) in &events[next..] {
            inner.bytes += frame.wire().len();
            inner.queue.push_back(frame.clone());
        }
        inner.bytes -= skip;
        return Flush::Blocked;
    }
    Flush::Done
}

/// Removes the `n` bytes just written from the queue's front; returns how many
/// frames were completed.
fn advance(inner: &mut Inner, mut n: usize) -> usize {
    inner.bytes -= n;
    let mut completed = 0;
    while n > 0 {
        let Some(front) = inner.queue.front() else {
            break;
        };
        let left = front.wire().len() - inner.written;
        if n < left {
            inner.written += n;
            break;
        }
        n -= left;
        inner.written = 0;
        inner.queue.pop_front();
        completed += 1;
    }
    completed
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn what_a_delivery_reads_lies_in_the_outboxs_first_128_bytes() {
        // The lock's data is its last field.
        let inner = offset_of!(Outbox, inner) + size_of::<Mutex<Inner>>() - size_of::<Inner>();
        let end_of = |offset: usize, size: usize| inner + offset + size;
        let read = [
            end_of(offset_of!(Inner, failed), 1),
            end_of(offset_of!(Inner, blocked), 1),
            end_of(offset_of!(Inner, after), 8),
            end_of(offset_of!(Inner, queue), size_of::<VecDeque<Frame>>()),
            end_of(offset_of!(Inner, stream), size_of::<Option<TcpStream>>()),
            offset_of!(Outbox, closed) + 1,
            offset_of!(Outbox, overloaded) + 1,
        ];
        assert!(read.iter().all(|end| *end <= 128), "{read:?}");
        // `warm` reads its two ends: the lock (first) and the `closed` flag.
        assert_eq!(offset_of!(Outbox, inner), 0);
        assert!(
            read.iter()
                .all(|end| *end <= offset_of!(Outbox, closed) + 1)
        );
    }

    #[test]
    fn frames_carry_their_header_once() {
        let short = Frame::from("hi");
        assert_eq!(short.wire(), b"\x81\x02hi");
        assert_eq!(&*short, "hi");
        let long = Frame::from("a".repeat(300));
        assert_eq!(&long.wire()[..4], &[0x81, 126, 1, 44]);
        assert_eq!(long.len(), 300);
        let huge = Frame::from("b".repeat(70_000));
        assert_eq!(&huge.wire()[..2], &[0x81, 127]);
        assert_eq!(huge.as_str().len(), 70_000);
        assert_eq!(Frame::close(1013, "x").wire(), b"\x88\x03\x03\xf5x");
    }

    #[test]
    fn an_event_frame_is_the_text_frame_of_its_serialisation() {
        // Payloads on both sides of each header size (7-bit, 16-bit, 64-bit length).
        for len in [0, 3, 123, 124, 300, 65_533, 65_534, 70_000, 3] {
            let value = serde_json::json!({ "s": "x".repeat(len) });
            let text = serde_json::to_string(&value).unwrap();
            let frame = Frame::event(&value, None);
            assert_eq!(frame.wire(), Frame::text(&text).wire(), "{len}");
            assert_eq!(&*frame, text);
        }
    }

    #[tokio::test]
    async fn overflows_past_the_limit() {
        let outbox = Arc::new(Outbox::new(14));
        let frame = Frame::from("12345");
        assert!(outbox.deliver(&frame));
        assert!(outbox.deliver(&frame));
        assert!(!outbox.deliver(&frame), "21 bytes > 14");
        assert!(!outbox.is_open());
        assert!(outbox.is_overloaded());
        outbox.ready().await;
        let mut batch = Vec::new();
        assert_eq!(outbox.take(&mut batch, 64), 14);
        assert_eq!(batch.len(), 2);
    }

    /// A connected pair: the hub's end and the browser's.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let browser = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (listener.accept().await.unwrap().0, browser)
    }

    /// The socket's wait for it to become writable, through its outbox.
    fn poll_writable(outbox: &Outbox, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        outbox
            .with_stream(|stream| stream.poll_write_ready(cx))
            .expect("the outbox has its socket")
    }

    #[tokio::test]
    async fn a_write_the_kernel_refuses_leaves_tokio_waiting_for_room() {
        use tokio::io::AsyncReadExt;
        let (hub, mut browser) = pair().await;
        let outbox = Outbox::for_socket(64 << 20, hub);
        // tokio has seen the new socket writable.
        std::future::poll_fn(|cx| poll_writable(&outbox, cx))
            .await
            .unwrap();
        // The shards write straight to the socket until the kernel refuses.
        let frame = Frame::text(&"x".repeat(60_000));
        let mut stats = ws_writer::Stats::default();
        let mut seq = 0;
        while outbox.state() != Some(Flush::Blocked) {
            seq += 1;
            assert!(seq < 10_000, "the kernel buffer never filled");
            assert!(outbox.publish(&[(seq, frame.clone())], &mut stats));
        }
        // The session's own attempt meets the full buffer too, and tokio learns
        // it: the session's wait does not complete on a stale flag (it would spin
        // between this attempt and the wait)...
        assert_eq!(outbox.flush_now().0, Flush::Blocked);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(poll_writable(&outbox, &mut cx).is_pending());
        // ...and completes once the browser reads.
        tokio::spawn(async move {
            let mut buf = vec![0_u8; 1 << 16];
            while browser.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            std::future::poll_fn(|cx| poll_writable(&outbox, cx)),
        )
        .await
        .expect("writable once the browser reads")
        .unwrap();
    }

    #[tokio::test]
    async fn closing_an_outbox_closes_its_connection_while_others_hold_it() {
        use tokio::io::AsyncReadExt;
        let (hub, mut browser) = pair().await;
        let outbox = Arc::new(Outbox::for_socket(1 << 20, hub));
        let audience = outbox.clone();
        outbox.close();
        let mut buf = [0_u8; 16];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), browser.read(&mut buf))
            .await
            .expect("the browser sees the end");
        assert_eq!(read.unwrap(), 0);
        assert!(!audience.is_open());
    }

    #[tokio::test]
    async fn a_socket_overflows_exactly_at_the_limit_and_writes_in_order() {
        use tokio::io::AsyncReadExt;
        let (hub, mut browser) = pair().await;
        let frames: Vec<Frame> = (0..11).map(|n| Frame::from(format!("{n:03}"))).collect();
        let size = frames[0].wire().len();
        let outbox = Arc::new(Outbox::for_socket(10 * size + size - 1, hub));
        // Held (as while the ack and replay are put first): nothing leaves yet.
        outbox.hold();
        for frame in &frames[..10] {
            assert!(outbox.deliver(frame));
        }
        assert!(outbox.is_open());
        assert!(!outbox.deliver(&frames[10]), "one frame over the limit");
        assert!(outbox.is_overloaded());
        outbox.ready().await;
        // What was queued is written, in order, once released.
        outbox.start(vec![Frame::from("ack")]);
        let mut expected = Frame::from("ack").wire().to_vec();
        for frame in &frames[..10] {
            expected.extend_from_slice(frame.wire());
        }
        let mut received = vec![0; expected.len()];
        browser.read_exact(&mut received).await.unwrap();
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn taken_frames_free_room_and_wake_the_reader() {
        let outbox = Arc::new(Outbox::new(10));
        let frame = Frame::from("12345678");
        assert!(outbox.deliver(&frame));
        outbox.ready().await;
        let mut batch = Vec::new();
        let bytes = outbox.take(&mut batch, 64);
        outbox.sent(bytes);
        assert!(outbox.deliver(&frame));
    }
}
