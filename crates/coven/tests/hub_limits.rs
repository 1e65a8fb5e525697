//! `coven hub`'s connection limits as a real process: the variables reach the
//! hub, a bad one stops it with one line, and a `MAX_CONNECTIONS` the file limit
//! cannot hold is reported once at start (docs/security.md).

mod process;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use coven_testkit::{KillOnDrop, WAIT, free_port, simulator};
use process::hub_command;
use tokio::io::AsyncReadExt;

/// Everything the hub wrote before closing `tcp` (bounded by `WAIT`).
async fn answer(tcp: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut received))
        .await
        .expect("the hub closed the connection in time")
        .unwrap();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn the_limits_come_from_the_environment() {
    let sim = simulator().await;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = KillOnDrop::new(
        hub_command(&sim, state.path(), port)
            .arg("hub")
            .env("MAX_CONNECTIONS_PER_IP", "3")
            // Far above any file limit: the hub says so at start.
            .env("MAX_CONNECTIONS", "100000000")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while held.len() < 3 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await {
            held.push(tcp);
        } else {
            assert!(tokio::time::Instant::now() < deadline, "hub never listened");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let refused = answer(&mut fourth).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("retry-after: "), "{refused}");
    drop(held);

    let mut child = hub.into_inner();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|line| line.contains("open-file limit"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("MAX_CONNECTIONS=100000000"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_limit_stops_the_hub_with_one_line() {
    let sim = simulator().await;
    let state = tempfile::tempdir().unwrap();
    let output = hub_command(&sim, state.path(), free_port())
        .arg("hub")
        .env("TRUSTED_PROXIES", "10.0.0.1,10.0.0.0/8")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TRUSTED_PROXIES is invalid"), "{stderr}");
}
