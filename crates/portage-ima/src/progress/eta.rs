//! How long a run has left, from a cost model fitted as it goes: each file
//! costs a fixed time (opening it, the signature: an RSA-4096 signature is
//! milliseconds whatever the size) plus a time per byte (reading and
//! hashing). Bytes alone say "almost done" once the large files are signed
//! (the engine takes them first) while thousands of small ones remain;
//! files alone are wrong the other way round.
//!
//! The model is fitted by least squares over the run's increments (between
//! two observations: seconds taken, files and bytes done), the sums kept in
//! a few numbers whatever the length of the run. When the increments cannot
//! tell the two costs apart (all files alike so far) or the fit comes out
//! negative, the better of the two one-cost models is used.

use std::time::Duration;

/// Bytes are counted in MiB in the sums, so that both coefficients are of
/// similar size (milliseconds per file, per MiB).
const MIB: f64 = 1024.0 * 1024.0;

/// No estimate before this much of the run has been seen: the first files
/// (one large one, opening the key) say little about the rest.
const MIN_OBSERVED: Duration = Duration::from_secs(1);
const MIN_FILES: u64 = 4;

#[derive(Debug, Default, Clone)]
pub(super) struct CostModel {
    last_seconds: f64,
    last_files: u64,
    last_bytes: u64,
    // Sums over increments (f: files, b: MiB, t: seconds).
    ff: f64,
    fb: f64,
    bb: f64,
    ft: f64,
    bt: f64,
    tt: f64,
}

impl CostModel {
    pub(super) fn new() -> CostModel {
        CostModel::default()
    }

    /// The run so far: `elapsed` since its start, `files` and `bytes` done.
    pub(super) fn observe(&mut self, elapsed: Duration, files: u64, bytes: u64) {
        let seconds = elapsed.as_secs_f64();
        let dt = seconds - self.last_seconds;
        let df = files.saturating_sub(self.last_files) as f64;
        let db = bytes.saturating_sub(self.last_bytes) as f64 / MIB;
        if df == 0.0 || dt <= 0.0 {
            return;
        }
        self.ff += df * df;
        self.fb += df * db;
        self.bb += db * db;
        self.ft += df * dt;
        self.bt += db * dt;
        self.tt += dt * dt;
        self.last_seconds = seconds;
        self.last_files = files;
        self.last_bytes = bytes;
    }

    /// (seconds per file, seconds per MiB).
    fn costs(&self) -> (f64, f64) {
        let det = self.ff * self.bb - self.fb * self.fb;
        if det > 1e-9 * self.ff * self.bb {
            let per_file = (self.ft * self.bb - self.bt * self.fb) / det;
            let per_mib = (self.bt * self.ff - self.ft * self.fb) / det;
            if per_file >= 0.0 && per_mib >= 0.0 {
                return (per_file, per_mib);
            }
        }
        // One cost only: the one whose fit leaves the smaller error
        // (sum of (t - c x)^2 = tt - (xt)^2 / xx at its best c).
        let files_only = (self.ft / self.ff, 0.0);
        if self.bb <= 0.0 {
            return files_only;
        }
        let bytes_only = (0.0, self.bt / self.bb);
        let error_files = self.tt - self.ft * self.ft / self.ff;
        let error_bytes = self.tt - self.bt * self.bt / self.bb;
        if error_bytes < error_files {
            bytes_only
        } else {
            files_only
        }
    }

