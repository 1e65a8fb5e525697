//! Starting `coven worker` as a real process against the simulator, for the
//! process tests (`mod process;` in each); what tests of other crates share too
//! comes from `coven-testkit`.

#![allow(dead_code)] // Each test file uses a different part.

use std::process::{Command, Stdio};

use coven_testkit::{FakeHub, SECRET};

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
