//! The state shared by every part of the simulator: world, sessions, connections, counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::SimConfig;
use crate::counters::Counters;
use crate::gateway::{Admission, Out, session::Session};
use crate::oauth::OAuthState;
use crate::rest::RestState;
use crate::world::{Dispatch, World};

/// An audit-log entry recorded from `X-Audit-Log-Reason`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// What happened, e.g. `CHANNEL_CREATE`.
    pub action: String,
    /// The id of the affected object.
    #[serde(serialize_with = "crate::snowflake::as_string::id")]
    pub target_id: u64,
    /// The decoded reason, if the request carried one.
    pub reason: Option<String>,
}

/// World, sessions and connections, changed together under one lock so that dispatch
/// order always matches change order.
pub(crate) struct Core {
    pub world: World,
    pub sessions: HashMap<String, Session>,
    pub connections: HashMap<u64, mpsc::UnboundedSender<Out>>,
    pub next_conn: u64,
    pub audit_log: Vec<AuditEntry>,
    /// What the gateway does with new connections (set by the lasting gateway faults).
    pub admission: Admission,
}

/// Shared between the server tasks and every [`crate::SimHandle`].
pub(crate) struct Shared {
    pub config: SimConfig,
    pub addr: SocketAddr,
    pub core: Mutex<Core>,
    pub counters: watch::Sender<Counters>,
    pub events: broadcast::Sender<Dispatch>,
    pub rest: Mutex<RestState>,
    pub oauth: Mutex<OAuthState>,
    /// The voice server, set once by `Simulator::start`.
    pub voice: std::sync::OnceLock<std::sync::Arc<crate::voice::VoiceServer>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(config: SimConfig, addr: SocketAddr) -> Self {
        let world = World::seeded();
        let (counters, _) = watch::channel(Counters::default());
        let (events, _) = broadcast::channel(1024);
        Self {
            config,
            addr,
            core: Mutex::new(Core {
                world,
                sessions: HashMap::new(),
                connections: HashMap::new(),
                next_conn: 0,
                audit_log: Vec::new(),
                admission: Admission::default(),
            }),
            counters,
            events,
            rest: Mutex::new(RestState::default()),
            oauth: Mutex::new(OAuthState::default()),
            voice: std::sync::OnceLock::new(),
        }
    }

    pub fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    pub fn rest(&self) -> MutexGuard<'_, RestState> {
        lock(&self.rest)
    }

    pub fn oauth(&self) -> MutexGuard<'_, OAuthState> {
        lock(&self.oauth)
    }

    pub fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.counters.send_modify(f);
    }

    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues dispatches to every session that should see them and to in-process subscribers.
    pub fn publish(&self, core: &mut Core, dispatches: Vec<Dispatch>) {
        let guild_id = core.world.guild_id;
        let mut sent = 0;
        for d in dispatches {
            for s in core.sessions.values_mut() {
                if d.only_session.as_deref().is_some_and(|id| id != s.id) {
                    continue;
                }
                if s.wants(&d.event, guild_id) {
                    s.push(&d.event, &d.data);
                    sent += 1;
                }
            }
            let _ = self.events.send(d);
        }
        if sent > 0 {
            self.count(|c| c.dispatches += sent);
        }
    }

    /// Applies a world change and publishes what it produced.
    pub fn mutate<T>(
        &self,
        f: impl FnOnce(&mut World) -> Result<(T, Vec<Dispatch>), crate::world::WorldError>,
    ) -> Result<T, crate::world::WorldError> {
        let mut core = self.core();
        let (value, dispatches) = f(&mut core.world)?;
        self.publish(&mut core, dispatches);
        Ok(value)
    }
}
