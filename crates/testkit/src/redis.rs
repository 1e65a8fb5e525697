//! A private `redis-server` for one test or bench: its own port (from
//! [`free_port`], below the ephemeral range), its own temporary folder, killed when
//! dropped. `.ci/run` installs Debian's redis-server; tests start their own so
//! that each one may stop or restart it. Either durable (append-only file fsynced
//! on every write, so a restart loses nothing Redis acknowledged) or volatile (no
//! persistence, for what only needs a shared memory). [`RedisServer::start_tls`]
//! serves TLS only (`rediss://`), with a password and a [`TestCa`] made for it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestCa, free_port};

/// How long a start may take before the test fails.
const START: Duration = Duration::from_secs(10);
/// New ports tried when the first start finds its port taken after all.
const ATTEMPTS: usize = 5;

/// A running `redis-server` owned by the test.
pub struct RedisServer {
    port: u16,
    durable: bool,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// What a TLS server needs: its certificates and the password it requires.
struct Tls {
    ca: TestCa,
    password: String,
}

impl RedisServer {
    /// A durable server (append-only file, fsync always) on a free port, answering
    /// `PING`.
    ///
    /// # Panics
    /// When `redis-server` is not installed (`apt-get install redis-server`) or
    /// does not answer within 10 s.
    pub fn start() -> Self {
        Self::launch(None, true, None)
    }

    /// A server without persistence on a free port that speaks only TLS
    /// (`--port 0 --tls-port <port>`, certificate from a new [`TestCa`]) and
    /// requires a password (`requirepass`): [`url`](Self::url) is
    /// `rediss://:<password>@127.0.0.1:<port>/`. Clients do not present a
    /// certificate (`--tls-auth-clients no`). A client trusts it through
    /// `SSL_CERT_FILE` = [`ca_file`](Self::ca_file), or use [`client`](Self::client).
    pub fn start_tls() -> Self {
        let tls = Tls {
            ca: TestCa::new(),
            password: format!("test-redis-password-{:016x}", rand::random::<u64>()),
        };
        Self::launch(None, false, Some(tls))
    }

    /// A server without persistence on a free port, answering `PING`.
    pub fn start_volatile() -> Self {
        Self::launch(None, false, None)
    }

    /// A server without persistence on `port` (from [`free_port`]), for a test
    /// that configured something to use Redis before it was up.
    pub fn start_volatile_on(port: u16) -> Self {
        Self::launch(Some(port), false, None)
    }

    fn launch(port: Option<u16>, durable: bool, tls: Option<Tls>) -> Self {
        let mut server = Self {
            port: port.unwrap_or_else(free_port),
            durable,
            dir: tempfile::tempdir().expect("a temporary folder for Redis"),
            child: None,
            tls,
        };
        let mut attempts = 1;
        while !server.spawn() {
            assert!(
                port.is_none() && attempts < ATTEMPTS,
                "redis-server could not listen on port {}",
                server.port
            );
            // Taken after all (by a process outside this one): another port.
            attempts += 1;
            server.port = free_port();
        }
        server
    }

    /// `redis://127.0.0.1:<port>/`, or for a TLS server
    /// `rediss://:<password>@127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}/", self.port),
            Some(tls) => format!("rediss://:{}@127.0.0.1:{}/", tls.password, self.port),
        }
    }

    /// The CA file a client must trust (e.g. as `SSL_CERT_FILE`); `None` unless
    /// started with [`start_tls`](Self::start_tls).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|tls| tls.ca.ca_file())
    }

    /// The [`TestCa`] of a TLS server (e.g. for [`TestCa::bundle_with`]).
    pub fn test_ca(&self) -> Option<&TestCa> {
        self.tls.as_ref().map(|tls| &tls.ca)
    }

    /// A client for [`url`](Self::url) that trusts the server's test CA (and
    /// nothing else) when it speaks TLS.
    pub fn client(&self) -> redis::Client {
        match &self.tls {
            None => redis::Client::open(self.url()).expect("a Redis client"),
            Some(tls) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(tls.ca.ca_pem()),
                },
            )
            .expect("a TLS Redis client"),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding its data.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The server's process id (e.g. to read its CPU time), while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: no chance to save anything on the way out).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server on port {} did not restart",
            self.port
        );
    }

    /// Whether the server is currently running (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits for `PING`; false when it exited first
    /// (its port was taken).
    fn spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1"]);
        if let Some(tls) = &self.tls {
            command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(tls.ca.cert_file())
                .arg("--tls-key-file")
                .arg(tls.ca.key_file())
                .arg("--tls-ca-cert-file")
                .arg(tls.ca.ca_file())
                .args(["--tls-auth-clients", "no", "--requirepass", &tls.password]);
        } else {
            command.arg("--port").arg(self.port.to_string());
        }
        command
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--protected-mode", "no"]);
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        // Owned before waiting, so a failed wait still kills it on drop.
        self.child = Some(child);
        let deadline = Instant::now() + START;
        while !self.answers_ping() {
            let exited = self.child.as_mut().map(Child::try_wait);
            if let Some(Ok(Some(_))) = exited {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        if self.tls.is_some() {
            let Ok(mut conn) = self
                .client()
                .get_connection_with_timeout(Duration::from_millis(500))
            else {
                return false;
            };
            return redis::cmd("PING")
                .query::<String>(&mut conn)
                .is_ok_and(|pong| pong == "PONG");
        }
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
