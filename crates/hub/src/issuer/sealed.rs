//! Sealing the own issuer's key set before it goes to Redis (docs/security.md, "Keys and
//! JWKS"), so that reading Redis alone does not let anyone mint tokens.
//!
//! The key is derived from `HUB_SECRET` with HKDF-SHA256 and the set is encrypted with
//! XChaCha20-Poly1305 (a random 24-byte nonce per write), bound to the Redis key it is
//! stored under (associated data). With several secrets (rotation, docs/spec.md §3) the
//! FIRST one seals and every one opens, so hubs half-way through a rotation still read
//! the set; a set opened with a later secret, or still stored in plaintext by an older
//! hub, is reported [`Opened::stale`] so that the caller rewrites it sealed with the
//! first secret. Each envelope names the secret it was sealed with by a fingerprint (a
//! separate HKDF output, not the secret), so a hub without that secret says so plainly.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use coven_contract::Secret;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The HKDF salt: fixed, naming the purpose (the secret is the only input that varies).
const SALT: &[u8] = b"spell-coven hub issuer keys";
/// HKDF `info` of the encryption key.
const KEY_INFO: &[u8] = b"jwt-keys v1 xchacha20poly1305 key";
/// HKDF `info` of the fingerprint naming the secret in the envelope.
const FINGERPRINT_INFO: &[u8] = b"jwt-keys v1 secret fingerprint";
/// The envelope's `sealed` value.
const ALGORITHM: &str = "hkdf-sha256+xchacha20poly1305";

/// What is stored in Redis instead of the key set.
#[derive(Serialize, Deserialize)]
struct Envelope {
    sealed: String,
    /// Which `HUB_SECRET` sealed it (a fingerprint, not the secret).
    secret: String,
    nonce: String,
    data: String,
}

/// Why a stored value could not be opened. The messages never include the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SealError {
    /// This hub has no `HUB_SECRET` to derive the key from.
    #[error("no HUB_SECRET to seal the issuer's keys with")]
    NoSecret,
    /// Sealed with a secret this hub does not have.
    #[error(
        "the issuer's keys in Redis are sealed with a HUB_SECRET this hub does not have \
         (check HUB_SECRET on every hub)"
    )]
    UnknownSecret,
    /// The fingerprint matches but the data does not decrypt (tampered or truncated).
    #[error("the issuer's keys in Redis do not decrypt: tampered with or corrupted")]
    Corrupt,
    /// Neither an envelope nor a plaintext key set.
    #[error("the issuer's keys in Redis are in an unknown format")]
    Unknown,
}

/// A stored value, opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    /// The key set's JSON.
    pub(crate) plaintext: Vec<u8>,
    /// Stored in plaintext, or sealed with another secret than the first: rewrite it.
    pub(crate) stale: bool,
}

/// One secret's derived key and fingerprint.
struct Derived {
    cipher: XChaCha20Poly1305,
    fingerprint: String,
}

/// Seals with the first `HUB_SECRET`, opens with any.
pub(crate) struct Sealer {
    keys: Vec<Derived>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("secrets", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// The sealer for `secrets`, first one sealing.
    pub(crate) fn new(secrets: &[Secret]) -> Self {
        let keys = secrets
            .iter()
            .map(|secret| {
                let hkdf = Hkdf::<Sha256>::new(Some(SALT), secret.expose().as_bytes());
                let mut key = [0u8; 32];
                let mut fingerprint = [0u8; 9];
                // Both lengths are far below HKDF-SHA256's 8 160-byte limit.
                hkdf.expand(KEY_INFO, &mut key)
                    .and_then(|()| hkdf.expand(FINGERPRINT_INFO, &mut fingerprint))
                    .expect("HKDF output lengths are valid");
                Derived {
                    cipher: XChaCha20Poly1305::new(&key.into()),
                    fingerprint: URL_SAFE_NO_PAD.encode(fingerprint),
                }
            })
            .collect();
        Self { keys }
    }

    /// `plaintext` sealed with the first secret, bound to `context` (the Redis key).
    pub(crate) fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError::NoSecret)?;
        let nonce: [u8; 24] = rand::random();
        let data = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        serde_json::to_string(&Envelope {
            sealed: ALGORITHM.into(),
            secret: key.fingerprint.clone(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            data: URL_SAFE_NO_PAD.encode(data),
        })
        .map_err(|_| SealError::Unknown)
    }

