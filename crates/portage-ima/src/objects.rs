//! Signing and checking one `obj` entry of CONTENTS: the rules the hook and
//! the whole-system commands share.
//!
//! - The file is opened inside ROOT without following a final symlink.
//! - Its MD5 must equal the one CONTENTS records (what Portage merged);
//!   otherwise it is never signed.
//! - A config-protected file the admin changed is merged by Portage as
//!   `._cfgNNNN_name` beside it: the sibling whose MD5 matches is signed.
//! - A valid signature by our key is kept.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use ima_core::{Error as ImaError, ImaSigner, KeySet, SignOptions, SignOutcome, VerifyStatus};

use crate::engine::{FileReport, Outcome};
use crate::fs::rootfs::{cfg_siblings, RootDir};
use crate::verify::{self, FileStatus};

/// Signs the file CONTENTS lists at `path` (or its matching `._cfg` sibling).
pub fn sign_object(
    signer: &ImaSigner,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
    dry_run: bool,
) -> FileReport {
    let opts = SignOptions {
        expect_md5: Some(*md5),
        keep_valid: true,
        dry_run,
    };
    let shown = root.display_path(path);
    let file = match root.open_file(path) {
        Ok(f) => f,
        Err(e) => return FileReport::new(shown, Outcome::Failed(open_reason(&e))),
    };
    match signer.sign_file(&file, &opts) {
        Ok(outcome) => FileReport::new(shown, outcome_of(outcome)),
        Err(ImaError::Md5Mismatch { actual, .. }) => sign_cfg_sibling(signer, root, path, &opts)
            .unwrap_or_else(|| {
                FileReport::new(
                    shown,
                    Outcome::Failed(format!(
                        "content differs from what Portage merged (CONTENTS MD5 {}, file MD5 {}); \
                         not signed: reinstall the package if this change is not yours",
                        hex::encode(md5),
                        actual
                    )),
                )
            }),
        Err(e) => FileReport::new(shown, Outcome::Failed(sign_reason(&e))),
    }
}

/// The `._cfgNNNN_name` files beside `path`, newest first, opened inside
/// the root (those that cannot be opened are passed over).
fn cfg_candidates(root: &RootDir, path: &Path) -> Vec<(PathBuf, File)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let Ok(names) = root.read_dir_names(dir) else {
        return Vec::new();
    };
    cfg_siblings(&names, name)
        .iter()
        .rev()
        .filter_map(|sibling| {
            let candidate = dir.join(sibling);
            let file = root.open_file(&candidate).ok()?;
            Some((root.display_path(&candidate), file))
        })
        .collect()
}

/// Signs the `._cfg` sibling of `path` whose content is what CONTENTS records.
fn sign_cfg_sibling(
    signer: &ImaSigner,
    root: &RootDir,
    path: &Path,
    opts: &SignOptions,
) -> Option<FileReport> {
    cfg_candidates(root, path)
        .into_iter()
        .find_map(|(shown, file)| match signer.sign_file(&file, opts) {
            Ok(outcome) => Some(FileReport::new(shown, outcome_of(outcome))),
            Err(ImaError::Md5Mismatch { .. }) => None,
            Err(e) => Some(FileReport::new(shown, Outcome::Failed(sign_reason(&e)))),
        })
}

/// Checks the file CONTENTS lists at `path`: its signature, and its content
/// against the MD5 CONTENTS records (`modified`, `missing`).
///
/// A config file whose live copy differs from CONTENTS (the admin edited it;
/// a `._cfgNNNN_` sibling may hold the package's update) gives two results:
/// the sibling that matches CONTENTS, checked as the package's file, and the
/// live file, the one that is used until the update is merged, with its own
/// state. The live file is [`verify::MODIFIED`] (a failure) when IMA
/// appraisal would refuse to run it: executable and its signature does not
/// verify. Otherwise it is [`verify::CONFIG_CHANGED`]: reported, not a
/// failure, since admins edit config files and IMA does not appraise reads
/// of data files by signature. A file counts as a config file when Portage
/// wrote a `._cfg` sibling for it, or when CONFIG_PROTECT covers it.
pub fn verify_object(
    keys: &KeySet,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
    protect: &ConfigProtect,
) -> Vec<FileStatus> {
    let shown = root.display_path(path);
    let file = match root.open_file(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let detail = "listed in CONTENTS but not on disk".to_string();
            return vec![FileStatus::with_status(&shown, verify::MISSING, detail)];
        }
        Err(e) => return vec![FileStatus::error(&shown, open_reason(&e))],
    };
    let report = match keys.verify_file(&file, true) {
        Ok(r) => r,
        Err(e) => return vec![FileStatus::error(&shown, sign_reason(&e))],
    };
    if report.md5.as_ref() == Some(md5) {
        return vec![FileStatus::from_report(&shown, &report)];
    }
    let differs = format!(
        "content differs from CONTENTS (MD5 {} expected, {} found); signature: {}",
        hex::encode(md5),
        report.md5.map(hex::encode).unwrap_or_default(),
        report.status.as_str()
    );
    let update = verify_cfg_sibling(keys, root, path, md5);
    let mut live = FileStatus::from_report(&shown, &report);
    live.status = verify::MODIFIED;
    live.detail = Some(differs);
    if update.is_none() && !protect.is_protected(path) {
        return vec![live];
    }
    // A config file: is the changed live copy one the kernel would refuse?
    let executable = file
        .metadata()
        .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
    let denied = executable && report.status != VerifyStatus::Ok;
    let mut detail = live.detail.take().unwrap_or_default();
    detail.insert_str(0, "config file changed since the merge: ");
    detail.push_str(if denied {
        "; executable: IMA appraisal would refuse to run it"
    } else if executable {
        "; executable, runs with this signature"
    } else {
        "; not executable: reported, not a failure"
    });
    if let Some((sibling, _)) = &update {
        let name = sibling.file_name().unwrap_or_default();
        detail.push_str(&format!(
            "; update pending: {} (merge it with dispatch-conf or etc-update)",
            Path::new(name).display()
        ));
    }
    live.detail = Some(detail);
    if !denied {
        live.status = verify::CONFIG_CHANGED;
    }
    match update {
        Some((_, status)) => vec![status, live],
        None => vec![live],
    }
}

