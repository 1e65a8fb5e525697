//! RTC benchmark against the simulator's voice server (loopback): time from `connect` to a
//! ready voice connection (op 4 → `VOICE_STATE_UPDATE` / `VOICE_SERVER_UPDATE` → TLS voice gateway handshake →
//! IP discovery → `SESSION_DESCRIPTION`), and cue latency from `play_cue` to the first frame a
//! simulated listener decrypts. Prints p50/p99/max. `cargo bench -p coven-discord --bench rtc`.
//! It lives beside the RTC tests (`tests/rtc/`) so both reach `support.rs` with a plain `mod`.

mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use coven_discord::{Cue, TransportPreference};
use support::{snowflake, start_bot_with};

const CONNECTS: usize = 20;
const CUES: usize = 40;
const STEP: Duration = Duration::from_secs(10);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<44} n={:<3} p50={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() -> ExitCode {
    if let Some(code) = support::reexec_with_test_ca() {
        return code;
    }
    // `cargo test --benches` runs benches in test mode: keep it short there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for (transport, dave) in [
            (TransportPreference::Aes256Gcm, false),
            (TransportPreference::XChaCha20Poly1305, false),
            (TransportPreference::Aes256Gcm, true),
        ] {
            let config = coven_sim::SimConfig {
                voice_dave: dave,
                ..coven_sim::SimConfig::default()
            };
            let label = format!("{transport:?}{}", if dave { " + DAVE" } else { "" });
            let bot = start_bot_with(config, transport, STEP).await;
            let channels = [bot.seed.voice_channel_ids[0], bot.seed.voice_channel_ids[1]];
            let (connects, cues) = if quick { (2, 2) } else { (CONNECTS, CUES) };

            let mut connect_times = Vec::new();
            for i in 0..connects {
                let started = Instant::now();
                bot.rtc
                    .connect(snowflake(channels[i % 2]))
                    .await
                    .expect("connect");
                connect_times.push(started.elapsed());
                bot.rtc.disconnect().await.expect("disconnect");
                bot.h
                    .voice_wait_for(|s| s.counters.active_connections == 0, STEP)
                    .await
                    .expect("voice connection freed");
            }
            report(&format!("connect → ready ({label})"), connect_times);

            // Channel 0 has alice and bob: with DAVE they join the bot's group on connect.
            let before = bot.h.voice_snapshot().counters.dave_transitions_ready;
            bot.rtc
                .connect(snowflake(channels[0]))
                .await
                .expect("connect");
            if dave {
                bot.h
                    .voice_wait_for(|s| s.counters.dave_transitions_ready > before, STEP)
                    .await
                    .expect("DAVE group formed");
            }
            let listener = bot.seed.member_user_ids[0];
            let mut latencies = Vec::new();
            for _ in 0..cues {
                bot.h.voice_reset_received(listener);
                let sent = Instant::now();
                bot.rtc.play_cue(Cue::TimerTick).await.expect("cue");
                let snap = bot
                    .h
                    .voice_wait_for(
                        |s| {
                            s.received
                                .get(&listener)
                                .is_some_and(|r| r.audio_frames >= 5 && r.silence_frames >= 5)
                        },
                        STEP,
                    )
                    .await
                    .expect("cue decrypted by the listener");
                let first = snap.received[&listener]
                    .first_audio_at
                    .expect("first frame");
                latencies.push(first.duration_since(sent));
            }
            if dave {
                let r = bot.h.voice_received(listener);
                assert_eq!(
                    r.dave_frames, r.audio_frames,
                    "every cue frame decrypted end to end"
                );
            }
            report(
                &format!("cue play → first decrypted frame ({label})"),
                latencies,
            );
            bot.rtc.disconnect().await.expect("disconnect");
        }
    });
    ExitCode::SUCCESS
}