    /// The time left for `files_left` files of `bytes_left` bytes; `None`
    /// until enough of the run has been seen.
    pub(super) fn remaining(&self, files_left: u64, bytes_left: u64) -> Option<Duration> {
        if self.last_seconds < MIN_OBSERVED.as_secs_f64() || self.last_files < MIN_FILES {
            return None;
        }
        let (per_file, per_mib) = self.costs();
        let left = per_file * files_left as f64 + per_mib * bytes_left as f64 / MIB;
        left.is_finite()
            .then(|| Duration::from_secs_f64(left.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic tree: `n` file sizes, largest first as the engine orders
    /// them, and the time each takes (`per_file` + `per_mib` per MiB, with
    /// a deterministic ±25% jitter). Returns the sizes and costs.
    fn tree(n: usize, per_file: f64, per_mib: f64) -> Vec<(u64, f64)> {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut sizes: Vec<u64> = (0..n)
            .map(|i| match i % 100 {
                0 => 20 << 20,                  // a few large files
                1..=9 => 1 << 20,               // some medium
                _ => 200 + next() % (40 << 10), // most are small
            })
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes
            .into_iter()
            .map(|size| {
                let jitter = 0.75 + (next() % 1000) as f64 / 2000.0;
                (size, (per_file + per_mib * size as f64 / MIB) * jitter)
            })
            .collect()
    }

    /// Runs the tree, observing every 0.1 s of simulated time, and at half
    /// the files returns (estimate, real remainder, byte-rate estimate).
    fn at_half(tree: &[(u64, f64)]) -> (f64, f64, f64) {
        let total_bytes: u64 = tree.iter().map(|f| f.0).sum();
        let mut model = CostModel::new();
        let (mut t, mut bytes, mut last_observed) = (0.0, 0, 0.0);
        for (i, &(size, cost)) in tree.iter().enumerate() {
            t += cost;
            bytes += size;
            let files = i as u64 + 1;
            if t - last_observed >= 0.1 {
                model.observe(Duration::from_secs_f64(t), files, bytes);
                last_observed = t;
            }
            if files as usize == tree.len() / 2 {
                let left: f64 = tree[i + 1..].iter().map(|f| f.1).sum();
                let files_left = (tree.len() - i - 1) as u64;
                let estimate = model
                    .remaining(files_left, total_bytes - bytes)
                    .expect("an estimate at half way")
                    .as_secs_f64();
                let by_bytes = (total_bytes - bytes) as f64 / (bytes as f64 / t);
                return (estimate, left, by_bytes);
            }
        }
        unreachable!()
    }

    fn within_two(estimate: f64, real: f64) -> bool {
        estimate >= real / 2.0 && estimate <= real * 2.0
    }

    /// RSA-4096 on two cores (about 2.5 ms a file) and hashing at 1 GB/s:
    /// issue 24's case, where the byte rate said "about 1 second left" for
    /// a run with half its time to go.
    #[test]
    fn per_file_cost_dominates() {
        let tree = tree(4000, 0.0025, 0.001);
        let (estimate, real, by_bytes) = at_half(&tree);
        assert!(within_two(estimate, real), "{estimate} s for {real} s");
        assert!(
            by_bytes < real / 2.0,
            "the old estimate was right here: {by_bytes} s"
        );
    }

    /// ECDSA (tens of microseconds a file) on large files: bytes dominate.
    #[test]
    fn per_byte_cost_dominates() {
        let tree = tree(4000, 0.00005, 0.004);
        let (estimate, real, _) = at_half(&tree);
        assert!(within_two(estimate, real), "{estimate} s for {real} s");
    }

    /// Both matter.
    #[test]
    fn mixed_costs() {
        let tree = tree(4000, 0.001, 0.01);
        let (estimate, real, _) = at_half(&tree);
        assert!(within_two(estimate, real), "{estimate} s for {real} s");
    }

    #[test]
    fn no_estimate_from_the_first_files() {
        let mut model = CostModel::new();
        assert_eq!(model.remaining(10, 10), None);
        model.observe(Duration::from_millis(200), 1, 20 << 20);
        assert_eq!(model.remaining(3999, 1 << 20), None);
    }

    #[test]
    fn files_alike_use_one_cost() {
        let mut model = CostModel::new();
        for i in 1..=20 {
            model.observe(Duration::from_millis(100 * i), 10 * i, 10 * i * 4096);
        }
        let left = model.remaining(100, 100 * 4096).unwrap().as_secs_f64();
        assert!((left - 1.0).abs() < 0.01, "{left}");
    }
}
