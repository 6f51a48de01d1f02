//! `sign ATOM...|--all` and `verify ATOM...|--all`: installed packages, read
//! from the vdb, with the same per-file rules as the hook.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::KeySet;

use crate::cli::{PackageArgs, SignArgs, VerifyArgs};
use crate::commands::{finish_status, print_failures, tally_line, Status};
use crate::engine::{FileReport, Outcome, Runner, Tally};
use crate::escape::escape_text;
use crate::fs::rootfs::RootDir;
use crate::gentoo::atom::{self, Atom};
use crate::gentoo::vdb::{InstalledPackage, Vdb};
use crate::objects::{sign_object, verify_object, ConfigProtect};
use crate::progress::Progress;
use crate::settings::{ConfigFiles, Settings};
use crate::verify::{Counts, FileStatus, Printer};

/// Where to look: the root files live under, and the vdb's EROOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub root: PathBuf,
    pub eroot: PathBuf,
    pub eprefix: PathBuf,
}

impl Location {
    /// `--root DIR` (with EPREFIX from the environment), else ROOT/EROOT from
    /// the environment, else `/`.
    pub fn resolve(root_flag: Option<&Path>, var: impl Fn(&str) -> Option<String>) -> Location {
        let nonempty = |name: &str| var(name).filter(|v| !v.is_empty());
        let eprefix = PathBuf::from(nonempty("EPREFIX").unwrap_or_default());
        let join = |root: &Path| -> PathBuf {
            let mut eroot = root.to_path_buf();
            eroot.push(eprefix.strip_prefix("/").unwrap_or(&eprefix));
            eroot
        };
        match root_flag {
            Some(root) => Location {
                root: root.to_path_buf(),
                eroot: join(root),
                eprefix: eprefix.clone(),
            },
            None => {
                let root = PathBuf::from(nonempty("ROOT").unwrap_or_else(|| "/".into()));
                let eroot = nonempty("EROOT")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| join(&root));
                Location {
                    root,
                    eroot,
                    eprefix: eprefix.clone(),
                }
            }
        }
    }
}

/// One `obj` to work on, and the package it belongs to.
struct Task {
    package: usize,
    path: PathBuf,
    md5: [u8; 16],
    size: u64,
}

/// The selected packages, in vdb order, and where their files live.
struct Selection {
    location: Location,
    root: RootDir,
    packages: Vec<InstalledPackage>,
}

fn select(args: &PackageArgs) -> Result<Selection> {
    let location = Location::resolve(args.root.as_deref(), |n| std::env::var(n).ok());
    let vdb = Vdb::open(&location.eroot)?;
    let installed = vdb
        .packages()
        .with_context(|| format!("cannot list {}", vdb.path().display()))?;
    let packages = if args.all {
        installed
    } else if args.atoms.is_empty() {
        bail!("name the packages (cat/pkg, =cat/pkg-1.0, pkg), or give --all, or --files PATH...");
    } else {
        let atoms = args
            .atoms
            .iter()
            .map(|a| a.parse::<Atom>())
            .collect::<Result<Vec<_>, _>>()?;
        atom::resolve(&atoms, &installed)?
    };
    let root = RootDir::open(&location.root)?;
    Ok(Selection {
        location,
        root,
        packages,
    })
}

/// What one package's CONTENTS gives: its objects (appended to `tasks`),
/// and the problems (CONTENTS unreadable, lines skipped) as messages.
fn load_package(sel: &Selection, index: usize, tasks: &mut Vec<Task>) -> Vec<String> {
    let pkg = &sel.packages[index];
    let contents = match pkg.contents() {
        Ok(contents) => contents,
        Err(e) => return vec![e.to_string()],
    };
    for (path, md5) in contents.objects() {
        // Sizes only order the work (largest first).
        let size = std::fs::symlink_metadata(sel.root.display_path(path)).map_or(0, |m| m.len());
        tasks.push(Task {
            package: index,
            path: path.to_path_buf(),
            md5: *md5,
            size,
        });
    }
    contents.skipped_messages(&pkg.contents_path()).collect()
}

