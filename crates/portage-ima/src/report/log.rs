//! The one stderr logger behind the `log` crate's macros: every line is
//! `portage-ima: MESSAGE`, debug and trace lines `portage-ima: debug: ...`.
//!
//! The level is `info` unless `PORTAGE_IMA_LOG` names another one (`off`,
//! `error`, `warn`, `info`, `debug`, `trace`); each global `-v` raises it one
//! step, each `-q` lowers it one. The hook's stderr becomes `ewarn` (and
//! elog), so at the default level only what needs the admin's attention is
//! logged: errors, warnings, interruption, progress of long runs.
//! Results themselves go through [`crate::report`], never through here.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The variable that sets the level, e.g. `PORTAGE_IMA_LOG=debug`.
pub const LOG_VAR: &str = "PORTAGE_IMA_LOG";

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Messages carrying paths escape them where they are written.
        match record.level() {
            Level::Debug | Level::Trace => eprintln!("portage-ima: debug: {}", record.args()),
            _ => eprintln!("portage-ima: {}", record.args()),
        }
    }

    fn flush(&self) {}
}

/// The level `PORTAGE_IMA_LOG` (`env_value`) and the `-v`/`-q` counts ask for.
/// An unknown value of the variable is ignored (the default stays), so a
/// typo never silences warnings.
pub fn level(env_value: Option<&str>, verbose: u8, quiet: u8) -> LevelFilter {
    let base = env_value
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    let steps = base as i64 + i64::from(verbose) - i64::from(quiet);
    LevelFilter::iter()
        .nth(steps.clamp(0, LevelFilter::Trace as i64) as usize)
        .unwrap_or(LevelFilter::Trace)
}

/// Installs the logger at `level`. Later calls only change the level.
pub fn init(level: LevelFilter) {
    static LOGGER: StderrLogger = StderrLogger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_from_variable_and_flags() {
        assert_eq!(level(None, 0, 0), LevelFilter::Info);
        assert_eq!(level(Some("debug"), 0, 0), LevelFilter::Debug);
        assert_eq!(level(Some("WARN"), 0, 0), LevelFilter::Warn);
        assert_eq!(level(Some("nonsense"), 0, 0), LevelFilter::Info);
        assert_eq!(level(None, 1, 0), LevelFilter::Debug);
        assert_eq!(level(None, 5, 0), LevelFilter::Trace);
        assert_eq!(level(None, 0, 1), LevelFilter::Warn);
        assert_eq!(level(None, 0, 9), LevelFilter::Off);
        assert_eq!(level(Some("error"), 1, 0), LevelFilter::Warn);
    }
}
