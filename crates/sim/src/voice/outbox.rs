//! What a voice session sends, framed for its voice gateway version: v8 numbers server
//! messages (`seq` on JSON, `[seq u16 BE][op u8][payload]` binary frames) and keeps them until
//! the client acknowledges them (`seq_ack`), so that a RESUME re-delivers what the client
//! missed ("buffered resume"); v4 sends JSON as is and binary frames as `[op u8][payload]`.
//! See docs/simulator.md, "Voice".

use std::collections::VecDeque;

use serde_json::Value;

use super::signalling::op;

/// The first voice gateway version with sequence numbers and buffered resume.
pub const BUFFERED_VERSION: u8 = 8;

/// At most this many unacknowledged messages are kept per session; older ones are dropped,
/// and a client that missed one of them cannot resume.
pub const MAX_BUFFERED: usize = 1024;

/// A message ready for the WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A JSON text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A resume asked for a message that is no longer buffered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gap;

/// One session's numbering and buffer.
#[derive(Debug)]
pub(crate) struct Outbox {
    sequenced: bool,
    /// The last sequence number used (0: none yet; the first message is 1).
    last: u16,
    /// Sent but not yet acknowledged, oldest first.
    buffer: VecDeque<(u16, Frame)>,
    /// Whether the buffer dropped unacknowledged messages (only the newest are kept).
    dropped_after: Option<u16>,
}

impl Outbox {
    /// An outbox for a session on voice gateway version `version`.
    pub fn new(version: u8) -> Self {
        Self {
            sequenced: version >= BUFFERED_VERSION,
            last: 0,
            buffer: VecDeque::new(),
            dropped_after: None,
        }
    }

    /// Whether this session speaks v8 (sequence numbers, `seq_ack`, buffered resume).
    pub fn sequenced(&self) -> bool {
        self.sequenced
    }

    /// Frames a JSON message. On v8 it gets the next `seq` and is buffered, except the
    /// messages that only make sense on the connection that asked for them (HELLO,
    /// `HEARTBEAT_ACK`, `RESUMED`).
    pub fn json(&mut self, mut payload: Value) -> Frame {
        let opcode = payload.get("op").and_then(Value::as_u64);
        let unsequenced = matches!(opcode, Some(op::HELLO | op::HEARTBEAT_ACK | op::RESUMED));
        if !self.sequenced || unsequenced {
            return Frame::Text(payload.to_string());
        }
        let seq = self.next();
        if let Some(map) = payload.as_object_mut() {
            map.insert("seq".to_owned(), Value::from(seq));
        }
        self.keep(seq, Frame::Text(payload.to_string()))
    }

    /// Frames a binary message given as `[op u8][payload]`: v8 prefixes the sequence number
    /// and buffers it, v4 sends it as is.
    pub fn binary(&mut self, message: &[u8]) -> Frame {
        if !self.sequenced {
            return Frame::Binary(message.to_vec());
        }
        let seq = self.next();
        let mut framed = Vec::with_capacity(message.len() + 2);
        framed.extend_from_slice(&seq.to_be_bytes());
        framed.extend_from_slice(message);
        self.keep(seq, Frame::Binary(framed))
    }

    /// The client received everything up to `seq_ack`: forget it.
    pub fn ack(&mut self, seq_ack: u16) {
        if let Some(pos) = self.buffer.iter().position(|(s, _)| *s == seq_ack) {
            self.buffer.drain(..=pos);
        }
    }