pub fn sign(settings: &Settings, args: &SignArgs) -> Result<Status> {
    let sel = select(&args.packages)?;
    let mut tasks = Vec::new();
    let mut problems: Vec<(usize, Vec<String>)> = Vec::new();
    for i in 0..sel.packages.len() {
        let found = load_package(&sel, i, &mut tasks);
        if !found.is_empty() {
            problems.push((i, found));
        }
    }
    let signer = settings.signer()?;
    let protect = (settings.config_files == ConfigFiles::Skip)
        .then(|| ConfigProtect::discover(&sel.location.eprefix));
    let runner = Runner::new(settings.jobs)?;
    runner.cancel_on_signals()?;
    let total_bytes = tasks.iter().map(|t| t.size).sum();
    let progress = Progress::new(args.progress, tasks.len() as u64, total_bytes);
    let results = runner.run(
        &tasks,
        &progress,
        |t| t.size,
        |task| {
            if protect
                .as_ref()
                .is_some_and(|cp| cp.is_protected(&task.path))
            {
                let skipped = Outcome::Skipped("config-protected (config_files = \"skip\")".into());
                return FileReport::new(sel.root.display_path(&task.path), skipped);
            }
            sign_object(&signer, &sel.root, &task.path, &task.md5, args.dry_run)
        },
    );
    progress.finish();

    let mut per_package = vec![Tally::default(); sel.packages.len()];
    let mut reports = Vec::new();
    let mut not_started = 0;
    for (task, result) in tasks.iter().zip(results) {
        match result {
            Some(report) => {
                per_package[task.package].add(&report.outcome);
                reports.push(report);
            }
            None => not_started += 1,
        }
    }
    print_failures(&reports);
    for (i, messages) in &problems {
        for message in messages {
            eprintln!(
                "portage-ima: {}: {}",
                sel.packages[*i].cpv(),
                escape_text(message)
            );
            per_package[*i].failed += 1;
        }
    }
    let mut total = Tally::default();
    for (pkg, tally) in sel.packages.iter().zip(&per_package) {
        if !args.packages.all || tally.failed > 0 {
            println!(
                "portage-ima: {}: {}",
                pkg.cpv(),
                tally_line(tally, args.dry_run)
            );
        }
        total.merge(tally);
    }
    println!(
        "portage-ima: {} packages: {}",
        sel.packages.len(),
        tally_line(&total, args.dry_run)
    );
    Ok(finish_status(&total, not_started))
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
pub fn verify(settings: &Settings, keys: &KeySet, args: &VerifyArgs) -> Result<Status> {
    let sel = select(&args.packages)?;
    let protect = ConfigProtect::discover(&sel.location.eprefix);
    let runner = Runner::new(settings.jobs)?;
    let mut printer = Printer::stdout(args.json, args.verbose).with_packages();
    let mut open: VecDeque<PackageProgress> = VecDeque::new();
    let mut tasks: Vec<Task> = Vec::new();
    let check = |batch: &[Task], open: &mut VecDeque<PackageProgress>, printer: &mut Printer| {
        let results = runner.run(
            batch,
            &Progress::hidden(),
            |t| t.size,
            |task| verify_object(keys, &sel.root, &task.path, &task.md5, &protect),
        );
        for (task, statuses) in batch.iter().zip(results) {
            // `open` holds consecutive packages, the oldest first.
            let first = open.front().map_or(0, |p| p.index);
            let pkg = &mut open[task.package - first];
            pkg.remaining -= 1;
            for mut status in statuses.into_iter().flatten() {
                status.package = Some(sel.packages[task.package].cpv().to_string());
                *pkg.counts.entry(status.status).or_insert(0) += 1;
                printer.file(&status);
            }
            // Its summary before the next package's lines.
            finish_done_packages(&sel, open, printer);
        }
    };
    for index in 0..sel.packages.len() {
        let before = tasks.len();
        let problems = load_package(&sel, index, &mut tasks);
        open.push_back(PackageProgress {
            index,
            counts: Counts::new(),
            remaining: tasks.len() - before,
            problems,
        });
        let full = tasks.len() / VERIFY_BATCH * VERIFY_BATCH;
        for batch in tasks[..full].chunks(VERIFY_BATCH) {
            check(batch, &mut open, &mut printer);
        }
        tasks.drain(..full);
    }
    check(&tasks, &mut open, &mut printer);
    drop(tasks);
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
    printer: &mut Printer,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn location_defaults_to_host_root() {
        let l = Location::resolve(None, vars(&[]));
        assert_eq!((l.root, l.eroot), ("/".into(), "/".into()));
    }

    #[test]
    fn location_from_root_flag_adds_eprefix() {
        let l = Location::resolve(
            Some(Path::new("/mnt/gentoo")),
            vars(&[("EPREFIX", "/opt/g")]),
        );
        assert_eq!(l.eroot, Path::new("/mnt/gentoo/opt/g"));
        assert_eq!(l.root, Path::new("/mnt/gentoo"));
    }

    #[test]
    fn location_from_environment() {
        let l = Location::resolve(
            None,
            vars(&[("ROOT", ""), ("EROOT", "/p"), ("EPREFIX", "/p")]),
        );
        assert_eq!((l.root, l.eroot), ("/".into(), "/p".into()));
        let l = Location::resolve(None, vars(&[("ROOT", "/r/")]));
        assert_eq!(l.eroot, Path::new("/r/"));
    }
}
