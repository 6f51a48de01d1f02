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
        let mut text = Vec::new();
        for rel in &signed {
            text.push(b'/');
            text.extend_from_slice(rel.as_os_str().as_bytes());
            text.push(b'\n');
        }
        if let Err(e) = write_premerge_list(Path::new(&t), &text) {
            eprintln!(
                "portage-ima: cannot write {}: {e}",
                Path::new(&t).join(PREMERGE_LIST).display()
            );
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
    let t = Tally::of(&reports);
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
    read_premerge_list(Path::new(&t))
        .map(|bytes| {
            bytes
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| PathBuf::from(OsStr::from_bytes(line)))
                .collect()
        })
        .unwrap_or_default()
}

// `${T}` and everything in the build directory belongs to the `portage`
// user, so build code can plant symlinks there for root to follow. The
// premerge list is therefore written and read through a descriptor of `${T}`
// opened without following any symlink below `PORTAGE_TMPDIR` (the admin's
// setting, which may itself be a symlink such as `/var/tmp -> /tmp`), and
// its name is never followed: the list is written under a fresh name
// (`O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed over whatever is there,
// which replaces a planted symlink instead of writing through it.

/// `${T}` as a directory descriptor, following no symlink below
/// `PORTAGE_TMPDIR` (nor anywhere when T is not under it).
fn open_t(t: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let tmpdir = std::env::var_os("PORTAGE_TMPDIR").map(PathBuf::from);
    let (base, rel) = match tmpdir
        .as_deref()
        .and_then(|p| Some((p, t.strip_prefix(p).ok()?)))
    {
        Some((tmpdir, rel)) if !rel.as_os_str().is_empty() => (
            rustix::fs::open(tmpdir, flags, Mode::empty())?,
            rel.to_path_buf(),
        ),
        _ => (
            rustix::fs::open("/", flags, Mode::empty())?,
            t.strip_prefix("/").unwrap_or(t).to_path_buf(),
        ),
    };
    Ok(rustix::fs::openat2(
        &base,
        &rel,
        flags | OFlags::NOFOLLOW,
        Mode::empty(),
        resolve,
    )?)
}

/// Replaces `${T}/portage-ima-premerge.list` with `text` (see above).
fn write_premerge_list(t: &Path, text: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Write;
    let dir = open_t(t)?;
    let tmp = format!(".{PREMERGE_LIST}.{}", std::process::id());
    let create = || {
        rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
    };
    let fd = match create() {
        // Left over by an earlier run with the same pid: remove the name
        // (unlinkat never follows a symlink) and create it afresh.
        Err(rustix::io::Errno::EXIST) => {
            rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty())?;
            create()?
        }
        other => other?,
    };
    let written = std::fs::File::from(fd).write_all(text);
    let renamed = written.and_then(|()| {
        Ok(rustix::fs::renameat(
            &dir,
            tmp.as_str(),
            &dir,
            PREMERGE_LIST,
        )?)
    });
    if renamed.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
    }
    renamed
}

/// The premerge list as written by [`write_premerge_list`]: a regular file
/// owned by us, not a symlink; anything else reads as no list.
fn read_premerge_list(t: &Path) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let dir = open_t(t)?;
    let fd = rustix::fs::openat(
        &dir,
        PREMERGE_LIST,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
        || st.st_uid != unsafe { libc::geteuid() }
    {
        return Err(std::io::Error::other("not a regular file of ours"));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}
