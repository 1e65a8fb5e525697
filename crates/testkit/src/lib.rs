//! Test support shared by the tests and benches of several workspace crates, so
//! that each helper exists once: a private `redis-server` per test, free ports for
//! child processes, [`eventually`] (wait on a condition with a timeout), requests
//! signed like the webhook or like the hub's requests to the worker (`docs/` of the
//! repository describe the headers), a login through the simulator's OAuth2, a test
//! CA for TLS servers, a fake hub that verifies signatures and
//! records what a worker delivers, and a child process killed on drop.
//!
//! It depends only on `coven-contract` and `coven-sim`: the worker and the hub take
//! it as a dev-dependency, so it must not depend on them. What starts an in-process
//! worker or hub stays in those crates' own `tests/`.
//!
//! # Ports
//!
//! A test that starts a child process (a `coven` command, `redis-server`) must tell
//! it a port before the child binds it. Picking one by binding port 0 and releasing
//! it races every outgoing connection on the machine: the kernel hands out port-0
//! binds and the local ends of outgoing connections from the same ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), so between release and the child's
//! bind another connection may take the port, and the child fails to start.
//! The same range also makes a port where nothing listens unsafe: a client that
//! keeps reconnecting to it (a hub waiting for a Redis that is down or
//! restarting) may get it as its own local port and connect to itself.
//! [`free_port`] therefore picks a random port *below* that range (read at run
//! time), which the kernel never hands out by itself, checks it with a bind, and
//! never hands the same port out twice within one test process; a port from it
//! also serves as "a port where nothing listens" (connections are refused).
//! Listeners a test keeps open itself still bind port 0 (no race: nobody releases
//! them). The other choice, letting each child bind port 0 and report where it
//! listens, would need a change to the `coven` commands and cannot cover
//! `redis-server` (whose `--port 0` means no TCP at all), so it was not taken.
//! Across processes (two test binaries at once) a collision needs the same random
//! pick from some 17,000 ports within the moment between the check and the
//! child's bind; [`RedisServer`] still retries on another port if its first
//! start finds the port taken.
//!
//! # Panics
//!
//! Every helper here panics when something the test needs does not happen: that
//! is how a test fails.

#![allow(
    clippy::missing_panics_doc,
    reason = "a test helper fails its test by panicking; see the crate docs"
)]

mod events;
mod fake_hub;
mod health;
mod login;
mod ports;
mod process;
mod redis;
mod signed;
mod sim;
mod tls;
mod wait;

pub use events::{assert_in_order_at_least_once, summary};
pub use fake_hub::{FakeHub, Policy, Received};
pub use health::{health_of, metric_sum, wait_for_role, wait_healthy};
pub use login::sim_login;
pub use ports::free_port;
pub use process::KillOnDrop;
pub use redis::RedisServer;
pub use signed::{now_secs, sign_webhook, signed, signed_with};
pub use sim::simulator;
pub use tls::TestCa;
pub use wait::{Outcome, WAIT, eventually};

/// The secret the fake hub verifies and the test workers sign with.
pub const SECRET: &str = "test-hub-secret";
