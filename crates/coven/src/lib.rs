//! The `coven` command: configuration, logging and the subcommands of docs/spec.md §2.
//!
//! The binary (`main.rs`) only parses the command line; everything it runs lives
//! here so that tests can drive it in-process.

pub mod cli;
pub mod commands;
pub mod config;
pub mod logging;
