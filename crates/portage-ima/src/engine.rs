//! The third stage: jobs run in parallel, each by the per-file rules.
//!
//! The rules for an `obj` of CONTENTS (the hook's postinst and the
//! whole-system commands share them):
//! - the file is opened inside ROOT without following a final symlink;
//! - its MD5 must equal the one CONTENTS records (what Portage merged),
//!   otherwise it is never signed;
//! - a config-protected file the admin changed is merged by Portage as
//!   `._cfgNNNN_name` beside it: the sibling whose MD5 matches is signed;
//! - a valid signature by our key is kept;
//! - a config-protected file gets what its `config_files` mode says for it,
//!   decided on the open descriptor (executable or not): a signature, a
//!   digest-only value, or nothing. The plan decided it ([`Decision`]);
//!   the engine only applies it.
//!
//! A file found under `--files` or `${D}` is opened through its walk's
//! descriptor and signed whatever its content.
//!
//! The key is loaded once by the caller; here every item is handed to a
//! rayon pool of `jobs` threads. A first SIGINT or SIGTERM sets a cancel flag
//! that stops new work while the files in flight finish, so each file ends
//! signed or untouched. A read can stall (a FUSE or network file system that
//! stopped answering) or take very long, so a second signal stops at once:
//! it prints what was done and what was in flight, and exits with status 130.
//! The files in flight are then left as they were (`security.ima` is only
//! ever written by one `fsetxattr` after the whole file was read).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use ima_core::{Error as ImaError, HashAlgo, ImaHasher, ImaSigner, SignOptions, SignOutcome};
use rayon::prelude::*;

use crate::escape::escape_path;
use crate::fs::links::LinkCensus;
use crate::fs::rootfs::{cfg_siblings, RootDir};
use crate::fs::walk::FoundFile;
use crate::plan::{ConfigFiles, Decision, Job, JobFile, SkipReason, Treatment};
use crate::progress::Progress;
use crate::report::{Failure, FileReport, Outcome};

mod verify;

pub use verify::{verify_job, verify_object};

/// A rayon pool with `jobs` threads and a flag that stops handing out work.
pub struct Runner {
    pool: rayon::ThreadPool,
    cancel: Arc<AtomicBool>,
    counts: Arc<RunCounts>,
}

/// How far the current run is, for the report of a second signal.
#[derive(Debug, Default)]
struct RunCounts {
    /// All the files of a run given in batches ([`Runner::expect`]).
    expected: AtomicUsize,
    /// The files handed to [`Runner::run`] so far.
    total: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl RunCounts {
    /// "12 of 40 files done, 2 in flight left as they were, 26 not started".
    fn line(&self) -> String {
        let total = (self.total.load(Ordering::SeqCst)).max(self.expected.load(Ordering::SeqCst));
        let started = self.started.load(Ordering::SeqCst);
        let finished = self.finished.load(Ordering::SeqCst);
        format!(
            "{finished} of {} done, {} in flight left as they were (not signed), \
             {} not started",
            crate::report::count(total, "file"),
            started.saturating_sub(finished),
            total.saturating_sub(started)
        )
    }
}

impl Runner {
    /// A runner with a pool of `jobs` worker threads (at least one).
    pub fn new(jobs: usize) -> Result<Runner> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .thread_name(|i| format!("portage-ima-{i}"))
            .build()
            .context("cannot start the worker threads")?;
        Ok(Runner {
            pool,
            cancel: Arc::new(AtomicBool::new(false)),
            counts: Arc::new(RunCounts::default()),
        })
    }

