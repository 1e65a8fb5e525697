//! A gateway session: its sequence numbers, replay log for RESUME and attached connection.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Out;
use super::protocol::OP_DISPATCH;
use crate::intents;

/// How many dispatches a session keeps for RESUME replay.
const REPLAY_LOG: usize = 10_000;

/// One bot session, surviving its connection for the resume window.
pub(crate) struct Session {
    pub id: String,
    pub intents: u64,
    /// `[shard_id, num_shards]`.
    pub shard: Option<(u64, u64)>,
    pub seq: u64,
    log: VecDeque<(u64, String)>,
    /// The attached connection: id and sender.
    pub conn: Option<(u64, mpsc::UnboundedSender<Out>)>,
    /// When the connection went away, for resume-window expiry.
    pub detached_at: Option<Instant>,
}

impl Session {
    pub fn new(
        id: String,
        intents: u64,
        shard: Option<(u64, u64)>,
        conn: (u64, mpsc::UnboundedSender<Out>),
    ) -> Self {
        Self {
            id,
            intents,
            shard,
            seq: 0,
            log: VecDeque::new(),
            conn: Some(conn),
            detached_at: None,
        }
    }

    /// Whether this session's intents and shard let it receive an event of the guild.
    pub fn wants(&self, event: &str, guild_id: u64) -> bool {
        if let Some((id, n)) = self.shard
            && n > 0
            && (guild_id >> 22) % n != id
        {
            return false;
        }
        intents::required_for(event).is_none_or(|bit| self.intents & bit != 0)
    }

    /// Assigns the next sequence number, logs the dispatch and sends it if attached.
    pub fn push(&mut self, event: &str, data: &Value) {
        self.seq += 1;
        let frame = json!({"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}).to_string();
        if let Some((_, tx)) = &self.conn {
            let _ = tx.send(Out::Frame(frame.clone()));
        }
        self.log.push_back((self.seq, frame));
        if self.log.len() > REPLAY_LOG {
            self.log.pop_front();
        }
    }

    /// Frames after `seq`, for RESUME; `None` when they are no longer all kept.
    pub fn replay_after(&self, seq: u64) -> Option<Vec<String>> {
        if let Some((first, _)) = self.log.front()
            && seq + 1 < *first
        {
            return None;
        }
        Some(
            self.log
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, f)| f.clone())
                .collect(),
        )
    }
}