    /// What a client that last received `seq_ack` (`None`: nothing numbered yet) missed, in
    /// order; [`Gap`] when some of it is no longer buffered.
    pub fn replay(&mut self, seq_ack: Option<u16>) -> Result<Vec<Frame>, Gap> {
        if seq_ack == Some(self.last) || (seq_ack.is_none() && self.last == 0) {
            self.buffer.clear();
            return Ok(Vec::new());
        }
        let from = match seq_ack {
            Some(acked) => match self.buffer.iter().position(|(s, _)| *s == acked) {
                Some(pos) => pos + 1,
                // Acknowledged before the oldest buffered message: fine only if nothing
                // between was dropped.
                None if self.dropped_after.is_none()
                    && self
                        .buffer
                        .front()
                        .is_some_and(|(s, _)| *s == acked.wrapping_add(1)) =>
                {
                    0
                }
                None => return Err(Gap),
            },
            None if self.dropped_after.is_none()
                && self.buffer.front().is_some_and(|(s, _)| *s == 1) =>
            {
                0
            }
            None => return Err(Gap),
        };
        self.buffer.drain(..from);
        Ok(self.buffer.iter().map(|(_, f)| f.clone()).collect())
    }

    fn next(&mut self) -> u16 {
        self.last = self.last.wrapping_add(1);
        self.last
    }

    fn keep(&mut self, seq: u16, frame: Frame) -> Frame {
        if self.buffer.len() == MAX_BUFFERED
            && let Some((dropped, _)) = self.buffer.pop_front()
        {
            self.dropped_after = Some(dropped);
        }
        self.buffer.push_back((seq, frame.clone()));
        frame
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn v4_frames_are_unchanged_and_not_buffered() {
        let mut o = Outbox::new(4);
        let f = o.json(json!({"op": 11, "d": {"user_ids": ["1"]}}));
        assert_eq!(
            f,
            Frame::Text(r#"{"d":{"user_ids":["1"]},"op":11}"#.to_owned())
        );
        assert_eq!(o.binary(&[25, 1, 2]), Frame::Binary(vec![25, 1, 2]));
        assert_eq!(o.replay(None), Ok(Vec::new()));
    }

    #[test]
    fn v8_numbers_json_and_binary_in_one_sequence() {
        let mut o = Outbox::new(8);
        let Frame::Text(t) = o.json(json!({"op": 2, "d": {}})) else {
            panic!("text")
        };
        assert_eq!(serde_json::from_str::<Value>(&t).unwrap()["seq"], 1);
        assert_eq!(o.binary(&[25, 9]), Frame::Binary(vec![0, 2, 25, 9]));
        // HEARTBEAT_ACK / RESUMED / HELLO carry no seq and use none.
        let Frame::Text(t) = o.json(json!({"op": 6, "d": {"t": 1}})) else {
            panic!("text")
        };
        assert!(
            serde_json::from_str::<Value>(&t)
                .unwrap()
                .get("seq")
                .is_none()
        );
        assert_eq!(o.binary(&[27, 0]), Frame::Binary(vec![0, 3, 27, 0]));
    }

    #[test]
    fn resume_replays_what_was_not_acknowledged() {
        let mut o = Outbox::new(8);
        for n in 0..5u8 {
            o.binary(&[27, n]);
        }
        o.ack(2);
        assert_eq!(
            o.replay(Some(3)),
            Ok(vec![
                Frame::Binary(vec![0, 4, 27, 3]),
                Frame::Binary(vec![0, 5, 27, 4])
            ])
        );
        assert_eq!(o.replay(Some(5)), Ok(Vec::new()));
        // Nothing acknowledged at all: everything since the first message.
        let mut o = Outbox::new(8);
        o.binary(&[25]);
        assert_eq!(o.replay(None), Ok(vec![Frame::Binary(vec![0, 1, 25])]));
    }

    #[test]
    fn resume_past_the_buffer_is_a_gap() {
        let mut o = Outbox::new(8);
        for _ in 0..=MAX_BUFFERED {
            o.binary(&[27]);
        }
        assert_eq!(o.replay(None), Err(Gap));
        assert_eq!(o.replay(Some(0)), Err(Gap));
        // The newest are still there.
        let last = u16::try_from(MAX_BUFFERED).unwrap();
        assert_eq!(o.replay(Some(last)).map(|f| f.len()), Ok(1));
    }
}
