//! The `portage-ima` binary: parses the command line and hands over to the
//! library. Exit status: 0 success, 1 some files failed, 2 usage, key or
//! configuration error, 3 strict-mode hook failure. `hook` maps its own
//! errors, panics and signals (3 in strict mode, see hook.rs), so an error
//! returned here is never a strict-mode hook's.

use std::process::ExitCode;

use clap::Parser;
use portage_ima::cli::{Cli, Command};
use portage_ima::{commands, status};

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`portage-ima verify --all | head`), as C tools do,
    // instead of panicking inside println!.
    // SAFETY: setting a signal disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
            eprintln!("portage-ima: error: {}", status::error_line(&err));
            commands::Status::ConfigError.into()
        }
    }
}
