//! `portage-ima hook`: what runs from /etc/portage/bashrc.
//!
//! - preinst: sign every regular file under `${D}` before it goes live, when
//!   the merge keeps the xattr (same filesystem, so Portage renames; or
//!   `FEATURES=xattr` without `security.ima` excluded). The signed paths are
//!   noted in `${T}` so postinst can tell them apart.
//! - postinst: sign every `obj` of CONTENTS whose MD5 matches, keeping valid
//!   signatures (those signed in preinst are found valid here).
//! - in both, config-protected files get what `config_files` says
//!   (executables signed; the others left alone, hashed, or signed).
//! - package (a binary package is being made, `FEATURES=buildpkg`): sign
//!   `${D}` and list the signatures in build-info, so the package carries
//!   them (see [`crate::binpkg`]).
//! - with `mode = "verify"` or `"sign-missing"` (a client of a binary host),
//!   preinst and postinst keep trusted signatures instead ([`binpkg_hook`]).
//! - postinst and postrm, with `[keylime]` in ima.toml: the Keylime
//!   runtime policy follows the package ([`keylime_hook`]); never a reason
//!   to fail a merge.
//! - any other phase: nothing, before even reading the settings.
//!
//! Fail-safe merges ([`crate::failsafe`]): in preinst, when the kernel
//! enforces appraisal (`enforce`) and the merge drops the signatures made
//! before it, the hook exits 4 and the snippet stops the merge, whatever
//! strict says (unless `allow_unsigned_window = true`). When such a merge
//! replaces the running portage-ima itself, preinst keeps a signed copy of
//! the new binary in `${PORTAGE_BUILDDIR}` ([`OWN_COPY`]), where the merge
//! does not touch it, and the snippet runs that copy in postinst: the
//! merged binary is unsigned until then and the kernel may refuse it. (Not
//! in `${T}`: with FEATURES=userpriv Portage hands everything in `${T}` to
//! the portage user after each phase.)
//!
//! Strict mode (`strict = true`) must never fail open. The protocol with
//! bashrc.d/portage-ima.bashrc:
//! - the hook decides strictness first, leniently
//!   ([`crate::settings::strict_requested`]): a settings file it later rejects
//!   (unknown key, bad value, not TOML) still counts when it says
//!   `strict = true`, and one that cannot be read counts as strict;
//! - exit status 0: signed (or nothing to do); 1: some files not signed
//!   (never in strict mode); 2: nothing signed, an error (never in strict
//!   mode); 3: strict mode and the package is not fully signed, for any
//!   reason: a failed file, an error (bad CONTENTS, missing CONTENTS, bad
//!   ROOT, bad settings, key refused), a panic (caught), SIGINT/SIGTERM/SIGHUP
//!   (handled: exit 3 at once). In preinst, files that fail are retried in
//!   postinst, but an error there is a 3 too: the merge stops before
//!   anything unsigned goes live; so does a file of `${D}` with a hard link
//!   outside it, which is never signed ([`crate::fs::links`]);
//! - the snippet reads `strict = true` from the same file itself (the
//!   textual rule), so that what the hook cannot report (SIGKILL, a crash of
//!   the loader, 126/127) fails the merge too: in strict mode every status
//!   but 0 makes it `die`; outside strict mode it only ever warns.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::cli::{HookArgs, KeyArgs};
use crate::context::Context;
use crate::engine::{self, Runner};
use crate::escape::escape_text;
use crate::failsafe::{self, Drop, Verdict};
use crate::fs::rootfs::RootDir;
use crate::gentoo::contents::Contents;
use crate::gentoo::env::{PortageEnv, PremergeXattr};
use crate::plan::{self, Job, Protection};
use crate::policy::enforcement;
use crate::progress::Progress;
use crate::report::{self, print_failures, FileReport, Outcome, Status, Tally};
use crate::settings::{Mode, Premerge, Settings, SigningScope};

mod binpkg_hook;
mod keylime_hook;

