//! Exit statuses of the commands.

use std::process::ExitCode;

use crate::escape::MultiLine;

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

impl Status {
    /// The one mapping from a run's file counts to its status: files not
    /// started mean it was interrupted, failed files [`Status::SomeFailed`].
    pub fn of_files(failed: usize, not_started: usize) -> Status {
        if not_started > 0 {
            Status::Interrupted
        } else if failed > 0 {
            Status::SomeFailed
        } else {
            Status::Success
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

/// An error and its causes, `what: why: deeper why`, leaving out a cause
/// whose text the message already contains (many errors print their source
/// themselves). Control characters (of a path in it) are escaped; only a
/// [`MultiLine`] cause keeps its line breaks.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut raw = String::new();
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if raw.contains(&text) {
            continue;
        }
        if !raw.is_empty() {
            raw.push_str(": ");
            line.push_str(": ");
        }
        raw.push_str(&text);
        if cause.downcast_ref::<MultiLine>().is_some() {
            let lines: Vec<_> = text
                .lines()
                .map(|l| crate::escape::escape_text(l).into_owned())
                .collect();
            line.push_str(&lines.join("\n"));
        } else {
            line.push_str(&crate::escape::escape_text(&text));
        }
    }
    line
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

    #[test]
    fn only_a_multi_line_cause_keeps_its_line_breaks() {
        let err = anyhow::Error::new(MultiLine("TOML parse error\n  |\n1 | a\x1b\n  | ^".into()))
            .context("in settings file /e\nvil");
        assert_eq!(
            error_line(&err),
            "in settings file /e\\nvil: TOML parse error\n  |\n1 | a\\x1b\n  | ^"
        );
    }
}
