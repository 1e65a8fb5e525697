//! Starting `coven worker` as a real process against the simulator, and signing
//! in to a `coven hub` process through the simulator's OAuth2, for the process
//! tests (included with `#[path]` next to the worker's test `support`).

#![allow(dead_code)] // Each test file uses a different part.

use std::process::{Command, Stdio};

use super::support::{FakeHub, SECRET};

/// The `coven` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_coven");

/// `coven worker` configured for `sim` and `hub`, health on `port`. It trusts
/// the simulator's voice CA, so the bot can also join rooms.
pub fn worker_command(
    sim: &coven_sim::Simulator,
    hub: &FakeHub,
    state: &std::path::Path,
    port: u16,
) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("worker")
        .env_clear()
        .env("PRIMARY_GUILD_ID", sim.guild_id().to_string())
        .env("HUB_SECRET", SECRET)
        .env("DISCORD_BOT_TOKEN", sim.bot_token())
        .env("HUB_ENDPOINT", hub.endpoint().as_str())
        .env("HEALTH_CHECK_PORT", port.to_string())
        .env("STATE_DIR", state)
        .env("DISCORD_GATEWAY_URL", sim.gateway_url())
        .env("SSL_CERT_FILE", coven_sim::voice::test_ca_path())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Signs in to the hub at `base` through the simulator's OAuth2 (which consents
/// at once) and returns the hub's JWT.
pub async fn sim_login(base: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = http.get(format!("{base}/auth/login")).send().await.unwrap();
    assert!(start.status().is_redirection(), "{}", start.status());
    let cookie = start.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let consent = http.get(&authorize).send().await.unwrap();
    let callback = consent.headers()["location"].to_str().unwrap().to_owned();
    let done = http
        .get(&callback)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let target = done.headers()["location"].to_str().unwrap();
    target.strip_prefix("/#token=").expect("a token").to_owned()
}
