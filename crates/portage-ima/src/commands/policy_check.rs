//! `portage-ima policy --check [POLICY]`: what the kernel would refuse
//! after the next boot with `ima_appraise=enforce` (see
//! [`crate::policy::check`]).

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::cli::PolicyArgs;
use crate::context::Context;
use crate::gentoo::owners::OwnerIndex;
use crate::gentoo::vdb::Vdb;
use crate::policy::{check, parse_policy};
use crate::report::{self, Status};
use crate::settings::{Settings, SigningScope};

pub(crate) fn run(ctx: &Context, args: &PolicyArgs) -> Result<Status> {
    let settings = Settings::load(ctx.config(), &args.key, None)?;
    let keys = crate::trust::key_set(&settings, &[])?;
    let location = ctx.location();
    let (source, text) = check::read_policy(args.policy_file.as_deref(), &location.root)
        .context("give the policy file: portage-ima policy --check FILE")?;
    let policy =
        parse_policy(&text).with_context(|| format!("{source}: the kernel would refuse it"))?;
    let started = std::time::Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.jobs.max(1))
        .build()
        .context("cannot start the worker threads")?;
    let mut report = pool.install(|| check::check(&policy, &location.root, &keys));
    let owners = Vdb::open(&location.eroot)
        .and_then(|vdb| vdb.packages())
        .map(|packages| OwnerIndex::build(packages, &location.root))
        .ok();
    let owner = |path: &Path| {
        let index = owners.as_ref()?;
        let (_, owned) = index.owner_of(path)?;
        Some(index.packages()[owned.package].cpv().to_string())
    };
    for denied in &mut report.denied {
        denied.package = owner(&denied.path);
    }
    report::policy_check::print(
        &report::policy_check::Checked {
            report: &report,
            source: &source,
            scope_policy: settings.scope == SigningScope::Policy,
            elapsed: started.elapsed(),
            root: &location.root,
        },
        args.json,
    )?;
    Ok(if report.safe() {
        Status::Success
    } else {
        Status::SomeFailed
    })
}
