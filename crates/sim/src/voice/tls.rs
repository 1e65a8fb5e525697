//! The voice gateway's test TLS identity: a committed, test-only CA and a leaf certificate for
//! `127.0.0.1` / `localhost` (`crates/sim/testdata`). Clients trust it through
//! `SSL_CERT_FILE` = [`test_ca_path`]. Never use these keys for anything but tests.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

const LEAF_PEM: &[u8] = include_bytes!("../../testdata/voice.pem");
const LEAF_KEY: &[u8] = include_bytes!("../../testdata/voice.key");
const CA_PEM: &str = include_str!("../../testdata/ca.pem");

/// The test CA's certificate (PEM) that signs the voice gateway's certificate.
pub fn test_ca_pem() -> &'static str {
    CA_PEM
}

/// Path of the test CA's PEM file in this crate's source tree, for `SSL_CERT_FILE`.
pub fn test_ca_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/ca.pem")
}

/// A TLS acceptor serving the test leaf certificate (and the CA, as its chain).
pub(crate) fn acceptor() -> std::io::Result<TlsAcceptor> {
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(format!("voice TLS setup: {e}"));
    let mut chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(LEAF_PEM)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e))?;
    chain.extend(
        CertificateDer::pem_slice_iter(CA_PEM.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?,
    );
    let key = PrivateKeyDer::from_pem_slice(LEAF_KEY).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(&e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
