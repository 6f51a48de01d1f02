//! `portage-ima setup`: reads the machine, prints the plan
//! ([`crate::setup`]) or carries it out with `--apply`. Signing what is
//! installed and `policy --check` follow in `commands/mod.rs`, which runs
//! those commands through the library after this one.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::{AppraiseScope, KeyAlgorithm, SetupArgs};
use crate::context::Context;
use crate::report::{self, Status};
use crate::setup::plan::Plan;
use crate::setup::{self, Algorithm, Choices, KernelSources, Machine};

/// What `--apply` leaves for `sign --all` and `policy --check`.
pub(crate) struct Then {
    /// The plan applied (its boots are printed at the end).
    pub plan: Plan,
    /// ROOT.
    pub root: PathBuf,
    /// The settings file under ROOT.
    pub config: PathBuf,
    /// The key, as this process reaches it.
    pub key: PathBuf,
    /// The certificate, as this process reaches it.
    pub cert: PathBuf,
    /// The policy to check, as this process reaches it.
    pub policy: PathBuf,
    /// Whether a step was blocked.
    pub blocked: bool,
}

/// Plans, prints, and with `--apply` applies; `Then` when signing follows.
pub(crate) fn run(ctx: &Context, args: &SetupArgs) -> Result<(Status, Option<Then>)> {
    let root = ctx.location().root;
    let sources = KernelSources {
        config: args.kernel_config.clone(),
        efivars: args.efivars.clone(),
        proc_keys: args.proc_keys.clone(),
    };
    let machine = Machine::read(&root, &sources, ctx.vars())?;
    let choices = Choices {
        key: args.key.clone(),
        cert: args.cert.clone(),
        hardware: args.hardware.clone(),
        appraise: Some(match args.appraise {
            AppraiseScope::RootExec => crate::policy::Scope::RootExec,
            AppraiseScope::Exec => crate::policy::Scope::Exec,
            AppraiseScope::ExecMmap => crate::policy::Scope::ExecMmap,
        }),
        algorithm: args.algorithm.map(|a| match a {
            KeyAlgorithm::Rsa => Algorithm::Rsa,
            KeyAlgorithm::P256 => Algorithm::P256,
        }),
    };
    let plan = setup::plan::plan(&machine, &choices)?;
    let blocked = plan.steps.iter().any(|s| s.blocked.is_some());
    let status = if blocked {
        Status::SomeFailed
    } else {
        Status::Success
    };
    if args.json {
        report::setup::print_plan_json(&plan)?;
        return Ok((status, None));
    }
    if !args.apply {
        report::setup::print_plan(&setup::text::plan_text(&plan));
        return Ok((status, None));
    }
    // Signing at the end needs CAP_SYS_ADMIN: refuse before changing anything.
    if crate::kernel::capabilities::may_write_security_xattrs() == Some(false) {
        anyhow::bail!(
            "setup --apply ends by signing what is installed, and {}",
            crate::kernel::capabilities::not_permitted_message()
        );
    }
    let stamp = chrono_stamp();
    let applied = setup::apply::apply(&plan, &root, &stamp)?;
    let (lines, not_done) = setup::text::applied_lines(&applied);
    report::setup::print_applied(&lines, &not_done);
    let policy = setup::plan::policy_path(&machine).to_string()
        + if plan.facts.secure_boot_enabled {
            setup::plan::ENFORCE_SUFFIX
        } else {
            ""
        };
    let key = if args.hardware.is_some() {
        PathBuf::from(&plan.key)
    } else {
        machine.path(Path::new(&plan.key))
    };
    let then = Then {
        root: root.clone(),
        config: ctx.config().explicit().map_or_else(
            || root.join(crate::settings::CONFIG_FILE),
            Path::to_path_buf,
        ),
        key,
        cert: machine.path(&plan.cert),
        policy: machine.path(Path::new(&policy)),
        blocked,
        plan,
    };
    Ok((status, Some(then)))
}

/// After signing and the check: what is left, and the status of it all.
pub(crate) fn finish(then: &Then, signed: Status, checked: Status) -> Status {
    report::setup::print_left(&setup::text::left_text(&then.plan));
    if then.blocked || signed != Status::Success || checked != Status::Success {
        Status::SomeFailed
    } else {
        Status::Success
    }
}

/// The backup directory's name: seconds since the epoch.
fn chrono_stamp() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}
