//! The hook's side of [`crate::binpkg`]: the package phase on the build
//! host, and preinst and postinst on a client of a binary host
//! (`mode = "verify"` or `"sign-missing"`).
//!
//! A client never loads a private key in `verify` mode. In preinst it checks
//! the image in `${D}` before anything goes live: a file without a trusted
//! signature (unsigned, or changed after the build host signed it) is
//! reported, and with `strict = true` the merge stops there. In postinst it
//! checks every `obj` of CONTENTS (whose MD5 must match) and writes again
//! what the merge did not keep (a copy across file systems drops the xattr),
//! from the vdb's copy of the signature list.
//!
//! Every phase builds its jobs with the plan and runs them through the
//! engine, like the rest of the hook; the writing is [`crate::binpkg`]'s
//! ([`Packer`] on the build host, [`Client`] on a client).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::{read_build_file, write_build_file};
use crate::binpkg::client::{Client, ClientTally, Settled};
use crate::binpkg::host::Packer;
use crate::binpkg::manifest::{Manifest, MANIFEST};
use crate::context::Context;
use crate::engine::{self, Runner};
use crate::escape::escape_text;
use crate::fs::rootfs::RootDir;
use crate::fs::walk::{self, FoundFile};
use crate::gentoo::contents::Contents;
use crate::gentoo::env::PortageEnv;
use crate::gentoo::provenance::Provenance;
use crate::plan::{self, Job, JobFile, Protection};
use crate::progress::Progress;
use crate::report::{self, Failure, Status};
use crate::settings::{Mode, Settings};

/// `${PORTAGE_BUILDDIR}/build-info`, where Portage keeps the package's metadata.
fn build_info(env: &PortageEnv) -> Result<PathBuf> {
    let dir = env
        .builddir
        .as_ref()
        .context("PORTAGE_BUILDDIR is not set: the hook must run from Portage")?;
    Ok(Path::new(&dir).join("build-info"))
}

/// In the package phase with `PKG_INSTALL_MASK` set, Portage packs a
/// hard-linked copy of the image (`${T}/packaging`, `cp -l` in
/// misc-functions.sh) and points `D` at it: the names in the image itself
/// are the copy's other links.
fn packaging_twins(env: &PortageEnv, d: &Path) -> Vec<PathBuf> {
    let Ok(image) = build_info(env).map(|info| info.with_file_name("image")) else {
        return Vec::new();
    };
    // The same directory must not be counted twice (that would let a link
    // from outside pass); compared by inode, whatever the spelling.
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (id(&image), id(d)) {
        (Some(a), Some(b)) if a != b => vec![image],
        _ => Vec::new(),
    }
}

/// The CONTENTS path of a file found under `${D}`.
fn contents_path(d: &Path, found: &FoundFile) -> PathBuf {
    contents_path_of(d, &found.path)
}

/// The CONTENTS path of `path` under `${D}`.
fn contents_path_of(d: &Path, path: &Path) -> PathBuf {
    Path::new("/").join(path.strip_prefix(d).unwrap_or(path))
}

