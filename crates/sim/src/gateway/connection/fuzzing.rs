//! The gateway's inbound frame handling and outbound compression without a socket,
//! for the fuzz targets in `fuzz/` (docs/reliability.md, "Fuzzing"). Hidden from the
//! docs: not part of the simulator's API.
//!
//! [`Gateway`] is one connection of a fresh simulator (its seeded guild, the given
//! [`SimConfig`]): it takes the bot's frames through the same `Conn::handle` the
//! WebSocket loop calls, binary frames through the same UTF-8 check, and hands back
//! the close code the loop would send and the frames it would queue. [`encode`] runs
//! frames through the connection's compressor, as the loop does before sending.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::Message;
use tokio::sync::mpsc;

use super::super::Out;
use super::super::compression::{Compression, Encoder};
use super::{Action, Conn, End, binary_text};
use crate::config::SimConfig;
use crate::gateway::protocol as p;
use crate::state::Shared;

/// One gateway connection of a fresh simulator, driven frame by frame.
pub struct Gateway {
    conn: Conn,
    rx: mpsc::UnboundedReceiver<Out>,
}

impl Gateway {
    /// A connection that has been sent HELLO, to a simulator configured by `config`.
    pub fn new(config: SimConfig) -> Self {
        let shared = Arc::new(Shared::new(
            config,
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ));
        let (conn, rx) = Conn::open(shared);
        conn.hello(true, true);
        Self { conn, rx }
    }

    /// Handles one text frame from the bot; the close code the gateway answers with,
    /// or `None` when the connection stays open.
    pub fn text(&mut self, text: &str) -> Option<u16> {
        match self.conn.handle(text) {
            Action::Continue | Action::Drop => None,
            Action::Close(code) => Some(code),
        }
    }

    /// Handles one binary frame from the bot, as [`Gateway::text`].
    pub fn binary(&mut self, bytes: &[u8]) -> Option<u16> {
        match binary_text(bytes) {
            Some(text) => self.text(&text),
            None => Some(p::CLOSE_DECODE_ERROR),
        }
    }

    /// Whether the connection has identified or resumed a session.
    pub fn has_session(&self) -> bool {
        self.conn.session.is_some()
    }

    /// The JSON payloads queued for the bot since the last call, in order.
    pub fn sent(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        while let Ok(out) = self.rx.try_recv() {
            if let Out::Frame(frame) = out {
                frames.push(frame);
            }
        }
        frames
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.conn.finish(&End::Gone);
    }
}

/// The frames the gateway sends for `payloads` on one connection whose URL asked
/// for `compress` (`zlib-stream`, `zstd-stream`, anything else: none): text frames
/// as UTF-8 bytes, compressed ones as sent.
pub fn encode(compress: Option<&str>, payloads: &[&str]) -> std::io::Result<Vec<Vec<u8>>> {
    let mut encoder = Encoder::new(Compression::from_query(compress))?;
    payloads
        .iter()
        .map(|payload| {
            Ok(match encoder.encode(payload)? {
                Message::Text(text) => text.as_str().as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                _ => Vec::new(),
            })
        })
        .collect()
}
