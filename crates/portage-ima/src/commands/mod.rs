//! The entry points: one module per subcommand. Each builds a plan
//! ([`crate::plan`]), hands it to the engine ([`crate::engine`]) and its
//! results to the report ([`crate::report`]); this file only dispatches.

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use crate::cli::{
    AppraiseScope, Cli, Command, GenerateWhat, KeyArgs, PackageArgs, PolicyArgs, SignArgs,
};
use crate::context::Context;
use crate::manual;
use crate::plan::{self, Selection, Which};
use crate::report::{self, Status};

pub(crate) mod audit;
pub mod doctor;
pub(crate) mod export;
pub(crate) mod hook;
pub(crate) mod keylime;
pub(crate) mod policy;
pub(crate) mod policy_check;
pub(crate) mod setup;
pub(crate) mod sign;
pub(crate) mod verify;

/// Runs the subcommand `cli` names, in the context `ctx` (the environment
/// and the flags, read once by `main`).
pub fn run(cli: &Cli, ctx: &Context) -> Result<Status> {
    match &cli.command {
        Command::Sign(args) => sign::run(ctx, args),
        Command::Verify(args) => verify::run(ctx, args),
        Command::Hook(args) => hook::run(ctx, args),
        Command::Doctor(args) => doctor::run(ctx, args),
        Command::Audit(args) => audit::run(ctx, args),
        Command::Export { what } => export::run(ctx, what),
        Command::Keylime { what } => keylime::run(ctx, what),
        Command::Policy(args) if args.check => policy_check::run(ctx, args),
        Command::Policy(args) => policy::run(ctx, args),
        Command::Setup(args) => run_setup(ctx, args),
        Command::Generate { what } => generate(what),
    }
}

/// `setup`, and after `--apply` the commands it ends with: `sign --all`
/// (with its progress display) and `policy --check`, through the library.
fn run_setup(ctx: &Context, args: &crate::cli::SetupArgs) -> Result<Status> {
    let (status, then) = setup::run(ctx, args)?;
    let Some(then) = then else {
        return Ok(status);
    };
    let key = KeyArgs {
        key: Some(then.key.clone()),
        cert: Some(then.cert.clone()),
        ..KeyArgs::default()
    };
    let sign_args = SignArgs {
        files: Vec::new(),
        packages: PackageArgs {
            atoms: Vec::new(),
            all: true,
            root: Some(then.root.clone()),
        },
        key: key.clone(),
        jobs: None,
        dry_run: false,
        digest_only: false,
        rotate: false,
        json: false,
        progress: args.progress,
    };
    // The settings setup wrote, in the root it set up.
    let ctx = Context::new(Some(&then.config), Some(&then.root), ctx.vars().clone());
    let signed = sign::run(&ctx, &sign_args)?;
    let check_args = PolicyArgs {
        check: true,
        policy_file: Some(then.policy.clone()),
        json: false,
        appraise: AppraiseScope::RootExec,
        measure: false,
        observe: false,
        require_signed_policy: false,
        output: None,
        sign: false,
        key,
        root: Some(then.root.clone()),
    };
    let checked = if then.policy.exists() {
        policy_check::run(&ctx, &check_args)?
    } else {
        Status::SomeFailed
    };
    Ok(setup::finish(&then, signed, checked))
}

/// The installed packages `sign`/`verify` are asked about.
fn select_packages(ctx: &Context, args: &PackageArgs) -> Result<Selection> {
    let which = if args.all {
        Which::All
    } else {
        Which::Atoms(&args.atoms)
    };
    plan::select(which, &ctx.location())
}

fn generate(what: &GenerateWhat) -> Result<Status> {
    let cmd = Cli::command();
    match what {
        GenerateWhat::Man { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            man_pages(cmd, dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
        }
        GenerateWhat::Completions { shell } => {
            report::print_document(completions(*shell, cmd).as_bytes())?;
        }
        GenerateWhat::SettingsTable => {
            report::print_document(manual::settings_table().as_bytes())?;
        }
    }
    Ok(Status::Success)
}

/// portage-ima(8), a portage-ima-COMMAND(8) page per subcommand (clap's
/// text and [`manual::extra_sections`]), and ima.toml(5) from
/// [`manual::SETTINGS`].
fn man_pages(mut cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    cmd.build();
    let page = |cmd: clap::Command, name: &str, sub: Option<&str>| -> std::io::Result<()> {
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd).section("8").render(&mut text)?;
        text.extend_from_slice(manual::extra_sections(sub).as_bytes());
        std::fs::write(dir.join(format!("{name}.8")), text)
    };
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        // After build(), clap names it `portage-ima-NAME`, the page's title.
        let name = sub
            .get_display_name()
            .map_or_else(|| format!("portage-ima-{}", sub.get_name()), str::to_owned);
        page(sub.clone(), &name, Some(sub.get_name()))?;
    }
    page(cmd.clone(), "portage-ima", None)?;
    std::fs::write(
        dir.join("ima.toml.5"),
        manual::ima_toml_page(env!("CARGO_PKG_VERSION")),
    )
}

/// The completion script for `shell`.
///
/// clap_complete's bash script (4.6.11) turns the `-` of the program name
/// into `__` in the state it sets but into `__subcmd__` in the `case` labels
/// that read it, so for `portage-ima` no subcommand ever completed its
/// options. The labels are put back to the name the state uses.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "portage-ima", &mut out);
    let script = String::from_utf8(out).expect("clap_complete writes UTF-8");
    match shell {
        clap_complete::Shell::Bash => script.replace("portage__subcmd__ima", "portage__ima"),
        _ => script,
    }
}
