//! What the running kernel's IMA says about files: its appraisal audit
//! records ([`audit_record`]), its `audit` rules' records
//! ([`audit_rule`]) and its measurement list ([`measurements`]),
//! parsed from the text the kernel and auditd write, and whether it booted
//! with Secure Boot ([`secure_boot`]); its mounts ([`mountinfo`]) and
//! whether its SELinux policy has Gentoo's Portage types ([`selinux`]);
//! whether this process may write `security.ima` ([`capabilities`]); and
//! the kernel log itself ([`kmsg`]); its IMA keyring ([`keyring`]) and
//! which certificates that keyring takes ([`ima_trust`]); its command
//! line, build configuration and securityfs mount ([`system`]).
//! Whether it enforces appraisal of what root runs is decided above, in
//! `policy/enforcement.rs`, from these readings. The log parsers take
//! hostile input: a line they do not understand is reported with its
//! number and the rest is still read; they never panic.

pub(crate) mod audit_record;
pub(crate) mod audit_rule;
pub(crate) mod capabilities;
pub(crate) mod config;
pub(crate) mod ima_trust;
pub(crate) mod keyring;
pub(crate) mod kmsg;
pub(crate) mod measurements;
pub(crate) mod mountinfo;
pub(crate) mod secure_boot;
pub(crate) mod selinux;
pub(crate) mod system;

use std::fmt;

/// A line of input that could not be understood, for the report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct BadLine {
    /// 1-based line number in its input.
    pub line: usize,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Splits `data` into lines at LF, numbered from 1. A CR before the LF is
/// dropped: a VM's console captured over a serial line ends its lines with
/// CR LF (the kernel's own files never hold a CR at a line's end, short of
/// a file name ending in one).
pub(crate) fn numbered_lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !data.is_empty())
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
}
