//! Entry point of the `coven` binary: parse the command line, read the
//! configuration, start logging, run the chosen part.

use clap::{CommandFactory, Parser};
use coven::cli::Cli;
use coven::config::{LogConfig, ProcessEnv};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log = match LogConfig::from_env(&ProcessEnv) {
        Ok(log) => log,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    coven::logging::init(log);
    match cli.command {
        None => {
            Cli::command().print_help().expect("stdout is writable");
            std::process::ExitCode::SUCCESS
        }
        Some(command) => match command {},
    }
}
