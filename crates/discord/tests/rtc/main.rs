//! `DiscordRtcClient` against the simulator's voice server (TLS voice gateway, UDP, both
//! transport encryption modes): join → ready, speaking updates from a simulated user, a cue
//! decrypted by a simulated listener, resume after a dropped voice socket, reconnect after a
//! voice server move, leave frees the connection, video → typed error, connect timeout,
//! received audio decoded per user (`pcm.rs`).
//!
//! Its own runner (`harness = false`): the binary re-runs itself with `SSL_CERT_FILE` set to
//! the simulator's test CA, then runs each test on a fresh simulator. Pass a substring to
//! run only matching tests. Every wait is on a condition, with a timeout.

mod pcm;
mod support;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coven_discord::{Cue, RtcError, RtcStatus, SpeakingUpdate, TransportPreference};
use support::{Bot, snowflake, start_bot, start_bot_with};

/// Upper bound for any single wait.
const STEP: Duration = Duration::from_secs(10);

type TestFn = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

fn main() -> ExitCode {
    if let Some(code) = support::reexec_with_test_ca() {
        return code;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let tests: Vec<(&str, TestFn)> = vec![
        ("join_is_ready_within_the_timeout_aes256gcm", || {
            Box::pin(join_ready(TransportPreference::Aes256Gcm))
        }),
        ("join_is_ready_within_the_timeout_xchacha20", || {
            Box::pin(join_ready(TransportPreference::XChaCha20Poly1305))
        }),
        ("simulated_user_speaking_gives_true_then_false", || {
            Box::pin(speaking_true_then_false())
        }),
        ("cue_is_decrypted_by_a_simulated_listener_aes256gcm", || {
            Box::pin(cue_received(TransportPreference::Aes256Gcm))
        }),
        ("cue_is_decrypted_by_a_simulated_listener_xchacha20", || {
            Box::pin(cue_received(TransportPreference::XChaCha20Poly1305))
        }),
        ("dropped_voice_socket_is_resumed", || {
            Box::pin(socket_drop_resumed())
        }),
        ("voice_server_move_reconnects_to_the_new_endpoint", || {
            Box::pin(server_move_reconnects())
        }),
        ("disconnect_frees_the_connection", || {
            Box::pin(disconnect_frees())
        }),
        ("video_is_a_typed_error", || Box::pin(video_unsupported())),
        ("connect_without_voice_server_update_times_out", || {
            Box::pin(connect_times_out())
        }),
        (
            "dave_group_forms_and_audio_is_end_to_end_encrypted_both_ways",
            || Box::pin(dave_end_to_end()),
        ),
        (
            "each_user_s_decoded_pcm_is_their_own_tone_with_dave",
            || Box::pin(pcm::each_user_hears_their_own_tone(true)),
        ),
        (
            "each_user_s_decoded_pcm_is_their_own_tone_without_dave",
            || Box::pin(pcm::each_user_hears_their_own_tone(false)),
        ),
        ("decoded_pcm_is_opt_in", || Box::pin(pcm::pcm_is_opt_in())),
        (
            "dave_bot_first_then_two_players_join_and_one_leaves",
            || Box::pin(dave_bot_first()),
        ),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    println!();
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            filtered += 1;
            continue;
        }
        let outcome = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), tokio::spawn(test())).await
        });
        match outcome {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("test {name} ... FAILED ({e})");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED (timed out after 30 s)");
            }
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s\n",
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Joins the first voice channel (alice and bob sit there) and checks readiness.
async fn joined(transport: TransportPreference) -> Bot {
    let bot = start_bot(transport, STEP).await;
    let channel = bot.seed.voice_channel_ids[0];
    let started = Instant::now();
    bot.rtc.connect(snowflake(channel)).await.expect("connect");
    assert!(started.elapsed() < STEP);
    assert!(
        matches!(bot.rtc.status(), RtcStatus::Ready { channel_id, .. } if channel_id.get() == channel)
    );
    bot
}

