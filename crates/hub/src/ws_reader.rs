//! The browser → hub half of a WebSocket: frames read only when the socket is
//! readable, into a buffer on the stack, so an idle socket holds no read buffer.
//!
//! tungstenite parses each frame's header ([`FrameHeader::parse`]); this module
//! adds what a session needs around it: unmasking, reassembling fragmented
//! messages, the size limits of docs/spec.md §6 (a frame or message over
//! [`MAX_INBOUND_FRAME`] is refused from its header, before its payload is
//! buffered), and RFC 6455's rules for clients (masked frames, no reserved bits,
//! control frames short and unfragmented, text in UTF-8). Only a frame split
//! across reads and messages not yet taken are kept between reads, in a box that
//! is freed once they are: an idle socket's reader is two words.

use std::collections::VecDeque;
use std::io::{self, Cursor};

use bytes::Bytes;
use tokio::net::TcpStream;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Largest frame, and largest reassembled message, read from a browser
/// (docs/spec.md §6). The contract's 4 KiB message limit is checked on the whole
/// message by the session, so such a message gets a complete closing handshake.
pub(crate) const MAX_INBOUND_FRAME: usize = 16 * 1024;
/// Bytes read per system call (on the stack of the read, never kept).
const READ_CHUNK: usize = 4096;

/// One thing a browser sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A complete text message.
    Text(String),
    /// A complete binary message of this many bytes (not part of the contract).
    Binary(usize),
    /// A ping, with its payload for the pong.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame, with its payload (code and reason).
    Close(Bytes),
    /// A frame or message over [`MAX_INBOUND_FRAME`]: the rest is not read.
    TooBig,
    /// A violation of the protocol: the connection is dropped.
    Invalid,
}

/// What a read found besides messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The socket has no more bytes for now.
    Pending,
    /// The browser closed the connection (or it failed).
    Closed,
}

/// A socket's read state between reads: nothing on the heap while idle (no
/// frame half read, no message waiting), and 16 bytes in the session.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// What is buffered, only while something is.
    state: Option<Box<State>>,
    /// A fatal message was returned: nothing more is parsed.
    done: bool,
    /// The browser closed the connection (or it failed).
    closed: bool,
}

/// A reader's buffers while it has any.
#[derive(Debug, Default)]
struct State {
    frames: Frames,
    /// Complete messages not yet taken.
    inbox: VecDeque<Inbound>,
}

impl Reader {
    /// A reader that starts with `bytes` already read (by the HTTP server, after
    /// the upgrade request).
    pub(crate) fn with(bytes: &[u8]) -> Self {
        let mut reader = Self::default();
        if !bytes.is_empty() {
            reader.feed(bytes);
        }
        reader
    }

    /// The next complete message, if one was read.
    pub(crate) fn next(&mut self) -> Option<Inbound> {
        let state = self.state.as_mut()?;
        let inbound = state.inbox.pop_front();
        if state.inbox.is_empty() && state.frames.is_empty() {
            self.state = None;
        }
        inbound
    }

    /// Whether a read found the connection closed (or failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Reads what `stream` has now and parses it; complete messages are returned
    /// by [`Reader::next`].
    pub(crate) fn read(&mut self, stream: &TcpStream) -> ReadEnd {
        let end = self.read_from(stream);
        self.closed |= end == ReadEnd::Closed;
        end
    }