/// The file in `${T}` listing what preinst signed (CONTENTS-style paths).
const PREMERGE_LIST: &str = "portage-ima-premerge.list";
/// The signed copy in `${PORTAGE_BUILDDIR}` of the portage-ima a merge
/// brings, which the snippet runs in postinst (it reads the same name).
pub(crate) const OWN_COPY: &str = "portage-ima.self";

pub(crate) fn run(ctx: &Context, args: &HookArgs) -> Result<Status> {
    let phase = match &args.phase {
        Some(p) => p.clone(),
        // Portage exports EBUILD_PHASE to every phase (empty in helper runs);
        // unset, this is a person at a shell.
        None => match ctx.var_os("EBUILD_PHASE") {
            Some(p) => p.to_string_lossy().into_owned(),
            None => anyhow::bail!(
                "`portage-ima hook` runs from Portage's bashrc during an emerge, \
                 and EBUILD_PHASE is not set: nothing done. Source \
                 /usr/share/portage-ima/portage-ima.bashrc from /etc/portage/bashrc \
                 (README, Quick start); to sign what is installed now, run \
                 `portage-ima sign --all` or `portage-ima sign CATEGORY/PACKAGE`"
            ),
        },
    };
    if phase == "postrm" {
        keylime_hook::update(ctx, &phase);
        return Ok(Status::Success);
    }
    if !["package", "preinst", "postinst"].contains(&phase.as_str()) {
        return Ok(Status::Success);
    }
    // Decided before anything can fail (see the module docs).
    let strict = crate::settings::strict_requested(ctx.config());
    if strict {
        exit_strict_on_signals();
    }
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sign_phase(ctx, &phase)));
    if phase == "postinst" {
        keylime_hook::update(ctx, &phase);
    }
    let status = match outcome {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => {
            // The cause only: the snippet's one warning says what was not
            // signed and the command to run once the cause is fixed.
            report::print_problem(&format!(
                "{}: cannot sign: {}",
                package_name(ctx),
                report::error_line(&err)
            ));
            Status::ConfigError
        }
        // The panic message is already on stderr (the default panic hook).
        Err(_) => {
            report::print_problem(&format!(
                "{}: the hook crashed (a bug: please report it)",
                package_name(ctx)
            ));
            Status::ConfigError
        }
    };
    Ok(match status {
        Status::Success => Status::Success,
        Status::Stop => Status::Stop,
        _ if strict => Status::Strict,
        other => other,
    })
}

/// `CATEGORY/PF` as Portage set them, for messages written before (or
/// without) a valid [`PortageEnv`].
fn package_name(ctx: &Context) -> String {
    let var = |k| ctx.var(k).unwrap_or_else(|| "?".into());
    format!("{}/{}", var("CATEGORY"), var("PF"))
}

/// In strict mode SIGINT, SIGTERM and SIGHUP end the hook with status 3 at
/// once (each file is then either signed or untouched: the xattr is written
/// in one call), so the snippet fails the merge whatever it knows itself.
fn exit_strict_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        const MSG: &[u8] = b"portage-ima: interrupted by a signal in strict mode\n";
        let registered = crate::sys::exit_on_signal(sig, MSG, Status::Strict as i32);
        if let Err(e) = registered {
            // Without the handler the signal still kills the hook, and the
            // snippet, knowing strict mode itself, fails the merge.
            log::warn!("cannot handle signal {sig}: {e}");
        }
    }
}

