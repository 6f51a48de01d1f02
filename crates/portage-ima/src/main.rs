//! The `portage-ima` binary: parses the command line and hands over to the
//! library. Exit status: 0 success, 1 some files failed, 2 usage, key or
//! configuration error, 3 strict-mode hook failure.

use std::process::ExitCode;

use clap::Parser;
use portage_ima::cli::{Cli, Command};
use portage_ima::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sign(args) => commands::sign(cli.config.as_deref(), &args),
        Command::Verify(args) => commands::verify(cli.config.as_deref(), &args),
        Command::Hook(args) => commands::hook(cli.config.as_deref(), &args),
        Command::Doctor(args) => commands::doctor(cli.config.as_deref(), &args),
        Command::Generate { what } => commands::generate(&what),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("portage-ima: error: {err:#}");
            commands::Status::ConfigError.into()
        }
    }
}
