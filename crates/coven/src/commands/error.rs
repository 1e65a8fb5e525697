//! `CommandError`: why a subcommand could not start or stopped by itself, typed, with
//! the cause kept as its source. `fail` prints its message as the one `coven: …` line.

use std::io;

use coven_discord::DiscordError;

use crate::config::ConfigError;

/// Why `coven worker`, `hub`, `run` (and, with the `sim` feature, `demo` and `sim`)
/// failed. The messages name what was being done and never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The environment's configuration is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listening socket could not be opened.
    #[error("cannot listen on {what} {addr}: {source}")]
    Listen {
        /// Which address this is (`HOST:PORT`, `HEALTH_CHECK_PORT`).
        what: &'static str,
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// An opened listener could not tell its own address.
    #[error("{0}")]
    LocalAddr(#[source] io::Error),
    /// The bot's REST client could not be built from the configuration.
    #[error("cannot build the Discord REST client: {0}")]
    RestClient(#[source] DiscordError),
    /// The hub could not be built (e.g. an unusable `REDIS_URL`).
    #[error("cannot start the hub: {0}")]
    HubStart(#[source] coven_hub::HubStartError),
    /// The hub's server stopped with an error.
    #[error("the hub stopped: {0}")]
    HubStopped(#[source] io::Error),
    /// The worker stopped with an error.
    #[error(transparent)]
    Worker(#[from] coven_worker::WorkerError),
    /// A task of the process panicked.
    #[error("a task panicked")]
    Panicked,
    /// `coven demo`: its port on 127.0.0.1 is taken.
    #[cfg(feature = "sim")]
    #[error("cannot listen on 127.0.0.1:{port}: {source} (try --port 0)")]
    DemoPort {
        /// The `--port` asked for.
        port: u16,
        /// Why.
        source: io::Error,
    },
    /// `coven demo`: the worker's health port could not be opened.
    #[cfg(feature = "sim")]
    #[error("cannot open the worker's health port: {0}")]
    HealthPort(#[source] io::Error),
    /// `coven demo`: the simulator did not start.
    #[cfg(feature = "sim")]
    #[error("cannot start the simulator: {0}")]
    SimStart(#[source] io::Error),
    /// `coven sim`: the simulator did not start on its port.
    #[cfg(feature = "sim")]
    #[error("cannot start the simulator on port {port}: {source}")]
    SimStartOn {
        /// The `--port` asked for.
        port: u16,
        /// Why.
        source: io::Error,
    },
    /// `coven demo`: the simulator has no seeded guild (it always has one).
    #[cfg(feature = "sim")]
    #[error("the simulator has no guild")]
    NoGuild,
    /// `coven demo`: the simulator's OAuth2 client id is not a snowflake.
    #[cfg(feature = "sim")]
    #[error("the simulator's client id is not a snowflake")]
    SimClientId,
    /// `coven demo`: a file or folder it needs could not be written.
    #[cfg(feature = "sim")]
    #[error("cannot {action} {}: {source}", .path.display())]
    File {
        /// What was being done, e.g. `create`.
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `coven demo`: the path of the running executable is unknown.
    #[cfg(feature = "sim")]
    #[error("cannot find the coven executable: {0}")]
    CurrentExe(#[source] io::Error),
    /// `coven demo`: the re-executed demo process did not start.
    #[cfg(feature = "sim")]
    #[error("cannot start the demo: {0}")]
    Spawn(#[source] io::Error),
    /// `coven demo`: the worker or the hub stopped before a shutdown was asked for.
    #[cfg(feature = "sim")]
    #[error("the {part} stopped: {}", Stopped(.cause.as_deref()))]
    PartStopped {
        /// `worker` or `hub`.
        part: &'static str,
        /// Its error, or `None` when it stopped without one.
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The reason of [`CommandError::PartStopped`]: the error, or just "stopped".
#[cfg(feature = "sim")]
struct Stopped<'a>(Option<&'a (dyn std::error::Error + Send + Sync)>);

#[cfg(feature = "sim")]
impl std::fmt::Display for Stopped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(error) => std::fmt::Display::fmt(error, f),
            None => f.write_str("stopped"),
        }
    }
}
