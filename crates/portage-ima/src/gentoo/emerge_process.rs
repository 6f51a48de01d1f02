//! The `emerge` process a hook runs under, so that work meant for the end
//! of an emerge (pushing the Keylime policy once) can wait for it.
//!
//! Portage runs postinst and postrm in the global PID namespace
//! (doebuild.py, `_global_pid_phases`), so the hook's ancestors are
//! visible in /proc: `emerge` (Python, `python3 .../emerge ARGS`), its
//! forked merge process (the same command line), `ebuild.sh`, the hook.
//! The topmost ancestor whose command line runs `emerge` is the one whose
//! end is the end of the emerge.

use std::path::Path;

/// The PID of the outermost `emerge` among this process's ancestors.
pub(crate) fn emerge_ancestor() -> Option<u32> {
    let mut found = None;
    let mut pid = parent_of(std::process::id())?;
    // A chain longer than this is a loop or something odd: stop.
    for _ in 0..64 {
        if pid <= 1 {
            break;
        }
        if runs_emerge(pid) {
            found = Some(pid);
        }
        pid = parent_of(pid)?;
    }
    found
}

/// Whether the process `pid` is still there.
pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID ...`: COMM may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn runs_emerge(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    is_emerge_cmdline(&cmdline)
}

/// `emerge ...` or `python3 [-flags] /path/to/emerge ...`.
fn is_emerge_cmdline(cmdline: &[u8]) -> bool {
    cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.starts_with(b"-"))
        .take(2)
        .any(|arg| arg.rsplit(|&b| b == b'/').next() == Some(b"emerge"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert!(is_emerge_cmdline(
            b"/usr/bin/python3.12\0-b\0/usr/lib/python-exec/python3.12/emerge\0-1\0foo\0"
        ));
        assert!(is_emerge_cmdline(b"emerge\0--jobs\0"));
        assert!(!is_emerge_cmdline(
            b"/bin/bash\0/usr/lib/portage/ebuild.sh\0postinst\0"
        ));
        assert!(!is_emerge_cmdline(
            b"python3\0/usr/bin/ebuild\0x.ebuild\0emerge\0"
        ));
    }

    #[test]
    fn ancestors_readable() {
        assert!(parent_of(std::process::id()).is_some());
        assert!(alive(std::process::id()));
    }
}