    /// Opens a value read from `context`: an envelope sealed with any of the secrets,
    /// or a plaintext key set (`{"keys": …}`, written by hubs before sealing existed).
    pub(crate) fn open(&self, stored: &str, context: &str) -> Result<Opened, SealError> {
        let value: serde_json::Value =
            serde_json::from_str(stored).map_err(|_| SealError::Unknown)?;
        if value.get("keys").is_some() {
            return Ok(Opened {
                plaintext: stored.as_bytes().to_vec(),
                stale: true,
            });
        }
        let envelope: Envelope = serde_json::from_value(value).map_err(|_| SealError::Unknown)?;
        if envelope.sealed != ALGORITHM {
            return Err(SealError::Unknown);
        }
        if self.keys.is_empty() {
            return Err(SealError::NoSecret);
        }
        let (index, key) = self
            .keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.fingerprint == envelope.secret)
            .ok_or(SealError::UnknownSecret)?;
        let nonce: [u8; 24] = URL_SAFE_NO_PAD
            .decode(&envelope.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SealError::Corrupt)?;
        let data = URL_SAFE_NO_PAD
            .decode(&envelope.data)
            .map_err(|_| SealError::Corrupt)?;
        let plaintext = key
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &data,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        Ok(Opened {
            plaintext,
            stale: index > 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(secrets: &[&str]) -> Sealer {
        Sealer::new(&secrets.iter().map(|s| Secret::new(*s)).collect::<Vec<_>>())
    }

    const SET: &[u8] = br#"{"keys":[{"kid":"k","alg":"EdDSA","d":"c2VlZA","created":1}]}"#;

    #[test]
    fn seals_with_the_first_secret_and_opens_with_any() {
        let old = sealer(&["old"]);
        let sealed = old.seal(SET, "coven:{1}:hub:jwt-keys").unwrap();
        assert!(!sealed.contains("c2VlZA") && !sealed.contains("\"keys\""));
        let opened = old.open(&sealed, "coven:{1}:hub:jwt-keys").unwrap();
        assert_eq!(opened.plaintext, SET);
        assert!(!opened.stale);
        // Mid-rotation: the new secret first, the old one still listed.
        let rotating = sealer(&["new", "old"]);
        let opened = rotating.open(&sealed, "coven:{1}:hub:jwt-keys").unwrap();
        assert_eq!(opened.plaintext, SET);
        assert!(opened.stale, "sealed with a later secret: rewrite it");
        let resealed = rotating.seal(SET, "coven:{1}:hub:jwt-keys").unwrap();
        assert!(
            !sealer(&["new"])
                .open(&resealed, "coven:{1}:hub:jwt-keys")
                .unwrap()
                .stale
        );
    }

    #[test]
    fn refuses_another_secret_another_key_and_tampering() {
        let sealed = sealer(&["one"])
            .seal(SET, "coven:{1}:hub:jwt-keys")
            .unwrap();
        assert_eq!(
            sealer(&["two"]).open(&sealed, "coven:{1}:hub:jwt-keys"),
            Err(SealError::UnknownSecret)
        );
        assert_eq!(
            sealer(&["one"]).open(&sealed, "coven:{2}:hub:jwt-keys"),
            Err(SealError::Corrupt),
            "bound to the Redis key it was written under"
        );
        let mut envelope: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        envelope["data"] = URL_SAFE_NO_PAD.encode(b"not the data").into();
        assert_eq!(
            sealer(&["one"]).open(&envelope.to_string(), "coven:{1}:hub:jwt-keys"),
            Err(SealError::Corrupt)
        );
        assert_eq!(
            sealer(&["one"]).open("garbage", "k"),
            Err(SealError::Unknown)
        );
        assert_eq!(sealer(&[]).seal(SET, "k"), Err(SealError::NoSecret));
    }

    #[test]
    fn a_plaintext_set_opens_as_stale() {
        let opened = sealer(&["one"])
            .open(std::str::from_utf8(SET).unwrap(), "k")
            .unwrap();
        assert_eq!(opened.plaintext, SET);
        assert!(opened.stale);
    }
}