/// The hook's work in preinst or postinst; an error means nothing was signed.
fn sign_phase(ctx: &Context, phase: &str) -> Result<Status> {
    let mut env = PortageEnv::from_environment(ctx.vars())?;
    env.phase = phase.to_string();
    let settings = Settings::load(ctx.config(), &KeyArgs::default(), None)?;
    // From the client's ima.toml, never from the (binary package's) environment.
    if let Some(atom) = settings.skipped(&env.category, &env.pf) {
        if phase == "postinst" {
            report::print_summary(&format!(
                "{}/{}: skip = [\"{atom}\", ...] in ima.toml: files not signed or checked",
                env.category, env.pf
            ));
        }
        return Ok(Status::Success);
    }
    if phase == "package" {
        return binpkg_hook::package(ctx, &env, &settings);
    }
    if settings.mode != Mode::Sign {
        return binpkg_hook::client(ctx, &env, &settings);
    }
    let drop = (phase == "preinst")
        .then(|| merge_drop(&env, &settings))
        .flatten();
    if phase == "preinst" {
        let what = format!("{}/{}", env.category, env.pf);
        let enforcement = enforcement::decide(settings.enforce, &env.root, &env.eroot);
        match failsafe::judge(
            &what,
            &enforcement,
            drop.as_ref(),
            settings.allow_unsigned_window,
        ) {
            Verdict::Stop(message) => {
                report::print_problem(&escape_text(&message));
                return Ok(Status::Stop);
            }
            Verdict::Window(message) => report::print_problem(&escape_text(&message)),
            Verdict::Go(reason) => log::debug!("{reason}"),
        }
    }
    let signer = settings.signer()?;
    let runner = Runner::new(settings.jobs)?;
    if phase == "preinst" {
        if drop.is_some() {
            keep_own_copy(&env, &signer);
        }
        // Failures of single files are retried in postinst; only a file
        // linked from outside the image (never signed) fails preinst.
        let linked_outside = preinst(ctx, &env, &settings, &signer, &runner)?;
        return Ok(if linked_outside {
            Status::SomeFailed
        } else {
            Status::Success
        });
    }
    let tally = postinst(ctx, &env, &settings, &signer, &runner)?;
    if let Some(line) = report::device_rate_line(&signer) {
        report::print_summary(&line);
    }
    Ok(tally.status())
}

/// Why the new files will be live and unsigned after the merge, if they will.
fn merge_drop(env: &PortageEnv, settings: &Settings) -> Option<Drop> {
    if settings.premerge == Premerge::Never {
        return Some(Drop::never());
    }
    match env.premerge_xattr() {
        PremergeXattr::Lost { reason, .. } => Some(Drop::copy(&reason, &env.xattr_exclude)),
        PremergeXattr::Kept { .. } => None,
    }
}

/// When this merge replaces the running portage-ima (`${D}` holds a file
/// at its path) and drops the signatures, a copy of the new binary goes to
/// `${PORTAGE_BUILDDIR}/portage-ima.self`, signed, for the postinst hook
/// (module docs). The build directory is on the build filesystem, which
/// the merge leaves alone, and Portage keeps it until the end. The
/// copy is exactly what the merge brings: a build that could change it
/// could as well change the binary that is merged and signed.
fn keep_own_copy(env: &PortageEnv, signer: &ima_core::ImaSigner) {
    if env.root != Path::new("/") {
        return; // the running binary is the host's, not the target's
    }
    let (Some(d), Some(t), Ok(exe)) = (&env.d, &env.builddir, std::env::current_exe()) else {
        return;
    };
    let image = d.join(exe.strip_prefix("/").unwrap_or(&exe));
    let (Some(dir), Some(name)) = (image.parent(), image.file_name().and_then(OsStr::to_str))
    else {
        return;
    };
    let kept = read_build_file(env, dir, name, false)
        .and_then(|bytes| write_build_file_mode(env, t, OWN_COPY, &bytes, 0o700));
    match kept {
        Ok(()) => {}
        // The package does not bring portage-ima.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            report::print_problem(&escape_text(&format!(
                "this merge replaces {} and drops its signature, but its copy for the \
                 postinst hook could not be kept in {}: {e}",
                exe.display(),
                t.display()
            )));
            return;
        }
    }
    let copy = t.join(OWN_COPY);
    let (found, _) = crate::fs::walk::collect(std::slice::from_ref(&copy));
    let signed = found.into_iter().next().map(|file| {
        let job = Job::found(file, None);
        engine::sign_job(signer, &job, false, false).outcome
    });
    if matches!(signed, Some(Outcome::Signed | Outcome::AlreadyValid)) {
        report::print_summary(&format!(
            "this merge replaces {} and drops its signature: the postinst hook runs the \
             new one from {} (signed) instead",
            exe.display(),
            copy.display()
        ));
    } else {
        report::print_problem(&format!(
            "this merge replaces {} and drops its signature, and its copy {} could not be \
             signed: the postinst hook may be refused",
            exe.display(),
            copy.display()
        ));
    }
}

