//! Reading a worker's `/health` (status and body), waiting for it or its role, and reading its counters.

use std::net::SocketAddr;

use crate::WAIT;

/// `/health` of the worker whose health port is at `addr`: status and body,
/// or `None` while nothing answers.
pub async fn health_of(addr: SocketAddr) -> Option<(u16, serde_json::Value)> {
    let response = reqwest::get(format!("http://{addr}/health")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Polls `/health` at `addr` until it reports `role` ("active" or "standby")
/// with status 200; returns the body.
pub async fn wait_for_role(addr: SocketAddr, role: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((200, body)) = health_of(addr).await
            && body["role"] == role
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never became a healthy {role}: {:?}",
            health_of(addr).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `/health` at `addr` until it answers 200, whatever the role.
pub async fn wait_healthy(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if let Some((200, _)) = health_of(addr).await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{addr} never became healthy: {:?}", health_of(addr).await);
}

/// The sum of every series of the counter `name` in `/metrics` at `addr` (0 when it has
/// none yet). `name` may carry labels (`name{event="…"}`) to pick one series.
pub async fn metric_sum(addr: SocketAddr, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics has a body");
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .map(|line| {
            let value = line.rsplit(' ').next().unwrap_or_default();
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}: not a count: {line}"))
        })
        .sum()
}
