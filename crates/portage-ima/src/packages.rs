//! `sign ATOM...|--all` and `verify ATOM...|--all`: installed packages, read
//! from the vdb, with the same per-file rules as the hook.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::KeySet;

use crate::atom::{self, Atom};
use crate::cli::{PackageArgs, SignArgs, VerifyArgs};
use crate::commands::{finish_status, print_failures, tally_line, Status};
use crate::config::{ConfigFiles, Settings};
use crate::engine::{FileReport, Outcome, Runner, Tally};
use crate::objects::{sign_object, verify_object, ConfigProtect};
use crate::progress::Progress;
use crate::rootfs::RootDir;
use crate::vdb::{InstalledPackage, Vdb};
use crate::verify::{self, FileStatus};

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

/// The selected packages and their objects.
struct Selection {
    location: Location,
    root: RootDir,
    packages: Vec<InstalledPackage>,
    tasks: Vec<Task>,
    /// Packages whose CONTENTS could not be read, with the reason.
    broken: Vec<(usize, String)>,
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
    let mut tasks = Vec::new();
    let mut broken = Vec::new();
    for (i, pkg) in packages.iter().enumerate() {
        match pkg.contents() {
            Ok(contents) => {
                for (path, md5) in contents.objects() {
                    let size = std::fs::symlink_metadata(root.display_path(path))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    tasks.push(Task {
                        package: i,
                        path: path.to_path_buf(),
                        md5: *md5,
                        size,
                    });
                }
            }
            Err(e) => broken.push((i, e.to_string())),
        }
    }
    Ok(Selection {
        location,
        root,
        packages,
        tasks,
        broken,
    })
}

pub fn sign(settings: &Settings, args: &SignArgs) -> Result<Status> {
    let sel = select(&args.packages)?;
    let signer = settings.signer()?;
    let protect = (settings.config_files == ConfigFiles::Skip)
        .then(|| ConfigProtect::discover(&sel.location.eprefix));
    let runner = Runner::new(settings.jobs)?;
    runner.cancel_on_signals()?;
    let total_bytes = sel.tasks.iter().map(|t| t.size).sum();
    let progress = Progress::new(args.progress, sel.tasks.len() as u64, total_bytes);
    let results = runner.run(
        &sel.tasks,
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
    for (task, result) in sel.tasks.iter().zip(results) {
        match result {
            Some(report) => {
                per_package[task.package].add(&report.outcome);
                reports.push(report);
            }
            None => not_started += 1,
        }
    }
    print_failures(&reports);
    for (i, reason) in &sel.broken {
        eprintln!("portage-ima: {}: {reason}", sel.packages[*i].cpv());
        per_package[*i].failed += 1;
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

pub fn verify(settings: &Settings, keys: &KeySet, args: &VerifyArgs) -> Result<Status> {
    let sel = select(&args.packages)?;
    let runner = Runner::new(settings.jobs)?;
    let results = runner.run(
        &sel.tasks,
        &Progress::hidden(),
        |t| t.size,
        |task| {
            let mut status = verify_object(keys, &sel.root, &task.path, &task.md5);
            status.package = Some(sel.packages[task.package].cpv());
            status
        },
    );
    let mut statuses: Vec<FileStatus> = results.into_iter().flatten().collect();
    for (i, reason) in &sel.broken {
        let pkg = &sel.packages[*i];
        let mut status = FileStatus::error(&pkg.contents_path(), reason.clone());
        status.package = Some(pkg.cpv());
        statuses.push(status);
    }
    let mut by_package: BTreeMap<String, Vec<&FileStatus>> = BTreeMap::new();
    for pkg in &sel.packages {
        by_package.entry(pkg.cpv()).or_default();
    }
    for s in &statuses {
        if let Some(p) = &s.package {
            by_package.entry(p.clone()).or_default().push(s);
        }
    }
    let package_summaries: BTreeMap<&str, BTreeMap<&'static str, usize>> = by_package
        .iter()
        .map(|(p, files)| {
            let owned: Vec<FileStatus> = files.iter().map(|f| (*f).clone()).collect();
            (p.as_str(), verify::summary(&owned))
        })
        .collect();
    if !args.json {
        for (pkg, counts) in &package_summaries {
            let all_ok = counts.keys().all(|s| *s == "ok");
            println!(
                "{} {pkg}: {}",
                if all_ok { "ok  " } else { "FAIL" },
                verify::summary_line(counts)
            );
        }
    }
    let extra = serde_json::json!({ "packages": package_summaries });
    verify::print(&statuses, args.json, args.verbose, Some(extra));
    Ok(if statuses.iter().all(FileStatus::is_ok) {
        Status::Success
    } else {
        Status::SomeFailed
    })
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