fn preinst(
    ctx: &Context,
    env: &PortageEnv,
    settings: &Settings,
    signer: &ima_core::ImaSigner,
    runner: &Runner,
) -> Result<bool> {
    match settings.premerge {
        Premerge::Never => return Ok(false),
        Premerge::Always => {}
        Premerge::Auto => match env.premerge_xattr() {
            PremergeXattr::Lost { reason, hint } => {
                report::print_summary(&format!(
                    "not signing before the merge: {reason}. {hint}. \
                         The files are signed in postinst instead."
                ));
                return Ok(false);
            }
            PremergeXattr::Kept { reason } => {
                log::debug!("signing before the merge: {reason}");
            }
        },
    }
    let d = env
        .d
        .as_deref()
        .context("D is not set: preinst must run from Portage")?;
    let (found, problems) = crate::fs::walk::collect_image(d, &[]);
    let mut reports: Vec<FileReport> = problems.into_iter().map(FileReport::from).collect();
    // Hard links inside the image: signed once, each name noted as signed.
    let other_names: HashMap<PathBuf, Vec<PathBuf>> = found
        .iter()
        .filter(|f| !f.also_named.is_empty())
        .map(|f| (f.path.clone(), f.also_named.clone()))
        .collect();
    let protection = Protection::for_signing(settings.config_files, &env.eprefix, ctx.vars());
    let jobs = plan::image_jobs(found, d, &protection);
    let done = runner.run(
        &jobs,
        &Progress::hidden(),
        |job| job.size,
        |job| engine::sign_job(signer, job, false, false),
    );
    reports.extend(done.into_iter().flatten());
    let signed: Vec<&Path> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Signed | Outcome::AlreadyValid))
        .flat_map(|r| {
            std::iter::once(&r.path).chain(other_names.get(&r.path).into_iter().flatten())
        })
        .filter_map(|p| p.strip_prefix(d).ok())
        .collect();
    if let Some(t) = &env.t {
        let mut text = Vec::new();
        for rel in &signed {
            text.push(b'/');
            text.extend_from_slice(rel.as_os_str().as_bytes());
            text.push(b'\n');
        }
        if let Err(e) = write_premerge_list(env, t, &text) {
            let list = t.join(PREMERGE_LIST);
            let message = format!("cannot write {}: {e}", list.display());
            log::warn!("{}", escape_text(&message));
        }
    }
    // Paths in the image (${D}), shown as they are.
    print_failures(Path::new("/"), &reports);
    let tally = Tally::of(&reports);
    report::print_summary(&format!(
        "{}/{}: signed {} before the merge{}{}",
        env.category,
        env.pf,
        report::count(signed.len(), "file"),
        match tally.hashed {
            0 => String::new(),
            n => format!(", hashed {}", report::count(n, "config file")),
        },
        match tally.failed {
            0 => String::new(),
            n => format!(", {n} failed (retried in postinst)"),
        }
    ));
    Ok(reports.iter().any(|r| {
        matches!(
            r.outcome,
            Outcome::Failed(report::Failure::LinkedOutside { .. })
        )
    }))
}