    /// On a first SIGINT or SIGTERM, sets the cancel flag instead of dying
    /// mid-file; on a second one, reports and exits at once with status 130
    /// without waiting for the files in flight (see the module docs).
    pub fn cancel_on_signals(&self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .context("cannot install the signal handler")?;
        let cancel = Arc::clone(&self.cancel);
        let counts = Arc::clone(&self.counts);
        std::thread::Builder::new()
            .name("portage-ima-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if !cancel.swap(true, Ordering::SeqCst) {
                        log::warn!(
                            "stopping once the files being read are done \
                             (signal again to stop at once)"
                        );
                        continue;
                    }
                    log::error!(
                        "stopped at once on a second signal: {}; \
                         run the same command again to finish",
                        counts.line()
                    );
                    std::process::exit(crate::report::Status::Interrupted as i32);
                }
            })
            .context("cannot start the signal thread")?;
        Ok(())
    }

    /// A run given in several batches of [`Runner::run`] will cover
    /// `files` in all (for the report of a second signal).
    pub fn expect(&self, files: usize) {
        self.counts.expected.store(files, Ordering::SeqCst);
    }

    /// A first SIGINT or SIGTERM arrived: no further item starts.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Runs `work` on every item in parallel and returns the results in the
    /// input order; successive calls count as one run for the report of a
    /// second signal. Items start largest first (`size_of`), one per task, so
    /// big files spread over the workers instead of queueing behind each
    /// other at the end. Items not started when the run is cancelled give `None`.
    pub fn run<T, R, F, S>(
        &self,
        items: &[T],
        progress: &Progress,
        size_of: S,
        work: F,
    ) -> Vec<Option<R>>
    where
        T: Sync,
        R: Send,
        S: Fn(&T) -> u64 + Sync,
        F: Fn(&T) -> R + Sync,
    {
        self.counts.total.fetch_add(items.len(), Ordering::SeqCst);
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(size_of(&items[i])));
        let done: Vec<(usize, R)> = self.pool.install(|| {
            order
                .par_iter()
                .with_max_len(1)
                .filter_map(|&i| {
                    if self.cancelled() {
                        return None;
                    }
                    let item = &items[i];
                    self.counts.started.fetch_add(1, Ordering::SeqCst);
                    let result = work(item);
                    self.counts.finished.fetch_add(1, Ordering::SeqCst);
                    progress.advance(size_of(item));
                    Some((i, result))
                })
                .collect()
        });
        let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        for (i, result) in done {
            out[i] = Some(result);
        }
        out
    }
}

// The per-file rules.

/// Why a [`Writer`] wrote nothing on a file.
#[derive(Debug)]
pub enum WriteError {
    /// Its content is not what CONTENTS records: the MD5 found, in hex.
    ContentDiffers(String),
    /// The signing library's error, told the way the file's kind of job
    /// tells it.
    Ima(ImaError),
    /// Anything else, in the admin's words.
    Failed(Failure),
}

/// What a run writes on each file the plan hands it, once the file is open
/// and the plan's [`Decision`] has become a [`Treatment`] on it: our key's
/// signature ([`KeyWriter`]: `sign`, the hook), or what a binary-package
/// client or build host writes ([`crate::binpkg`]). The rules around the
/// writing (opening inside ROOT, the link census, CONTENTS' MD5, the
/// `._cfg` siblings) are the engine's, the same for every writer.
pub trait Writer: Sync {
    /// What one file ends as.
    type Done: Send;

    /// Applies `treatment` to the open `file`, which Portage lists as
    /// `listed` (the CONTENTS path of an `obj`, the found path of a file
    /// under `${D}` or `--files`); with `expect_md5` its content must be
    /// what CONTENTS records ([`WriteError::ContentDiffers`]).
    fn write(
        &self,
        file: &File,
        listed: &Path,
        treatment: Treatment,
        expect_md5: Option<[u8; 16]>,
    ) -> Result<Self::Done, WriteError>;

    /// A file the plan leaves alone whose content is not what CONTENTS
    /// records (an edited config file, no `._cfg` update matching):
    /// nothing would have been written on it anyway.
    fn left(&self, reason: SkipReason) -> Self::Done;
}

/// Our key's signature (or a digest, or nothing, as the plan decided).
pub struct KeyWriter<'a> {
    /// The loaded key.
    pub signer: &'a ImaSigner,
    /// `--dry-run`: say what would be written, write nothing.
    pub dry_run: bool,
}

impl Writer for KeyWriter<'_> {
    type Done = Outcome;

    fn write(
        &self,
        file: &File,
        _listed: &Path,
        treatment: Treatment,
        expect_md5: Option<[u8; 16]>,
    ) -> Result<Outcome, WriteError> {
        let opts = SignOptions {
            expect_md5,
            keep_valid: true,
            dry_run: self.dry_run,
        };
        write_file(self.signer, file, treatment, &opts).map_err(|e| match e {
            ImaError::Md5Mismatch { actual, .. } => WriteError::ContentDiffers(actual),
            e => WriteError::Ima(e),
        })
    }

    fn left(&self, reason: SkipReason) -> Outcome {
        Outcome::Skipped(reason)
    }
}

/// Runs `writer` on one job's file (an `obj` of CONTENTS by
/// [`write_object`], a found file by [`write_found`]): the path written
/// (the file, or the `._cfg` sibling that matched) and what became of it.
pub fn write_job<W: Writer>(writer: &W, job: &Job) -> (PathBuf, Result<W::Done, Failure>) {
    match &job.file {
        JobFile::Object {
            root,
            path,
            expected_md5,
        } => write_object(
            writer,
            root,
            path,
            expected_md5,
            job.decision,
            job.census.as_deref(),
        ),
        JobFile::Found(file) => (file.path.clone(), write_found(writer, file, job.decision)),
    }
}

