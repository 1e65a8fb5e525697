//! The `coven worker` and `coven hub` commands configured for the simulator, for
//! the process tests (`mod process;` in each); what tests of other crates share
//! too comes from `coven-testkit`.

#![allow(dead_code)] // Each test file uses a different part.

use std::process::{Command, Stdio};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use coven_testkit::{FakeHub, SECRET, WAIT};

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

/// A browser's WebSocket to a hub.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A browser on the hub at `port`: authenticates (resuming after `last_seq`),
/// returns the socket and the `auth.ok` ack.
pub async fn browser(port: u16, token: &str, last_seq: Option<u64>) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/ws"))
        .await
        .unwrap();
    let mut auth = json!({"type": "auth", "token": token});
    if let Some(seq) = last_seq {
        auth["lastSeq"] = json!(seq);
    }
    ws.send(Message::text(auth.to_string())).await.unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["event"], "auth.ok", "{ack}");
    (ws, ack)
}

/// The next text frame as JSON (pings and pongs skipped), within [`WAIT`].
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("no socket error");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}