fn postinst(
    ctx: &Context,
    env: &PortageEnv,
    settings: &Settings,
    signer: &ima_core::ImaSigner,
    runner: &Runner,
) -> Result<Tally> {
    let contents_path = env.vdb_entry().join("CONTENTS");
    let contents = Contents::read(&contents_path)?;
    let root = std::sync::Arc::new(RootDir::open(&env.root)?);
    let premerged = premerge_list(env);
    let protection = Protection::for_signing(settings.config_files, &env.eprefix, ctx.vars());
    let mut jobs: Vec<Job> = contents
        .objects()
        .map(|(path, md5)| Job::object(&root, path, *md5, None, &protection))
        .collect();
    plan::with_link_census(&mut jobs);
    if settings.scope == SigningScope::Policy {
        let coverage = crate::policy::check::Coverage::load(&env.root);
        if let Some(coverage) = &coverage {
            plan::limit_to_policy(&mut jobs, |root, path| coverage.covers(root, path));
        }
    }
    let reports: Vec<FileReport> = runner
        .run(
            &jobs,
            &Progress::hidden(),
            |job| job.size,
            |job| {
                let mut report = engine::sign_job(signer, job, false, false);
                if report.outcome == Outcome::AlreadyValid
                    && job.object_path().is_some_and(|p| premerged.contains(p))
                {
                    report.outcome = Outcome::SignedBeforeMerge;
                }
                report
            },
        )
        .into_iter()
        .flatten()
        .collect();
    print_failures(&env.root, &reports);
    let mut t = Tally::of(&reports);
    // Lines of CONTENTS not understood: their files are not signed.
    for message in contents.skipped_messages(&contents_path) {
        report::print_problem(&escape_text(&message));
        t.failed += 1;
    }
    report::print_summary(&format!("{}/{}: {}", env.category, env.pf, t.hook_line()));
    Ok(t)
}

fn premerge_list(env: &PortageEnv) -> HashSet<PathBuf> {
    let Some(t) = &env.t else {
        return HashSet::new();
    };
    read_premerge_list(env, t)
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
/// `PORTAGE_TMPDIR` (`tmpdir`; nor anywhere when T is not under it).
fn open_t(tmpdir: Option<&Path>, t: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let (base, rel) = match tmpdir.and_then(|p| Some((p, t.strip_prefix(p).ok()?))) {
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
fn write_premerge_list(env: &PortageEnv, t: &Path, text: &[u8]) -> std::io::Result<()> {
    write_build_file(env, t, PREMERGE_LIST, text)
}

/// Replaces `dir/name` (`dir` in the build directory: `${T}`, build-info)
/// with `text`, following no symlink (see above).
pub(crate) fn write_build_file(
    env: &PortageEnv,
    dir: &Path,
    name: &str,
    text: &[u8],
) -> std::io::Result<()> {
    write_build_file_mode(env, dir, name, text, 0o644)
}

/// [`write_build_file`] with the new file's mode.
fn write_build_file_mode(
    env: &PortageEnv,
    dir: &Path,
    name: &str,
    text: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Write;
    let dir = open_t(env.portage_tmpdir.as_deref(), dir)?;
    let tmp = format!(".{name}.{}", std::process::id());
    let create = || {
        rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
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
    let renamed = written.and_then(|()| Ok(rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?));
    if renamed.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
    }
    renamed
}

/// The premerge list as written by [`write_premerge_list`]: a regular file
/// owned by us, not a symlink; anything else reads as no list.
fn read_premerge_list(env: &PortageEnv, t: &Path) -> std::io::Result<Vec<u8>> {
    read_build_file(env, t, PREMERGE_LIST, true)
}

/// Reads `dir/name` in the build directory following no symlink; only a
/// regular file (and, with `ours`, one owned by us) is read.
pub(crate) fn read_build_file(
    env: &PortageEnv,
    dir: &Path,
    name: &str,
    ours: bool,
) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let dir = open_t(env.portage_tmpdir.as_deref(), dir)?;
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
        || (ours && st.st_uid != rustix::process::geteuid().as_raw())
    {
        return Err(std::io::Error::other("not a regular file of ours"));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}
