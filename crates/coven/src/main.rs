//! Entry point of the `coven` binary: parse the command line, start logging,
//! run the chosen part on a tokio runtime.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use coven::cli::{Cli, Command};
use coven::config::{LogConfig, ProcessEnv};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = match LogConfig::from_env(&ProcessEnv) {
        Ok(log) => log,
        Err(error) => {
            eprintln!("coven: {error}");
            return ExitCode::FAILURE;
        }
    };
    coven::logging::init(log);
    let Some(command) = cli.command else {
        Cli::command().print_help().expect("stdout is writable");
        return ExitCode::SUCCESS;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        match command {
            Command::Worker => coven::commands::worker().await,
            Command::Hub => coven::commands::hub().await,
            Command::Run => coven::commands::run().await,
            #[cfg(feature = "sim")]
            Command::Demo(args) => coven::commands::demo(&args).await,
            #[cfg(feature = "sim")]
            Command::Sim(args) => coven::commands::sim(&args).await,
        }
    })
}
