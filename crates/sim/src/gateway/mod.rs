//! Gateway v10 over WebSocket at `/?v=10&encoding=json[&compress=...]`.

mod compression;
mod connection;
#[doc(hidden)]
pub use connection::fuzzing;
pub(crate) use connection::random_hex;
mod protocol;
mod quirks;
pub(crate) mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::state::Shared;
use compression::Compression;

/// A fault to inject into the bot's current gateway connection(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Send op 7 RECONNECT.
    Reconnect,
    /// Send op 9 INVALID SESSION; `resumable: false` also ends the session.
    InvalidSession {
        /// The `d` of op 9.
        resumable: bool,
    },
    /// Close the WebSocket with this code. A fatal code (4004, 4010–4014) also ends
    /// the session and, as its cause does at Discord (a revoked token, intents not
    /// granted…), lasts: every later IDENTIFY or RESUME is closed with it too, until
    /// [`Fault::Reachable`].
    Close {
        /// Close code, e.g. 4000.
        code: u16,
    },
    /// Drop the TCP connection without a close frame.
    DropTcp,
    /// Stop sending anything (no ACKs, no dispatches) on this connection, like a zombied link.
    Zombie,
    /// Delay every following frame on this connection by this long.
    Delay {
        /// Delay in milliseconds (0 = none).
        ms: u64,
    },
    /// Send op 1 HEARTBEAT (a heartbeat request).
    RequestHeartbeat,
    /// Discord is unreachable: open connections are dropped without a close frame and,
    /// until [`Fault::Reachable`], every new one is refused (HTTP 503 to the upgrade).
    Unreachable,
    /// Open connections are closed with `code` and, until [`Fault::Reachable`], every
    /// new one gets HELLO and then the same close at once (a server that never lets a
    /// session start).
    CloseAfterHello {
        /// Close code, e.g. 4000 (resumable).
        code: u16,
    },
    /// New connections are served normally again (ends `Unreachable`,
    /// `CloseAfterHello` and a fatal `Close`); open connections are untouched.
    Reachable,
    /// The next `count` `VOICE_STATE_UPDATE` dispatches on this connection carry
    /// what Discord has been seen to send and twilight 0.18 cannot read:
    /// `self_stream: null` and a `member` without `roles` (the world is unchanged;
    /// a resume replays them intact), optionally without `user_id`.
    UnreadableVoiceStates {
        /// How many dispatches.
        count: u32,
        /// Also leave out `user_id`, so that not even a lenient reader can tell
        /// whose state it is.
        #[serde(default)]
        without_user_id: bool,
    },
}

/// What the gateway does with connections opened from now on: the lasting part of
/// [`Fault::Unreachable`], [`Fault::CloseAfterHello`], a fatal [`Fault::Close`] and
/// [`Fault::Reachable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Serve them.
    #[default]
    Accept,
    /// Refuse the upgrade.
    Refuse,
    /// Send HELLO, then close with this code.
    CloseAfterHello(u16),
    /// Serve HELLO and heartbeats; close every IDENTIFY or RESUME with this fatal code.
    RefuseSessions(u16),
}

impl Admission {
    /// The admission once `fault` is injected (faults of open connections only leave it).
    pub(crate) fn after(self, fault: &Fault) -> Self {
        match *fault {
            Fault::Unreachable => Self::Refuse,
            Fault::CloseAfterHello { code } => Self::CloseAfterHello(code),
            Fault::Close { code } if protocol::is_fatal(code) => Self::RefuseSessions(code),
            Fault::Reachable => Self::Accept,
            _ => self,
        }
    }
}

impl Fault {
    /// A delay fault.
    pub fn delay(d: Duration) -> Self {
        Self::Delay {
            ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// What a connection task is told to do.
pub(crate) enum Out {
    /// Send this JSON payload.
    Frame(String),
    /// Inject this fault.
    Fault(Fault),
    /// Another connection resumed this session: close this one.
    Superseded,
}

/// `GET /` with a WebSocket upgrade: the gateway.
pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let admission = shared.core().admission;
    if admission == Admission::Refuse {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "gateway unreachable (simulated)",
        )
            .into_response();
    }
    let compression = Compression::from_query(q.get("compress").map(String::as_str));
    let version_ok = q.get("v").is_none_or(|v| v == "10" || v == "9");
    let encoding_ok = q.get("encoding").is_none_or(|e| e == "json");
    ws.max_message_size(1 << 20)
        .on_upgrade(move |socket| {
            connection::serve(socket, shared, compression, version_ok, encoding_ok)
        })
        .into_response()
}
