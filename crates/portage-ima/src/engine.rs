//! Running per-file work in parallel, and what each file came to.
//!
//! The key is loaded once by the caller; here every item is handed to a
//! rayon pool of `jobs` threads. A first SIGINT or SIGTERM sets a cancel flag
//! that stops new work while the files in flight finish, so each file ends
//! signed or untouched. A read can stall (a FUSE or network file system that
//! stopped answering) or take very long, so a second signal stops at once:
//! it prints what was done and what was in flight, and exits with status 130.
//! The files in flight are then left as they were (`security.ima` is only
//! ever written by one `fsetxattr` after the whole file was read).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::progress::Progress;

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new signature was written.
    Signed,
    /// Signed in preinst, before the merge (found valid in postinst).
    SignedBeforeMerge,
    /// It already carried a valid signature by our key; nothing written.
    AlreadyValid,
    /// `--dry-run`: it would have been signed.
    WouldSign,
    /// Deliberately left alone, with the reason.
    Skipped(String),
    /// Could not be signed, with the reason.
    Failed(String),
}

/// One file's path (as the user knows it) and its outcome.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub outcome: Outcome,
}

impl FileReport {
    pub fn new(path: impl Into<PathBuf>, outcome: Outcome) -> Self {
        FileReport {
            path: path.into(),
            outcome,
        }
    }
}

/// Counts of outcomes, for summary lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub signed_before_merge: usize,
    pub signed: usize,
    pub already_valid: usize,
    pub would_sign: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Tally {
    pub fn of(reports: &[FileReport]) -> Tally {
        let mut t = Tally::default();
        for r in reports {
            t.add(&r.outcome);
        }
        t
    }

    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Signed => self.signed += 1,
            Outcome::SignedBeforeMerge => self.signed_before_merge += 1,
            Outcome::AlreadyValid => self.already_valid += 1,
            Outcome::WouldSign => self.would_sign += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.signed_before_merge += other.signed_before_merge;
        self.signed += other.signed;
        self.already_valid += other.already_valid;
        self.would_sign += other.would_sign;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }

    pub fn total(&self) -> usize {
        self.signed_before_merge
            + self.signed
            + self.already_valid
            + self.would_sign
            + self.skipped
            + self.failed
    }
}

/// A rayon pool with `jobs` threads and a flag that stops handing out work.
pub struct Runner {
    pool: rayon::ThreadPool,
    cancel: Arc<AtomicBool>,
    counts: Arc<RunCounts>,
}

/// How far the current run is, for the report of a second signal.
#[derive(Debug, Default)]
struct RunCounts {
    total: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl RunCounts {
    /// "12 of 40 files done, 2 in flight left as they were, 26 not started".
    fn line(&self) -> String {
        let total = self.total.load(Ordering::SeqCst);
        let started = self.started.load(Ordering::SeqCst);
        let finished = self.finished.load(Ordering::SeqCst);
        format!(
            "{finished} of {total} files done, {} in flight left as they were (not signed), \
             {} not started",
            started.saturating_sub(finished),
            total.saturating_sub(started)
        )
    }
}

impl Runner {
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
                        eprintln!(
                            "portage-ima: stopping once the files being read are done \
                             (signal again to stop at once)"
                        );
                        continue;
                    }
                    eprintln!(
                        "portage-ima: stopped at once on a second signal: {}; \
                         run the same command again to finish",
                        counts.line()
                    );
                    std::process::exit(crate::status::Status::Interrupted as i32);
                }
            })
            .context("cannot start the signal thread")?;
        Ok(())
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Runs `work` on every item in parallel and returns the results in the
    /// input order. Items start largest first (`size_of`), one per task, so
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
        self.counts.total.store(items.len(), Ordering::SeqCst);
        self.counts.started.store(0, Ordering::SeqCst);
        self.counts.finished.store(0, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_each_outcome() {
        let reports = vec![
            FileReport::new("/a", Outcome::Signed),
            FileReport::new("/b", Outcome::Signed),
            FileReport::new("/c", Outcome::AlreadyValid),
            FileReport::new("/d", Outcome::Failed("x".into())),
            FileReport::new("/e", Outcome::Skipped("y".into())),
            FileReport::new("/f", Outcome::SignedBeforeMerge),
        ];
        let t = Tally::of(&reports);
        assert_eq!(
            (
                t.signed,
                t.already_valid,
                t.failed,
                t.skipped,
                t.signed_before_merge
            ),
            (2, 1, 1, 1, 1)
        );
        assert_eq!(t.total(), 6);
    }

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
