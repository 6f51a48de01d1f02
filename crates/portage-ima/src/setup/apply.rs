//! Carrying a [`Plan`] out under ROOT. Each action first compares what is
//! there with what the plan wants, and does nothing when they agree: a
//! second run changes nothing. A file that is changed or replaced is first
//! copied to `var/lib/portage-ima/setup-backup/TIME/PATH` (a backup beside
//! it could be read as configuration: make.conf and dracut.conf.d are
//! directories of files). Boot loader files are never in a plan.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::fs::atomic::{self, Durability};

use super::plan::{Action, Arg, Plan, Run};
use super::under;

/// Where backups go, under ROOT.
pub const BACKUP_DIR: &str = "var/lib/portage-ima/setup-backup";

/// One change made.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "done", rename_all = "kebab-case")]
pub enum Done {
    /// A file written (new, or changed with a backup).
    Wrote {
        /// The file, as the system sees it.
        path: PathBuf,
        /// Its backup under ROOT, when it existed.
        backup: Option<PathBuf>,
    },
    /// A symlink made.
    Linked {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A command run.
    Ran {
        /// As a shell line.
        command: String,
    },
}

/// What applying did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Every change, in order.
    pub done: Vec<Done>,
    /// Steps skipped because they are blocked (their titles and why).
    pub blocked: Vec<(String, String)>,
}

/// Applies `plan` under `root`; `stamp` names the backup directory.
pub fn apply(plan: &Plan, root: &Path, stamp: &str) -> Result<Applied> {
    let backups = root.join(BACKUP_DIR).join(stamp);
    let mut applied = Applied::default();
    for step in &plan.steps {
        if let Some(why) = &step.blocked {
            applied.blocked.push((step.title.clone(), why.clone()));
            continue;
        }
        for action in &step.actions {
            if let Some(done) =
                act(action, root, &backups).with_context(|| format!("step \"{}\"", step.title))?
            {
                applied.done.push(done);
            }
        }
    }
    Ok(applied)
}

/// Whether `action` is already as the plan wants it under `root` (what
/// [`apply`] would skip).
pub fn already_done(action: &Action, root: &Path) -> bool {
    match action {
        Action::Write { path, content, .. } => {
            fs::read(under(root, path)).is_ok_and(|old| old == content.as_bytes())
        }
        Action::Copy { from, to } => fs::read(under(root, to))
            .is_ok_and(|old| fs::read(under(root, from)).is_ok_and(|new| new == old)),
        Action::Symlink { path, target } => {
            fs::read_link(under(root, path)).is_ok_and(|t| t == *target)
        }
        Action::Run(run) => run.creates.iter().all(|p| under(root, p).exists()),
    }
}

fn act(action: &Action, root: &Path, backups: &Path) -> Result<Option<Done>> {
    match action {
        Action::Write {
            path,
            content,
            mode,
            ..
        } => write_file(root, path, content.as_bytes(), *mode, backups),
        Action::Copy { from, to } => {
            let bytes = fs::read(under(root, from))
                .with_context(|| format!("cannot read {}", under(root, from).display()))?;
            write_file(root, to, &bytes, 0o644, backups)
        }
        Action::Symlink { path, target } => {
            let link = under(root, path);
            if fs::read_link(&link).is_ok_and(|t| t == *target) {
                return Ok(None);
            }
            if link.symlink_metadata().is_ok() {
                backup(&link, path, backups)?;
                fs::remove_file(&link)
                    .with_context(|| format!("cannot replace {}", link.display()))?;
            }
            create_parent(&link)?;
            std::os::unix::fs::symlink(target, &link)
                .with_context(|| format!("cannot link {}", link.display()))?;
            Ok(Some(Done::Linked {
                path: path.clone(),
                target: target.clone(),
            }))
        }
        Action::Run(run) => run_command(run, root),
    }
}

fn create_parent(file: &Path) -> Result<()> {
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

/// Copies `file` (at `path` on the system) into the backup directory.
fn backup(file: &Path, path: &Path, backups: &Path) -> Result<PathBuf> {
    let copy = under(backups, path);
    create_parent(&copy)?;
    if file.is_symlink() {
        let target = fs::read_link(file)?;
        std::os::unix::fs::symlink(target, &copy)
    } else {
        fs::copy(file, &copy).map(drop)
    }
    .with_context(|| format!("cannot back {} up to {}", file.display(), copy.display()))?;
    Ok(copy)
}

fn write_file(
    root: &Path,
    path: &Path,
    content: &[u8],
    mode: u32,
    backups: &Path,
) -> Result<Option<Done>> {
    let file = under(root, path);
    let old = fs::read(&file).ok();
    if old.as_deref() == Some(content) {
        return Ok(None);
    }
    let saved = match old {
        Some(_) => Some(backup(&file, path, backups)?),
        None => None,
    };
    create_parent(&file)?;
    // A file changed keeps its mode (a private make.conf stays private).
    let mode = fs::metadata(&file).map_or(mode, |m| m.permissions().mode() & 0o7777);
    atomic::replace(&file, &[content], Durability::Full, |new, tmp| {
        new.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", tmp.display()))
    })?;
    Ok(Some(Done::Wrote {
        path: path.to_path_buf(),
        backup: saved,
    }))
}

fn run_command(run: &Run, root: &Path) -> Result<Option<Done>> {
    if run.creates.iter().all(|p| under(root, p).exists()) {
        return Ok(None);
    }
    for made in &run.creates {
        create_parent(&under(root, made))?;
    }
    let args: Vec<std::ffi::OsString> = run
        .argv
        .iter()
        .map(|a| match a {
            Arg::Text(t) => t.into(),
            Arg::Path(p) => under(root, p).into_os_string(),
        })
        .collect();
    let out = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", run.shell()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            run.shell(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for private in &run.private {
        let p = under(root, private);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400))
            .with_context(|| format!("cannot make {} private", p.display()))?;
    }
    Ok(Some(Done::Ran {
        command: run.shell(),
    }))
}