async fn join_ready(transport: TransportPreference) {
    let bot = joined(transport).await;
    let snap = bot
        .h
        .voice_wait_for(
            |s| s.counters.sessions_described == 1 && s.counters.ip_discoveries >= 1,
            STEP,
        )
        .await
        .expect("voice handshake seen by the simulator");
    let want = match transport {
        TransportPreference::Aes256Gcm => coven_sim::voice::TransportMode::Aes256Gcm,
        TransportPreference::XChaCha20Poly1305 => {
            coven_sim::voice::TransportMode::XChaCha20Poly1305
        }
    };
    assert_eq!(snap.counters.last_mode, Some(want));
    assert_eq!(
        snap.counters.last_version,
        Some(4),
        "songbird 0.6 speaks voice gateway v4"
    );
    assert_eq!(snap.counters.identifies, 1);
    assert_eq!(
        snap.sessions.values().copied().collect::<Vec<_>>(),
        vec![bot.seed.bot_user_id]
    );
    // The driver's connect event (which carries the SSRC) may trail `connect` returning.
    let mut watch = bot.rtc.watch_counters();
    let counters = *tokio::time::timeout(STEP, watch.wait_for(|c| c.ssrc != 0))
        .await
        .expect("SSRC known in time")
        .expect("client alive");
    assert_eq!(counters.connects, 1);
    assert!(
        snap.sessions.contains_key(&counters.ssrc),
        "the bot's SSRC is the simulator's"
    );
    assert_eq!(
        bot.h.voice_channel_of(bot.seed.bot_user_id),
        Some(bot.seed.voice_channel_ids[0])
    );
}

async fn next_update(
    rx: &mut tokio::sync::broadcast::Receiver<SpeakingUpdate>,
    user: u64,
) -> SpeakingUpdate {
    tokio::time::timeout(STEP, async {
        loop {
            let u = rx.recv().await.expect("speaking stream open");
            if u.user_id.get() == user {
                return u;
            }
        }
    })
    .await
    .expect("speaking update in time")
}

async fn speaking_true_then_false() {
    let bot = joined(TransportPreference::Aes256Gcm).await;
    let alice = bot.seed.member_user_ids[0];
    let mut updates = bot.rtc.speaking_updates();
    assert!(bot.h.voice_user_speak(alice, Duration::from_millis(400)));
    let on = next_update(&mut updates, alice).await;
    assert!(on.speaking);
    assert_eq!(on.channel_id.get(), bot.seed.voice_channel_ids[0]);
    assert_eq!(on.guild_id.get(), bot.seed.guild_id);
    let off = next_update(&mut updates, alice).await;
    assert!(!off.speaking);
    let heard = bot.rtc.received_audio();
    let from_alice = heard.get(&snowflake(alice)).expect("audio from alice");
    // 400 ms of speech + 5 silence frames; the jitter buffer may drop a frame at the edges.
    assert!(
        (18..=26).contains(&from_alice.frames),
        "frames from alice: {}",
        from_alice.frames
    );
    assert!(!from_alice.speaking);
    assert!(bot.h.voice_snapshot().counters.rtp_sent >= 20);
}

/// Plays a cue and waits until `listener` decrypted all of it; returns the latency from
/// `play_cue` to the first decrypted frame.
async fn cue_arrives(bot: &Bot, listener: u64, cue: Cue) -> Duration {
    bot.h.voice_reset_received(listener);
    let frames = u64::try_from(cue.duration().as_millis() / 20).expect("small");
    let sent = Instant::now();
    bot.rtc.play_cue(cue).await.expect("play cue");
    let snap = bot
        .h
        .voice_wait_for(
            |s| {
                s.received
                    .get(&listener)
                    .is_some_and(|r| r.audio_frames >= frames && r.silence_frames >= 5)
            },
            STEP,
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the whole cue decrypted by the listener: {:?}",
                bot.h.voice_snapshot()
            )
        });
    let got = &snap.received[&listener];
    assert!(got.audio_frames <= frames + 3, "{got:?}");
    // Paced at 20 ms (an early burst or a scheduling hiccup aside): no gap near a second.
    assert!(got.max_gap_micros < 200_000, "{got:?}");
    got.first_audio_at
        .expect("first frame")
        .duration_since(sent)
}

async fn cue_received(transport: TransportPreference) {
    let bot = joined(transport).await;
    let alice = bot.seed.member_user_ids[0];
    let bob = bot.seed.member_user_ids[1];
    let latency = cue_arrives(&bot, alice, Cue::TurnChime).await;
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    // Every listener in the channel got it, in the negotiated mode, from the bot's SSRC.
    let to_bob = bot.h.voice_received(bob);
    assert!(to_bob.audio_frames >= 20);
    let mut watch = bot.rtc.watch_counters();
    let ssrc = tokio::time::timeout(STEP, watch.wait_for(|c| c.ssrc != 0))
        .await
        .expect("SSRC known in time")
        .expect("client alive")
        .ssrc;
    assert_eq!(to_bob.ssrc, Some(ssrc));
    // A user elsewhere hears nothing.
    let carol = bot.seed.member_user_ids[2];
    assert_eq!(bot.h.voice_received(carol).audio_frames, 0);
    assert_eq!(bot.h.voice_snapshot().counters.rtp_rejected, 0);
}

