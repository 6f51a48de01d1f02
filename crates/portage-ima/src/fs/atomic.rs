//! Replacing a file whole: the new content goes to a temporary file beside
//! the old one (same directory, so the same filesystem), is synced, and is
//! renamed over it. rename(2) is atomic, so a reader, or the next boot after
//! a crash, finds the old file or the new one, never part of one.
//!
//! The new file is mode 0644 (a policy or a digest list is no secret; the
//! temporary file starts 0600) and owned by whoever runs us, as a file
//! written in place would be. Its name starts with a dot (`.NAME.XXXXXX`),
//! so directory readers that skip dot files (`keylime/store.rs`) never see
//! one half written.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// How much of a replacement must be on disk when the call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The file's data and the rename (the directory) are synced.
    Full,
    /// The file's data is synced before the rename; the caller syncs the
    /// directory (once, after several renames), or a lost rename is harmless.
    FileOnly,
    /// Nothing is synced; the caller syncs the whole filesystem afterwards
    /// (one `syncfs` instead of one fsync per file).
    Deferred,
}

/// Replaces `path` with `data`, fully synced: the usual case.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    replace(path, &[data], Durability::Full, |_, _| Ok(()))
}

/// Replaces `path` with the concatenation of `parts`, syncing as
/// `durability` says. `before_rename` gets the new file (and its temporary
/// path, for messages) once written, before it is synced and renamed: an
/// error there leaves `path` as it was (the signature of `policy --sign` is
/// set through it, on the same descriptor).
pub(crate) fn replace(
    path: &Path,
    parts: &[&[u8]],
    durability: Durability,
    before_rename: impl FnOnce(&File, &Path) -> Result<()>,
) -> Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    parts
        .iter()
        .try_for_each(|part| tmp.write_all(part))
        .and_then(|()| tmp.flush())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    before_rename(tmp.as_file(), tmp.path())?;
    if durability != Durability::Deferred {
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("cannot sync {}", tmp.path().display()))?;
    }
    tmp.persist(path)
        .with_context(|| format!("cannot rename a new file over {}", path.display()))?;
    if durability == Durability::Full {
        sync_directory(dir)?;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Syncs a directory: the renames and removals in it reach the disk.
pub(crate) fn sync_directory(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_whole_with_mode_0644_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy");
        std::fs::write(&path, "old").unwrap();
        replace(&path, &[b"new ", b"content"], Durability::Full, |_, _| {
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new content");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_error_before_the_rename_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy");
        std::fs::write(&path, "old").unwrap();
        let err = replace(&path, &[b"new"], Durability::Full, |_, _| {
            anyhow::bail!("no key")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "no key");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none/policy");
        let err = write_atomically(&path, b"x").unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot create a file in"),
            "{err:#}"
        );
    }
}
