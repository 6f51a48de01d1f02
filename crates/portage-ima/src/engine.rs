//! Running per-file work in parallel, and what each file came to.
//!
//! The key is loaded once by the caller; here every item is handed to a
//! rayon pool of `jobs` threads. A cancel flag (set by SIGINT) stops new work
//! while the files in flight finish, so each file ends signed or untouched.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
        })
    }

    /// Sets the cancel flag on SIGINT and SIGTERM instead of dying mid-file.
    pub fn cancel_on_signals(&self) -> Result<()> {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&self.cancel))
                .context("cannot install the signal handler")?;
        }
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
                    let result = work(item);
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