async fn socket_drop_resumed() {
    let bot = joined(TransportPreference::Aes256Gcm).await;
    assert_eq!(bot.h.voice_drop_sockets(), 1);
    let mut counters = bot.rtc.watch_counters();
    tokio::time::timeout(STEP, counters.wait_for(|c| c.resumes >= 1))
        .await
        .expect("resumed in time")
        .expect("client alive");
    let snap = bot
        .h
        .voice_wait_for(
            |s| s.counters.resumes >= 1 && s.counters.active_connections == 1,
            STEP,
        )
        .await
        .expect("simulator saw the RESUME");
    assert_eq!(snap.counters.identifies, 1, "resumed, not re-identified");
    assert!(matches!(bot.rtc.status(), RtcStatus::Ready { .. }));
    // Audio still flows both ways.
    cue_arrives(&bot, bot.seed.member_user_ids[0], Cue::TimerTick).await;
    let mut updates = bot.rtc.speaking_updates();
    let bob = bot.seed.member_user_ids[1];
    assert!(bot.h.voice_user_speak(bob, Duration::from_millis(200)));
    assert!(next_update(&mut updates, bob).await.speaking);
}

async fn server_move_reconnects() {
    let bot = joined(TransportPreference::Aes256Gcm).await;
    let before = bot.sim.voice_endpoint();
    let after = bot.h.voice_move_server().expect("bot in voice");
    assert_ne!(before, after);
    let mut status = bot.rtc.watch_status();
    tokio::time::timeout(
        STEP,
        status.wait_for(|s| matches!(s, RtcStatus::Ready { endpoint, .. } if *endpoint == after)),
    )
    .await
    .expect("reconnected in time")
    .expect("client alive");
    assert_eq!(bot.rtc.counters().server_moves, 1);
    assert_eq!(bot.rtc.counters().connects, 2);
    bot.h
        .voice_wait_for(
            |s| s.counters.identifies == 2 && s.counters.active_connections == 1,
            STEP,
        )
        .await
        .expect("old connection closed, new one identified");
    cue_arrives(&bot, bot.seed.member_user_ids[1], Cue::TimerTick).await;
}

async fn disconnect_frees() {
    let bot = joined(TransportPreference::Aes256Gcm).await;
    bot.rtc.disconnect().await.expect("disconnect");
    assert_eq!(bot.rtc.status(), RtcStatus::Disconnected);
    let snap = bot
        .h
        .voice_wait_for(
            |s| s.counters.active_connections == 0 && s.sessions.is_empty(),
            STEP,
        )
        .await
        .expect("the simulator freed the voice connection");
    assert_eq!(snap.counters.connections, 1);
    // The bot left the channel in the world too (op 4 with no channel).
    let started = Instant::now();
    while bot.h.voice_channel_of(bot.seed.bot_user_id).is_some() {
        assert!(started.elapsed() < STEP, "bot still in voice");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        bot.rtc.play_cue(Cue::TimerTick).await,
        Err(RtcError::NotConnected)
    ));
    // And it can join again.
    bot.rtc
        .connect(snowflake(bot.seed.voice_channel_ids[1]))
        .await
        .expect("re-join");
}

async fn video_unsupported() {
    let bot = joined(TransportPreference::Aes256Gcm).await;
    let err = bot.rtc.send_video().expect_err("video is refused");
    assert!(matches!(err, RtcError::VideoUnsupported));
    assert_eq!(
        err.to_string(),
        "Discord does not allow bots to send or receive camera video"
    );
    assert!(matches!(
        bot.rtc
            .receive_video(snowflake(bot.seed.member_user_ids[0])),
        Err(RtcError::VideoUnsupported)
    ));
    assert_eq!(err.code(), "video_unsupported");
}

