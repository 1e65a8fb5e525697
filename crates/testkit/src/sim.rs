//! The simulator as the tests of worker processes want it.

use std::time::Duration;

use coven_sim::{SimConfig, Simulator};

/// The simulator with a short heartbeat, so zombies are detected quickly, and DAVE on, as
/// on Discord: the worker's voice path is tested end-to-end encrypted.
pub async fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        heartbeat_interval: Duration::from_millis(500),
        voice_dave: true,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}