/// The package phase: sign every regular file of `${D}` (keeping a valid
/// signature; in sign-missing mode, any trusted one) and write their
/// signatures to `build-info/IMA_SIGNATURES`.
pub(super) fn package(ctx: &Context, env: &PortageEnv, settings: &Settings) -> Result<Status> {
    if settings.mode == Mode::Verify {
        report::print_summary(&format!(
            "{}/{}: mode = \"verify\" (no key here): the binary package carries no signatures",
            env.category, env.pf
        ));
        return Ok(Status::Success);
    }
    let signer = settings.signer()?;
    let trusted = match settings.mode {
        Mode::SignMissing => Some(settings.trusted_keys()?),
        _ => None,
    };
    let runner = Runner::new(settings.jobs)?;
    let d = env
        .d
        .as_deref()
        .context("D is not set: the package phase must run from Portage")?;
    let info = build_info(env)?;
    let no_list = Manifest::default();
    let hasher = signer.hasher();
    let provenance = Provenance::from_environment(ctx.vars());
    // `${D}` holds the paths as they will be merged (EPREFIX included).
    let protection = Protection::for_signing(settings.config_files, &env.eprefix, ctx.vars());
    let (found, problems) = walk::collect_image(d, &packaging_twins(env, d));
    let mut failed: Vec<(PathBuf, String)> = problems
        .into_iter()
        .map(|p| {
            let r = report::FileReport::from(p);
            (r.path, failure_reason(&r.outcome))
        })
        .collect();
    let packer = Packer {
        signer: &signer,
        hasher: &hasher,
        client: trusted.as_ref().map(|keys| Client {
            keys,
            provider: settings.backend,
            manifest: &no_list,
            signer: Some(&signer),
            hasher: &hasher,
            provenance: &provenance,
            image: Some(d),
        }),
    };
    let jobs = plan::image_jobs(found, d, &protection);
    let results = runner.run(
        &jobs,
        &Progress::hidden(),
        |job| job.size,
        |job| engine::write_job(&packer, job).1,
    );
    let mut list = BTreeMap::new();
    let mut newly_signed = 0;
    let mut config_files = 0;
    for (f, result) in jobs.iter().filter_map(found_file).zip(results) {
        match result {
            Some(Ok(Some((newly, value)))) => {
                newly_signed += usize::from(newly);
                for name in &f.also_named {
                    list.insert(contents_path_of(d, name), value.clone());
                }
                list.insert(contents_path(d, f), value);
            }
            Some(Ok(None)) => config_files += 1,
            Some(Err(failure)) => failed.push((f.path.clone(), failure.to_string())),
            None => failed.push((f.path.clone(), "not done (interrupted)".into())),
        }
    }
    for (path, why) in &failed {
        report::print_failure(path, why);
    }
    let written = write_build_file(env, &info, MANIFEST, &Manifest::render(&list));
    if let Err(e) = &written {
        let message = format!("cannot write {}: {e}", info.join(MANIFEST).display());
        report::print_problem(&escape_text(&message));
    }
    report::print_summary(&format!(
        "{}/{}: binary package: {} signed ({} newly), listed in build-info/{MANIFEST}{}{}",
        env.category,
        env.pf,
        report::count(list.len(), "file"),
        newly_signed,
        match config_files {
            0 => String::new(),
            n => format!(
                ", {n} config files as config_files = \"{}\" says",
                settings.config_files.name()
            ),
        },
        match failed.len() {
            0 => String::new(),
            n => format!(", {n} failed"),
        }
    ));
    Ok(if failed.is_empty() && written.is_ok() {
        Status::Success
    } else {
        Status::SomeFailed
    })
}

fn failure_reason(outcome: &report::Outcome) -> String {
    match outcome {
        report::Outcome::Failed(f) => f.to_string(),
        other => format!("{other:?}"),
    }
}

/// The found file of an image job (every job of the image is one).
fn found_file(job: &Job) -> Option<&FoundFile> {
    match &job.file {
        JobFile::Found(file) => Some(file),
        JobFile::Object { .. } => None,
    }
}

/// Adds each job's result to `tally`, printing the failures (`shown`: the
/// path of a job never started), paths inside `root`.
fn count_results(
    root: &Path,
    tally: &mut ClientTally,
    results: Vec<Option<(PathBuf, Result<Settled, Failure>)>>,
    shown: impl Fn(usize) -> PathBuf,
) {
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some((_, Ok(settled))) => tally.add(&settled),
            Some((path, Err(failure))) => {
                report::print_failure(&report::inside_root(root, &path), &failure.to_string());
                tally.failed += 1;
            }
            None => {
                let path = shown(index);
                report::print_failure(&report::inside_root(root, &path), "not done (interrupted)");
                tally.failed += 1;
            }
        }
    }
}

