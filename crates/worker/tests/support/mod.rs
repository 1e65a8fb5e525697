//! Test support of the worker's own tests: a worker running in-process against
//! the simulator. What other crates' tests share too (the fake hub, Redis, ports,
//! waits, signing) lives in `coven-testkit`; this part needs `coven-worker`, which
//! the testkit must not depend on.

#![allow(dead_code)] // Each test file uses a different part of the support module.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use coven_contract::{Secret, Snowflake};
use coven_sim::Simulator;
use coven_testkit::{FakeHub, SECRET, WAIT};
use coven_worker::{WorkerError, WorkerSettings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A worker running in-process; stop it with [`RunningWorker::stop`].
pub struct RunningWorker {
    pub health: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl RunningWorker {
    pub async fn start(sim: &Simulator, hub: &FakeHub, state_dir: &Path) -> Self {
        Self::start_with(sim, hub, state_dir, |_| {}).await
    }

    pub async fn start_with(
        sim: &Simulator,
        hub: &FakeHub,
        state_dir: &Path,
        adjust: impl FnOnce(&mut WorkerSettings),
    ) -> Self {
        let mut settings = WorkerSettings::new(
            Snowflake::new(sim.guild_id()).unwrap(),
            Secret::new(sim.bot_token()),
            hub.endpoint(),
            vec![Secret::new(SECRET)],
            state_dir.to_owned(),
        );
        settings.gateway.gateway_url = Some(sim.gateway_url());
        settings.backoff.base = Duration::from_millis(20);
        settings.backoff.cap = Duration::from_millis(200);
        // Tests inject gateway faults back to back: pace those reconnects fast
        // (the production pacing has its own test, tests/gateway_liveness.rs).
        settings.gateway.reconnect.backoff.base = Duration::from_millis(20);
        settings.gateway.reconnect.backoff.cap = Duration::from_millis(200);
        adjust(&mut settings);
        let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let health_addr = health.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(coven_worker::run(settings, health, async {
            let _ = stopped.await;
        }));
        Self {
            health: health_addr,
            stop: Some(stop),
            task,
        }
    }

    /// Graceful shutdown; returns the worker's result.
    pub async fn stop(mut self) -> Result<(), WorkerError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("worker stops")
            .unwrap()
    }

    /// Waits for the worker to end by itself (a fatal close).
    pub async fn finished(self) -> Result<(), WorkerError> {
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("worker ends")
            .unwrap()
    }

    /// Polls `/health` until it answers `status`.
    pub async fn wait_for_health(&self, status: u16) -> serde_json::Value {
        let url = format!("http://{}/health", self.health);
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().as_u16() == status
            {
                return response.json().await.unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/health never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether this test process trusts the simulator's voice server; when it does not,
/// runs the test named `test` again in a child process with `SSL_CERT_FILE` set to
/// the simulator's test CA, asserts that the child passed, and returns `false` (the
/// caller returns). The bot's voice connection reads its roots from the environment
/// and the workspace forbids `unsafe` (no `set_var`), hence the child.
pub fn trusts_the_voice_ca_or_reruns(test: &str) -> bool {
    let ca = coven_sim::voice::test_ca_path();
    if std::env::var_os("SSL_CERT_FILE").is_some_and(|value| value == ca.as_os_str()) {
        return true;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env("SSL_CERT_FILE", &ca)
        .status()
        .unwrap();
    assert!(status.success(), "the child run of {test} failed: {status}");
    false
}
