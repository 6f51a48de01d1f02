//! What the integration tests share: the one rule for tests that need
//! something of the machine (root, a tool, a mount). Without it a test says
//! why and passes without checking; under CI (`CI` set, as `.ci/run` and
//! tests/run-all have it) that is a failure, so a green CI run means every
//! test really ran (the same rule as tests/kernel and tests/packaging).
#![allow(dead_code)]

use std::process::{Command, Output};

/// Whether `what` holds; when not, prints why the test is skipped, or
/// panics under CI. `test` names the test in the message.
pub fn require(available: bool, what: &str, test: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs {what}, and CI is set: every test must run under CI");
    }
    eprintln!("SKIPPED {test}: needs {what}");
    false
}

/// Root (CAP_SYS_ADMIN writes security.* xattrs; mounts, chattr).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    require(
        unsafe { libc::geteuid() } == 0,
        "root (writing security.ima)",
        test,
    )
}

/// `tool` on PATH.
pub fn require_tool(tool: &str, test: &str) -> bool {
    require(on_path(tool), &format!("{tool} on PATH"), test)
}

pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
