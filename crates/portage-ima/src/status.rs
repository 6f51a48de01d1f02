//! Exit statuses of the commands.

use std::process::ExitCode;

/// The exit status of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything asked for was done.
    Success = 0,
    /// Some files were not signed or are not ok; the rest was done.
    SomeFailed = 1,
    /// Usage, key or configuration problem: nothing was done.
    ConfigError = 2,
    /// Strict mode: the hook asks its caller to fail the merge.
    Strict = 3,
    /// Interrupted; every file is either signed or untouched.
    Interrupted = 130,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s as u8)
    }
}
