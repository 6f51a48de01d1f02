//! Progress for long runs: a bar (files, bytes, rate, time left) on a
//! terminal, plain periodic lines otherwise, nothing for short or quiet
//! runs. The time left comes from a per-file plus per-byte cost model
//! fitted as the run goes ([`eta`]).

mod eta;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

use eta::CostModel;

use crate::settings::ProgressDisplay;

/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// How often the cost model is fed (and the bar's message redrawn).
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

pub struct Progress {
    total_files: u64,
    total_bytes: u64,
    files: AtomicU64,
    bytes: AtomicU64,
    start: Instant,
    /// The cost model and when it was last fed.
    model: Mutex<(CostModel, Instant)>,
    display: Display,
}

enum Display {
    Hidden,
    Bar(ProgressBar),
    Lines { last: Mutex<Instant> },
}

impl Progress {
    /// Shows nothing.
    pub fn hidden() -> Progress {
        Progress::with_display(0, 0, Display::Hidden)
    }

    /// Progress over `total_files` files of `total_bytes` bytes, shown on stderr.
    pub fn new(mode: ProgressDisplay, total_files: u64, total_bytes: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let display = match mode {
            ProgressDisplay::None => Display::Hidden,
            ProgressDisplay::Bar => Display::Bar(bar(total_bytes)),
            ProgressDisplay::Auto if tty => Display::Bar(bar(total_bytes)),
            ProgressDisplay::Auto | ProgressDisplay::Lines => Display::Lines {
                last: Mutex::new(Instant::now()),
            },
        };
        Progress::with_display(total_files, total_bytes, display)
    }

    fn with_display(total_files: u64, total_bytes: u64, display: Display) -> Progress {
        Progress {
            total_files,
            total_bytes,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            start: Instant::now(),
            model: Mutex::new((CostModel::new(), Instant::now())),
            display,
        }
    }

    /// One more file done, of `bytes` bytes.
    pub fn advance(&self, bytes: u64) {
        let files = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        let done = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if matches!(self.display, Display::Hidden) {
            return;
        }
        // Another worker is updating: this file is counted in the next one.
        let Ok(mut model) = self.model.try_lock() else {
            return;
        };
        if model.1.elapsed() < SAMPLE_INTERVAL {
            return;
        }
        model.1 = Instant::now();
        let elapsed = self.start.elapsed();
        model.0.observe(elapsed, files, done);
        let left = model.0.remaining(
            self.total_files.saturating_sub(files),
            self.total_bytes.saturating_sub(done),
        );
        drop(model);
        match &self.display {
            Display::Hidden => {}
            Display::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(format!(
                    "{files}/{} files{}",
                    self.total_files,
                    time_left(left)
                ));
            }
            Display::Lines { last } => {
                let Ok(mut last) = last.try_lock() else {
                    return;
                };
                if last.elapsed() < LINE_INTERVAL {
                    return;
                }
                *last = Instant::now();
                log::info!("{}", self.line(files, done, elapsed, left));
            }
        }
    }

    fn line(&self, files: u64, bytes: u64, elapsed: Duration, left: Option<Duration>) -> String {
        let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001);
        format!(
            "{files}/{} files, {}/{} ({}/s){}",
            self.total_files,
            HumanBytes(bytes),
            HumanBytes(self.total_bytes),
            HumanBytes(rate as u64),
            time_left(left),
        )
    }

    /// Removes the bar; the caller prints its own summary.
    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

/// `, about 2 minutes left`, or nothing while there is no estimate.
fn time_left(left: Option<Duration>) -> String {
    match left {
        Some(left) => format!(", about {} left", HumanDuration(left)),
        None => String::new(),
    }
}

fn bar(total_bytes: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
            .expect("static progress template is valid"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reports_counts_rate_and_eta() {
        let p = Progress::with_display(10, 2000, Display::Hidden);
        let line = p.line(
            5,
            1000,
            Duration::from_secs(1),
            Some(Duration::from_secs(90)),
        );
        assert!(line.starts_with("5/10 files, 1000 B/1.95 KiB"), "{line}");
        assert!(line.ends_with(", about 2 minutes left"), "{line}");
        let line = p.line(5, 1000, Duration::from_secs(1), None);
        assert!(!line.contains("left"), "{line}");
    }
}
