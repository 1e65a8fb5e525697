//! What each subcommand runs: read its configuration, start its parts, wait for a
//! shutdown signal, and turn the outcome into an exit status. `demo` and `sim` exist
//! only with the `sim` feature (on by default; the production image builds without it).

#[cfg(feature = "sim")]
mod demo;
mod error;
mod hub;
mod run;
#[cfg(feature = "sim")]
mod sim;
mod worker;

use std::process::ExitCode;

#[cfg(feature = "sim")]
pub use demo::demo;
pub use error::CommandError;
pub use hub::{hub, hub_settings};
pub use run::run;
#[cfg(feature = "sim")]
pub use sim::sim;
pub use worker::{worker, worker_settings};

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
///
/// # Panics
///
/// If the SIGTERM handler cannot be installed (no signal support at all).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}

/// Prints one clear line and returns a failure status.
fn fail(error: impl Into<CommandError>) -> ExitCode {
    eprintln!("coven: {}", error.into());
    ExitCode::FAILURE
}
