//! The simulator's voice server: a voice gateway (WebSocket over TLS, Discord voice gateway
//! v4 as songbird 0.6 speaks it, v8 accepted), a UDP media socket with IP discovery and both
//! `*_rtpsize` transport encryption modes, and simulated users in voice channels who speak
//! (encrypted Opus RTP + SPEAKING) and listen (decrypt and record what the bot sends).
//! With `SimConfig::voice_dave` it also offers DAVE v1 and runs the delivery service, and the
//! simulated users join the client's MLS group (`dave.rs`; see `docs/simulator.md`, "Voice").

mod crypto;
mod dave;
mod events;
mod group;
mod handle;
mod outbox;
mod signalling;
mod speaker;
mod stats;
mod tls;
mod tone;
mod udp;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::state::Shared;
pub use crypto::TransportMode;
pub use handle::VoiceClientGrant;
pub(crate) use handle::router;
pub use stats::{OPUS_SILENCE, VoiceCounters, VoiceReceived, VoiceSnapshot};
pub use tls::{test_ca_path, test_ca_pem};
pub use tone::{TONE_RANGE_HZ, ToneError};

/// What a voice connection task is told to do by the rest of the simulator.
#[derive(Debug)]
pub(crate) enum ConnCmd {
    /// Send this message, already framed for the session's gateway version.
    Frame(outbox::Frame),
    /// Close with this code.
    Close(u16),
    /// Drop the TCP connection without a close frame.
    Drop,
}

/// A `VOICE_SERVER_UPDATE` token handed to a gateway session.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub session_id: String,
    pub user_id: u64,
}

/// One client's voice session (from IDENTIFY until the bot leaves or identifies anew).
pub(crate) struct VoiceSession {
    pub ssrc: u32,
    pub user_id: u64,
    pub session_id: String,
    pub token: String,
    pub key: [u8; 32],
    pub mode: Option<TransportMode>,
    pub udp_peer: Option<SocketAddr>,
    pub conn: Option<(u64, mpsc::UnboundedSender<ConnCmd>)>,
    /// Transport nonce counter for packets this server sends to the client.
    pub out_nonce: u32,
    /// Other users this client has been told about (op 11 / op 13).
    pub known_users: HashSet<u64>,
    /// DAVE protocol version agreed in `SESSION_DESCRIPTION` (0: none).
    pub dave_version: u16,
    /// Numbering and buffer of what the server sent (v8 buffered resume).
    pub outbox: outbox::Outbox,
}

impl VoiceSession {
    /// Sends a JSON message (numbered and buffered on v8, even while no connection is
    /// attached, so that a RESUME re-delivers it).
    pub fn send(&mut self, payload: Value) {
        let frame = self.outbox.json(payload);
        self.deliver(frame);
    }

    /// Sends a binary message given as `[op u8][payload]` (v8: `[seq u16][op u8][payload]`).
    pub fn send_binary(&mut self, message: &[u8]) {
        let frame = self.outbox.binary(message);
        self.deliver(frame);
    }

    fn deliver(&self, frame: outbox::Frame) {
        if let Some((_, tx)) = &self.conn {
            let _ = tx.send(ConnCmd::Frame(frame));
        }
    }
}

/// At most this many commits are held back by the hold fault; later ones are discarded.
const MAX_HELD_COMMITS: usize = 256;

