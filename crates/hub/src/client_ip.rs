//! Who a request comes from: the TCP peer, or behind a trusted proxy the last
//! `X-Forwarded-For` hop (docs/spec.md §6.6).
//!
//! The accept loop (`connection`) stamps every request with its connection's
//! [`ConnInfo`]; [`ClientIp`] reads it. Only a peer listed in `TRUSTED_PROXIES` may
//! name another client, and only through the last hop it appended: earlier hops
//! are whatever the client chose to send. A router served without the accept loop
//! (tests calling [`crate::Hub::router`]) has no peer, so no per-IP limit applies.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The connection a request arrived on, set by the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    /// The peer is listed in `TRUSTED_PROXIES`.
    pub(crate) trusted_proxy: bool,
}

/// The client's IP, as far as the hub can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp {
    /// `None` when the request did not come through the accept loop.
    pub(crate) ip: Option<IpAddr>,
    /// The IP was taken from `X-Forwarded-For` of a trusted proxy: the TCP
    /// connection is the proxy's and was not counted against this client.
    pub(crate) forwarded: bool,
}

impl ClientIp {
    /// The client IP of a request with `headers` on connection `conn`.
    pub(crate) fn resolve(conn: Option<&ConnInfo>, headers: &axum::http::HeaderMap) -> Self {
        let Some(conn) = conn else {
            return Self {
                ip: None,
                forwarded: false,
            };
        };
        let forwarded = conn
            .trusted_proxy
            .then(|| last_forwarded_hop(headers))
            .flatten();
        Self {
            ip: Some(forwarded.unwrap_or_else(|| conn.peer.ip().to_canonical())),
            forwarded: forwarded.is_some(),
        }
    }
}

/// The last address of the last `X-Forwarded-For` header, if it is one.
fn last_forwarded_hop(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let value = headers.get_all("x-forwarded-for").iter().next_back()?;
    let hop = value.to_str().ok()?.rsplit(',').next()?.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .map(|ip| ip.to_canonical())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::resolve(
            parts.extensions.get::<ConnInfo>(),
            &parts.headers,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let peer: SocketAddr = "10.0.0.9:4000".parse().unwrap();
        let direct = ConnInfo {
            peer,
            trusted_proxy: false,
        };
        let proxy = ConnInfo {
            peer,
            trusted_proxy: true,
        };
        let spoofed = headers(&["1.2.3.4"]);
        assert_eq!(
            ClientIp::resolve(Some(&direct), &spoofed).ip,
            Some(peer.ip())
        );
        let chain = headers(&["6.6.6.6, 1.2.3.4", "5.6.7.8"]);
        let client = ClientIp::resolve(Some(&proxy), &chain);
        assert_eq!(client.ip, Some("5.6.7.8".parse().unwrap()));
        assert!(client.forwarded);
        let garbage = headers(&["unknown"]);
        assert_eq!(
            ClientIp::resolve(Some(&proxy), &garbage),
            ClientIp {
                ip: Some(peer.ip()),
                forwarded: false
            }
        );
        assert_eq!(ClientIp::resolve(None, &chain).ip, None);
    }
}