async fn connect_times_out() {
    let bot = start_bot(TransportPreference::Aes256Gcm, Duration::from_millis(300)).await;
    bot.gateway.swallow.store(true, Ordering::SeqCst);
    let err = bot
        .rtc
        .connect(snowflake(bot.seed.voice_channel_ids[0]))
        .await
        .expect_err("no voice server update arrives");
    assert!(
        matches!(err, RtcError::Timeout(d) if d == Duration::from_millis(300)),
        "{err}"
    );
    assert_eq!(bot.rtc.status(), RtcStatus::Disconnected);
}

async fn dave_end_to_end() {
    let config = coven_sim::SimConfig {
        voice_dave: true,
        ..coven_sim::SimConfig::default()
    };
    let bot = start_bot_with(config, TransportPreference::Aes256Gcm, STEP).await;
    let channel = bot.seed.voice_channel_ids[0];
    bot.rtc.connect(snowflake(channel)).await.expect("connect");
    let (alice, bob) = (bot.seed.member_user_ids[0], bot.seed.member_user_ids[1]);
    // songbird sent its key package, committed the simulator's Add proposals for alice and
    // bob, processed the announced commit and reported the transition ready.
    let snap = bot
        .h
        .voice_wait_for(
            |s| s.counters.dave_welcomed >= 2 && s.counters.dave_transitions_ready >= 1,
            STEP,
        )
        .await
        .unwrap_or_else(|_| panic!("DAVE group formed: {:?}", bot.h.voice_snapshot().counters));
    assert_eq!(snap.counters.dave_key_packages, 1);
    assert_eq!(snap.counters.dave_commits, 1);
    assert_eq!(snap.counters.dave_errors, 0);
    // Bot → users: every audio frame of the cue decrypts with alice's own DAVE session.
    bot.h.voice_reset_received(alice);
    bot.rtc.play_cue(Cue::TurnChime).await.expect("cue");
    let snap = bot
        .h
        .voice_wait_for(
            |s| {
                s.received
                    .get(&alice)
                    .is_some_and(|r| r.audio_frames >= 20 && r.silence_frames >= 5)
            },
            STEP,
        )
        .await
        .unwrap_or_else(|_| panic!("cue: {:?}", bot.h.voice_snapshot()));
    let got = &snap.received[&alice];
    assert_eq!(got.dave_frames, got.audio_frames, "{got:?}");
    assert_eq!(got.dave_failures, 0, "{got:?}");
    assert_eq!(bot.h.voice_received(bob).dave_failures, 0);
    // Users → bot: bob's frames are DAVE-encrypted by the simulator; songbird drops a
    // DAVE-marked frame it cannot decrypt, so frames counted here were decrypted by the bot.
    let mut updates = bot.rtc.speaking_updates();
    assert!(bot.h.voice_user_speak(bob, Duration::from_millis(300)));
    assert!(next_update(&mut updates, bob).await.speaking);
    assert!(!next_update(&mut updates, bob).await.speaking);
    let heard = bot.rtc.received_audio()[&snowflake(bob)];
    assert!(heard.frames >= 15, "{heard:?}");
    // …and the simulator sent them end to end encrypted, never transport-only.
    let c = bot.h.voice_snapshot().counters;
    assert!(c.rtp_sent_e2ee >= 15, "{c:?}");
    assert_eq!(
        (c.rtp_sent_transport_only, c.speaker_e2ee_failures),
        (0, 0),
        "{c:?}"
    );
    // A user joining later is proposed at the group's epoch; the bot commits again, alice and
    // bob apply the commit, carol joins by the welcome, and all three decrypt the next cue.
    let carol = bot.seed.member_user_ids[2];
    bot.h.user_join(carol, channel).expect("carol joins");
    bot.h
        .voice_wait_for(
            |s| s.counters.dave_welcomed >= 3 && s.counters.dave_transitions_ready >= 2,
            STEP,
        )
        .await
        .unwrap_or_else(|_| panic!("carol in the group: {:?}", bot.h.voice_snapshot().counters));
    assert_eq!(bot.h.voice_snapshot().counters.dave_errors, 0);
    for user in [alice, bob, carol] {
        bot.h.voice_reset_received(user);
    }
    bot.rtc.play_cue(Cue::TimerEnd).await.expect("cue");
    let snap = bot
        .h
        .voice_wait_for(
            |s| {
                [alice, bob, carol].iter().all(|u| {
                    s.received
                        .get(u)
                        .is_some_and(|r| r.audio_frames >= 30 && r.silence_frames >= 5)
                })
            },
            STEP,
        )
        .await
        .unwrap_or_else(|_| panic!("cue after carol joined: {:?}", bot.h.voice_snapshot()));
    for user in [alice, bob, carol] {
        let got = &snap.received[&user];
        assert_eq!(got.dave_frames, got.audio_frames, "{user}: {got:?}");
        assert_eq!(got.dave_failures, 0, "{user}: {got:?}");
    }
}

