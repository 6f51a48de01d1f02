//! `portage-ima hook`: what runs from /etc/portage/bashrc.
//!
//! - preinst: sign every regular file under `${D}` before it goes live, when
//!   the merge keeps the xattr (same filesystem, so Portage renames; or
//!   `FEATURES=xattr` without `security.ima` excluded). The signed paths are
//!   noted in `${T}` so postinst can tell them apart.
//! - postinst: sign every `obj` of CONTENTS whose MD5 matches, keeping valid
//!   signatures (those signed in preinst are found valid here).
//! - any other phase: nothing, before even reading the settings.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::{HookArgs, KeyArgs};
use crate::commands::{print_failures, Status};
use crate::config::{ConfigFiles, Premerge, Settings};
use crate::contents::Contents;
use crate::engine::{FileReport, Outcome, Runner, Tally};
use crate::objects::{sign_object, ConfigProtect};
use crate::portage_env::{PortageEnv, PremergeXattr};
use crate::progress::Progress;
use crate::rootfs::RootDir;

/// The file in `${T}` listing what preinst signed (CONTENTS-style paths).
const PREMERGE_LIST: &str = "portage-ima-premerge.list";

pub fn run(config: Option<&Path>, args: &HookArgs) -> Result<Status> {
    let phase = match &args.phase {
        Some(p) => p.clone(),
        None => std::env::var("EBUILD_PHASE").unwrap_or_default(),
    };
    if phase != "preinst" && phase != "postinst" {
        return Ok(Status::Success);
    }
    let mut env = PortageEnv::from_env()?;
    env.phase = phase.clone();
    let settings = Settings::load(config, &KeyArgs::default(), None)?;
    let fail = |status: Status| {
        if settings.strict {
            Status::Strict
        } else {
            status
        }
    };
    let signer = match settings.signer() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "portage-ima: {}/{}: nothing signed: {}",
                env.category,
                env.pf,
                crate::status::error_line(&e)
            );
            return Ok(fail(Status::ConfigError));
        }
    };
    let runner = Runner::new(settings.jobs)?;
    if phase == "preinst" {
        // Failures here are retried in postinst; never fatal.
        preinst(&env, &settings, &signer, &runner)?;
        return Ok(Status::Success);
    }
    let tally = postinst(&env, &settings, &signer, &runner)?;
    Ok(if tally.failed > 0 {
        fail(Status::SomeFailed)
    } else {
        Status::Success
    })
}

fn preinst(
    env: &PortageEnv,
    settings: &Settings,
    signer: &ima_core::ImaSigner,
    runner: &Runner,
) -> Result<()> {
    match settings.premerge {
        Premerge::Never => return Ok(()),
        Premerge::Always => {}
        Premerge::Auto => {
            if let PremergeXattr::Lost { reason, hint } = env.premerge_xattr() {
                println!(
                    "portage-ima: not signing before the merge: {reason}. {hint}. \
                     The files are signed in postinst instead."
                );
                return Ok(());
            }
        }
    }
    let d = env
        .d
        .as_deref()
        .context("D is not set: preinst must run from Portage")?;
    let (found, mut reports) = crate::files::collect(&[d.to_path_buf()]);
    let done = crate::files::sign(signer, &found, runner, &Progress::hidden(), false);
    reports.extend(done.into_iter().flatten());
    let signed: Vec<&Path> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Signed | Outcome::AlreadyValid))
        .filter_map(|r| r.path.strip_prefix(d).ok())
        .collect();
    if let Some(t) = std::env::var_os("T") {
        let list = Path::new(&t).join(PREMERGE_LIST);
        let mut text = Vec::new();
        for rel in &signed {
            text.push(b'/');
            text.extend_from_slice(rel.as_os_str().as_bytes());
            text.push(b'\n');
        }
        if let Err(e) = std::fs::write(&list, text) {
            let message = format!("cannot write {}: {e}", list.display());
            eprintln!("portage-ima: {}", crate::escape::escape_text(&message));
        }
    }
    print_failures(&reports);
    println!(
        "portage-ima: {}/{}: signed {} files before the merge{}",
        env.category,
        env.pf,
        signed.len(),
        match Tally::of(&reports).failed {
            0 => String::new(),
            n => format!(", {n} failed (retried in postinst)"),
        }
    );
    Ok(())
}

fn postinst(
    env: &PortageEnv,
    settings: &Settings,
    signer: &ima_core::ImaSigner,
    runner: &Runner,
) -> Result<Tally> {
    let contents_path = env.vdb_entry().join("CONTENTS");
    let contents = Contents::read(&contents_path)?;
    let root = RootDir::open(&env.root)?;
    let premerged = premerge_list();
    let protect =
        (settings.config_files == ConfigFiles::Skip).then(|| ConfigProtect::discover(&env.eprefix));

    // Sizes only order the work (largest first); a file that cannot be
    // stat'ed here is reported when it is opened.
    let objects: Vec<(PathBuf, [u8; 16], u64)> = contents
        .objects()
        .map(|(p, md5)| {
            let size = std::fs::symlink_metadata(root.display_path(p)).map_or(0, |m| m.len());
            (p.to_path_buf(), *md5, size)
        })
        .collect();
    let reports: Vec<FileReport> = runner
        .run(
            &objects,
            &Progress::hidden(),
            |o| o.2,
            |(path, md5, _)| {
                if protect.as_ref().is_some_and(|cp| cp.is_protected(path)) {
                    let skipped =
                        Outcome::Skipped("config-protected (config_files = \"skip\")".into());
                    return FileReport::new(root.display_path(path), skipped);
                }
                let mut report = sign_object(signer, &root, path, md5, false);
                if report.outcome == Outcome::AlreadyValid && premerged.contains(path) {
                    report.outcome = Outcome::SignedBeforeMerge;
                }
                report
            },
        )
        .into_iter()
        .flatten()
        .collect();
    print_failures(&reports);
    let mut t = Tally::of(&reports);
    // Lines of CONTENTS not understood: their files are not signed.
    for message in contents.skipped_messages(&contents_path) {
        eprintln!("portage-ima: {}", crate::escape::escape_text(&message));
        t.failed += 1;
    }
    println!(
        "portage-ima: {}/{}: signed {} before the merge, {} now, {} already valid, {} skipped, {} failed",
        env.category, env.pf, t.signed_before_merge, t.signed, t.already_valid, t.skipped, t.failed
    );
    Ok(t)
}

fn premerge_list() -> HashSet<PathBuf> {
    let Some(t) = std::env::var_os("T") else {
        return HashSet::new();
    };
    std::fs::read(Path::new(&t).join(PREMERGE_LIST))
        .map(|bytes| {
            bytes
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| PathBuf::from(OsStr::from_bytes(line)))
                .collect()
        })
        .unwrap_or_default()
}
