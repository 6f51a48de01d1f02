//! `portage-ima sign`: the files given with `--files` (or, with
//! `--digest-only`, their digest-only `security.ima`), or the files of
//! installed packages (`ATOM...`, `--all`) by the same rules as the hook,
//! config files by the `config_files` setting.

use anyhow::{bail, Result};

use crate::cli::SignArgs;
use crate::context::Context;
use crate::engine::{self, Runner};
use crate::fs::walk;
use crate::plan::{self, Job, Protection};
use crate::policy::check::Coverage;
use crate::progress::Progress;
use crate::report::{self, FileReport, SignPrinter, Status, Tally};
use crate::settings::{Settings, SigningScope};

pub(crate) fn run(ctx: &Context, args: &SignArgs) -> Result<Status> {
    if !args.dry_run && crate::kernel::capabilities::may_write_security_xattrs() == Some(false) {
        bail!(crate::kernel::capabilities::not_permitted_message());
    }
    let settings = Settings::load(ctx.config(), &args.key, args.jobs)?;
    if args.files.is_empty() {
        return packages(ctx, &settings, args);
    }
    let (found, problems) = walk::collect(&args.files);
    let jobs: Vec<Job> = found.into_iter().map(|f| Job::found(f, None)).collect();
    // A digest needs no key: none is loaded.
    let signer = (!args.digest_only).then(|| settings.signer()).transpose()?;
    let results = match &signer {
        None => {
            let hasher = ima_core::ImaHasher::new(settings.backend, settings.hash)?;
            sign_jobs(&settings, args, &jobs, |job| {
                engine::hash_job(&hasher, job, args.dry_run)
            })?
        }
        Some(signer) => sign_jobs(&settings, args, &jobs, |job| {
            engine::sign_job(signer, job, args.dry_run, args.rotate)
        })?,
    };
    let mut printer = SignPrinter::stdout(args.json, args.dry_run);
    for problem in problems {
        printer.file(&problem.into(), None);
    }
    for result in results {
        match result {
            Some(report) => printer.file(&report, None),
            None => printer.not_started(1),
        }
    }
    if let Some(signer) = &signer {
        report::print_device_rate(signer);
    }
    Ok(printer.finish(""))
}

/// Runs `work` (signing or hashing) on the jobs in parallel, with progress,
/// stopping on SIGINT/SIGTERM; a job not started gives `None`.
fn sign_jobs(
    settings: &Settings,
    args: &SignArgs,
    jobs: &[Job],
    work: impl Fn(&Job) -> FileReport + Sync,
) -> Result<Vec<Option<FileReport>>> {
    let runner = Runner::new(settings.jobs)?;
    runner.cancel_on_signals()?;
    let total_bytes = jobs.iter().map(|job| job.size).sum();
    let progress = Progress::new(args.progress.into(), jobs.len() as u64, total_bytes);
    let results = runner.run(jobs, &progress, |job| job.size, work);
    progress.finish();
    Ok(results)
}

/// How many files `sign` of packages hands to the workers at a time:
/// enough that the largest-first order keeps them busy, few enough that
/// memory stays small whatever the number of files (a job and its report
/// are a few hundred bytes).
const SIGN_BATCH: usize = 4096;

/// `sign ATOM...|--all`: every `obj` of the selected packages' CONTENTS,
/// in batches of [`SIGN_BATCH`] files. A first pass over the CONTENTS
/// counts files and bytes (the progress display, the files an interrupted
/// run did not start) and keeps only the counts; failures are reported as
/// their batch is done, the tallies at the end.
fn packages(ctx: &Context, settings: &Settings, args: &SignArgs) -> Result<Status> {
    if args.digest_only {
        bail!(
            "--digest-only works with --files; for the config files of packages, set \
             config_files = \"hash\" in ima.toml"
        );
    }
    let sel = super::select_packages(ctx, &args.packages)?;
    let protection =
        Protection::for_signing(settings.config_files, &sel.location.eprefix, ctx.vars());
    let mut files_of = vec![0; sel.packages.len()];
    let mut total_bytes = 0;
    let mut problems: Vec<(usize, Vec<String>)> = Vec::new();
    let mut jobs = Vec::new();
    for (index, files) in files_of.iter_mut().enumerate() {
        let found = plan::package_jobs(&sel, index, &protection, &mut jobs);
        if !found.is_empty() {
            problems.push((index, found));
        }
        *files = jobs.len();
        total_bytes += jobs.iter().map(|job| job.size).sum::<u64>();
        jobs.clear();
    }
    let total_files: usize = files_of.iter().sum();
    let signer = settings.signer()?;
    let coverage = (settings.scope == SigningScope::Policy)
        .then(|| Coverage::load(&sel.location.root))
        .flatten();
    let runner = Runner::new(settings.jobs)?;
    runner.cancel_on_signals()?;
    runner.expect(total_files);
    let progress = Progress::new(args.progress.into(), total_files as u64, total_bytes);

    let cpvs: Vec<String> = sel.packages.iter().map(|p| p.cpv().to_string()).collect();
    let mut per_package = vec![Tally::default(); sel.packages.len()];
    let mut printer = SignPrinter::stdout(args.json, args.dry_run).in_root(&sel.location.root);
    let sign_batch = |batch: &[Job], printer: &mut SignPrinter, per_package: &mut [Tally]| {
        let results = runner.run(
            batch,
            &progress,
            |job| job.size,
            |job| engine::sign_job(&signer, job, args.dry_run, args.rotate),
        );
        for (job, result) in batch.iter().zip(results) {
            let index = job.package.expect("a package's job");
            match result {
                Some(report) => {
                    per_package[index].add(&report.outcome);
                    printer.file(&report, Some(&cpvs[index]));
                }
                None => {
                    per_package[index].not_started += 1;
                    printer.not_started(1);
                }
            }
        }
    };
    for index in 0..sel.packages.len() {
        if runner.cancelled() {
            per_package[index].not_started += files_of[index];
            printer.not_started(files_of[index]);
            continue;
        }
        // Its problems were noted in the first pass.
        let first_new = jobs.len();
        plan::package_jobs(&sel, index, &protection, &mut jobs);
        if let Some(coverage) = &coverage {
            plan::limit_to_policy(&mut jobs[first_new..], |root, path| {
                coverage.covers(root, path)
            });
        }
        let full = jobs.len() / SIGN_BATCH * SIGN_BATCH;
        for batch in jobs[..full].chunks(SIGN_BATCH) {
            sign_batch(batch, &mut printer, &mut per_package);
        }
        jobs.drain(..full);
    }
    sign_batch(&jobs, &mut printer, &mut per_package);
    progress.finish();
    for (index, messages) in &problems {
        let contents = sel.packages[*index].contents_path();
        for message in messages {
            printer.package_problem(&cpvs[*index], &contents, message);
            per_package[*index].failed += 1;
        }
    }
    for (cpv, tally) in cpvs.iter().zip(&per_package) {
        printer.package(cpv, tally, !args.packages.all || tally.failed > 0);
    }
    report::print_device_rate(&signer);
    Ok(printer.finish(&format!(
        "{}{}: ",
        report::count(sel.packages.len(), "package"),
        report::root_named(&sel.location.root)
    )))
}
