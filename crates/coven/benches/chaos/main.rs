//! The chaos soak (issue 14; docs/reliability.md "Chaos soak"): the simulator,
//! a worker pair and two hubs on one Redis, a few hundred browsers, simulated
//! players joining, moving, muting and leaving all the time, and one fault after
//! another at random — `kill -9` of the active worker, a hub restart, a Redis
//! restart, gateway op 7 / op 9 / zombie / TCP drop, slow browsers, browsers
//! reconnecting with `lastSeq`.
//!
//! It checks by counting, and exits non-zero when any count is wrong:
//! - every browser's final view equals the simulator's truth;
//! - no browser is given an event with a `seq` at or below one it already has
//!   (a duplicate), nor a `seq` that skips ahead without `resumed:false` (a gap);
//! - no event is lost between the simulator and the hub: every event the
//!   players' actions must produce is in the hubs' stream, in order, once.
//!
//! It prints those counts, the faults injected and the longest recovery per
//! kind of fault. Run: `cargo bench -p coven --bench chaos -- --seconds 60`
//! (`--seed N` replays a fault schedule; `--help` lists the options).

mod browser;
mod check;
mod cluster;
mod faults;
mod model;
mod observer;
mod players;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use browser::{Browser, BrowserState, Control};
use cluster::Cluster;
use faults::Kind;
use model::View;
use observer::Observed;
use players::{Ledger, Players};

/// Options of the soak.
#[derive(Debug, Parser)]
#[command(about = "Chaos soak of the whole system (docs/reliability.md)")]
struct Options {
    /// How long faults are injected, in seconds (then a quiet period and the checks).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the fault schedule and the players' actions (random when absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Browsers connected to the two hubs.
    #[arg(long, default_value_t = 300)]
    browsers: usize,
    /// Simulated players.
    #[arg(long, default_value_t = 24)]
    players: usize,
    /// Mean pause between two player actions, in milliseconds.
    #[arg(long, default_value_t = 100)]
    action_ms: u64,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Browsers per signed-in user (the hubs allow 16 sockets per user, docs/spec.md §6.6).
const BROWSERS_PER_USER: usize = 10;
/// Witness browsers (never stalled or dropped on purpose) that keep every event
/// they receive, to compare it with the stream `seq` by `seq`.
const WITNESSES: usize = 4;
/// Every other browser in this many reads slowly.
const SLOW_EVERY: usize = 10;
/// The longest a recovery may take before it counts as a failure.
const RECOVERY_LIMIT: Duration = Duration::from_secs(120);
/// How long the quiet period after the faults may take.
const QUIESCE_LIMIT: Duration = Duration::from_secs(120);

/// Recovery times of one kind of fault.
#[derive(Debug, Default)]
struct FaultStats {
    injected: usize,
    recoveries: Vec<Duration>,
    unrecovered: usize,
}

struct Run {
    cluster: Cluster,
    ledger: Ledger,
    observed: Observed,
    browsers: Vec<browser::Shared>,
    controls: Vec<mpsc::UnboundedSender<Control>>,
    fresh: players::FreshWindow,
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let seed = options.seed.unwrap_or_else(rand::random);
    println!(
        "chaos soak: seed {seed} (replay with --seed {seed}), {} s of faults, {} browsers, {} players, an action every ~{} ms",
        options.seconds, options.browsers, options.players, options.action_ms
    );
    check::self_test();
    let started = Instant::now();
    let code = soak(&options, seed).await;
    println!("total run time {:.0} s", started.elapsed().as_secs_f64());
    std::process::exit(code);
}

async fn soak(options: &Options, seed: u64) -> i32 {
    let mut rng = StdRng::seed_from_u64(seed);
    let http = reqwest::Client::new();
    let sim = coven_testkit::simulator().await;
    let handle = sim.handle();
    let guild = sim.guild_id();
    let initial = players::sim_truth(&http, &sim).await;
    let players = Players::new(handle.clone(), options.players, rng.random(), &initial);
    let cluster = Cluster::start(sim).await;
    println!(
        "cluster up: hubs {:?}, workers {:?}, redis {}, logs in {}",
        cluster.hubs.each_ref().map(|h| h.port),
        cluster.workers.each_ref().map(|w| w.port),
        cluster.redis.port(),
        cluster.dir.path().display()
    );

    let stop_observer = Arc::new(AtomicBool::new(false));
    let observed = Observed::default();
    let following = tokio::spawn(observer::follow(
        cluster.redis.url(),
        guild,
        observed.clone(),
        stop_observer.clone(),
    ));

    let stop_browsers = Arc::new(AtomicBool::new(false));
    let (browsers, controls, tasks) =
        start_browsers(&cluster, options.browsers, stop_browsers.clone()).await;
    if !wait_until(Duration::from_secs(120), || {
        browsers.iter().all(|b| b.lock().unwrap().connected)
    })
    .await
    {
        let count = |f: &dyn Fn(&BrowserState) -> u64| -> u64 {
            browsers.iter().map(|b| f(&b.lock().unwrap())).sum()
        };
        println!(
            "not every browser connected within 120 s: {} connected, {} failed attempts, {} snapshots, {} resumed:false",
            count(&|b| u64::from(b.connected)),
            count(&|b| b.failed_attempts),
            count(&|b| b.snapshots),
            count(&|b| b.resyncs)
        );
        for (i, b) in browsers.iter().enumerate() {
            let b = b.lock().unwrap();
            if !b.connected {
                println!("  browser {i}: {}", b.last_failure);
            }
        }
        cluster.print_logs();
        return 1;
    }
    println!("{} browsers connected", browsers.len());

    let ledger = Ledger::default();
    let fresh = players::FreshWindow::default();
    let stop_players = Arc::new(AtomicBool::new(false));
    let acting = tokio::spawn(players.run(
        Duration::from_millis(options.action_ms),
        ledger.clone(),
        fresh.clone(),
        stop_players.clone(),
    ));
    let mut run = Run {
        cluster,
        ledger,
        observed,
        browsers,
        controls,
        fresh,
    };
    // A few seconds of actions before the first fault.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stats = inject_faults(&mut run, &mut rng, Duration::from_secs(options.seconds)).await;

    stop_players.store(true, Ordering::Relaxed);
    let actions = acting.await.expect("the players ran");
    let quiet = Instant::now();
    let settled = quiesce(&run).await;
    let truth = players::sim_truth(&http, &run.cluster.sim).await;
    let code = report(&run, &stats, actions, &truth, settled, quiet.elapsed());

    stop_browsers.store(true, Ordering::Relaxed);
    stop_observer.store(true, Ordering::Relaxed);
    drop(run.controls);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), following).await;
    code
}

