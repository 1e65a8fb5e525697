//! The sound of the audio cues the bot can play into a room: short tones synthesised at
//! 48 kHz stereo, which songbird's mixer encodes into 20 ms Opus frames.
//!
//! Which cues exist, their names and lengths are the contract's ([`Cue`], re-exported
//! here): the hub checks names against it and the worker maps names to it, so this
//! file only says how each one sounds.

use std::f32::consts::TAU;
use std::io::Cursor;

pub use coven_contract::Cue;
use songbird::input::{Input, RawAdapter};

/// Sample rate of every cue (Discord's Opus rate).
pub const CUE_SAMPLE_RATE: u32 = 48_000;

/// The sound of each cue: what songbird plays for a contract [`Cue`].
pub(crate) trait CueSound {
    /// The cue as mono samples in [-1, 1] at 48 kHz, [`Cue::duration`] long.
    fn samples(self) -> Vec<f32>;

    /// The cue as a songbird input: interleaved stereo `f32` PCM at 48 kHz.
    fn input(self) -> Input;
}

impl CueSound for Cue {
    fn samples(self) -> Vec<f32> {
        #[allow(clippy::cast_precision_loss)]
        let tone = |freq: f32, ms: u32, gain: f32| -> Vec<f32> {
            let n = CUE_SAMPLE_RATE / 1000 * ms;
            (0..n)
                .map(|i| {
                    let t = i as f32 / CUE_SAMPLE_RATE as f32;
                    let progress = i as f32 / n as f32;
                    // 5 ms attack, exponential-ish decay: no clicks.
                    let attack = (t / 0.005).min(1.0);
                    gain * attack * (1.0 - progress).powi(2) * (TAU * freq * t).sin()
                })
                .collect()
        };
        let silence = |ms: u32| vec![0.0; (CUE_SAMPLE_RATE / 1000 * ms) as usize];
        match self {
            Self::TurnChime => [tone(880.0, 200, 0.5), tone(1318.5, 200, 0.5)].concat(),
            Self::TimerTick => tone(1000.0, 100, 0.5),
            Self::TimerEnd => [
                tone(660.0, 150, 0.5),
                silence(50),
                tone(660.0, 150, 0.5),
                silence(50),
                tone(660.0, 200, 0.5),
            ]
            .concat(),
        }
    }

    fn input(self) -> Input {
        let samples = self.samples();
        let mut bytes = Vec::with_capacity(samples.len() * 8);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        RawAdapter::new(Cursor::new(bytes), CUE_SAMPLE_RATE, 2).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_have_their_length_and_stay_in_range() {
        for cue in Cue::ALL {
            let samples = cue.samples();
            let expected = cue.duration().as_millis() as usize * 48;
            assert_eq!(samples.len(), expected, "{cue:?}");
            assert!(samples.iter().all(|s| s.abs() <= 1.0));
            assert!(samples.iter().any(|s| s.abs() > 0.1));
            assert_eq!(Cue::from_name(cue.name()), Some(cue));
        }
        assert_eq!(Cue::from_name("air_horn"), None);
    }
}
