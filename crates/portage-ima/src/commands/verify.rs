//! `portage-ima verify`: the signatures of the files given with `--files`,
//! or of installed packages' files against their CONTENTS, streamed.

use std::collections::VecDeque;

use anyhow::Result;
use ima_core::KeySet;

use crate::cli::{KeyArgs, VerifyArgs};
use crate::context::Context;
use crate::engine::{self, Runner};
use crate::fs::walk;
use crate::gentoo::config_protect::ConfigProtect;
use crate::plan::{self, Job, Protection, Selection};
use crate::progress::Progress;
use crate::report::{Counts, FileStatus, Status, VerifyPrinter};
use crate::settings::Settings;
use crate::trust::key_set;

pub(crate) fn run(ctx: &Context, args: &VerifyArgs) -> Result<Status> {
    let key_args = KeyArgs {
        backend: args.backend.clone(),
        ..Default::default()
    };
    let settings = Settings::load(ctx.config(), &key_args, args.jobs)?;
    let keys = key_set(&settings, &args.cert)?;
    if args.files.is_empty() {
        return packages(ctx, &settings, &keys, args);
    }
    let (found, problems) = walk::collect(&args.files);
    let jobs: Vec<Job> = found.into_iter().map(|f| Job::found(f, None)).collect();
    let runner = Runner::new(settings.jobs)?;
    let mut printer = VerifyPrinter::stdout(args.json, true);
    let results = runner.run(
        &jobs,
        &Progress::hidden(),
        |job| job.size,
        |job| engine::verify_job(&keys, job),
    );
    for status in results.into_iter().flatten().flatten() {
        printer.file(&status);
    }
    for p in problems {
        printer.file(&FileStatus::error(&p.path, p.reason.to_string()));
    }
    let failed = printer.failed() || printer.files() == 0;
    printer.finish();
    Ok(if failed {
        Status::SomeFailed
    } else {
        Status::Success
    })
}

/// Whether every file gets a text line, not only those that are not ok:
/// `-v` (or `PORTAGE_IMA_LOG=debug`).
fn every_file() -> bool {
    log::max_level() >= log::LevelFilter::Debug
}

/// How many files `verify` checks in parallel before it prints their
/// results: enough to keep every worker busy across small packages, few
/// enough that memory stays small (a result holds a hex signature, about
/// 1.3 KB for RSA-4096).
const VERIFY_BATCH: usize = 2048;

/// A package whose results are being printed: its counts so far, the
/// files not yet checked, and its problems (printed when it is done).
struct PackageProgress {
    index: usize,
    counts: Counts,
    remaining: usize,
    problems: Vec<String>,
}

/// `verify ATOM...|--all`: packages in vdb order, their files checked in
/// parallel batches, each package's lines and summary printed as soon as it
/// is done. Memory holds one batch of results and one package's CONTENTS,
/// whatever the number of files.
fn packages(
    ctx: &Context,
    settings: &Settings,
    keys: &KeySet,
    args: &VerifyArgs,
) -> Result<Status> {
    let sel = super::select_packages(ctx, &args.packages)?;
    // Always looked up: an edited config file is `config-changed` whatever the mode.
    let protection = Protection {
        protect: Some(ConfigProtect::discover(&sel.location.eprefix, ctx.vars())),
        mode: settings.config_files,
    };
    let runner = Runner::new(settings.jobs)?;
    let mut printer = VerifyPrinter::stdout(args.json, every_file())
        .with_packages()
        .in_root(&sel.location.root);
    let mut open: VecDeque<PackageProgress> = VecDeque::new();
    let mut jobs: Vec<Job> = Vec::new();
    let check =
        |batch: &[Job], open: &mut VecDeque<PackageProgress>, printer: &mut VerifyPrinter| {
            let results = runner.run(
                batch,
                &Progress::hidden(),
                |job| job.size,
                |job| engine::verify_job(keys, job),
            );
            for (job, statuses) in batch.iter().zip(results) {
                let index = job.package.expect("a package's job");
                // `open` holds consecutive packages, the oldest first.
                let first = open.front().map_or(0, |p| p.index);
                let pkg = &mut open[index - first];
                pkg.remaining -= 1;
                for mut status in statuses.into_iter().flatten() {
                    status.package = Some(sel.packages[index].cpv().to_string());
                    *pkg.counts.entry(status.status).or_insert(0) += 1;
                    printer.file(&status);
                }
                // Its summary before the next package's lines.
                finish_done_packages(&sel, open, printer);
            }
        };
    for index in 0..sel.packages.len() {
        let before = jobs.len();
        let problems = plan::package_jobs(&sel, index, &protection, &mut jobs);
        open.push_back(PackageProgress {
            index,
            counts: Counts::new(),
            remaining: jobs.len() - before,
            problems,
        });
        let full = jobs.len() / VERIFY_BATCH * VERIFY_BATCH;
        for batch in jobs[..full].chunks(VERIFY_BATCH) {
            check(batch, &mut open, &mut printer);
        }
        jobs.drain(..full);
    }
    check(&jobs, &mut open, &mut printer);
    drop(jobs);
    finish_done_packages(&sel, &mut open, &mut printer);
    let failed = printer.failed();
    printer.finish();
    Ok(if failed {
        Status::SomeFailed
    } else {
        Status::Success
    })
}

/// Prints, in vdb order, the packages whose files are all checked: their
/// problems (as `error` results naming CONTENTS) and their summary line.
fn finish_done_packages(
    sel: &Selection,
    open: &mut VecDeque<PackageProgress>,
    printer: &mut VerifyPrinter,
) {
    while open.front().is_some_and(|p| p.remaining == 0) {
        let mut done = open.pop_front().expect("front exists");
        let pkg = &sel.packages[done.index];
        for problem in done.problems.drain(..) {
            let mut status = FileStatus::error(&pkg.contents_path(), problem);
            status.package = Some(pkg.cpv().to_string());
            *done.counts.entry(status.status).or_insert(0) += 1;
            printer.file(&status);
        }
        printer.package(&pkg.cpv().to_string(), done.counts);
    }
}
