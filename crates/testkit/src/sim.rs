//! The simulator as the tests of worker processes want it.

use std::time::Duration;

use coven_sim::{SimConfig, Simulator};

/// The simulator with a short heartbeat, so zombies are detected quickly.
pub async fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        heartbeat_interval: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}
