//! RTP transport encryption of Discord's voice UDP: the two `*_rtpsize` AEAD modes.
//!
//! Packet layout (both modes): the RTP header (12 bytes, CSRCs and — when the X bit is set —
//! the 4-byte extension header) is sent in clear and authenticated as AAD; everything after it
//! (extension body and Opus payload) is encrypted; then the 16-byte tag; then a 4-byte
//! big-endian counter, which is also the first 4 bytes of the otherwise zero nonce (12 bytes
//! for AES-256-GCM, 24 for XChaCha20-Poly1305).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::XChaCha20Poly1305;

/// `aead_aes256_gcm_rtpsize`.
pub const MODE_AES256_GCM: &str = "aead_aes256_gcm_rtpsize";
/// `aead_xchacha20_poly1305_rtpsize`.
pub const MODE_XCHACHA20: &str = "aead_xchacha20_poly1305_rtpsize";

const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 4;

/// A transport encryption mode this simulator offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportMode {
    /// `aead_aes256_gcm_rtpsize`.
    Aes256Gcm,
    /// `aead_xchacha20_poly1305_rtpsize`.
    XChaCha20Poly1305,
}

impl TransportMode {
    /// Parses Discord's mode name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            MODE_AES256_GCM => Some(Self::Aes256Gcm),
            MODE_XCHACHA20 => Some(Self::XChaCha20Poly1305),
            _ => None,
        }
    }

    /// Discord's mode name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => MODE_AES256_GCM,
            Self::XChaCha20Poly1305 => MODE_XCHACHA20,
        }
    }
}

/// Length of the clear RTP header (with CSRCs and the extension header when present).
fn clear_header_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(packet[0] & 0x0f);
    let mut len = 12 + 4 * csrcs;
    if packet[0] & 0x10 != 0 {
        len += 4;
    }
    (packet.len() >= len).then_some(len)
}

/// Encrypts `payload` behind the clear `header`, with the counter `nonce`.
///
/// # Panics
///
/// Never in practice: AEAD encryption fails only for inputs of gigabytes.
pub fn seal(
    mode: TransportMode,
    key: &[u8; 32],
    header: &[u8],
    payload: &[u8],
    nonce: u32,
) -> Vec<u8> {
    let mut body = payload.to_vec();
    let counter = nonce.to_be_bytes();
    let tag = match mode {
        TransportMode::Aes256Gcm => {
            let cipher = Aes256Gcm::new(key.into());
            let mut n = aes_gcm::Nonce::default();
            n[..NONCE_LEN].copy_from_slice(&counter);
            cipher
                .encrypt_in_place_detached(&n, header, &mut body)
                .map(|t| t.to_vec())
        }
        TransportMode::XChaCha20Poly1305 => {
            let cipher = XChaCha20Poly1305::new(key.into());
            let mut n = chacha20poly1305::XNonce::default();
            n[..NONCE_LEN].copy_from_slice(&counter);
            cipher
                .encrypt_in_place_detached(&n, header, &mut body)
                .map(|t| t.to_vec())
        }
    }
    .expect("AEAD encryption of a voice packet cannot fail");
    let mut out = Vec::with_capacity(header.len() + body.len() + TAG_LEN + NONCE_LEN);
    out.extend_from_slice(header);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&counter);
    out
}

/// A decrypted RTP packet.
#[derive(Debug)]
pub struct Opened {
    /// Synchronisation source.
    pub ssrc: u32,
    /// RTP sequence number (kept when the packet is forwarded).
    pub sequence: u16,
    /// RTP timestamp (kept when the packet is forwarded).
    pub timestamp: u32,
    /// The Opus payload (header extension body removed).
    pub payload: Vec<u8>,
}

/// Decrypts an RTP packet; `None` if it is malformed or fails authentication.
pub fn open(mode: TransportMode, key: &[u8; 32], packet: &[u8]) -> Option<Opened> {
    let header_len = clear_header_len(packet)?;
    if packet.len() < header_len + TAG_LEN + NONCE_LEN {
        return None;
    }
    let (header, rest) = packet.split_at(header_len);
    let (sealed, counter) = rest.split_at(rest.len() - NONCE_LEN);
    let (cipher_text, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut body = cipher_text.to_vec();
    let ok = match mode {
        TransportMode::Aes256Gcm => {
            let cipher = Aes256Gcm::new(key.into());
            let mut n = aes_gcm::Nonce::default();
            n[..NONCE_LEN].copy_from_slice(counter);
            cipher
                .decrypt_in_place_detached(&n, header, &mut body, aes_gcm::Tag::from_slice(tag))
                .is_ok()
        }
        TransportMode::XChaCha20Poly1305 => {
            let cipher = XChaCha20Poly1305::new(key.into());
            let mut n = chacha20poly1305::XNonce::default();
            n[..NONCE_LEN].copy_from_slice(counter);
            cipher
                .decrypt_in_place_detached(
                    &n,
                    header,
                    &mut body,
                    chacha20poly1305::Tag::from_slice(tag),
                )
                .is_ok()
        }
    };
    if !ok {
        return None;
    }
    // With the X bit, the (now decrypted) extension body comes first: its length in 32-bit
    // words is in the clear extension header's last two bytes.
    if packet[0] & 0x10 != 0 {
        let words = usize::from(u16::from_be_bytes([
            header[header_len - 2],
            header[header_len - 1],
        ]));
        if body.len() < words * 4 {
            return None;
        }
        body.drain(..words * 4);
    }
    Some(Opened {
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        sequence: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        payload: body,
    })
}

/// A plain 12-byte RTP header (version 2, payload type 120 = Opus, no extension).
pub fn rtp_header(sequence: u16, timestamp: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = 0x78;
    h[2..4].copy_from_slice(&sequence.to_be_bytes());
    h[4..8].copy_from_slice(&timestamp.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_round_trip_and_reject_tampering() {
        let key = [7u8; 32];
        for mode in [TransportMode::Aes256Gcm, TransportMode::XChaCha20Poly1305] {
            let header = rtp_header(9, 960, 42);
            let mut packet = seal(mode, &key, &header, b"opus!", 5);
            let opened = open(mode, &key, &packet).expect("opens");
            assert_eq!(
                (opened.ssrc, opened.sequence, opened.timestamp),
                (42, 9, 960)
            );
            assert_eq!(opened.payload, b"opus!");
            packet[3] ^= 1; // header is authenticated
            assert!(open(mode, &key, &packet).is_none());
        }
    }

    #[test]
    fn extension_body_is_stripped() {
        let key = [1u8; 32];
        let mut header = rtp_header(1, 2, 3).to_vec();
        header[0] |= 0x10;
        header.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01]);
        let packet = seal(
            TransportMode::Aes256Gcm,
            &key,
            &header,
            &[0x10, 0x20, 0x30, 0x40, 0xf8, 0xff, 0xfe],
            1,
        );
        let opened = open(TransportMode::Aes256Gcm, &key, &packet).expect("opens");
        assert_eq!(opened.payload, [0xf8, 0xff, 0xfe]);
    }
}
