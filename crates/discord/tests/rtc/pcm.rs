//! Received audio decoded per user (docs/spec.md §9): two simulated users speak at once, alice
//! a 440 Hz and bob a 660 Hz sine (really Opus-encoded by the simulator), and each user's PCM
//! stream carries that user's tone and not the other's — with DAVE end-to-end encryption
//! (what Discord requires) and without. A client built without decoding refuses to give PCM.

use std::time::Duration;

use coven_discord::{
    PCM_FRAME_SAMPLES, PCM_SAMPLE_RATE, PcmSettings, RtcError, RtcSettings, TransportPreference,
    UserPcm,
};

use crate::support::{snowflake, start_bot, start_bot_settings};

const STEP: Duration = Duration::from_secs(10);
/// Frames skipped at the start of a stream (the encoder's and decoder's onset).
const SKIP: usize = 3;
/// Frames analysed: 0.4 s, a 2.5 Hz DFT resolution.
const ANALYSED: usize = 20;

/// Power of `samples` at `hz` (Goertzel).
fn power_at(samples: &[f64], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / f64::from(PCM_SAMPLE_RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The share of the signal's energy in the `hz` tone: about 1 for a clean sine on a bin.
fn purity(samples: &[f64], hz: f64) -> f64 {
    let energy: f64 = samples.iter().map(|x| x * x).sum();
    #[allow(clippy::cast_precision_loss)]
    let n = samples.len() as f64;
    2.0 * power_at(samples, hz) / (n * energy.max(1.0))
}

/// The strongest frequency between 100 Hz and 4 kHz: a 10 Hz scan, then 0.5 Hz around the peak.
fn dominant_hz(samples: &[f64]) -> f64 {
    let best = |candidates: &mut dyn Iterator<Item = f64>| {
        candidates
            .map(|hz| (hz, power_at(samples, hz)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0.0, |(hz, _)| hz)
    };
    let coarse = best(&mut (10..=400).map(|i| f64::from(i) * 10.0));
    best(&mut (-40..=40).map(|i| coarse + f64::from(i) * 0.5))
}

/// The next `SKIP + ANALYSED` frames of `stream`, checked, as samples past the onset.
async fn tone_of(stream: &mut UserPcm) -> Vec<f64> {
    let mut samples = Vec::new();
    for n in 0..SKIP + ANALYSED {
        let frame = tokio::time::timeout(STEP, stream.recv())
            .await
            .unwrap_or_else(|_| panic!("frame {n} of {} in time", stream.user_id()))
            .expect("stream open while the user is in the channel");
        assert_eq!(frame.user_id, stream.user_id());
        assert_eq!(frame.index, n as u64, "no frame dropped");
        assert_eq!(frame.samples.len(), PCM_FRAME_SAMPLES);
        if n >= SKIP {
            samples.extend(frame.samples.iter().map(|s| f64::from(*s)));
        }
    }
    samples
}

/// alice speaks 440 Hz, bob 660 Hz, together; each stream is its speaker's tone.
pub async fn each_user_hears_their_own_tone(dave: bool) {
    let config = coven_sim::SimConfig {
        voice_dave: dave,
        ..coven_sim::SimConfig::default()
    };
    let settings = RtcSettings {
        connect_timeout: STEP,
        transport: TransportPreference::Aes256Gcm,
        pcm: Some(PcmSettings { queue_frames: 100 }),
    };
    let bot = start_bot_settings(config, settings).await;
    bot.rtc
        .connect(snowflake(bot.seed.voice_channel_ids[0]))
        .await
        .expect("connect");
    if dave {
        // Users' frames are DAVE-encrypted once the group exists; wait for it to form.
        bot.h
            .voice_wait_for(
                |s| s.counters.dave_welcomed >= 2 && s.counters.dave_transitions_ready >= 1,
                STEP,
            )
            .await
            .unwrap_or_else(|_| panic!("DAVE group: {:?}", bot.h.voice_snapshot().counters));
    }
    let mut audio = bot.rtc.pcm_audio().expect("decoding is on");
    let (alice, bob) = (bot.seed.member_user_ids[0], bot.seed.member_user_ids[1]);
    let speech = Duration::from_millis(800);
    assert!(
        bot.h
            .voice_user_speak_tone(alice, speech, 440)
            .expect("tone")
    );
    assert!(bot.h.voice_user_speak_tone(bob, speech, 660).expect("tone"));
    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = tokio::time::timeout(STEP, audio.next_user())
            .await
            .expect("a speaking user's stream in time")
            .expect("client alive");
        streams.push(stream);
    }
    streams.sort_by_key(|s| usize::from(s.user_id() != snowflake(alice)));
    assert_eq!(streams[0].user_id(), snowflake(alice));
    assert_eq!(streams[1].user_id(), snowflake(bob));
    for (stream, own, other) in streams
        .iter_mut()
        .zip([(440.0, 660.0), (660.0, 440.0)])
        .map(|(s, (a, b))| (s, a, b))
    {
        let samples = tone_of(stream).await;
        let hz = dominant_hz(&samples);
        let (p_own, p_other) = (power_at(&samples, own), power_at(&samples, other));
        let clean = purity(&samples, own);
        println!(
            "  {} heard at {hz:.1} Hz (want {own}); {:.1} % of the energy in the tone; own/other tone power {:.0}",
            stream.user_id(),
            clean * 100.0,
            p_own / p_other.max(1.0)
        );
        assert!(
            (hz - own).abs() <= 3.0,
            "{}: {hz} Hz, want {own}",
            stream.user_id()
        );
        assert!(clean > 0.9, "{}: a noisy tone ({clean})", stream.user_id());
        assert!(
            p_own > 1000.0 * p_other,
            "{}: the other user's tone leaks in",
            stream.user_id()
        );
        assert_eq!(stream.dropped(), 0);
    }
    assert!(audio.try_next_user().is_none(), "one stream per user");
    // Leaving the channel ends the streams.
    bot.rtc.disconnect().await.expect("disconnect");
    for stream in &mut streams {
        let end = tokio::time::timeout(STEP, async { while stream.recv().await.is_some() {} });
        end.await.expect("stream ends after leaving");
    }
}

/// Without `RtcSettings::pcm` there is no decoding and no PCM to subscribe to.
pub async fn pcm_is_opt_in() {
    let bot = start_bot(TransportPreference::Aes256Gcm, STEP).await;
    let err = bot.rtc.pcm_audio().expect_err("decoding is off by default");
    assert!(matches!(err, RtcError::PcmDisabled));
    assert_eq!(err.code(), "pcm_disabled");
}
