//! Reading a worker's `/health` (status and body) and waiting for its role.

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