/// preinst and postinst of a client: keep trusted signatures, apply the
/// package's list, (sign-missing) sign the rest, report what has none.
pub(super) fn client(ctx: &Context, env: &PortageEnv, settings: &Settings) -> Result<Status> {
    let keys = settings.trusted_keys()?;
    // Only sign-missing ever loads the private key.
    let signer = match settings.mode {
        Mode::SignMissing => Some(settings.signer()?),
        _ => None,
    };
    let runner = Runner::new(settings.jobs)?;
    let (manifest, origin) = if env.phase == "preinst" {
        let info = build_info(env)?;
        let bytes = read_build_file(env, &info, MANIFEST, false);
        (bytes, info.join(MANIFEST))
    } else {
        let path = env.vdb_entry().join(MANIFEST);
        (std::fs::read(&path), path)
    };
    // A list that cannot be read or parsed fails closed: none of it is
    // used, nothing is signed with our key, and the package counts as not
    // settled (strict: refused). Only its absence is a plain empty list.
    let (manifest, list_problem) = match manifest {
        Ok(bytes) => match Manifest::parse(&bytes, &origin) {
            Ok(m) => (m, None),
            Err(e) => (Manifest::default(), Some(format!("{e:#}"))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Manifest::default(), None),
        Err(e) => (
            Manifest::default(),
            Some(format!("cannot read {}: {e}", origin.display())),
        ),
    };
    if let Some(problem) = &list_problem {
        report::print_problem(&escape_text(&format!(
            "{}/{}: {problem}: none of its signatures is used{}",
            env.category,
            env.pf,
            if signer.is_some() {
                ", and nothing is signed with our key"
            } else {
                ""
            }
        )));
    }
    let signer = signer.filter(|_| list_problem.is_none());
    let provenance = Provenance::from_environment(ctx.vars());
    let hasher = ima_core::ImaHasher::new(settings.backend, settings.hash)?;
    let client = Client {
        keys: &keys,
        provider: settings.backend,
        manifest: &manifest,
        signer: signer.as_ref(),
        hasher: &hasher,
        provenance: &provenance,
        image: None,
    };
    let protection = Protection::for_signing(settings.config_files, &env.eprefix, ctx.vars());
    let (mut tally, when) = if env.phase == "preinst" {
        let tally = client_preinst(env, &client, &protection, &runner)?;
        (tally, "before the merge")
    } else {
        (
            client_postinst(env, &client, &protection, &runner)?,
            "merged",
        )
    };
    tally.failed += usize::from(list_problem.is_some());
    report::print_summary(&format!(
        "{}/{}: {when}: {}",
        env.category,
        env.pf,
        tally.line(settings.mode == Mode::SignMissing)
    ));
    Ok(Status::of_files(tally.failed, 0))
}

/// preinst: every file of the image `${D}`, its CONTENTS path the one below it.
fn client_preinst(
    env: &PortageEnv,
    client: &Client,
    protection: &Protection,
    runner: &Runner,
) -> Result<ClientTally> {
    let d = env
        .d
        .as_deref()
        .context("D is not set: preinst must run from Portage")?;
    let (found, problems) = walk::collect_image(d, &[]);
    let mut tally = ClientTally::default();
    for problem in problems {
        let r = report::FileReport::from(problem);
        report::print_failure(&r.path, &failure_reason(&r.outcome));
        tally.failed += 1;
    }
    let client = Client {
        image: Some(d),
        ..*client
    };
    let jobs = plan::image_jobs(found, d, protection);
    let results = runner.run(
        &jobs,
        &Progress::hidden(),
        |job| job.size,
        |job| engine::write_job(&client, job),
    );
    // Paths in the image (${D}), shown as they are.
    count_results(Path::new("/"), &mut tally, results, |i| {
        found_file(&jobs[i])
            .map(|f| f.path.clone())
            .unwrap_or_default()
    });
    Ok(tally)
}

/// postinst: every `obj` of CONTENTS, by the engine's rules for one
/// (MD5, `._cfg` siblings, hard links).
fn client_postinst(
    env: &PortageEnv,
    client: &Client,
    protection: &Protection,
    runner: &Runner,
) -> Result<ClientTally> {
    let contents_path = env.vdb_entry().join("CONTENTS");
    let contents = Contents::read(&contents_path)?;
    let root = Arc::new(RootDir::open(&env.root)?);
    let mut jobs: Vec<Job> = contents
        .objects()
        .map(|(path, md5)| Job::object(&root, path, *md5, None, protection))
        .collect();
    plan::with_link_census(&mut jobs);
    let results = runner.run(
        &jobs,
        &Progress::hidden(),
        |_| 1,
        |job| engine::write_job(client, job),
    );
    let mut tally = ClientTally::default();
    count_results(&env.root, &mut tally, results, |i| {
        jobs[i]
            .object_path()
            .map(|p| root.display_path(p))
            .unwrap_or_default()
    });
    for message in contents.skipped_messages(&contents_path) {
        report::print_problem(&escape_text(&message));
        tally.failed += 1;
    }
    Ok(tally)
}
