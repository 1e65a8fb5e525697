//! A throw-away certificate authority made when a test runs, for servers that
//! speak TLS on loopback (a `redis-server` with `--tls-port`, see
//! [`crate::RedisServer::start_tls`]). No key or certificate is checked in: each
//! [`TestCa`] makes a fresh CA and one server certificate for `localhost` and
//! `127.0.0.1`, signed by it, in its own temporary folder. A client trusts it
//! through `SSL_CERT_FILE` = [`TestCa::ca_file`] (how the `coven` commands are
//! told about a private CA, docs/scaling.md) or by loading [`TestCa::ca_pem`].

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A test CA and a server certificate it signed, as PEM files in a temporary
/// folder removed when dropped.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// A new CA ("coven test CA" and a random number) and a server certificate for `localhost` and
    /// `127.0.0.1` (ECDSA P-256, valid for the usual rcgen span), written to
    /// `ca.pem`, `server.pem` and `server.key`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for the test CA");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // A name of its own: another TestCa is a stranger, not a namesake.
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("coven test CA {:016x}", rand::random::<u64>()),
        );
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("the CA certificate");

        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("a server key");
        let cert = params.signed_by(&key, &ca).expect("the server certificate");

        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write server.pem");
        std::fs::write(dir.path().join("server.key"), key.serialize_pem())
            .expect("write server.key");
        Self { dir }
    }

    /// The CA certificate (PEM), for `SSL_CERT_FILE` or `--tls-ca-cert-file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA certificate's PEM bytes.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_file()).expect("read ca.pem")
    }

    /// The server certificate (PEM), signed by the CA.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server certificate's private key (PEM, PKCS#8).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// Writes one PEM bundle holding this CA and every file of `others` (e.g.
    /// the simulator's voice CA) into this CA's folder and returns its path: one
    /// `SSL_CERT_FILE` for a process that must trust several test CAs.
    pub fn bundle_with(&self, others: &[&Path]) -> PathBuf {
        let mut bundle = self.ca_pem();
        for other in others {
            bundle.push(b'\n');
            bundle.extend(std::fs::read(other).expect("read a CA file for the bundle"));
        }
        let path = self.dir.path().join("bundle.pem");
        std::fs::write(&path, bundle).expect("write bundle.pem");
        path
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
