//! The per-socket side of fan-out: a frame serialised once, and each browser's
//! bounded outbox.
//!
//! An event is turned into JSON exactly once; the resulting [`Frame`] is a
//! reference-counted buffer, so handing it to 10,000 sockets costs 10,000 pointer
//! copies, not 10,000 serialisations. Each socket drains its own [`Outbox`]; the
//! publisher never waits on a socket. When a socket's unsent data passes the limit
//! it is marked overloaded and its writer closes it with 1013, so one stalled
//! browser costs only its own bounded memory and never delays the others.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// One serialised server → browser message, shared by every socket that sends it.
pub type Frame = Utf8Bytes;

/// Queue capacity kept after a burst drains; more is released, so an idle socket
/// does not hold on to the memory of its busiest moment.
const RETAINED_CAPACITY: usize = 8;

/// A socket's queue of frames not yet written, with its byte count.
///
/// A plain `VecDeque` behind an uncontended mutex: it allocates nothing while idle
/// (a channel would hold a block of slots per socket), and one `Notify` wakes the
/// socket's task for both "frames arrived" and "overloaded".
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Frame>>,
    queued_bytes: AtomicUsize,
    limit: usize,
    overloaded: AtomicBool,
    closed: AtomicBool,
    wake: Notify,
}

impl Outbox {
    /// A new outbox that overflows past `limit` unsent bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            queued_bytes: AtomicUsize::new(0),
            limit,
            overloaded: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Queues `frame`; returns `false` when this outbox no longer takes frames
    /// (closed, or overloaded by this very frame), so the publisher can forget it.
    pub fn deliver(&self, frame: &Frame) -> bool {
        if !self.is_open() {
            return false;
        }
        let len = frame.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
        if queued > self.limit {
            self.overloaded.store(true, Ordering::Relaxed);
            self.wake.notify_one();
            return false;
        }
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(frame.clone());
        self.wake.notify_one();
        true
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
    /// reconnects and resumes: used when this hub can no longer give it a gap-free
    /// stream (its Redis reader fell behind the stream's retention).
    pub(crate) fn overflow(&self) {
        self.overloaded.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Marks the outbox closed: the socket is gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Moves up to `max` queued frames into `batch`; returns their total size.
    pub(crate) fn take(&self, batch: &mut Vec<Frame>, max: usize) -> usize {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = queue.len().min(max);
        let mut bytes = 0;
        for frame in queue.drain(..n) {
            bytes += frame.len();
            batch.push(frame);
        }
        if queue.is_empty() && queue.capacity() > RETAINED_CAPACITY {
            queue.shrink_to(RETAINED_CAPACITY);
        }
        bytes
    }

    /// Called by the writer once frames have left the process.
    pub(crate) fn sent(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    /// Completes when frames may have arrived or the outbox overflowed.
    pub(crate) async fn ready(&self) {
        self.wake.notified().await;
    }

    /// Completes when the outbox overflowed.
    pub(crate) async fn overloaded(&self) {
        while !self.is_overloaded() {
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflows_past_the_limit() {
        let outbox = Outbox::new(10);
        let frame = Frame::from("12345");
        assert!(outbox.deliver(&frame));
        assert!(outbox.deliver(&frame));
        assert!(!outbox.deliver(&frame), "15 bytes > 10");
        assert!(!outbox.is_open());
        outbox.overloaded().await;
        let mut batch = Vec::new();
        assert_eq!(outbox.take(&mut batch, 64), 10);
        assert_eq!(batch.len(), 2);
    }

    #[tokio::test]
    async fn sent_frames_free_room_and_wake_the_writer() {
        let outbox = Outbox::new(10);
        let frame = Frame::from("12345678");
        assert!(outbox.deliver(&frame));
        outbox.ready().await;
        let mut batch = Vec::new();
        let bytes = outbox.take(&mut batch, 64);
        outbox.sent(bytes);
        assert!(outbox.deliver(&frame));
    }
}
