//! Progress for long runs: a bar (files, bytes, rate, ETA) on a terminal,
//! plain periodic lines otherwise, nothing for short or quiet runs.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::settings::ProgressDisplay;

/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

pub struct Progress {
    total_files: u64,
    total_bytes: u64,
    files: AtomicU64,
    bytes: AtomicU64,
    display: Display,
}

enum Display {
    Hidden,
    Bar(ProgressBar),
    Lines {
        start: Instant,
        last: Mutex<Instant>,
    },
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
            ProgressDisplay::Auto | ProgressDisplay::Lines => {
                let now = Instant::now();
                Display::Lines {
                    start: now,
                    last: Mutex::new(now),
                }
            }
        };
        Progress::with_display(total_files, total_bytes, display)
    }

    fn with_display(total_files: u64, total_bytes: u64, display: Display) -> Progress {
        Progress {
            total_files,
            total_bytes,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            display,
        }
    }

    /// One more file done, of `bytes` bytes.
    pub fn advance(&self, bytes: u64) {
        let files = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        let done = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        match &self.display {
            Display::Hidden => {}
            Display::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{files}/{} files", self.total_files));
            }
            Display::Lines { start, last } => {
                let Ok(mut last) = last.try_lock() else {
                    return;
                };
                if last.elapsed() < LINE_INTERVAL {
                    return;
                }
                *last = Instant::now();
                log::info!("{}", self.line(files, done, start.elapsed()));
            }
        }
    }

    fn line(&self, files: u64, bytes: u64, elapsed: Duration) -> String {
        let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001);
        let eta = if bytes > 0 && self.total_bytes > bytes {
            let left = (self.total_bytes - bytes) as f64 / rate;
            format!(
                ", about {} left",
                HumanDuration(Duration::from_secs_f64(left))
            )
        } else {
            String::new()
        };
        format!(
            "{files}/{} files, {}/{} ({}/s){eta}",
            self.total_files,
            HumanBytes(bytes),
            HumanBytes(self.total_bytes),
            HumanBytes(rate as u64),
        )
    }

    /// Removes the bar; the caller prints its own summary.
    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

fn bar(total_bytes: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{wide_bar} {msg} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
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
        let line = p.line(5, 1000, Duration::from_secs(1));
        assert!(line.starts_with("5/10 files, 1000 B/1.95 KiB"), "{line}");
        assert!(line.contains("left"), "{line}");
    }
}