    fn read_from(&mut self, stream: &TcpStream) -> ReadEnd {
        let mut chunk = [0_u8; READ_CHUNK];
        loop {
            if self.done {
                return ReadEnd::Pending;
            }
            match stream.try_read(&mut chunk) {
                Ok(0) => return ReadEnd::Closed,
                Ok(n) => {
                    self.feed(&chunk[..n]);
                    if n < chunk.len() {
                        return ReadEnd::Pending;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return ReadEnd::Pending;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadEnd::Closed,
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let state = self.state.get_or_insert_with(Box::default);
        state.frames.feed(bytes, &mut state.inbox);
        self.done = state.frames.done;
        if state.inbox.is_empty() && state.frames.is_empty() {
            self.state = None;
        }
    }
}

/// The frame parser: the bytes of a frame not yet complete and a fragmented
/// message being reassembled.
#[derive(Debug, Default)]
struct Frames {
    /// Bytes of a frame not yet complete.
    partial: Vec<u8>,
    /// A fragmented message being reassembled: whether it is text, and its bytes.
    message: Option<(bool, Vec<u8>)>,
    /// A fatal message was returned: nothing more is parsed.
    done: bool,
}

impl Frames {
    /// Nothing buffered.
    fn is_empty(&self) -> bool {
        self.partial.is_empty() && self.message.is_none()
    }

    /// Parses `bytes` after what is buffered.
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<Inbound>) {
        if self.partial.is_empty() {
            let used = self.parse(bytes, out);
            if !self.done {
                self.partial.extend_from_slice(&bytes[used..]);
            }
        } else {
            let mut partial = std::mem::take(&mut self.partial);
            partial.extend_from_slice(bytes);
            let used = self.parse(&partial, out);
            partial.drain(..used);
            if !self.done && !partial.is_empty() {
                self.partial = partial;
            }
        }
    }

    /// Parses complete frames from `buf`; returns the bytes used.
    fn parse(&mut self, buf: &[u8], out: &mut VecDeque<Inbound>) -> usize {
        let mut at = 0;
        while !self.done && at < buf.len() {
            let mut cursor = Cursor::new(&buf[at..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(_) => {
                    self.fail(Inbound::Invalid, out);
                    break;
                }
            };
            let Ok(len) = usize::try_from(len) else {
                self.fail(Inbound::TooBig, out);
                break;
            };
            if len > MAX_INBOUND_FRAME {
                self.fail(Inbound::TooBig, out);
                break;
            }
            let start = at + usize::try_from(cursor.position()).unwrap_or(usize::MAX);
            if buf.len() - start < len {
                break;
            }
            let mut payload = buf[start..start + len].to_vec();
            at = start + len;
            if let Some(inbound) = self.frame(&header, &mut payload) {
                let fatal = matches!(inbound, Inbound::TooBig | Inbound::Invalid);
                out.push_back(inbound);
                self.done = fatal;
            }
        }
        at
    }

    fn fail(&mut self, inbound: Inbound, out: &mut VecDeque<Inbound>) {
        out.push_back(inbound);
        self.done = true;
        self.partial = Vec::new();
        self.message = None;
    }

    /// One complete frame: a message when it completes one.
    fn frame(&mut self, header: &FrameHeader, payload: &mut Vec<u8>) -> Option<Inbound> {
        // RFC 6455 §5.1, §5.2: a client masks every frame; no extension is agreed.
        let Some(mask) = header.mask else {
            return Some(Inbound::Invalid);
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Some(Inbound::Invalid);
        }
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        match header.opcode {
            OpCode::Control(control) => {
                if !header.is_final || payload.len() > 125 {
                    return Some(Inbound::Invalid);
                }
                match control {
                    Control::Ping => Some(Inbound::Ping(Bytes::from(std::mem::take(payload)))),
                    Control::Pong => Some(Inbound::Pong),
                    Control::Close => Some(Inbound::Close(Bytes::from(std::mem::take(payload)))),
                    Control::Reserved(_) => Some(Inbound::Invalid),
                }
            }
            OpCode::Data(Data::Continue) => {
                let Some((_, message)) = self.message.as_mut() else {
                    return Some(Inbound::Invalid);
                };
                if message.len() + payload.len() > MAX_INBOUND_FRAME {
                    return Some(Inbound::TooBig);
                }
                message.extend_from_slice(payload);
                if !header.is_final {
                    return None;
                }
                let (text, message) = self.message.take()?;
                Some(complete(text, message))
            }
            OpCode::Data(data @ (Data::Text | Data::Binary)) => {
                if self.message.is_some() {
                    return Some(Inbound::Invalid);
                }
                let text = data == Data::Text;
                if header.is_final {
                    Some(complete(text, std::mem::take(payload)))
                } else {
                    self.message = Some((text, std::mem::take(payload)));
                    None
                }
            }
            OpCode::Data(Data::Reserved(_)) => Some(Inbound::Invalid),
        }
    }
}

/// A whole message: text must be UTF-8.
fn complete(text: bool, bytes: Vec<u8>) -> Inbound {
    if !text {
        return Inbound::Binary(bytes.len());
    }
    match String::from_utf8(bytes) {
        Ok(text) => Inbound::Text(text),
        Err(_) => Inbound::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Frames {
        /// A parser fed `bytes`, with the messages they complete.
        fn with(bytes: &[u8]) -> (Self, VecDeque<Inbound>) {
            let mut frames = Self::default();
            let mut out = VecDeque::new();
            frames.feed(bytes, &mut out);
            (frames, out)
        }
    }

    #[test]
    fn an_idle_reader_holds_nothing_on_the_heap() {
        let mut bytes = client(0x81, b"one");
        bytes.extend(client(0x81, b"two"));
        let split = bytes.len() - 2;
        let mut reader = Reader::with(&bytes[..split]);
        assert_eq!(reader.next(), Some(Inbound::Text("one".into())));
        assert!(reader.state.is_some(), "half of the second frame is kept");
        reader.feed(&bytes[split..]);
        assert_eq!(reader.next(), Some(Inbound::Text("two".into())));
        assert!(
            reader.state.is_none(),
            "nothing kept once everything was taken"
        );
        assert_eq!(reader.next(), None);
    }

    /// A masked client frame.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![first];
        if payload.len() < 126 {
            frame.push(0x80 | u8::try_from(payload.len()).unwrap());
        } else {
            frame.push(0xFE);
            frame.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn messages_split_anywhere_are_reassembled_in_order() {
        let mut bytes = client(0x81, b"{\"type\":\"auth\"}");
        bytes.extend(client(0x89, b"p"));
        bytes.extend(client(0x01, b"fra"));
        bytes.extend(client(0x8A, b""));
        bytes.extend(client(0x80, b"gment"));
        bytes.extend(client(0x82, &[0; 300]));
        bytes.extend(client(0x88, &[3, 232]));
        for split in 1..bytes.len() {
            let (mut reader, mut out) = Frames::with(&bytes[..split]);
            reader.feed(&bytes[split..], &mut out);
            assert_eq!(
                out,
                [
                    Inbound::Text("{\"type\":\"auth\"}".into()),
                    Inbound::Ping(Bytes::from_static(b"p")),
                    Inbound::Pong,
                    Inbound::Text("fragment".into()),
                    Inbound::Binary(300),
                    Inbound::Close(Bytes::from_static(&[3, 232])),
                ],
                "split at {split}"
            );
            assert!(reader.partial.is_empty(), "nothing kept once complete");
        }
    }

    #[test]
    fn oversized_and_invalid_frames_end_the_stream() {
        let big = client(0x81, &vec![b'a'; MAX_INBOUND_FRAME + 1]);
        let (_, out) = Frames::with(&big[..10]);
        assert_eq!(out, [Inbound::TooBig], "refused from its header");
        let mut parts = client(0x01, &vec![b'a'; 9000]);
        parts.extend(client(0x80, &vec![b'a'; 9000]));
        assert_eq!(Frames::with(&parts).1, [Inbound::TooBig]);
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(Frames::with(&unmasked).1, [Inbound::Invalid]);
        let not_utf8 = client(0x81, &[0xff]);
        assert_eq!(Frames::with(&not_utf8).1, [Inbound::Invalid]);
        let stray_continuation = client(0x80, b"a");
        assert_eq!(Frames::with(&stray_continuation).1, [Inbound::Invalid]);
    }
}
