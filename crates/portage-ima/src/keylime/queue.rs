//! One push per emerge, after its last package.
//!
//! Portage has no hook at the end of an emerge (postsync.d is for `emaint
//! sync` only), and a bashrc cannot know which package is the last. So the
//! first update of an emerge starts a detached `portage-ima keylime push
//! --after-pid EMERGE` that waits for that emerge to end, then pushes the
//! policy once ([`crate::gentoo::emerge_process`] finds the emerge). It
//! holds `<policy>.pusher` locked while it waits: later updates see the
//! lock and start nothing. Without an emerge above the hook (`ebuild`
//! run by hand), the hook pushes at once.
//!
//! A push that fails (verifier down, refused) leaves `<policy>.pushed`
//! behind the policy; the next push, from the next emerge or `portage-ima
//! keylime push`, sends the current policy and catches up. The pusher
//! writes what happened to `<policy>.push.log`, which doctor shows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gentoo::emerge_process;
use crate::keylime::live::PolicyFiles;
use crate::keylime::push::{checksum, Verifier};

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The verifier already holds this policy.
    UpToDate,
    /// Sent and accepted.
    Sent {
        /// The policy's size in bytes (before base64).
        bytes: usize,
    },
}

impl PolicyFiles {
    fn beside(&self, suffix: &str) -> PathBuf {
        let mut name = self.policy.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// `<policy>.pusher`: locked by the pusher that waits for an emerge.
    pub fn pusher_lock(&self) -> PathBuf {
        self.beside(".pusher")
    }

    /// `<policy>.push.log`: what the last detached push did.
    pub fn push_log(&self) -> PathBuf {
        self.beside(".push.log")
    }

    /// Whether the verifier is behind the policy file (never pushed, or
    /// the policy changed since).
    pub fn push_pending(&self) -> bool {
        let Ok(policy) = std::fs::read(&self.policy) else {
            return false;
        };
        std::fs::read_to_string(&self.pushed).map_or(true, |p| p.trim() != checksum(&policy))
    }
}

/// Sends the policy unless the verifier already has it (`force`: anyway).
pub fn push_now(files: &PolicyFiles, verifier: &Verifier, force: bool) -> Result<Pushed> {
    // Under the update lock: the policy read is whole and the record matches it.
    let _lock = files.lock()?;
    let policy = std::fs::read(&files.policy).with_context(|| {
        format!(
            "cannot read {} (run `portage-ima keylime sync` first)",
            files.policy.display()
        )
    })?;
    let sum = checksum(&policy);
    if !force && std::fs::read_to_string(&files.pushed).is_ok_and(|p| p.trim() == sum) {
        return Ok(Pushed::UpToDate);
    }
    verifier.push(&policy)?;
    crate::fs::atomic::write_atomically(&files.pushed, format!("{sum}\n").as_bytes())?;
    Ok(Pushed::Sent {
        bytes: policy.len(),
    })
}

/// After an update from the hook: start a pusher that waits for the
/// emerge, unless one already waits; without an emerge, push now.
/// `exe` is this program.
pub fn schedule(
    files: &PolicyFiles,
    verifier: &Verifier,
    exe: &Path,
    config: Option<&Path>,
) -> Result<Option<Pushed>> {
    let Some(emerge) = emerge_process::emerge_ancestor() else {
        return push_now(files, verifier, false).map(Some);
    };
    if pusher_waiting(files) {
        return Ok(None);
    }
    let log = File::create(files.push_log())
        .with_context(|| format!("cannot write {}", files.push_log().display()))?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["keylime", "push", "--after-pid", &emerge.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session (not killed with the phase's process group, no
    // terminal), and none of the phase's descriptors: Portage waits for
    // the pipes of a phase to close, which must not wait for the emerge.
    crate::sys::detach_on_spawn(&mut cmd);
    cmd.spawn().context("cannot start the pusher")?;
    Ok(None)
}

/// Whether a pusher holds `<policy>.pusher`.
fn pusher_waiting(files: &PolicyFiles) -> bool {
    let Ok(file) = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(files.pusher_lock())
    else {
        return false;
    };
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
}

/// The pusher: holds `<policy>.pusher`, waits until `pid` (the emerge) is
/// gone, then pushes. `None` when another pusher already waits.
pub fn wait_and_push(files: &PolicyFiles, verifier: &Verifier, pid: u32) -> Result<Option<Pushed>> {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(files.pusher_lock())
        .with_context(|| format!("cannot open {}", files.pusher_lock().display()))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(None);
    }
    while emerge_process::alive(pid) {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let go first: an emerge starting now gets a pusher of its own.
    drop(lock);
    push_now(files, verifier, false).map(Some)
}