/// DAVE in the common order: the bot joins an empty room (its group is pending), two players
/// join one after the other, then one leaves; at every step audio is end-to-end encrypted
/// both ways and decrypted by the other side's own DAVE session.
async fn dave_bot_first() {
    let config = coven_sim::SimConfig {
        voice_dave: true,
        ..coven_sim::SimConfig::default()
    };
    let bot = start_bot_with(config, TransportPreference::Aes256Gcm, STEP).await;
    let channel = bot.seed.voice_channel_ids[1]; // nobody there
    bot.rtc.connect(snowflake(channel)).await.expect("connect");
    let (carol, dave) = (bot.seed.member_user_ids[2], bot.seed.member_user_ids[3]);
    wait_dave(&bot, "key package of a bot alone", |c| {
        c.dave_key_packages == 1
    })
    .await;
    bot.h.user_join(carol, channel).expect("carol joins");
    wait_dave(&bot, "carol in the group", |c| {
        c.dave_welcomed == 1 && c.dave_transitions_ready == 1
    })
    .await;
    exchange_e2ee(&bot, &[carol]).await;
    bot.h.user_join(dave, channel).expect("dave joins");
    wait_dave(&bot, "dave in the group", |c| {
        c.dave_welcomed == 2 && c.dave_transitions_ready == 2
    })
    .await;
    exchange_e2ee(&bot, &[carol, dave]).await;
    bot.h.user_leave(carol).expect("carol leaves");
    wait_dave(&bot, "carol removed", |c| {
        c.dave_removals == 1 && c.dave_transitions_ready == 3
    })
    .await;
    exchange_e2ee(&bot, &[dave]).await;
    let c = bot.h.voice_snapshot().counters;
    assert_eq!(
        (
            c.dave_errors,
            c.rtp_sent_transport_only,
            c.speaker_e2ee_failures
        ),
        (0, 0, 0),
        "{c:?}"
    );
}

async fn wait_dave(bot: &Bot, what: &str, cond: impl Fn(&coven_sim::voice::VoiceCounters) -> bool) {
    let waited = bot.h.voice_wait_for(|s| cond(&s.counters), STEP).await;
    assert!(
        waited.is_ok(),
        "{what}: {:?}",
        bot.h.voice_snapshot().counters
    );
}

/// A cue from the bot decrypted end to end by every user of `users`, then each user speaks and
/// the bot hears it (songbird drops a DAVE frame it cannot decrypt).
async fn exchange_e2ee(bot: &Bot, users: &[u64]) {
    for user in users {
        bot.h.voice_reset_received(*user);
    }
    bot.rtc.play_cue(Cue::TurnChime).await.expect("cue");
    let snap = bot
        .h
        .voice_wait_for(
            |s| {
                users.iter().all(|u| {
                    s.received
                        .get(u)
                        .is_some_and(|r| r.audio_frames >= 20 && r.silence_frames >= 5)
                })
            },
            STEP,
        )
        .await
        .unwrap_or_else(|_| panic!("cue: {:?}", bot.h.voice_snapshot()));
    for user in users {
        let got = &snap.received[user];
        assert_eq!(got.dave_frames, got.audio_frames, "{user}: {got:?}");
        assert_eq!(got.e2ee_frames, got.audio_frames, "{user}: {got:?}");
        assert_eq!(got.transport_only_frames, 0, "{user}: {got:?}");
    }
    let mut updates = bot.rtc.speaking_updates();
    for user in users {
        let before = bot
            .rtc
            .received_audio()
            .get(&snowflake(*user))
            .map_or(0, |r| r.frames);
        assert!(bot.h.voice_user_speak(*user, Duration::from_millis(300)));
        assert!(next_update(&mut updates, *user).await.speaking);
        assert!(!next_update(&mut updates, *user).await.speaking);
        let heard = bot.rtc.received_audio()[&snowflake(*user)].frames - before;
        assert!(heard >= 15, "{user}: the bot decrypted {heard} frames");
    }
}