type Started = (
    Vec<browser::Shared>,
    Vec<mpsc::UnboundedSender<Control>>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Signs in one user per [`BROWSERS_PER_USER`] browsers and starts the browsers;
/// the controls returned are those of the non-witness browsers.
async fn start_browsers(cluster: &Cluster, count: usize, stop: Arc<AtomicBool>) -> Started {
    let handle = cluster.sim.handle();
    let mut tokens = Vec::new();
    for i in 0..count.div_ceil(BROWSERS_PER_USER) {
        let user = handle.add_user(&format!("chaos-viewer-{i}"));
        handle.set_consenting_user(user);
        tokens.push(login(&cluster.hubs[i % 2].url("")).await);
    }
    let ports = [cluster.hubs[0].port, cluster.hubs[1].port];
    let (mut states, mut controls, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
    for index in 0..count {
        let witness = index < WITNESSES;
        let state = browser::Shared::new(Mutex::new(BrowserState {
            log: witness.then(Vec::new),
            ..BrowserState::default()
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        if !witness {
            controls.push(tx);
        }
        let browser = Browser {
            index,
            token: tokens[index / BROWSERS_PER_USER].clone(),
            ports,
            slow: !witness && index % SLOW_EVERY == SLOW_EVERY - 1,
            state: state.clone(),
        };
        tasks.push(tokio::spawn(browser.run(rx, stop.clone())));
        states.push(state);
    }
    (states, controls, tasks)
}

/// Signs in through the simulator's OAuth2 (as `coven_testkit::sim_login`), trying
/// again after a pause when the hub answers "Discord could not be reached" (the
/// simulator rate-limits a burst of sign-ins, as Discord does).
async fn login(base: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    for _ in 0..30 {
        if let Some(token) = try_login(&http, base).await {
            return token;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no sign-in at {base} in 30 attempts");
}

async fn try_login(http: &reqwest::Client, base: &str) -> Option<String> {
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let start = http.get(format!("{base}/auth/login")).send().await.ok()?;
    let cookie = header(&start, "set-cookie")?.split(';').next()?.to_owned();
    let consent = http.get(header(&start, "location")?).send().await.ok()?;
    let done = http
        .get(header(&consent, "location")?)
        .header("cookie", cookie)
        .send()
        .await
        .ok()?;
    header(&done, "location")?
        .strip_prefix("/#token=")
        .map(str::to_owned)
}

/// Injects faults one after another for `length`, each followed by its recovery.
async fn inject_faults(
    run: &mut Run,
    rng: &mut StdRng,
    length: Duration,
) -> BTreeMap<Kind, FaultStats> {
    let mut stats: BTreeMap<Kind, FaultStats> = BTreeMap::new();
    let deadline = Instant::now() + length;
    let started = Instant::now();
    while Instant::now() < deadline {
        let kind = faults::pick(rng);
        let injected = Instant::now();
        let expected_before = run.ledger.lock().unwrap().len();
        let detail = faults::inject(
            kind,
            rng,
            faults::Targets {
                cluster: &mut run.cluster,
                browsers: &run.controls,
                fresh: &run.fresh,
                ledger: &run.ledger,
                observed: &run.observed,
            },
        )
        .await;
        let recovery = recovered(run, injected, expected_before).await;
        let entry = stats.entry(kind).or_default();
        entry.injected += 1;
        match recovery {
            Some(took) => entry.recoveries.push(took),
            None => entry.unrecovered += 1,
        }
        println!(
            "[{:>6.1} s] {:<28} {detail}; recovered {}",
            started.elapsed().as_secs_f64(),
            kind.name(),
            recovery.map_or_else(
                || "NEVER".to_owned(),
                |d| format!("in {:.2} s", d.as_secs_f64())
            )
        );
        let pause = Duration::from_millis(rng.random_range(1_000..4_000));
        tokio::time::sleep(pause).await;
    }
    stats
}

/// Time from `injected` until an event made after it (the first expected event
/// past index `expected_before` that is not collapsible) is in the stream and
/// every browser is connected and has it; `None` after [`RECOVERY_LIMIT`].
async fn recovered(run: &Run, injected: Instant, expected_before: usize) -> Option<Duration> {
    let deadline = injected + RECOVERY_LIMIT;
    let mut target_seq = None;
    loop {
        if Instant::now() > deadline {
            return None;
        }
        if target_seq.is_none() {
            let probe = run
                .ledger
                .lock()
                .unwrap()
                .iter()
                .skip(expected_before)
                .find(|e| !e.collapsible)
                .map(|e| (e.key.clone(), e.at));
            if let Some((key, at)) = probe {
                target_seq = run
                    .observed
                    .lock()
                    .unwrap()
                    .entries
                    .iter()
                    .rev()
                    .take_while(|e| e.2 >= at)
                    .find(|e| e.1 == key)
                    .map(|e| e.0);
            }
        }
        if let Some(seq) = target_seq
            && browser::all_caught_up(&run.browsers, seq)
        {
            return Some(injected.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the actions stop: waits until every expected event is in the stream and
/// every browser has the stream's last event. False when that did not happen
/// within [`QUIESCE_LIMIT`] (the counts then show what is missing).
async fn quiesce(run: &Run) -> bool {
    let deadline = Instant::now() + QUIESCE_LIMIT;
    loop {
        let expected = run.ledger.lock().unwrap().clone();
        let stream: Vec<_> = run
            .observed
            .lock()
            .unwrap()
            .entries
            .iter()
            .map(|e| (e.0, e.1.clone()))
            .collect();
        let head = stream.last().map_or(0, |e| e.0);
        let reconciled = check::reconcile(&expected, &stream);
        if reconciled.pending == 0 && browser::all_caught_up(&run.browsers, head) {
            // One more moment: nothing else may arrive after the last expected event.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now_head = run.observed.lock().unwrap().head();
            if now_head == head && browser::all_caught_up(&run.browsers, head) {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the expected events and the stream to `chaos-expected.txt` and
/// `chaos-stream.txt` (current folder), one per line, to study a failed run.
fn dump(expected: &[players::Expected], stream: &[(u64, model::EventKey)]) {
    use std::fmt::Write as _;
    let mut text = String::new();
    for (i, e) in expected.iter().enumerate() {
        let _ = writeln!(
            text,
            "{i} {} {}",
            e.key,
            if e.collapsible { "collapsible" } else { "" }
        );
    }
    let _ = std::fs::write("chaos-expected.txt", text);
    let mut text = String::new();
    for (seq, key) in stream {
        let _ = writeln!(text, "{seq} {key}");
    }
    let _ = std::fs::write("chaos-stream.txt", text);
    println!("  expected events and the stream written to chaos-expected.txt, chaos-stream.txt");
}

/// Prints what `user`'s actions expected and what the stream holds of them, so a
/// CI log alone shows whether an unexpected entry is a stray or a merge the
/// checker missed.
fn print_history(user: u64, expected: &[players::Expected], stream: &[(u64, model::EventKey)]) {
    const MOST: usize = 40;
    println!("  user {user}: expected (index, event, collapsible, state before -> after)");
    let mine: Vec<_> = expected
        .iter()
        .enumerate()
        .filter(|(_, e)| e.key.user == user)
        .collect();
    for (i, e) in &mine[mine.len().saturating_sub(MOST)..] {
        println!(
            "    #{i} {} {} {:?} -> {:?}",
            e.key,
            if e.collapsible { "collapsible" } else { "-" },
            e.change.before,
            e.change.after
        );
    }
    println!("  user {user}: in the stream (seq, event)");
    let mine: Vec<_> = stream.iter().filter(|(_, key)| key.user == user).collect();
    for (seq, key) in &mine[mine.len().saturating_sub(MOST)..] {
        println!("    {seq} {key}");
    }
}

/// Waits until `done` (true) or `limit` passes (false).
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Prints the counts; returns the exit code (1 when any invariant failed).
#[allow(clippy::too_many_lines, reason = "one table, printed in order")]
fn report(
    run: &Run,
    by_kind: &BTreeMap<Kind, FaultStats>,
    actions: usize,
    truth: &View,
    settled: bool,
    quiet: Duration,
) -> i32 {
    let expected = run.ledger.lock().unwrap().clone();
    let observed = run.observed.lock().unwrap();
    let stream: Vec<_> = observed
        .entries
        .iter()
        .map(|e| (e.0, e.1.clone()))
        .collect();
    let reconciled = check::reconcile(&expected, &stream);

    let mut totals = BrowserState::default();
    let mut wrong_views = Vec::new();
    let mut witness_mismatches = 0_u64;
    let mut witnessed = 0_u64;
    for (i, browser) in run.browsers.iter().enumerate() {
        let state = browser.lock().unwrap();
        totals.events += state.events;
        totals.duplicates += state.duplicates;
        totals.gaps += state.gaps;
        totals.resyncs += state.resyncs;
        totals.holes_after_snapshot += state.holes_after_snapshot;
        totals.snapshots += state.snapshots;
        totals.disconnects += state.disconnects;
        totals.failed_attempts += state.failed_attempts;
        for (code, n) in &state.close_codes {
            *totals.close_codes.entry(*code).or_default() += n;
        }
        if state.view != *truth {
            wrong_views.push((i, state.view.differences(truth, 5)));
        }
        for (seq, key) in state.log.iter().flatten() {
            witnessed += 1;
            if observed.at(*seq) != Some(key) {
                witness_mismatches += 1;
            }
        }
    }

    let row = |name: &str, value: String| println!("  {name:<46} {value}");
    println!("\n== chaos soak results");
    row("player actions", actions.to_string());
    row(
        "events expected (from the simulator's truth)",
        expected.len().to_string(),
    );
    row(
        "  of which collapsible (op 9 d:false windows)",
        expected
            .iter()
            .filter(|e| e.collapsible)
            .count()
            .to_string(),
    );
    row(
        "events accepted by the hubs (Redis stream)",
        stream.len().to_string(),
    );
    row("events delivered to browsers", totals.events.to_string());
    row("browsers", run.browsers.len().to_string());
    row(
        "LOST (expected, not in the stream)",
        reconciled.lost.len().to_string(),
    );
    row(
        "UNEXPECTED in the stream (duplicates, strays)",
        reconciled.unexpected.len().to_string(),
    );
    row(
        "  collapsed / merged / tolerated (op 9 d:false)",
        format!(
            "{} / {} / {}",
            reconciled.collapsed, reconciled.merged, reconciled.tolerated
        ),
    );
    row("still pending at the end", reconciled.pending.to_string());
    row(
        "DUPLICATES (seq at or below one applied)",
        totals.duplicates.to_string(),
    );
    row("GAPS without resumed:false", totals.gaps.to_string());
    row(
        "HOLES after resumed:false + snapshot",
        totals.holes_after_snapshot.to_string(),
    );
    row(
        "WRONG FINAL VIEWS (vs simulator truth)",
        wrong_views.len().to_string(),
    );
    row(
        "WITNESS events differing from the stream",
        format!("{witness_mismatches} of {witnessed}"),
    );
    row(
        "stream holes / malformed entries",
        format!("{} / {}", observed.holes, observed.malformed),
    );
    row(
        "resumed:false answers (snapshot reloads)",
        format!("{} ({} snapshots in all)", totals.resyncs, totals.snapshots),
    );
    row(
        "browser disconnects / failed attempts",
        format!("{} / {}", totals.disconnects, totals.failed_attempts),
    );
    row("close codes from hubs", format!("{:?}", totals.close_codes));
    row(
        "observer reconnects to Redis",
        observed.reconnects.to_string(),
    );
    row(
        "settled after the faults",
        format!("{settled} (quiet period {:.1} s)", quiet.as_secs_f64()),
    );

    println!(
        "\n  {:<30} {:>8} {:>14} {:>14} {:>11}",
        "fault", "injected", "max recovery", "mean recovery", "unrecovered"
    );
    let mut unrecovered = 0;
    for kind in Kind::ALL {
        let Some(s) = by_kind.get(&kind) else {
            println!("  {:<30} {:>8}", kind.name(), 0);
            continue;
        };
        unrecovered += s.unrecovered;
        let max = s.recoveries.iter().max().copied().unwrap_or_default();
        let mean = if s.recoveries.is_empty() {
            Duration::ZERO
        } else {
            s.recoveries.iter().sum::<Duration>() / u32::try_from(s.recoveries.len()).unwrap_or(1)
        };
        println!(
            "  {:<30} {:>8} {:>12.2} s {:>12.2} s {:>11}",
            kind.name(),
            s.injected,
            max.as_secs_f64(),
            mean.as_secs_f64(),
            s.unrecovered
        );
    }

    for (index, key) in reconciled.lost.iter().take(10) {
        let at = expected[*index].at;
        println!(
            "  lost: #{index} {key} (made {:.1} s before the end)",
            at.elapsed().as_secs_f64()
        );
    }
    for (seq, key) in reconciled.unexpected.iter().take(10) {
        println!("  unexpected: seq {seq} {key}");
    }
    for (_, key) in reconciled.unexpected.iter().take(2) {
        print_history(key.user, &expected, &stream);
    }
    for (browser, differences) in wrong_views.iter().take(5) {
        println!("  browser {browser} differs: {differences:?}");
    }

    let failed = !reconciled.lost.is_empty()
        || !reconciled.unexpected.is_empty()
        || reconciled.pending > 0
        || totals.duplicates > 0
        || totals.gaps > 0
        || totals.holes_after_snapshot > 0
        || !wrong_views.is_empty()
        || witness_mismatches > 0
        || observed.holes > 0
        || observed.malformed > 0
        || unrecovered > 0
        || !settled;
    if failed {
        dump(&expected, &stream);
    }
    println!("\nchaos soak {}", if failed { "FAILED" } else { "passed" });
    i32::from(failed)
}