/// Runs `writer` on a file found under `--files` or `${D}`, opened through
/// its walk's descriptor, whatever its content.
pub fn write_found<W: Writer>(
    writer: &W,
    file: &FoundFile,
    decision: Decision,
) -> Result<W::Done, Failure> {
    file.open()
        .map_err(WriteError::Ima)
        .and_then(|f| writer.write(&f, &file.path, decision.on(&f), None))
        .map_err(|e| match e {
            WriteError::Ima(ImaError::LinkedOutside { links, seen }) => {
                Failure::LinkedOutside { links, seen }
            }
            WriteError::Ima(e) => Failure::Other(e.to_string()),
            WriteError::Failed(failure) => failure,
            WriteError::ContentDiffers(actual) => {
                Failure::Other(format!("content differs (MD5 {actual} found)"))
            }
        })
}

/// Signs one job's file with our key, keeping a valid signature, as the
/// plan decided ([`Decision`]); a CONTENTS object the plan leaves alone is
/// not even opened. `rotate` reports a signature by another key that was
/// written over as [`Outcome::Rotated`] (else as `Signed`: what is written
/// is the same).
pub fn sign_job(signer: &ImaSigner, job: &Job, dry_run: bool, rotate: bool) -> FileReport {
    if let (JobFile::Object { root, path, .. }, Some(reason)) = (&job.file, job.decision.unopened())
    {
        let shown = root.display_path(path);
        let inside = crate::report::inside_root(root.root(), &shown);
        log::debug!("{}: skipped: {reason}", escape_path(&inside));
        return FileReport::new(shown, Outcome::Skipped(reason));
    }
    let (path, result) = write_job(&KeyWriter { signer, dry_run }, job);
    let mut report = FileReport::new(path, result.unwrap_or_else(Outcome::Failed));
    if !rotate && matches!(report.outcome, Outcome::Rotated { .. }) {
        report.outcome = Outcome::Signed;
    }
    report
}

/// Writes a digest-only `security.ima` on a found file, whatever it is
/// (`sign --digest-only --files`), keeping a matching one.
pub fn hash_job(hasher: &ImaHasher, job: &Job, dry_run: bool) -> FileReport {
    let JobFile::Found(file) = &job.file else {
        unreachable!("--digest-only works on --files only")
    };
    let opts = SignOptions {
        expect_md5: None,
        keep_valid: true,
        dry_run,
    };
    let outcome = match file.open().and_then(|f| hasher.hash_file(&f, &opts)) {
        Ok(outcome) => outcome_of(outcome),
        Err(e) => Outcome::Failed(Failure::Other(e.to_string())),
    };
    FileReport::new(&file.path, outcome)
}

/// Applies `treatment` to the open file: a signature, a digest, or nothing.
/// With `opts.expect_md5` a file left alone is still checked against it
/// ([`ImaError::Md5Mismatch`]), so that the `._cfg` rules work the same.
fn write_file(
    signer: &ImaSigner,
    file: &File,
    treatment: Treatment,
    opts: &SignOptions,
) -> Result<Outcome, ImaError> {
    match treatment {
        Treatment::Sign => signer.sign_file(file, opts).map(outcome_of),
        Treatment::Hash => signer.hasher().hash_file(file, opts).map(outcome_of),
        Treatment::Leave(reason) => {
            if let Some(expected) = opts.expect_md5 {
                let md5 = ima_core::digest_file(signer.provider(), file, HashAlgo::Md5, false)?;
                if md5.digest != expected {
                    return Err(ImaError::Md5Mismatch {
                        expected: hex::encode(expected),
                        actual: hex::encode(md5.digest),
                    });
                }
            }
            Ok(Outcome::Skipped(reason))
        }
    }
}

/// Signs (or hashes, or leaves, by `config`) the file CONTENTS lists at
/// `path`, or its matching `._cfg` sibling; a signature by another key id
/// written over is [`Outcome::Rotated`]. A config file the settings leave
/// alone whose content differs (edited by the admin) is skipped, not failed:
/// nothing would have been written on it anyway.
pub fn sign_object(
    signer: &ImaSigner,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
    config: Option<ConfigFiles>,
    dry_run: bool,
) -> FileReport {
    let writer = KeyWriter { signer, dry_run };
    let (shown, result) = write_object(&writer, root, path, md5, Decision::new(config), None);
    FileReport::new(shown, result.unwrap_or_else(Outcome::Failed))
}

