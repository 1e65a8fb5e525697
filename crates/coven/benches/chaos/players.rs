//! Simulated players: every `every` one of them joins, moves, leaves or changes
//! a voice flag in the simulator, and the contract events that change must
//! produce (docs/spec.md §4) go into the [`Ledger`], in order.
//!
//! The expected events are derived from the simulator's own `VOICE_STATE_UPDATE`
//! dispatches (the world's truth before and after each action), not from the
//! worker's code, so a bug in the worker cannot hide in the expectation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coven_sim::{SimHandle, VoiceFlags};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::model::{EventKey, Flags, State, View, discord_flags, expected_events, id};

/// One event the hub must receive.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The event.
    pub key: EventKey,
    /// Made while the worker's session was being replaced after a refused
    /// resume (op 9 `d:false`): the worker then diffs the new `GUILD_CREATE`
    /// against its view (docs/worker.md "Restarts"), so intermediate states
    /// between the two sessions may be merged. Such events need not arrive one
    /// by one; the final view still must be right.
    pub collapsible: bool,
    /// The change of one user's voice state that produced the event (a
    /// collapsed run's net changes are computed from these).
    pub change: Change,
    /// When the action was made.
    pub at: Instant,
}

/// One user's voice state before and after one `VOICE_STATE_UPDATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The user.
    pub user: u64,
    /// Their state before.
    pub before: State,
    /// Their state after.
    pub after: State,
}

/// The events the players' actions must produce, in order, shared with the checks.
pub type Ledger = Arc<Mutex<Vec<Expected>>>;

/// A refused resume in progress: actions are collapsible until the simulator has
/// counted a new IDENTIFY and a moment has passed.
#[derive(Debug, Clone, Copy)]
pub struct FreshSession {
    /// `identifies` when the op 9 was sent.
    pub identifies_before: u64,
    /// When a newer IDENTIFY was first seen.
    pub identified_at: Option<Instant>,
}

/// Set by the fault injector before it sends op 9 `d:false`.
pub type FreshWindow = Arc<Mutex<Option<FreshSession>>>;

/// How long after the new IDENTIFY actions still count as collapsible: the
/// session's `GUILD_CREATE` snapshot is taken just after the count.
const SETTLE: Duration = Duration::from_millis(500);

/// The players and the rooms they use.
pub struct Players {
    handle: SimHandle,
    users: Vec<u64>,
    rooms: Vec<u64>,
    truth: BTreeMap<u64, (u64, Flags)>,
    rng: StdRng,
}

impl Players {
    /// `count` new members of the simulator's guild, playing in its voice channels;
    /// the truth starts from `/_sim/state` as `initial`.
    pub fn new(handle: SimHandle, count: usize, seed: u64, initial: &View) -> Self {
        let users = (0..count)
            .map(|i| handle.add_user(&format!("chaos-player-{i}")))
            .collect();
        let rooms = handle.seed().voice_channel_ids;
        Self {
            handle,
            users,
            rooms,
            truth: initial.members.clone(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Acts every `every` until `stop`, appending expected events to `ledger`.
    pub async fn run(
        mut self,
        every: Duration,
        ledger: Ledger,
        fresh: FreshWindow,
        stop: Arc<AtomicBool>,
    ) -> usize {
        let mut dispatches = self.handle.subscribe();
        let mut actions = 0;
        while !stop.load(Ordering::Relaxed) {
            let collapsible = self.in_fresh_window(&fresh);
            let user = self.users[self.rng.random_range(0..self.users.len())];
            self.act(user);
            actions += 1;
            let at = Instant::now();
            // The world dispatches synchronously inside the action.
            while let Ok(dispatch) = dispatches.try_recv() {
                if dispatch.event != "VOICE_STATE_UPDATE" {
                    continue;
                }
                let Some(user) = id(&dispatch.data["user_id"]) else {
                    continue;
                };
                let after = id(&dispatch.data["channel_id"])
                    .map(|channel| (channel, discord_flags(&dispatch.data)));
                let before = if let Some(state) = after {
                    self.truth.insert(user, state)
                } else {
                    self.truth.remove(&user)
                };
                let change = Change {
                    user,
                    before,
                    after,
                };
                let mut ledger = ledger.lock().unwrap();
                for key in expected_events(user, before, after) {
                    ledger.push(Expected {
                        key,
                        collapsible,
                        change,
                        at,
                    });
                }
            }
            let jitter = self.rng.random_range(0.5..1.5);
            tokio::time::sleep(every.mul_f64(jitter)).await;
        }
        actions
    }

    fn in_fresh_window(&self, fresh: &FreshWindow) -> bool {
        let mut window = fresh.lock().unwrap();
        let Some(session) = window.as_mut() else {
            return false;
        };
        if session.identified_at.is_none()
            && self.handle.counters().identifies > session.identifies_before
        {
            session.identified_at = Some(Instant::now());
        }
        if session.identified_at.is_some_and(|t| t.elapsed() > SETTLE) {
            *window = None;
            return false;
        }
        true
    }

    /// One random action of `user`: join when out of voice; otherwise move
    /// (30 %), leave (20 %) or change one or two flags (50 %).
    fn act(&mut self, user: u64) {
        let room = self.rooms[self.rng.random_range(0..self.rooms.len())];
        let Some(&(current, _)) = self.truth.get(&user) else {
            self.handle.user_join(user, room).expect("a player joins");
            return;
        };
        let roll = self.rng.random_range(0..10);
        if roll < 3 {
            let to = if room == current {
                self.rooms[(self.rooms.iter().position(|&r| r == room).unwrap_or(0) + 1)
                    % self.rooms.len()]
            } else {
                room
            };
            self.handle.user_move(user, to).expect("a player moves");
        } else if roll < 5 {
            self.handle.user_leave(user).expect("a player leaves");
        } else {
            let flags = self.random_flags();
            self.handle
                .user_set_flags(user, flags)
                .expect("a player changes a flag");
        }
    }

    fn random_flags(&mut self) -> VoiceFlags {
        let mut flags = VoiceFlags::default();
        for _ in 0..self.rng.random_range(1..=2) {
            let value = Some(self.rng.random_bool(0.5));
            match self.rng.random_range(0..6) {
                0 => flags.self_mute = value,
                1 => flags.self_deaf = value,
                2 => flags.mute = value,
                3 => flags.deaf = value,
                4 => flags.self_video = value,
                _ => flags.self_stream = value,
            }
        }
        flags
    }
}

/// The simulator's state (`/_sim/state`) as a view.
pub async fn sim_truth(http: &reqwest::Client, sim: &coven_sim::Simulator) -> View {
    let body: Value = http
        .get(format!("{}/state", sim.control_url()))
        .send()
        .await
        .expect("the simulator answers /_sim/state")
        .json()
        .await
        .expect("/_sim/state is JSON");
    View::from_sim_state(&body).expect("/_sim/state has the expected shape")
}
