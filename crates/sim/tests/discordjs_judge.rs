//! The simulator judged by a third-party client in another language: discord.js 14 (gateway,
//! REST, rate limits, resume) and @discordjs/voice 0.19 (voice gateway v8, DAVE through
//! @snazzah/davey), run by `node judge/discordjs/judge.mjs` and driven line by line. Audio
//! in both directions must be decrypted end to end by the other side's own DAVE session at
//! every step of a call's life (docs/simulator.md, "Discord behaviour → modelled").
//!
//! Needs Node.js and npm: the judge's locked packages are installed by the first test that
//! needs them (`npm ci` in `judge/discordjs`), as the lobby's and the package's tests do.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use coven_sim::voice::VoiceSnapshot;
use coven_sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

/// Per-step timeout: conditions are awaited, never slept on.
const STEP: Duration = Duration::from_secs(20);

/// `judge/discordjs`, with its locked packages installed once per test process.
fn judge_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../judge/discordjs");
        if !dir.join("node_modules/@discordjs/voice").is_dir() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm (Node.js) is needed for the discord.js judge");
            assert!(status.success(), "npm ci in {} failed", dir.display());
        }
        dir
    })
    .clone()
}

/// The judge process: commands on stdin, JSON events on stdout.
struct Judge {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Judge {
    /// Starts the judge against `sim` as the bot, waits for discord.js's READY.
    fn start(sim: &Simulator, dave: bool) -> Self {
        Self::spawn(sim, dave, None)
    }

    /// Starts the judge as user `user`'s voice client (a second real DAVE client in a call;
    /// no gateway login: the control API gives it what the gateway would).
    fn start_as_user(sim: &Simulator, user: u64) -> Self {
        Self::spawn(sim, true, Some(user))
    }

    fn spawn(sim: &Simulator, dave: bool, user: Option<u64>) -> Self {
        let dir = judge_dir();
        let mut command = Command::new("node");
        command
            .arg("judge.mjs")
            .current_dir(&dir)
            .env("SIM_API", format!("{}/api", sim.api_url()))
            .env("SIM_CONTROL", sim.control_url())
            .env("BOT_TOKEN", sim.bot_token())
            .env("GUILD_ID", sim.guild_id().to_string())
            .env("NODE_EXTRA_CA_CERTS", coven_sim::voice::test_ca_path())
            .env("JUDGE_NO_DAVE", if dave { "0" } else { "1" });
        if let Some(user) = user {
            command.env("JUDGE_USER", user.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (Node.js 20+) on PATH");
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"event": "output", "line": line}));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut judge = Self {
            child,
            stdin,
            events,
            seen: Vec::new(),
        };
        judge.expect("ready", |_| true);
        judge
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("judge stdin");
    }

    /// Starts listening to `user`'s audio (decrypted by the judge's own session).
    fn listen(&mut self, user: u64) {
        self.send(&format!("listen {user}"));
        self.expect("listening", |_| true);
    }