/// The per-file rules for an `obj` of CONTENTS (see the module docs), with
/// `writer` doing the writing as the plan decided (`decision`), refusing a
/// file with more hard links than `census` counted for it
/// ([`crate::fs::links`]): the path written (the file, or the `._cfg`
/// sibling whose content is the package's) and what became of it.
pub fn write_object<W: Writer>(
    writer: &W,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
    decision: Decision,
    census: Option<&LinkCensus>,
) -> (PathBuf, Result<W::Done, Failure>) {
    let shown = root.display_path(path);
    let file = match root.open_file(path) {
        Ok(f) => f,
        Err(e) => return (shown, Err(open_failure(&e))),
    };
    if let Some(Err(e)) = census.map(|c| c.check(&file)) {
        return (shown, Err(sign_failure(&e)));
    }
    let live = decision.on(&file);
    match writer.write(&file, path, live, Some(*md5)) {
        Ok(done) => (shown, Ok(done)),
        Err(WriteError::ContentDiffers(actual)) => {
            write_cfg_sibling(writer, root, path, md5, decision).unwrap_or_else(|| {
                let result = match live {
                    Treatment::Leave(reason) => Ok(writer.left(reason)),
                    _ => Err(Failure::ContentDiffers {
                        expected_md5: *md5,
                        actual_md5: actual,
                    }),
                };
                (shown, result)
            })
        }
        Err(e) => (shown, Err(object_failure(e, md5))),
    }
}

/// Why an `obj` of CONTENTS was not written, in the admin's words.
fn object_failure(e: WriteError, md5: &[u8; 16]) -> Failure {
    match e {
        WriteError::ContentDiffers(actual) => Failure::ContentDiffers {
            expected_md5: *md5,
            actual_md5: actual,
        },
        WriteError::Ima(e) => sign_failure(&e),
        WriteError::Failed(failure) => failure,
    }
}

/// The `._cfgNNNN_name` files beside `path`, newest first, opened inside
/// the root (those that cannot be opened are passed over).
pub(crate) fn cfg_candidates(root: &RootDir, path: &Path) -> Vec<(PathBuf, File)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let Ok(names) = root.read_dir_names(dir) else {
        return Vec::new();
    };
    cfg_siblings(&names, name)
        .iter()
        .rev()
        .filter_map(|sibling| {
            let candidate = dir.join(sibling);
            let file = root.open_file(&candidate).ok()?;
            Some((root.display_path(&candidate), file))
        })
        .collect()
}

/// Runs `writer` on the `._cfg` sibling of `path` whose content is what
/// CONTENTS records.
fn write_cfg_sibling<W: Writer>(
    writer: &W,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
    decision: Decision,
) -> Option<(PathBuf, Result<W::Done, Failure>)> {
    cfg_candidates(root, path)
        .into_iter()
        .find_map(
            |(shown, file)| match writer.write(&file, path, decision.on(&file), Some(*md5)) {
                Ok(done) => {
                    log::debug!(
                        "{}: the live file differs from CONTENTS (edited config file); \
                     its pending update {} matches it and is the one written",
                        escape_path(&crate::report::inside_root(
                            root.root(),
                            &root.display_path(path)
                        )),
                        escape_path(&crate::report::inside_root(root.root(), &shown))
                    );
                    Some((shown, Ok(done)))
                }
                Err(WriteError::ContentDiffers(_)) => None,
                Err(e) => Some((shown, Err(object_failure(e, md5)))),
            },
        )
}

fn outcome_of(outcome: SignOutcome) -> Outcome {
    match outcome {
        SignOutcome::Signed => Outcome::Signed,
        SignOutcome::Replaced { previous } => Outcome::Rotated { previous },
        SignOutcome::AlreadyValid => Outcome::AlreadyValid,
        SignOutcome::WouldSign => Outcome::WouldSign,
        SignOutcome::Hashed => Outcome::Hashed,
        SignOutcome::WouldHash => Outcome::WouldHash,
    }
}

/// Why a CONTENTS path could not be opened, in the words an admin needs.
pub fn open_failure(e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::ELOOP) => Failure::NowSymlink,
        Some(libc::ENOENT) => Failure::NotOnDisk,
        Some(libc::EXDEV) => Failure::EscapesRoot,
        _ => Failure::CannotOpen(e.to_string()),
    }
}

/// Why a CONTENTS path could not be signed (or checked).
fn sign_failure(e: &ImaError) -> Failure {
    match e {
        ImaError::NotRegularFile { kind } => Failure::NowNotRegular { kind },
        ImaError::LinkedOutside { links, seen } => Failure::LinkedOutside {
            links: *links,
            seen: *seen,
        },
        other => Failure::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_keeps_order_and_stops_when_cancelled() {
        let runner = Runner::new(2).unwrap();
        let items: Vec<u32> = (0..100).collect();
        let out = runner.run(
            &items,
            &Progress::hidden(),
            |i| u64::from(*i % 7),
            |i| i * 2,
        );
        assert_eq!(out[10], Some(20));
        assert!(out.iter().all(Option::is_some));
        runner.cancel.store(true, Ordering::Relaxed);
        let out = runner.run(&items, &Progress::hidden(), |_| 0, |i| i * 2);
        assert!(out.iter().all(Option::is_none));
    }
}
