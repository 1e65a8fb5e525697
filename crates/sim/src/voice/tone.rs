//! A simulated user's voice as a pure sine tone, really Opus-encoded (libopus through `opus2`,
//! the encoder songbird itself uses): 48 kHz mono, one 960-sample (20 ms) frame at a time.
//! Tests that receive decoded audio (docs/spec.md §9, "receive audio per user") can then check
//! who said what by the tone's frequency (see `docs/simulator.md`, "Voice").

use std::f64::consts::TAU;

use opus2::{Application, Bitrate, Channels, Encoder};

/// Samples per second of the tone (Discord's Opus rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame.
const FRAME: usize = 960;
/// Peak amplitude: about −10 dBFS, loud and far from clipping.
const AMPLITUDE: f64 = 10_000.0;
/// Lowest and highest tone a user may speak (Hz): audible, below Nyquist with a margin.
pub const TONE_RANGE_HZ: std::ops::RangeInclusive<u32> = 50..=16_000;

/// Why a tone could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ToneError {
    /// The frequency is outside [`TONE_RANGE_HZ`].
    #[error("tone frequency must be 50..=16000 Hz, got {0}")]
    Frequency(u32),
    /// libopus refused to build the encoder or to encode a frame.
    #[error("opus: {0}")]
    Opus(#[from] opus2::Error),
}

/// Encodes consecutive 20 ms frames of one continuous sine (phase carries across frames).
pub(crate) struct ToneEncoder {
    encoder: Encoder,
    hz: f64,
    /// Samples produced so far (the sine's time axis).
    position: u64,
    pcm: Vec<i16>,
    out: Vec<u8>,
}

impl ToneEncoder {
    /// An encoder for a `hz` tone (`Application::Audio`: the codec keeps the waveform rather
    /// than shaping it for speech; 64 kb/s, ample for a sine).
    pub fn new(hz: u32) -> Result<Self, ToneError> {
        if !TONE_RANGE_HZ.contains(&hz) {
            return Err(ToneError::Frequency(hz));
        }
        let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Audio)?;
        encoder.set_bitrate(Bitrate::Bits(64_000))?;
        Ok(Self {
            encoder,
            hz: f64::from(hz),
            position: 0,
            pcm: vec![0; FRAME],
            out: vec![0; 1500],
        })
    }

    /// The next 20 ms Opus frame of the tone.
    pub fn next_frame(&mut self) -> Result<Vec<u8>, ToneError> {
        for sample in &mut self.pcm {
            #[allow(clippy::cast_precision_loss)]
            let t = self.position as f64 / f64::from(SAMPLE_RATE);
            #[allow(clippy::cast_possible_truncation)]
            let value = (AMPLITUDE * (TAU * self.hz * t).sin()).round() as i16;
            *sample = value;
            self.position += 1;
        }
        let len = self.encoder.encode(&self.pcm, &mut self.out)?;
        Ok(self.out[..len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_back_to_the_tone() {
        let mut tone = ToneEncoder::new(440).expect("encoder");
        let mut decoder = opus2::Decoder::new(SAMPLE_RATE, Channels::Mono).expect("decoder");
        let mut pcm = vec![0i16; FRAME];
        let mut energy = 0.0;
        for _ in 0..10 {
            let frame = tone.next_frame().expect("frame");
            assert!(!frame.is_empty() && frame.len() < 400, "{}", frame.len());
            let n = decoder.decode(&frame, &mut pcm, false).expect("decode");
            assert_eq!(n, FRAME);
            energy = pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
        }
        // A steady tone, not silence: RMS near amplitude/√2.
        #[allow(clippy::cast_precision_loss)]
        let rms = (energy / FRAME as f64).sqrt();
        assert!((5_000.0..9_000.0).contains(&rms), "rms {rms}");
    }

    #[test]
    fn out_of_range_frequencies_are_refused() {
        assert!(matches!(ToneEncoder::new(0), Err(ToneError::Frequency(0))));
        assert!(matches!(
            ToneEncoder::new(30_000),
            Err(ToneError::Frequency(30_000))
        ));
    }
}
