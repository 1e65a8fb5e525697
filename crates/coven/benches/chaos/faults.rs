//! The faults the soak injects, one at a time, chosen by a seeded RNG so that a
//! failing run's schedule can be replayed with `--seed`.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;

use crate::browser::Control;
use crate::check;
use crate::cluster::Cluster;
use crate::observer::Observed;
use crate::players::{FreshSession, FreshWindow, Ledger};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `kill -9` of the active worker, which is started again at once (it comes
    /// back as the standby, or takes the lease if it is first).
    WorkerKill,
    /// A hub killed (SIGKILL or SIGTERM, at random) and started again on its port.
    HubRestart,
    /// Redis killed (SIGKILL) and started again on its append-only file.
    RedisRestart,
    /// Gateway op 7 RECONNECT.
    Op7,
    /// Gateway op 9 INVALID SESSION `d:true` (resume).
    Op9Resumable,
    /// Gateway op 9 INVALID SESSION `d:false` (identify afresh).
    Op9Fresh,
    /// The gateway connection turns zombie (no more ACKs or dispatches).
    Zombie,
    /// The gateway drops TCP without a close frame.
    Drop,
    /// A few browsers stop reading for seconds.
    SlowBrowser,
    /// A batch of browsers drop their sockets and reconnect with `lastSeq`.
    BrowserResume,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Self; 10] = [
        Self::WorkerKill,
        Self::HubRestart,
        Self::RedisRestart,
        Self::Op7,
        Self::Op9Resumable,
        Self::Op9Fresh,
        Self::Zombie,
        Self::Drop,
        Self::SlowBrowser,
        Self::BrowserResume,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::WorkerKill => "worker kill -9",
            Self::HubRestart => "hub restart",
            Self::RedisRestart => "redis restart",
            Self::Op7 => "gateway op 7",
            Self::Op9Resumable => "gateway op 9 (resumable)",
            Self::Op9Fresh => "gateway op 9 (not resumable)",
            Self::Zombie => "gateway zombie",
            Self::Drop => "gateway TCP drop",
            Self::SlowBrowser => "slow browser",
            Self::BrowserResume => "browser resume (lastSeq)",
        }
    }
}

/// What the injector acts on.
pub struct Targets<'a> {
    /// The processes.
    pub cluster: &'a mut Cluster,
    /// One control channel per browser that faults may touch (not the witnesses).
    pub browsers: &'a [mpsc::UnboundedSender<Control>],
    /// Set before op 9 `d:false`.
    pub fresh: &'a FreshWindow,
    /// The expected events so far (op 9 `d:false` marks some collapsible).
    pub ledger: &'a Ledger,
    /// The stream read so far.
    pub observed: &'a Observed,
}

/// Picks a kind at random (process faults a little rarer than gateway ones).
pub fn pick(rng: &mut StdRng) -> Kind {
    Kind::ALL[rng.random_range(0..Kind::ALL.len())]
}

/// Injects `kind`; returns a short description of what was done.
pub async fn inject(kind: Kind, rng: &mut StdRng, targets: Targets<'_>) -> String {
    let handle = targets.cluster.sim.handle();
    match kind {
        Kind::WorkerKill => {
            let Some(active) = targets.cluster.active_worker().await else {
                return "no active worker to kill (skipped)".into();
            };
            targets.cluster.workers[active].kill();
            targets.cluster.start_worker(active);
            format!("worker {active} killed and started again")
        }
        Kind::HubRestart => {
            let hub = rng.random_range(0..2);
            let how = if rng.random_bool(0.5) {
                targets.cluster.hubs[hub].kill();
                "SIGKILL"
            } else {
                targets.cluster.hubs[hub].terminate().await;
                "SIGTERM"
            };
            targets.cluster.start_hub(hub).await;
            format!("hub {hub} stopped ({how}) and started again")
        }
        Kind::RedisRestart => {
            tokio::task::block_in_place(|| targets.cluster.redis.restart());
            "redis restarted".into()
        }
        Kind::Op7 => format!("op 7 on {} connection(s)", handle.reconnect()),
        Kind::Op9Resumable => {
            format!(
                "op 9 d:true on {} connection(s)",
                handle.invalid_session(true)
            )
        }
        Kind::Op9Fresh => {
            // What had not reached the hub yet may not have reached the worker
            // either: the session's queue goes with it, and the worker's diff of
            // the new GUILD_CREATE covers those events (docs/worker.md "Restarts").
            let stream: Vec<_> = targets
                .observed
                .lock()
                .unwrap()
                .entries
                .iter()
                .map(|e| (e.0, e.1.clone()))
                .collect();
            let mut ledger = targets.ledger.lock().unwrap();
            let arrived = check::reconcile(&ledger, &stream).next;
            for expected in &mut ledger[arrived..] {
                expected.collapsible = true;
            }
            drop(ledger);
            *targets.fresh.lock().unwrap() = Some(FreshSession {
                identifies_before: handle.counters().identifies,
                identified_at: None,
            });
            format!(
                "op 9 d:false on {} connection(s)",
                handle.invalid_session(false)
            )
        }
        Kind::Zombie => format!("zombie on {} connection(s)", handle.zombie()),
        Kind::Drop => format!("TCP drop on {} connection(s)", handle.drop_tcp()),
        Kind::SlowBrowser => {
            let count = rng.random_range(1..=5);
            let pause = Duration::from_millis(rng.random_range(3_000..12_000));
            for _ in 0..count {
                let browser = rng.random_range(0..targets.browsers.len());
                let _ = targets.browsers[browser].send(Control::Stall(pause));
            }
            format!("{count} browser(s) stop reading for {pause:?}")
        }
        Kind::BrowserResume => {
            let count = rng.random_range(5..=30).min(targets.browsers.len());
            for _ in 0..count {
                let browser = rng.random_range(0..targets.browsers.len());
                let _ = targets.browsers[browser].send(Control::Reconnect);
            }
            format!("{count} browser(s) reconnect with lastSeq")
        }
    }
}