/// The `._cfg` sibling of `path` whose content is what CONTENTS records:
/// its path and its status.
fn verify_cfg_sibling(
    keys: &KeySet,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
) -> Option<(PathBuf, FileStatus)> {
    cfg_candidates(root, path)
        .into_iter()
        .find_map(|(shown, file)| {
            let report = keys.verify_file(&file, true).ok()?;
            (report.md5.as_ref() == Some(md5))
                .then(|| (shown.clone(), FileStatus::from_report(&shown, &report)))
        })
}

fn outcome_of(outcome: SignOutcome) -> Outcome {
    match outcome {
        SignOutcome::Signed => Outcome::Signed,
        SignOutcome::AlreadyValid => Outcome::AlreadyValid,
        SignOutcome::WouldSign => Outcome::WouldSign,
    }
}

/// Why a CONTENTS path could not be opened, in the words an admin needs.
pub fn open_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            "is a symbolic link now, not the file Portage merged; not followed, not signed".into()
        }
        Some(libc::ENOENT) => "listed in CONTENTS but not on disk; not signed".into(),
        Some(libc::EXDEV) => "path escapes the root through a symlink; not signed".into(),
        _ => format!("cannot open: {e}"),
    }
}

fn sign_reason(e: &ImaError) -> String {
    match e {
        ImaError::NotRegularFile { kind } => {
            format!("is a {kind} now, not the regular file Portage merged; not signed")
        }
        other => other.to_string(),
    }
}

/// CONFIG_PROTECT and CONFIG_PROTECT_MASK, for `config_files = "skip"`.
#[derive(Debug, Default, Clone)]
pub struct ConfigProtect {
    protect: Vec<PathBuf>,
    mask: Vec<PathBuf>,
}

impl ConfigProtect {
    /// From the environment, else from `portageq envvar` (Portage does not
    /// pass these into the ebuild environment), else `/etc`.
    pub fn discover(eprefix: &Path) -> ConfigProtect {
        let from_env = |name: &str| std::env::var(name).ok();
        let (protect, mask) = match (from_env("CONFIG_PROTECT"), from_env("CONFIG_PROTECT_MASK")) {
            (Some(p), m) => (p, m.unwrap_or_default()),
            (None, _) => {
                portageq_config_protect().unwrap_or_else(|| ("/etc".into(), String::new()))
            }
        };
        ConfigProtect::new(eprefix, &protect, &mask)
    }

    /// Lists are space-separated paths relative to EPREFIX, as Portage writes them.
    pub fn new(eprefix: &Path, protect: &str, mask: &str) -> ConfigProtect {
        let list = |s: &str| -> Vec<PathBuf> {
            s.split_whitespace()
                .map(|p| {
                    let rel = p.trim_start_matches('/');
                    let mut full = PathBuf::from("/");
                    full.push(eprefix.strip_prefix("/").unwrap_or(eprefix));
                    full.push(rel);
                    full
                })
                .collect()
        };
        ConfigProtect {
            protect: list(protect),
            mask: list(mask),
        }
    }

    /// Portage's rule: protected when the longest matching CONFIG_PROTECT
    /// entry is longer than the longest matching mask entry.
    pub fn is_protected(&self, path: &Path) -> bool {
        let longest = |list: &[PathBuf]| {
            list.iter()
                .filter(|dir| path.starts_with(dir))
                .map(|dir| dir.as_os_str().len())
                .max()
        };
        match (longest(&self.protect), longest(&self.mask)) {
            (Some(p), Some(m)) => p > m,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// `portageq envvar`, never found through `PATH` inside Portage
/// (see [`crate::gentoo::env::portageq_command`]).
fn portageq_config_protect() -> Option<(String, String)> {
    let out = crate::gentoo::env::portageq_command()?
        .args(["envvar", "CONFIG_PROTECT", "CONFIG_PROTECT_MASK"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    Some((
        lines.next()?.to_string(),
        lines.next().unwrap_or("").to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_protect_follows_portage_rule() {
        let cp = ConfigProtect::new(
            Path::new(""),
            "/etc /usr/share/config",
            "/etc/env.d /etc/gconf",
        );
        assert!(cp.is_protected(Path::new("/etc/foo.conf")));
        assert!(!cp.is_protected(Path::new("/etc/env.d/99foo")));
        assert!(cp.is_protected(Path::new("/usr/share/config/x")));
        assert!(!cp.is_protected(Path::new("/usr/bin/foo")));
        assert!(!cp.is_protected(Path::new("/etcetera/x")));
    }

    #[test]
    fn config_protect_is_relative_to_eprefix() {
        let cp = ConfigProtect::new(Path::new("/opt/gentoo"), "/etc", "");
        assert!(cp.is_protected(Path::new("/opt/gentoo/etc/foo")));
        assert!(!cp.is_protected(Path::new("/etc/foo")));
    }
}
