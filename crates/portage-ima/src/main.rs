//! The `portage-ima` binary: parses the command line and hands over to the
//! library. Exit status: 0 success, 1 some files failed, 2 usage, key or
//! configuration error, 3 strict-mode hook failure. `hook` maps its own
//! errors, panics and signals (3 in strict mode, see commands/hook.rs), so an error
//! returned here is never a strict-mode hook's.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use portage_ima::cli::Cli;
use portage_ima::commands;
use portage_ima::context::Context;
use portage_ima::report::{self, log, Status};

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`portage-ima verify --all | head`), as C tools do,
    // instead of panicking inside println!.
    // Before any thread is started.
    portage_ima::sys::default_sigpipe();
    let cli = Cli::parse();
    // The environment is read here, once; everything below gets `ctx`.
    let ctx = Context::from_process(&cli);
    let level = ctx.var(log::LOG_VAR);
    log::init(log::level(level.as_deref(), cli.verbose, cli.quiet));
    report::colour::init(cli.color, ctx.lookup());
    match commands::run(&cli, &ctx) {
        Ok(code) => code.into(),
        Err(err) => {
            report::print_problem(&format!("error: {}", report::error_line(&err)));
            Status::ConfigError.into()
        }
    }
}
