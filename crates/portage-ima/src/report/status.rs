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
    /// Fail-safe merges: the merge would leave programs live and unsigned
    /// on an enforcing machine; the snippet stops it in any mode.
    Stop = 4,
    /// Interrupted; every file is either signed or untouched.
    Interrupted = 130,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

/// An error and its causes on one line, `what: why: deeper why`, leaving out
/// a cause whose text the message already contains (many errors print their
/// source themselves). Control characters (of a path in it) are escaped.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    crate::escape::escape_text(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_does_not_repeat_a_cause_already_said() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::new(io).context("cannot read key /k: No such file");
        assert_eq!(error_line(&err), "cannot read key /k: No such file");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&err), "outer: inner");
    }
}
