//! The entry points: one module per subcommand. Each builds a plan
//! ([`crate::plan`]), hands it to the engine ([`crate::engine`]) and its
//! results to the report ([`crate::report`]); this file only dispatches.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, Command, GenerateWhat, PackageArgs};
use crate::plan::{self, Selection, Which};
use crate::report::Status;

pub mod audit;
pub mod doctor;
pub mod export;
pub mod hook;
pub mod keylime;
pub mod policy;
pub mod policy_check;
pub mod sign;
pub mod verify;

/// Runs the subcommand `cli` names.
pub fn run(cli: &Cli) -> Result<Status> {
    let config = cli.config.as_deref();
    match &cli.command {
        Command::Sign(args) => sign::run(config, args),
        Command::Verify(args) => verify::run(config, args),
        Command::Hook(args) => hook::run(config, args),
        Command::Doctor(args) => doctor::run(config, args),
        Command::Audit(args) => audit::run(config, args),
        Command::Export { what } => export::run(config, what),
        Command::Keylime { what } => keylime::run(config, what),
        Command::Policy(args) => policy::run(config, args),
        Command::Generate { what } => generate(what),
    }
}

/// The installed packages `sign`/`verify` are asked about.
fn select_packages(args: &PackageArgs) -> Result<Selection> {
    let which = if args.all {
        Which::All
    } else {
        Which::Atoms(&args.atoms)
    };
    plan::select(which, args.root.as_deref())
}

fn generate(what: &GenerateWhat) -> Result<Status> {
    let cmd = Cli::command();
    match what {
        GenerateWhat::Man { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
        }
        GenerateWhat::Completions { shell } => {
            let mut cmd = cmd;
            clap_complete::generate(*shell, &mut cmd, "portage-ima", &mut std::io::stdout());
        }
    }
    Ok(Status::Success)
}
