//! Opus → 48 kHz mono PCM for received audio (docs/spec.md §9), one libopus decoder per SSRC,
//! fed by songbird's 20 ms voice ticks (its jitter buffer orders packets and marks losses).
//!
//! Why not songbird's own `DecodeMode::Decode`: in songbird 0.6.1 it hands the Opus decoder
//! the packet body up to the transport tag only, so a DAVE frame's trailer (tag, nonce,
//! supplemental size, `0xFAFA` marker — still there after songbird decrypts the frame in
//! place) and any RTP padding are decoded as audio; with DAVE, which Discord requires, every
//! frame came out as noise (the `with_dave` PCM test shows it). Here the client keeps
//! songbird in `Decrypt` mode and decodes the exact Opus payload itself, with the same
//! libopus (`songbird::driver::opus`).

use std::collections::{HashMap, HashSet};

use songbird::driver::opus::{Channels, Decoder};
use songbird::events::context_data::{RtpData, VoiceData};
use songbird::packet::Packet;

use super::pcm::PCM_SAMPLE_RATE;

/// The DAVE frame marker (docs: the DAVE protocol's "magic marker").
const DAVE_MARKER: [u8; 2] = [0xfa, 0xfa];
/// The smallest DAVE trailer: 8-byte tag, 1-byte nonce, size byte, marker.
const DAVE_MIN_TRAILER: usize = 8 + 1 + 1 + 2;
/// Room for Opus's longest packet (120 ms) at 48 kHz mono.
const MAX_SAMPLES: usize = 5_760;

/// One decoded tick of one SSRC.
pub(crate) struct Decoded<'a> {
    /// Mono samples at 48 kHz.
    pub samples: &'a [i16],
    /// The packet was lost and this is libopus's concealment.
    pub concealed: bool,
}

/// Per-SSRC Opus decoders.
pub(crate) struct Decoders {
    by_ssrc: HashMap<u32, Decoder>,
    out: Vec<i16>,
}

impl Decoders {
    pub fn new() -> Self {
        Self {
            by_ssrc: HashMap::new(),
            out: vec![0; MAX_SAMPLES],
        }
    }

    /// Decodes `ssrc`'s tick: the packet's Opus payload, or concealment when it was lost.
    /// `None` when libopus refuses the packet (malformed; logged at debug level).
    pub fn decode(&mut self, ssrc: u32, data: &VoiceData) -> Option<Decoded<'_>> {
        let decoder = match self.by_ssrc.entry(ssrc) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Decoder::new(PCM_SAMPLE_RATE, Channels::Mono).ok()?)
            }
        };
        let (input, concealed) = match &data.packet {
            Some(rtp) => (opus_payload(rtp)?, false),
            None => (&[][..], true),
        };
        // A lost packet is concealed over one 20 ms tick.
        let room = if concealed {
            &mut self.out[..MAX_SAMPLES / 6]
        } else {
            &mut self.out[..]
        };
        match decoder.decode(input, room, false) {
            Ok(n) => Some(Decoded {
                samples: &self.out[..n],
                concealed,
            }),
            Err(e) => {
                tracing::debug!(ssrc, error = %e, "received Opus packet not decodable");
                None
            }
        }
    }

    /// Forgets the decoders of SSRCs no longer in the call.
    pub fn retain(&mut self, live: &HashSet<u32>) {
        self.by_ssrc.retain(|ssrc, _| live.contains(ssrc));
    }

    /// Forgets every decoder (the bot left or changed channel).
    pub fn clear(&mut self) {
        self.by_ssrc.clear();
    }
}

/// The Opus payload of a transport-decrypted (and, with DAVE, end-to-end-decrypted) packet
/// as songbird's voice tick holds it. `None` when the lengths do not add up.
fn opus_payload(rtp: &RtpData) -> Option<&[u8]> {
    let packet = rtp.rtp();
    let (padded, extended) = (packet.get_padding() != 0, packet.get_extension() != 0);
    let header = packet.packet().len() - packet.payload().len();
    // songbird 0.6.1 sets `payload_end_pad` of a tick's packet to the end index of the body
    // (the payload minus the transport nonce and tag), not to a count.
    let payload = rtp.packet.get(header..)?;
    let body = payload.get(rtp.payload_offset..rtp.payload_end_pad.min(payload.len()))?;
    opus_in_body(body, padded, extended)
}

/// The Opus frame in a decrypted RTP body: past the RTP header extension (`extended`),
/// without RTP padding (`padded`: its last byte is its length) and without a DAVE trailer.
fn opus_in_body(mut body: &[u8], padded: bool, extended: bool) -> Option<&[u8]> {
    if padded {
        let pad = usize::from(*body.last()?);
        body = body.get(..body.len().checked_sub(pad)?)?;
    }
    if extended {
        let words = usize::from(u16::from_be_bytes([*body.get(2)?, *body.get(3)?]));
        body = body.get(4 + 4 * words..)?;
    }
    Some(strip_dave_trailer(body))
}

/// The frame without its DAVE trailer, when it ends with one (songbird drops DAVE frames it
/// cannot decrypt, so a marked frame here was decrypted and only its trailer remains).
fn strip_dave_trailer(frame: &[u8]) -> &[u8] {
    let n = frame.len();
    if n <= DAVE_MIN_TRAILER || frame[n - 2..] != DAVE_MARKER {
        return frame;
    }
    let trailer = usize::from(frame[n - 3]);
    if trailer < DAVE_MIN_TRAILER || trailer >= n {
        return frame;
    }
    &frame[..n - trailer]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_padding_and_dave_trailer_are_removed() {
        let opus = [0xfc, 1, 2, 3, 4];
        // extension header (profile 0xBEDE, 1 word) + its word, the DAVE frame, 3 bytes of padding
        let mut body = vec![0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0];
        body.extend(opus);
        body.extend([9; 8]);
        body.extend([5, 12, 0xfa, 0xfa]);
        body.extend([0, 0, 3]);
        assert_eq!(opus_in_body(&body, true, true), Some(&opus[..]));
        assert_eq!(opus_in_body(&opus, false, false), Some(&opus[..]));
        // Lengths that do not add up are refused, not sliced out of bounds.
        assert_eq!(opus_in_body(&[0, 0, 9], true, false), None);
        assert_eq!(opus_in_body(&[0xbe, 0xde, 0, 9, 1], false, true), None);
        assert_eq!(opus_in_body(&[], true, false), None);
    }

    #[test]
    fn a_dave_trailer_is_stripped_and_plain_frames_are_kept() {
        let opus = [0xfc, 1, 2, 3, 4];
        let mut frame = opus.to_vec();
        // tag (8), nonce 0x05 (LEB128), size byte, marker
        frame.extend([9; 8]);
        frame.push(5);
        frame.push(12);
        frame.extend(DAVE_MARKER);
        assert_eq!(strip_dave_trailer(&frame), &opus);
        assert_eq!(strip_dave_trailer(&opus), &opus);
        // A marker whose size byte cannot be a trailer is left alone.
        let odd = [0xfc, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 200, 0xfa, 0xfa];
        assert_eq!(strip_dave_trailer(&odd), &odd);
    }
}
