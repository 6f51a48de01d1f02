//! `portage-ima sign`: the files given with `--files`, or the files of
//! installed packages (`ATOM...`, `--all`) by the same rules as the hook.

use std::path::Path;

use anyhow::Result;
use ima_core::ImaSigner;

use crate::cli::SignArgs;
use crate::engine::{self, Runner};
use crate::fs::rootfs::RootDir;
use crate::fs::walk;
use crate::plan::{self, ConfigProtect, Job, Protection};
use crate::policy::check::Coverage;
use crate::progress::Progress;
use crate::report::{FileReport, SignPrinter, Status, Tally};
use crate::settings::{ConfigFiles, Settings, SigningScope};

pub fn run(config: Option<&Path>, args: &SignArgs) -> Result<Status> {
    let settings = Settings::load(config, &args.key, args.jobs)?;
    if args.files.is_empty() {
        return packages(&settings, args);
    }
    let signer = settings.signer()?;
    let (found, problems) = walk::collect(&args.files);
    let jobs: Vec<Job> = found.into_iter().map(Job::found).collect();
    let results = sign_jobs(&settings, args, &signer, None, &jobs)?;
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
    Ok(printer.finish(""))
}

/// Signs the jobs in parallel, with progress, stopping on SIGINT/SIGTERM;
/// a job not started gives `None`.
fn sign_jobs(
    settings: &Settings,
    args: &SignArgs,
    signer: &ImaSigner,
    root: Option<&RootDir>,
    jobs: &[Job],
) -> Result<Vec<Option<FileReport>>> {
    let runner = Runner::new(settings.jobs)?;
    runner.cancel_on_signals()?;
    let total_bytes = jobs.iter().map(|job| job.size).sum();
    let progress = Progress::new(args.progress.into(), jobs.len() as u64, total_bytes);
    let results = runner.run(
        jobs,
        &progress,
        |job| job.size,
        |job| engine::sign_job(signer, root, job, args.dry_run, args.rotate),
    );
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
fn packages(settings: &Settings, args: &SignArgs) -> Result<Status> {
    let sel = super::select_packages(&args.packages)?;
    let protection = Protection {
        protect: (settings.config_files == ConfigFiles::Skip)
            .then(|| ConfigProtect::discover(&sel.location.eprefix)),
        skip: true,
    };
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
    let mut printer = SignPrinter::stdout(args.json, args.dry_run);
    let sign_batch = |batch: &[Job], printer: &mut SignPrinter, per_package: &mut [Tally]| {
        let results = runner.run(
            batch,
            &progress,
            |job| job.size,
            |job| engine::sign_job(&signer, Some(&sel.root), job, args.dry_run, args.rotate),
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
        plan::limit_to_policy(&mut jobs[first_new..], &sel.root, coverage.as_ref());
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
    Ok(printer.finish(&format!("{} packages: ", sel.packages.len())))
}