    /// Waits for the next event named `name` that `accept` accepts; fails on an `error`.
    fn expect(&mut self, name: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no `{name}` from the judge in {STEP:?}; saw {:?}",
                    self.seen
                )
            });
            assert_ne!(event["event"], "error", "judge error: {event}");
            self.seen.push(event.clone());
            if event["event"] == name && accept(&event) {
                return event;
            }
        }
    }

    /// Whether the judge reported an event named `name` so far (without waiting).
    fn saw(&mut self, name: &str) -> bool {
        while let Ok(event) = self.events.try_recv() {
            assert_ne!(event["event"], "error", "judge error: {event}");
            self.seen.push(event);
        }
        self.seen.iter().any(|e| e["event"] == name)
    }

    /// The judge's DAVE group as it sees it: (epoch, sorted member ids, privacy code).
    fn group(&mut self) -> (Option<u64>, Vec<String>, Value) {
        self.send("report");
        let r = self.expect("report", |_| true);
        let members = r["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (r["epoch"].as_u64(), members, r["privacy"].clone())
    }

    /// The judge's report: frames heard per user, and how many were the simulator's speech
    /// exactly (only possible after the judge's own DAVE session decrypted them).
    fn heard_speech(&mut self, user: u64) -> u64 {
        self.send("report");
        let r = self.expect("report", |_| true);
        r["heard"][user.to_string()]["speech"].as_u64().unwrap_or(0)
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_voice(h: &SimHandle, what: &str, cond: impl FnMut(&VoiceSnapshot) -> bool) {
    let waited = h.voice_wait_for(cond, STEP).await;
    assert!(waited.is_ok(), "{what}: {:?}", h.voice_snapshot());
}

/// Speaks as `speaker` for 1 s (50 frames) while the judge listens, and has the judge play 25
/// frames; waits until the judge decrypted at least 20 of the speech frames (the first ones
/// may come before the judge maps the SSRC from op 5) and `listeners` decrypted the judge's
/// frames with their own DAVE sessions.
async fn exchange(judge: &mut Judge, h: &SimHandle, speaker: u64, listeners: &[u64]) {
    let before_heard = judge.heard_speech(speaker);
    let before: Vec<u64> = listeners
        .iter()
        .map(|u| h.voice_received(*u).dave_frames)
        .collect();
    assert!(h.voice_user_speak(speaker, Duration::from_secs(1)));
    judge.send("play 25");
    judge.expect("played", |_| true);
    for (u, before) in listeners.iter().zip(before) {
        wait_voice(h, "listener decrypts the bot end to end", |s| {
            s.received
                .get(u)
                .is_some_and(|r| r.dave_frames >= before + 20)
        })
        .await;
    }
    let deadline = Instant::now() + STEP;
    loop {
        let heard = judge.heard_speech(speaker);
        if heard >= before_heard + 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the judge decrypted only {heard} speech frames of {speaker}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sorted ids as the judge reports them.
/// A simulator with Discord's defaults (DAVE required, Discord's buckets) on a free port.
async fn discord_like() -> Simulator {
    Simulator::start(SimConfig::discord_like().with_port(0))
        .await
        .expect("start")
}

fn ids(users: &[u64]) -> Vec<String> {
    let mut v: Vec<String> = users.iter().map(u64::to_string).collect();
    v.sort();
    v
}

/// Two judges in one call play to each other; each must decrypt at least 20 of the other's
/// frames with its own DAVE session (the frames arrive forwarded by the simulator).
async fn judges_exchange(a: (&mut Judge, u64), b: (&mut Judge, u64)) {
    let (a, a_user) = a;
    let (b, b_user) = b;
    let before = (a.heard_speech(b_user), b.heard_speech(a_user));
    a.send("play 25");
    b.send("play 25");
    a.expect("played", |_| true);
    b.expect("played", |_| true);
    let deadline = Instant::now() + STEP;
    loop {
        let heard = (a.heard_speech(b_user), b.heard_speech(a_user));
        if heard.0 >= before.0 + 20 && heard.1 >= before.1 + 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "judges decrypted only {heard:?} of each other's frames (before {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No audio frame anywhere went out with transport encryption only, none failed.
fn assert_all_e2ee(h: &SimHandle) {
    let snap = h.voice_snapshot();
    let c = &snap.counters;
    assert_eq!(
        (
            c.rtp_sent_transport_only,
            c.speaker_e2ee_failures,
            c.dave_errors
        ),
        (0, 0, 0),
        "{c:?}"
    );
    assert!(c.rtp_sent_e2ee > 0, "{c:?}");
    assert_eq!(c.rtp_forwarded_transport_only, 0, "{c:?}");
    for (user, r) in &snap.received {
        assert_eq!(r.transport_only_frames, 0, "{user}: {r:?}");
        assert_eq!(r.dave_failures, 0, "{user}: {r:?}");
        assert_eq!(r.e2ee_frames, r.audio_frames, "{user}: {r:?}");
        assert_eq!(r.dave_frames, r.audio_frames, "{user}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_voice_dave_bot_first_then_players_join_and_leave() {
    let sim = discord_like().await;
    let h = sim.handle();
    let seed = h.seed();
    let table = seed.voice_channel_ids[1]; // empty
    let (carol, dave) = (seed.member_user_ids[2], seed.member_user_ids[3]);
    let mut judge = Judge::start(&sim, true);

    // The bot joins an empty room: v8, DAVE offered, key package sent, no group yet.
    judge.send(&format!("join {table}"));
    judge.expect("voice_ready", |_| true);
    wait_voice(&h, "v8 session with DAVE", |s| {
        s.counters.last_version == Some(8) && s.counters.dave_key_packages == 1
    })
    .await;

    // A player joins: proposed to the pending group, the judge commits, carol is welcomed.
    h.user_join(carol, table).expect("carol joins");
    judge.expect("transitioned", |e| e["id"] == 1 && e["privacy"].is_string());
    wait_voice(&h, "carol welcomed", |s| s.counters.dave_welcomed == 1).await;
    judge.listen(carol);
    exchange(&mut judge, &h, carol, &[carol]).await;

    // A second player joins: added at the next epoch; carol applies the commit.
    h.user_join(dave, table).expect("dave joins");
    judge.expect("transitioned", |e| e["id"] == 2);
    wait_voice(&h, "dave welcomed", |s| s.counters.dave_welcomed == 2).await;
    judge.listen(dave);
    exchange(&mut judge, &h, dave, &[carol, dave]).await;
    exchange(&mut judge, &h, carol, &[carol, dave]).await;

    // One leaves: removed from the group (Remove proposal, commit), the call goes on.
    let carol_frames = h.voice_received(carol).audio_frames;
    h.user_leave(carol).expect("carol leaves");
    judge.expect("transitioned", |e| e["id"] == 3);
    wait_voice(&h, "removal", |s| s.counters.dave_removals == 1).await;
    exchange(&mut judge, &h, dave, &[dave]).await;
    assert_eq!(
        h.voice_received(carol).audio_frames,
        carol_frames,
        "carol left"
    );

    // The last other member leaves: "sole member reset" — op 24 (epoch 1: a new group) and
    // op 21 (transition 0, executed at once); the bot sends a new key package and a new
    // group forms with the next player.
    h.user_leave(dave).expect("dave leaves");
    judge.expect("prepare_epoch", |e| e["epoch"] == 1 && e["version"] == 1);
    judge.expect("prepare_transition", |e| e["id"] == 0);
    judge.expect("transitioned", |e| e["id"] == 0);
    wait_voice(&h, "new key package", |s| {
        s.counters.dave_resets == 1 && s.counters.dave_key_packages == 2
    })
    .await;
    let erin = seed.member_user_ids[4];
    h.user_join(erin, table).expect("erin joins");
    judge.expect("transitioned", |e| e["id"] == 4);
    assert_eq!(judge.group().1, ids(&[seed.bot_user_id, erin]));
    judge.listen(erin);
    exchange(&mut judge, &h, erin, &[erin]).await;

    assert_all_e2ee(&h);
    let c = h.voice_snapshot().counters;
    assert_eq!((c.dave_commits, c.dave_transitions_ready), (4, 4), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_voice_dave_two_clients_compete_and_the_loser_is_welcomed() {
    let sim = discord_like().await;
    let h = sim.handle();
    let seed = h.seed();
    let table = seed.voice_channel_ids[1]; // empty
    let (bot, carol, erin) = (
        seed.bot_user_id,
        seed.member_user_ids[2],
        seed.member_user_ids[4],
    );
    let mut judge = Judge::start(&sim, true);
    judge.send(&format!("join {table}"));
    judge.expect("voice_ready", |_| true);
    wait_voice(&h, "bot's key package", |s| {
        s.counters.dave_key_packages == 1
    })
    .await;

    // Carol's own client (a second @discordjs/voice) joins: both are pending, each gets the
    // other's Add proposal and commits; the first commit wins (op 29 to its sender), the
    // other is discarded and its sender is welcomed (op 30) into the winner's group.
    let mut person = Judge::start_as_user(&sim, carol);
    person.send(&format!("join {table}"));
    person.expect("voice_ready", |_| true);
    judge.expect("transitioned", |e| e["id"] == 1);
    person.expect("transitioned", |e| e["id"] == 1);
    wait_voice(&h, "one commit won, one discarded", |s| {
        let c = &s.counters;
        c.dave_commits == 1 && c.dave_commits_discarded == 1 && c.dave_welcomes_sent == 1
    })
    .await;
    assert!(
        judge.saw("welcomed") != person.saw("welcomed"),
        "exactly one client is welcomed"
    );
    let (bot_view, carol_view) = (judge.group(), person.group());
    assert_eq!(bot_view, carol_view, "same group, same epoch");
    assert_eq!(bot_view.0, Some(1));
    assert_eq!(bot_view.1, ids(&[bot, carol]));

    // Audio between the two clients, each decrypting with its own DAVE session.
    judge.listen(carol);
    person.listen(bot);
    judges_exchange((&mut judge, bot), (&mut person, carol)).await;

    // A simulated user joins: both members commit in epoch 1, one wins, the other applies it.
    h.user_join(erin, table).expect("erin joins");
    judge.expect("transitioned", |e| e["id"] == 2);
    person.expect("transitioned", |e| e["id"] == 2);
    wait_voice(&h, "erin welcomed, the second commit discarded", |s| {
        let c = &s.counters;
        c.dave_commits == 2 && c.dave_commits_discarded == 2 && c.dave_welcomed == 1
    })
    .await;
    assert_eq!(judge.group(), person.group());
    assert_eq!(judge.group().1, ids(&[bot, carol, erin]));
    for j in [&mut judge, &mut person] {
        j.listen(erin);
    }
    exchange(&mut judge, &h, erin, &[erin]).await;
    assert!(
        person.heard_speech(erin) >= 20,
        "carol's client decrypts erin"
    );
    judges_exchange((&mut judge, bot), (&mut person, carol)).await;

    // Carol's client hangs and never confirms the next transition (op 23): the simulator
    // executes it (op 22) after its timeout anyway, for both clients.
    person.send("withhold-ready");
    person.expect("withholding", |_| true);
    h.user_join(seed.member_user_ids[5], table)
        .expect("frank joins");
    person.expect("withheld", |e| e["id"] == 3);
    judge.expect("transitioned", |e| e["id"] == 3);
    person.expect("transitioned", |e| e["id"] == 3);
    assert_eq!(h.voice_snapshot().counters.dave_transition_timeouts, 1);

    assert_all_e2ee(&h);
    let c = h.voice_snapshot().counters;
    assert!(c.rtp_forwarded_e2ee > 0, "{c:?}");
    assert_eq!(
        h.voice_received(carol),
        coven_sim::voice::VoiceReceived::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_voice_dave_revokes_a_user_who_leaves_before_the_commit() {
    let sim = discord_like().await;
    let h = sim.handle();
    let seed = h.seed();
    let table = seed.voice_channel_ids[0]; // alice and bob
    let (alice, bob, carol, dave) = (
        seed.member_user_ids[0],
        seed.member_user_ids[1],
        seed.member_user_ids[2],
        seed.member_user_ids[3],
    );
    let mut judge = Judge::start(&sim, true);
    judge.send(&format!("join {table}"));
    judge.expect("transitioned", |e| e["id"] == 1);

    // Carol joins and is proposed; the judge's commit is delayed in transit; carol leaves
    // before it arrives: her Add proposal is revoked (op 27 revoke), and the stale commit
    // (which still adds her) is discarded.
    h.voice_dave_hold_commits(true);
    h.user_join(carol, table).expect("carol joins");
    judge.expect("proposals", |e| e["op"] == "append");
    wait_voice(&h, "the commit is held", |s| {
        s.counters.dave_commits_held == 1
    })
    .await;
    h.user_leave(carol).expect("carol leaves");
    judge.expect("proposals", |e| e["op"] == "revoke");
    h.voice_dave_hold_commits(false);
    wait_voice(&h, "stale commit discarded", |s| {
        s.counters.dave_commits_discarded == 1 && s.counters.dave_revocations == 1
    })
    .await;
    let bot = seed.bot_user_id;
    assert_eq!(
        judge.group().1,
        ids(&[bot, alice, bob]),
        "carol is not in the group"
    );

    // The call goes on: the next player is added (transition 2) and audio stays E2EE.
    h.user_join(dave, table).expect("dave joins");
    judge.expect("transitioned", |e| e["id"] == 2);
    assert_eq!(judge.group().1, ids(&[bot, alice, bob, dave]));
    judge.listen(dave);
    exchange(&mut judge, &h, dave, &[alice, bob, dave]).await;
    assert_all_e2ee(&h);
    let c = h.voice_snapshot().counters;
    assert_eq!((c.dave_commits, c.dave_invalid), (2, 0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_voice_v8_resume_replays_missed_messages() {
    let sim = discord_like().await;
    let h = sim.handle();
    let seed = h.seed();
    let table = seed.voice_channel_ids[0]; // alice and bob sit here: group formed at connect
    let (alice, carol) = (seed.member_user_ids[0], seed.member_user_ids[2]);
    let mut judge = Judge::start(&sim, true);
    judge.send(&format!("join {table}"));
    judge.expect("transitioned", |e| e["id"] == 1);

    // The socket drops; carol joins while the judge is away: her op 11 and Add proposal are
    // buffered and re-delivered after RESUME (seq_ack), and she ends up in the group.
    assert_eq!(h.voice_drop_sockets(), 1);
    h.user_join(carol, table).expect("carol joins");
    judge.expect("transitioned", |e| e["id"] == 2);
    let c = h.voice_snapshot().counters;
    assert!(c.resumes >= 1 && c.replayed >= 1, "{c:?}");
    assert_eq!(c.identifies, 1, "resumed, not identified again: {c:?}");
    judge.listen(carol);
    exchange(&mut judge, &h, carol, &[alice, carol]).await;
    assert_all_e2ee(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_voice_dave_recovers_from_an_invalid_commit() {
    let sim = discord_like().await;
    let h = sim.handle();
    let seed = h.seed();
    let table = seed.voice_channel_ids[0]; // alice and bob
    let (alice, carol) = (seed.member_user_ids[0], seed.member_user_ids[2]);
    let mut judge = Judge::start(&sim, true);
    judge.send(&format!("join {table}"));
    judge.expect("transitioned", |e| e["id"] == 1);

    // The commit adding carol arrives damaged: the judge reports op 31 and sends a new key
    // package. As on Discord, the other members carry on: the flagging member is proposed
    // for removal (a simulated member commits it, transition 3), then added again with its
    // new key package (transition 4) — and welcomed by op 30, another member's commit.
    h.voice_dave_corrupt_next_commit();
    h.user_join(carol, table).expect("carol joins");
    judge.expect("welcomed", |e| e["id"] == 4);
    judge.expect("transitioned", |e| e["id"] == 4);
    let c = h.voice_snapshot().counters;
    assert_eq!(
        (
            c.dave_invalid,
            c.dave_key_packages,
            c.dave_commits,
            c.dave_welcomes_sent
        ),
        (1, 2, 4, 1),
        "{c:?}"
    );
    judge.listen(carol);
    exchange(&mut judge, &h, carol, &[alice, carol]).await;
    assert_all_e2ee(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_voice_without_dave_is_closed_4017() {
    let sim = discord_like().await;
    let table = sim.handle().seed().voice_channel_ids[1];
    let mut judge = Judge::start(&sim, false);
    judge.send(&format!("join {table}"));
    judge.expect("voice_closed", |e| e["code"] == 4017);
    judge.send("leave");
    judge.expect("left", |_| true);
    let c = sim.handle().voice_snapshot().counters;
    assert_eq!((c.identifies, c.sessions_described), (0, 0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_gateway_rest_rate_limits_and_resume() {
    let sim = discord_like().await;
    let h = sim.handle();
    let mut judge = Judge::start(&sim, true);
    // Six concurrent creations in Discord's 5-per-5-s bucket: discord.js paces them by the
    // headers it learns; all succeed without a 429.
    let before = h.channel_ids().len();
    judge.send("create-many 6");
    let made = judge.expect("created-many", |_| true);
    assert_eq!(made["ids"].as_array().map(Vec::len), Some(6));
    assert_eq!(h.channel_ids().len(), before + 6);
    assert_eq!(h.counters().rest_429s, 0, "{:?}", h.counters());
    // op 7: discord.js resumes its session.
    assert_eq!(h.reconnect(), 1);
    judge.expect("gateway_resumed", |_| true);
    assert_eq!(h.counters().resumes, 1);
    assert_eq!(h.counters().identifies, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_voice_dave_downgrades_for_a_client_without_dave_and_upgrades_after() {
    // Clients without DAVE allowed (`--allow-no-dave`): Discord's "Initial Transitory Phase".
    let config = coven_sim::SimConfig {
        voice_require_dave: false,
        ..SimConfig::discord_like()
    };
    let sim = Simulator::start(config.with_port(0)).await.expect("start");
    let h = sim.handle();
    let seed = h.seed();
    let table = seed.voice_channel_ids[0]; // alice and bob
    let (alice, bob, carol) = (
        seed.member_user_ids[0],
        seed.member_user_ids[1],
        seed.member_user_ids[2],
    );
    let bot = seed.bot_user_id;
    let mut judge = Judge::start(&sim, true);
    judge.send(&format!("join {table}"));
    judge.expect("transitioned", |e| e["id"] == 1);

    // Carol's client without DAVE joins: op 21 (protocol version 0), op 23, op 22 — the call
    // runs on transport encryption only, both ways, and carol's client hears the bot.
    let mut person = Judge::spawn(&sim, false, Some(carol));
    person.send(&format!("join {table}"));
    person.expect("voice_ready", |_| true);
    judge.expect("prepare_transition", |e| e["id"] == 2 && e["version"] == 0);
    judge.expect("transitioned", |e| e["id"] == 2);
    judge.listen(alice);
    person.listen(bot);
    let before = judge.heard_speech(alice);
    assert!(h.voice_user_speak(alice, Duration::from_secs(1)));
    judge.send("play 25");
    judge.expect("played", |_| true);
    wait_voice(&h, "bob hears the bot, transport-only", |s| {
        s.received
            .get(&bob)
            .is_some_and(|r| r.transport_only_frames >= 20 && r.e2ee_frames == 0)
    })
    .await;
    let deadline = Instant::now() + STEP;
    while judge.heard_speech(alice) < before + 20 || person.heard_speech(bot) < 20 {
        assert!(Instant::now() < deadline, "transport-only audio not heard");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = h.voice_snapshot().counters;
    assert_eq!(
        (c.dave_downgrades, c.speaker_e2ee_failures),
        (1, 0),
        "{c:?}"
    );

    // Carol leaves: op 24 (epoch 1) — a new group, E2EE again (upgrade).
    person.send("leave");
    person.expect("left", |_| true);
    judge.expect("prepare_epoch", |e| e["epoch"] == 1);
    judge.expect("transitioned", |e| e["id"] == 3);
    assert_eq!(judge.group().1, ids(&[bot, alice, bob]));
    h.voice_reset_received(alice);
    h.voice_reset_received(bob);
    exchange(&mut judge, &h, alice, &[alice, bob]).await;
    for user in [alice, bob] {
        let r = h.voice_received(user);
        assert_eq!(r.transport_only_frames, 0, "{r:?}");
        assert_eq!(r.dave_frames, r.audio_frames, "{r:?}");
    }
    let c = h.voice_snapshot().counters;
    assert_eq!((c.dave_upgrades, c.dave_errors), (1, 0), "{c:?}");
}
