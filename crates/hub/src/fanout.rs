//! The per-socket side of fan-out: a frame serialised once, and each browser's
//! bounded outbox.
//!
//! An event is turned into JSON exactly once; the resulting [`Frame`] is a
//! reference-counted buffer, so handing it to 10,000 sockets costs 10,000 pointer
//! copies, not 10,000 serialisations. Each socket drains its own [`Outbox`]; the
//! publisher never waits on a socket. When a socket's unsent data passes the limit
//! it is marked overloaded and its writer closes it with 1013, so one stalled
//! browser costs only its own bounded memory and never delays the others.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

/// One serialised server → browser message, shared by every socket that sends it.
pub type Frame = Utf8Bytes;

/// A socket's queue of frames not yet written, with its byte count.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Frame>,
    queued_bytes: AtomicUsize,
    limit: usize,
    overloaded: AtomicBool,
    closed: AtomicBool,
    wake: Notify,
}

/// The reading end of an [`Outbox`], owned by the socket's task.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Frame>,
}

impl Outbox {
    /// A new outbox that overflows past `limit` unsent bytes.
    pub(crate) fn new(limit: usize) -> (Self, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                queued_bytes: AtomicUsize::new(0),
                limit,
                overloaded: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake: Notify::new(),
            },
            OutboxReceiver { rx },
        )
    }

    /// Queues `frame`; returns `false` when this outbox no longer takes frames
    /// (closed, or overloaded by this very frame), so the publisher can forget it.
    pub fn deliver(&self, frame: &Frame) -> bool {
        if self.closed.load(Ordering::Relaxed) || self.overloaded.load(Ordering::Relaxed) {
            return false;
        }
        let len = frame.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
        if queued > self.limit {
            self.overloaded.store(true, Ordering::Relaxed);
            self.wake.notify_one();
            return false;
        }
        self.tx.send(frame.clone()).is_ok()
    }

    /// Whether this outbox still takes frames.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && !self.overloaded.load(Ordering::Relaxed)
    }

    /// Marks the outbox closed: the socket is gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Called by the writer once a frame has left the queue.
    pub(crate) fn sent(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    /// Completes when the outbox overflowed.
    pub(crate) async fn overloaded(&self) {
        loop {
            if self.overloaded.load(Ordering::Relaxed) {
                return;
            }
            self.wake.notified().await;
        }
    }
}

impl OutboxReceiver {
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }

    pub(crate) fn try_recv(&mut self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflows_past_the_limit() {
        let (outbox, mut rx) = Outbox::new(10);
        let frame = Frame::from("12345");
        assert!(outbox.deliver(&frame));
        assert!(outbox.deliver(&frame));
        assert!(!outbox.deliver(&frame), "15 bytes > 10");
        assert!(!outbox.is_open());
        outbox.overloaded().await;
        assert_eq!(rx.try_recv().as_deref(), Some("12345"));
    }

    #[test]
    fn sent_frames_free_room() {
        let (outbox, mut rx) = Outbox::new(10);
        let frame = Frame::from("12345678");
        assert!(outbox.deliver(&frame));
        let got = rx.try_recv().unwrap();
        outbox.sent(got.len());
        assert!(outbox.deliver(&frame));
    }
}
