//! The system under test, as real processes on loopback: the simulator (in this
//! process, driven through `SimHandle`), one durable `redis-server`, two
//! `coven worker` (an active/standby pair on Redis) and two `coven hub` on that
//! Redis (docs/scaling.md). Each process can be killed and started again on the
//! same port and state folder, which is how the soak injects its process faults.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use coven_testkit::{KillOnDrop, RedisServer, SECRET, free_port};
use serde_json::Value;

/// The `coven` binary cargo built alongside this bench.
const BIN: &str = env!("CARGO_BIN_EXE_coven");
/// Every hub issues and accepts tokens under one issuer name (keys shared on Redis).
pub const ISSUER: &str = "http://coven-chaos.test";
/// How long a process may take to become ready before the soak gives up.
const READY: Duration = Duration::from_secs(60);

/// One `coven` child process with a fixed port and state folder.
pub struct Node {
    /// Its listening port (`PORT` of a hub, `HEALTH_CHECK_PORT` of a worker).
    pub port: u16,
    state: PathBuf,
    child: Option<KillOnDrop>,
}

impl Node {
    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: nothing of the process' shutdown code runs.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// SIGTERM, then waits (at most 20 s, then SIGKILL) for the process to exit.
    pub async fn terminate(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut child = child.into_inner();
        for _ in 0..200 {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `GET /health` as JSON (any HTTP status), `None` when it does not answer.
    pub async fn health(&self, http: &reqwest::Client) -> Option<Value> {
        let response = http
            .get(self.url("/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }
}

/// The whole system: simulator, Redis, workers and hubs.
pub struct Cluster {
    /// The simulator (in this process).
    pub sim: coven_sim::Simulator,
    /// The Redis every hub and worker shares (append-only file, fsync always).
    pub redis: RedisServer,
    /// Worker 0 delivers to hub 0, worker 1 to hub 1.
    pub workers: [Node; 2],
    /// The two hubs.
    pub hubs: [Node; 2],
    /// Holds every state folder and log file of the run.
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Cluster {
    /// Starts Redis, two hubs and the worker pair (worker 0 active) against `sim`.
    pub async fn start(sim: coven_sim::Simulator) -> Self {
        let redis = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("redis starts");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let node = |name: &str| Node {
            port: free_port(),
            state: dir.path().join(name),
            child: None,
        };
        let mut cluster = Self {
            sim,
            redis,
            workers: [node("worker-0"), node("worker-1")],
            hubs: [node("hub-0"), node("hub-1")],
            dir,
            http: reqwest::Client::new(),
        };
        for hub in 0..2 {
            cluster.start_hub(hub).await;
        }
        cluster.start_worker(0);
        cluster.wait_role(0, "active").await;
        cluster.start_worker(1);
        cluster.wait_role(1, "standby").await;
        cluster
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("a log file")
    }

    /// Starts hub `i` (again) on its port and state folder; waits until its
    /// `/health` says Redis is up.
    pub async fn start_hub(&mut self, i: usize) {
        let hub = &self.hubs[i];
        let workers = format!("{},{}", self.workers[0].url(""), self.workers[1].url(""));
        let child = Command::new(BIN)
            .arg("hub")
            .env_clear()
            .env("PRIMARY_GUILD_ID", self.sim.guild_id().to_string())
            .env("HUB_SECRET", SECRET)
            .env("DISCORD_BOT_TOKEN", self.sim.bot_token())
            .env("JWT_ISSUER", ISSUER)
            .env("HOST", "127.0.0.1")
            .env("PORT", hub.port.to_string())
            .env("STATE_DIR", &hub.state)
            .env("REDIS_URL", self.redis.url())
            .env("WORKER_ENDPOINT", workers)
            .env("DISCORD_API_URL", self.sim.api_url())
            .env("DISCORD_GATEWAY_URL", self.sim.gateway_url())
            .env("DISCORD_CLIENT_ID", self.sim.oauth_client_id())
            .env("DISCORD_CLIENT_SECRET", "sim-client-secret")
            .env("OAUTH_REDIRECT_URI", hub.url("/auth/callback"))
            // The browsers come "through a load balancer" on 127.0.0.1 that names
            // each one in `X-Forwarded-For` (docs/spec.md §6.6 limits stay per browser).
            .env("TRUSTED_PROXIES", "127.0.0.1")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file(&format!("hub-{i}")))
            .spawn()
            .expect("coven hub starts");
        self.hubs[i].child = Some(KillOnDrop::new(child));
        let url = self.hubs[i].url("/health");
        self.wait(&url, |h| h["redis"] == "up").await;
    }

    /// Starts worker `i` (again) on its port and state folder (it delivers to hub `i`).
    pub fn start_worker(&mut self, i: usize) {
        let worker = &self.workers[i];
        let child = Command::new(BIN)
            .arg("worker")
            .env_clear()
            .env("PRIMARY_GUILD_ID", self.sim.guild_id().to_string())
            .env("HUB_SECRET", SECRET)
            .env("DISCORD_BOT_TOKEN", self.sim.bot_token())
            .env("HUB_ENDPOINT", self.hubs[i].url("/api/internal/events"))
            .env("HEALTH_CHECK_PORT", worker.port.to_string())
            .env("STATE_DIR", &worker.state)
            .env("REDIS_URL", self.redis.url())
            .env("DISCORD_GATEWAY_URL", self.sim.gateway_url())
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file(&format!("worker-{i}")))
            .spawn()
            .expect("coven worker starts");
        self.workers[i].child = Some(KillOnDrop::new(child));
    }

    /// Prints the last lines of every process' log (on a failure).
    pub fn print_logs(&self) {
        for name in ["hub-0", "hub-1", "worker-0", "worker-1"] {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            println!("--- {name}.log ({} lines), last 15:", lines.len());
            for line in &lines[lines.len().saturating_sub(15)..] {
                println!("{line}");
            }
        }
    }

    /// Waits until worker `i`'s `/health` says `role`.
    pub async fn wait_role(&self, i: usize, role: &str) {
        let url = self.workers[i].url("/health");
        self.wait(&url, |h| h["role"] == role).await;
    }

    /// The index of the worker whose `/health` says `"role":"active"`.
    pub async fn active_worker(&self) -> Option<usize> {
        for (i, worker) in self.workers.iter().enumerate() {
            if worker
                .health(&self.http)
                .await
                .is_some_and(|h| h["role"] == "active")
            {
                return Some(i);
            }
        }
        None
    }

    async fn wait(&self, url: &str, ready: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + READY;
        loop {
            if let Ok(response) = self.http.get(url).send().await
                && let Ok(body) = response.json::<Value>().await
                && ready(&body)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url} not ready within {READY:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
