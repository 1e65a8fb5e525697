//! RTC benchmark against the simulator's voice server (loopback): time from `connect` to a
//! ready voice connection (op 4 → `VOICE_STATE_UPDATE` / `VOICE_SERVER_UPDATE` → TLS voice gateway handshake →
//! IP discovery → `SESSION_DESCRIPTION`), and cue latency from `play_cue` to the first frame a
//! simulated listener decrypts. Prints p50/p99/max. Also the CPU cost of decoding received
//! audio (`RtcSettings::pcm`): 20 ms Opus frames decoded to 48 kHz mono per second on one
//! core, with the libopus songbird links. `cargo bench -p coven-discord --bench rtc`.
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

/// Stereo 64 kb/s Opus frames (what Discord clients send) of a voice-like signal: a 140 Hz
/// buzz with harmonics plus noise, amplitude-modulated like syllables.
fn voice_like_frames(count: usize) -> Vec<Vec<u8>> {
    use songbird::driver::opus::{Application, Bitrate, Channels, Encoder};
    let mut encoder = Encoder::new(48_000, Channels::Stereo, Application::Voip).expect("encoder");
    encoder.set_bitrate(Bitrate::Bits(64_000)).expect("bitrate");
    let mut noise = 0x2545_f491_u32;
    let mut t = 0u64;
    let mut pcm = vec![0i16; 2 * 960];
    let mut out = vec![0u8; 1500];
    (0..count)
        .map(|_| {
            for pair in pcm.chunks_exact_mut(2) {
                #[allow(clippy::cast_precision_loss)]
                let x = t as f64 / 48_000.0;
                let tau = std::f64::consts::TAU;
                let envelope = 0.5 + 0.5 * (tau * 4.0 * x).sin();
                let buzz: f64 = (1..=8)
                    .map(|h| (tau * 140.0 * f64::from(h) * x).sin() / f64::from(h))
                    .sum();
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let hiss = f64::from(noise % 2000) - 1000.0;
                #[allow(clippy::cast_possible_truncation)]
                let v = (envelope * (6000.0 * buzz + hiss)) as i16;
                pair[0] = v;
                pair[1] = v;
                t += 1;
            }
            let n = encoder.encode(&pcm, &mut out).expect("encode");
            out[..n].to_vec()
        })
        .collect()
}

/// Decodes `frames` to 48 kHz mono the way the client does (`rtc/decode.rs`) and prints
/// frames per second on one core (a speaking user sends 50 frames/s).
fn decode_cost(quick: bool) {
    use songbird::driver::opus::{Channels, Decoder};
    let frames = voice_like_frames(if quick { 100 } else { 1_000 });
    let mut decoder = Decoder::new(48_000, Channels::Mono).expect("decoder");
    let mut out = vec![0i16; 5_760];
    let rounds = if quick { 1 } else { 10 };
    let started = Instant::now();
    for _ in 0..rounds {
        for frame in &frames {
            let n = decoder.decode(frame, &mut out, false).expect("decode");
            assert_eq!(n, 960);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let per_second = (rounds * frames.len()) as f64 / elapsed;
    println!(
        "{:<44} {per_second:>8.0} frames/s on one core = {:.0} speaking users per core ({:.1} µs per frame)",
        "opus decode → 48 kHz mono (RtcSettings::pcm)",
        per_second / 50.0,
        1e6 / per_second
    );
}

fn main() -> ExitCode {
    if let Some(code) = support::reexec_with_test_ca() {
        return code;
    }
    // `cargo test --benches` runs benches in test mode: keep it short there.
    let quick = !std::env::args().any(|a| a == "--bench");
    decode_cost(quick);
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
