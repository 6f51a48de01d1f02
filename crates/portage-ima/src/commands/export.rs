//! `portage-ima export keylime`: a Keylime runtime policy from the vdb
//! (see [`crate::keylime`]).

use anyhow::{Context as _, Result};

use crate::cli::{ExportWhat, KeyArgs, KeylimeArgs};
use crate::context::Context;
use crate::escape::escape_text;
use crate::fs::rootfs::RootDir;
use crate::gentoo::owners::OwnerIndex;
use crate::gentoo::vdb::Vdb;
use crate::keylime;
use crate::report::{self, Status};
use crate::settings::Settings;

pub(crate) fn run(ctx: &Context, what: &ExportWhat) -> Result<Status> {
    match what {
        ExportWhat::Keylime(args) => keylime_policy(ctx, args),
    }
}

fn keylime_policy(ctx: &Context, args: &KeylimeArgs) -> Result<Status> {
    let key_args = KeyArgs {
        hash: args.hash.clone(),
        ..Default::default()
    };
    let settings = Settings::load(ctx.config(), &key_args, args.jobs)?;
    let cert_paths = if args.cert.is_empty() {
        settings.cert().into_iter().collect()
    } else {
        args.cert.clone()
    };
    let certs = cert_paths
        .iter()
        .map(|p| ima_core::Certificate::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        log::warn!(
            "no certificate (give --cert FILE or set `cert` in ima.toml): the policy's \
             verification-keys is empty, so Keylime cannot check ima-sig signatures"
        );
    }
    let location = ctx.location();
    let vdb = Vdb::open(&location.eroot)?;
    let packages = vdb
        .packages()
        .with_context(|| format!("cannot list {}", vdb.path().display()))?;
    let npackages = packages.len();
    let index = OwnerIndex::build(packages, &location.root);
    for problem in index.problems() {
        log::warn!("{}", escape_text(problem));
    }
    let root = RootDir::open(&location.root)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.jobs.max(1))
        .build()
        .context("cannot start the worker threads")?;
    let export = pool.install(|| {
        keylime::export(
            &index,
            &root,
            settings.backend,
            settings.hash,
            &certs,
            args.exclude.clone(),
        )
    });
    let mut json = serde_json::to_vec_pretty(&export.policy)?;
    json.push(b'\n');
    match &args.output {
        Some(path) => crate::fs::atomic::write_atomically(path, &json)?,
        None => report::print_document(&json)?,
    }
    for l in &export.left_out {
        report::print_problem(&format!(
            "left out: {} ({}): {}",
            escape_text(&l.path),
            l.package,
            escape_text(&l.reason)
        ));
    }
    report::print_problem(&format!(
        "keylime policy: {} of {} in {}{} ({}), {} left out",
        report::count(export.policy.digests.len(), "path"),
        report::count(export.files, "file"),
        report::count(npackages, "package"),
        report::root_named(&location.root),
        settings.hash.name(),
        report::count(export.left_out.len(), "file")
    ));
    Ok(Status::Success)
}
