//! PKCE (RFC 7636) for the OAuth2 authorization-code flow: a code verifier drawn from a
//! CSPRNG and its S256 challenge, `BASE64URL-NOPAD(SHA256(verifier))`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::error::DiscordError;

/// RFC 7636's unreserved characters, the only ones a verifier may contain.
const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
/// Length of generated verifiers: 64 characters of 66 symbols, about 387 bits.
const GENERATED_LEN: usize = 64;
/// Shortest verifier RFC 7636 allows.
pub const MIN_LEN: usize = 43;
/// Longest verifier RFC 7636 allows.
pub const MAX_LEN: usize = 128;

/// A PKCE code verifier. Its `Debug` output is redacted: it is a credential until the
/// code is exchanged.
#[derive(Clone, PartialEq, Eq)]
pub struct PkceVerifier(String);

impl PkceVerifier {
    /// A fresh verifier of 64 unreserved characters from the thread's CSPRNG
    /// (`rand::rng()`, a `ChaCha` generator seeded from the operating system).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let verifier = (0..GENERATED_LEN)
            .map(|_| char::from(UNRESERVED[rng.random_range(0..UNRESERVED.len())]))
            .collect();
        Self(verifier)
    }

    /// Wraps an existing verifier (e.g. one stored with the login's `state`); it must be
    /// 43–128 unreserved characters (`A–Z a–z 0–9 - . _ ~`).
    pub fn new(verifier: impl Into<String>) -> Result<Self, DiscordError> {
        let verifier = verifier.into();
        if !(MIN_LEN..=MAX_LEN).contains(&verifier.len()) {
            return Err(DiscordError::validation(
                "codeVerifier",
                "must be 43 to 128 characters",
            ));
        }
        if !verifier.bytes().all(|b| UNRESERVED.contains(&b)) {
            return Err(DiscordError::validation(
                "codeVerifier",
                "must contain only A-Z a-z 0-9 - . _ ~",
            ));
        }
        Ok(Self(verifier))
    }

    /// The verifier's value, for the token request and for storing it with the login.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The S256 code challenge: `BASE64URL-NOPAD(SHA256(ASCII(verifier)))`.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B: the verifier and challenge of the RFC's worked example.
    #[test]
    fn matches_rfc_7636_appendix_b() {
        let verifier = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_and_distinct() {
        let a = PkceVerifier::generate();
        let b = PkceVerifier::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), GENERATED_LEN);
        assert!(PkceVerifier::new(a.expose()).is_ok());
        assert_eq!(a.challenge().len(), 43);
    }

    #[test]
    fn rejects_bad_verifiers() {
        assert!(PkceVerifier::new("a".repeat(42)).is_err());
        assert!(PkceVerifier::new("a".repeat(43)).is_ok());
        assert!(PkceVerifier::new("a".repeat(128)).is_ok());
        assert!(PkceVerifier::new("a".repeat(129)).is_err());
        assert!(PkceVerifier::new(format!("{}+", "a".repeat(43))).is_err());
        assert!(PkceVerifier::new(format!("{}é", "a".repeat(43))).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let v = PkceVerifier::generate();
        assert!(!format!("{v:?}").contains(v.expose()));
    }
}