/// A simulated user's outgoing RTP stream.
pub(crate) struct Speaker {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

#[derive(Default)]
pub(crate) struct VoiceCore {
    pub grants: HashMap<String, Grant>,
    pub sessions: HashMap<u32, VoiceSession>,
    pub speakers: HashMap<u64, Speaker>,
    pub next_ssrc: u32,
    pub next_conn: u64,
    /// Simulated users' DAVE sessions (members of their call's MLS group once welcomed).
    pub dave_users: HashMap<u64, davey::DaveSession>,
    /// Each call's DAVE group, by voice channel (`group.rs`).
    pub groups: HashMap<u64, group::Group>,
    /// Users driven by a real client (the bot, and users whose place a client took through
    /// `/_sim/voice/users/{id}/client`): never simulated.
    pub real_users: HashSet<u64>,
    /// Commits held back by the `voice_dave_hold_commits` fault: (channel, user, op 28 payload).
    pub held_commits: Vec<(u64, u64, Vec<u8>)>,
}

impl VoiceCore {
    pub fn alloc_ssrc(&mut self) -> u32 {
        self.next_ssrc += 1;
        self.next_ssrc
    }
}

/// The running voice server (one per simulator).
pub(crate) struct VoiceServer {
    /// The two voice gateway listeners ("voice servers"); a move switches between them.
    pub endpoints: [SocketAddr; 2],
    pub current: AtomicUsize,
    pub udp: Arc<UdpSocket>,
    pub udp_addr: SocketAddr,
    pub heartbeat_interval: Duration,
    /// DAVE delivery service (`None` when `voice_dave` is off).
    pub dave: Option<dave::DeliveryService>,
    /// Fault: corrupt the next announced commit (`SimHandle::voice_dave_corrupt_next_commit`).
    pub dave_corrupt_next: std::sync::atomic::AtomicBool,
    /// Fault: hold commits back until released (`SimHandle::voice_dave_hold_commits`).
    pub dave_hold: std::sync::atomic::AtomicBool,
    core: Mutex<VoiceCore>,
    pub snapshot: watch::Sender<VoiceSnapshot>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl VoiceServer {
    pub fn core(&self) -> MutexGuard<'_, VoiceCore> {
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Updates the observable snapshot.
    pub fn observe(&self, f: impl FnOnce(&mut VoiceSnapshot)) {
        self.snapshot.send_modify(f);
    }

    /// The endpoint (`host:port`, no scheme) of the current voice server.
    pub fn endpoint(&self) -> String {
        self.endpoints[self.current.load(Ordering::Relaxed) % 2].to_string()
    }

    /// Remembers a `VOICE_SERVER_UPDATE` token and returns the endpoint to advertise.
    /// The user is driven by a real client from now on (not simulated).
    pub fn grant(&self, token: &str, user_id: u64, session_id: &str) -> String {
        let mut core = self.core();
        core.grants.insert(
            token.to_owned(),
            Grant {
                session_id: session_id.to_owned(),
                user_id,
            },
        );
        core.real_users.insert(user_id);
        drop(core);
        self.endpoint()
    }

    /// Runs a DAVE group operation for the call in `channel` under the voice lock (the
    /// channel's users are looked up first), then counts what happened. Nothing without DAVE.
    pub(crate) fn dave_op(
        &self,
        shared: &Arc<Shared>,
        channel: u64,
        f: impl FnOnce(&mut group::Call<'_>),
    ) {
        let Some(ds) = &self.dave else {
            return;
        };
        let present = users_in(shared, channel, 0);
        let mut tally = group::Tally::default();
        let mut corrupt = self.dave_corrupt_next.swap(false, Ordering::Relaxed);
        {
            let mut core = self.core();
            f(&mut group::Call {
                core: &mut core,
                ds,
                channel,
                present: &present,
                tally: &mut tally,
                corrupt: &mut corrupt,
            });
        }
        if corrupt {
            self.dave_corrupt_next.store(true, Ordering::Relaxed);
        }
        expire_later(shared, channel, std::mem::take(&mut tally.awaiting));
        self.observe(|s| {
            let c = &mut s.counters;
            c.dave_commits += tally.commits;
            c.dave_commits_discarded += tally.discarded;
            c.dave_welcomed += tally.sims_welcomed;
            c.dave_welcomes_sent += tally.welcomes_sent;
            c.dave_removals += tally.removals;
            c.dave_revocations += tally.revocations;
            c.dave_resets += tally.resets;
            c.dave_downgrades += tally.downgrades;
            c.dave_transition_timeouts += tally.timeouts;
            c.dave_upgrades += tally.upgrades;
            c.dave_errors += tally.errors;
        });
    }

    /// A commit (op 28) from `user` in `channel`: held back while the fault is on.
    pub(crate) fn dave_commit(
        &self,
        shared: &Arc<Shared>,
        channel: u64,
        user: u64,
        payload: &[u8],
    ) {
        if self.dave_hold.load(Ordering::Relaxed) {
            let mut core = self.core();
            let kept = core.held_commits.len() < MAX_HELD_COMMITS;
            if kept {
                core.held_commits.push((channel, user, payload.to_vec()));
            }
            drop(core);
            self.observe(|s| {
                if kept {
                    s.counters.dave_commits_held += 1;
                } else {
                    s.counters.dave_commits_discarded += 1;
                }
            });
            return;
        }
        self.dave_op(shared, channel, |call| group::commit(call, user, payload));
    }

    /// Ends the hold fault: the held commits are handled now, in the order they came.
    pub(crate) fn dave_release(&self, shared: &Arc<Shared>) {
        self.dave_hold.store(false, Ordering::Relaxed);
        let held = std::mem::take(&mut self.core().held_commits);
        for (channel, user, payload) in held {
            self.dave_op(shared, channel, |call| group::commit(call, user, &payload));
        }
    }

    /// Publishes which sessions are connected now.
    pub fn publish_sessions(&self) {
        let sessions = self
            .core()
            .sessions
            .values()
            .filter(|s| s.conn.is_some())
            .map(|s| (s.ssrc, s.user_id))
            .collect();
        self.observe(|s| s.sessions = sessions);
    }

    /// Stops every task of the voice server.
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

/// A transition is executed after a timeout even if a client never says it is ready.
fn expire_later(shared: &Arc<Shared>, channel: u64, transitions: Vec<u16>) {
    for transition in transitions {
        let (Some(server), Ok(rt)) = (
            shared.voice.get().cloned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            continue;
        };
        let shared = shared.clone();
        rt.spawn(async move {
            tokio::time::sleep(group::TRANSITION_TIMEOUT).await;
            server.dave_op(&shared, channel, |call| group::expire(call, transition));
        });
    }
}

/// Binds the voice listeners and UDP socket on the simulator's loopback address and starts
/// serving. Called once by [`crate::Simulator::start`].
pub(crate) async fn start(shared: &Arc<Shared>) -> std::io::Result<Arc<VoiceServer>> {
    let ip = shared.addr.ip();
    let acceptor = tls::acceptor()?;
    let l0 = TcpListener::bind((ip, 0)).await?;
    let l1 = TcpListener::bind((ip, 0)).await?;
    let udp = Arc::new(UdpSocket::bind((ip, 0)).await?);
    let (snapshot, _) = watch::channel(VoiceSnapshot::default());
    let server = Arc::new(VoiceServer {
        endpoints: [l0.local_addr()?, l1.local_addr()?],
        current: AtomicUsize::new(0),
        udp_addr: udp.local_addr()?,
        udp,
        heartbeat_interval: shared.config.voice_heartbeat_interval,
        dave: if shared.config.voice_dave {
            Some(dave::DeliveryService::new().map_err(std::io::Error::other)?)
        } else {
            None
        },
        dave_corrupt_next: std::sync::atomic::AtomicBool::new(false),
        dave_hold: std::sync::atomic::AtomicBool::new(false),
        core: Mutex::new(VoiceCore {
            next_ssrc: 1000,
            ..VoiceCore::default()
        }),
        snapshot,
        tasks: Mutex::new(Vec::new()),
    });
    let mut tasks = Vec::new();
    for listener in [l0, l1] {
        let (shared, server, acceptor) = (shared.clone(), server.clone(), acceptor.clone());
        tasks.push(
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(signalling::serve(
                        shared.clone(),
                        server.clone(),
                        acceptor.clone(),
                        tcp,
                    ));
                }
            })
            .abort_handle(),
        );
    }
    tasks.push(tokio::spawn(udp::run(shared.clone(), server.clone())).abort_handle());
    tasks.push(tokio::spawn(events::run(shared.clone(), server.clone())).abort_handle());
    server
        .tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(tasks);
    tracing::info!(endpoints = ?server.endpoints, udp = %server.udp_addr, "voice server listening");
    Ok(server)
}

/// The user ids (other than `except`) in voice channel `channel_id`.
pub(crate) fn users_in(shared: &Shared, channel_id: u64, except: u64) -> Vec<u64> {
    shared
        .core()
        .world
        .voice_states
        .values()
        .filter(|v| v.channel_id == channel_id && v.user_id != except)
        .map(|v| v.user_id)
        .collect()
}

/// The voice channel a user is in.
pub(crate) fn channel_of(shared: &Shared, user_id: u64) -> Option<u64> {
    shared
        .core()
        .world
        .voice_states
        .get(&user_id)
        .map(|v| v.channel_id)
}
