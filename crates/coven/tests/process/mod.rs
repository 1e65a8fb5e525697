//! The `coven worker` and `coven hub` commands configured for the simulator, for
//! the process tests (`mod process;` in each); what tests of other crates share
//! too comes from `coven-testkit`.

#![allow(dead_code)] // Each test file uses a different part.

use std::process::{Command, Stdio};

use coven_testkit::{FakeHub, SECRET};

/// The `coven` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_coven");

/// `coven` (the caller adds `hub` or `run`) configured for `sim`, listening on
/// 127.0.0.1:`port` and issuing tokens as `http://127.0.0.1:<port>`; output
/// discarded. Callers add or override variables and stdio.
pub fn hub_command(sim: &coven_sim::Simulator, state: &std::path::Path, port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PRIMARY_GUILD_ID", sim.guild_id().to_string())
        .env("HUB_SECRET", SECRET)
        .env("DISCORD_BOT_TOKEN", sim.bot_token())
        .env("JWT_ISSUER", format!("http://127.0.0.1:{port}"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("STATE_DIR", state)
        .env("DISCORD_API_URL", sim.api_url())
        .env("DISCORD_GATEWAY_URL", sim.gateway_url())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// [`hub_command`] with Discord login through the simulator's OAuth2, Discord
/// redirecting back to `redirect_uri`.
pub fn login_hub_command(
    sim: &coven_sim::Simulator,
    state: &std::path::Path,
    port: u16,
    redirect_uri: &str,
) -> Command {
    let mut command = hub_command(sim, state, port);
    command
        .env("DISCORD_CLIENT_ID", sim.oauth_client_id())
        .env("DISCORD_CLIENT_SECRET", "sim-client-secret")
        .env("OAUTH_REDIRECT_URI", redirect_uri);
    command
}

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
