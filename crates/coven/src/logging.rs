//! Process-wide logging with `tracing`: human-readable lines or JSON lines.
//!
//! `LOG_LEVEL` sets our crates' level; dependencies log at `WARN` unless
//! `RUST_LOG` says otherwise, so a `DEBUG` run shows our story, not hyper's.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, LogLevel};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(config: LogConfig) {
    let level = match config.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,coven={level},coven_={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
