//! `auth.ok`'s `iceServers` (docs/spec.md §12): the STUN/TURN URLs of `TURN_URLS`
//! and, for TURN, credentials minted per user from `TURN_SECRET` with the TURN
//! REST API scheme that coturn's `use-auth-secret` checks: user name
//! `<unix expiry>:<user id>`, credential base64(HMAC-SHA1(secret, user name)).
//!
//! Why this scheme: the hub and the TURN server share one secret and nothing
//! else; a credential is valid for its user until its expiry, needs no storage,
//! and a leaked one dies within the hour. The secret itself never leaves the hub.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use coven_contract::{IceServer, Secret};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// What the hub hands browsers for `RTCPeerConnection`.
#[derive(Debug, Clone, Default)]
pub struct IceSettings {
    /// `TURN_URLS`: `stun:`, `turn:` and `turns:` URLs (empty: no STUN, no TURN;
    /// host candidates only, which suffice on one machine or a LAN).
    pub urls: Vec<String>,
    /// `TURN_SECRET`: coturn's `static-auth-secret`; required when a TURN URL is set.
    pub secret: Option<Secret>,
    /// How long a minted credential is valid (1 h).
    pub ttl: Duration,
}

impl IceSettings {
    /// No ICE servers.
    pub fn none() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            ttl: Duration::from_secs(3600),
        }
    }

    /// The `iceServers` for `user` now: one entry with the STUN URLs, one with the
    /// TURN URLs and credentials valid for [`Self::ttl`]. TURN URLs without a
    /// secret are left out (they could not authenticate).
    pub fn ice_servers(&self, user: &str) -> Vec<IceServer> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.ice_servers_at(user, now)
    }

    fn ice_servers_at(&self, user: &str, now: Duration) -> Vec<IceServer> {
        let (turn, stun): (Vec<&String>, Vec<&String>) =
            self.urls.iter().partition(|url| is_turn(url));
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(IceServer {
                urls: stun.into_iter().cloned().collect(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (turn.is_empty(), &self.secret) {
            let expiry = (now + self.ttl).as_secs();
            let username = format!("{expiry}:{user}");
            servers.push(IceServer {
                urls: turn.into_iter().cloned().collect(),
                credential: Some(credential(secret, &username)),
                username: Some(username),
            });
        }
        servers
    }
}

/// Whether `url` is a TURN URL (`turn:` / `turns:`), as opposed to STUN.
pub fn is_turn(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

/// base64(HMAC-SHA1(`secret`, `username`)): the TURN REST API's password.
fn credential(secret: &Secret, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_api() {
        let settings = IceSettings {
            urls: vec![
                "stun:127.0.0.1:3478".into(),
                "turn:127.0.0.1:3478?transport=udp".into(),
                "turns:turn.example.com:5349".into(),
            ],
            secret: Some(Secret::new("north")),
            ttl: Duration::from_secs(3600),
        };
        let servers = settings.ice_servers_at("424242", Duration::from_secs(1_700_000_000));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:127.0.0.1:3478"]);
        assert_eq!(servers[0].credential, None);
        assert_eq!(
            servers[1].urls,
            [
                "turn:127.0.0.1:3478?transport=udp",
                "turns:turn.example.com:5349"
            ]
        );
        assert_eq!(servers[1].username.as_deref(), Some("1700003600:424242"));
        // `printf '1700003600:424242' | openssl dgst -sha1 -hmac north -binary | base64`
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("oDYWowAlHg3cJTMBvmvwcmAJDUw=")
        );
    }

    #[test]
    fn nothing_without_urls_and_no_turn_without_a_secret() {
        assert!(IceSettings::none().ice_servers("1").is_empty());
        let unkeyed = IceSettings {
            urls: vec!["turn:127.0.0.1:3478".into()],
            ..IceSettings::none()
        };
        assert!(unkeyed.ice_servers("1").is_empty());
    }
}
