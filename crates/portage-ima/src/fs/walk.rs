//! `sign --files` and `verify --files`: paths given on the command line.
//!
//! A directory is walked through descriptors, never through paths: each
//! subdirectory is opened relative to its parent's descriptor with
//! `O_NOFOLLOW | O_DIRECTORY`, and each file found is later opened relative
//! to the walked directory with [`ima_core::open_regular_beneath`], which
//! follows no symlink anywhere. So a subdirectory swapped for a symlink to
//! somewhere else while the walk or the signing runs (in `${D}`, which the
//! unprivileged `portage` user owns) leads nowhere outside the tree.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::fs::links::LinkCensus;

/// A regular file found on the command line or in a walked directory.
#[derive(Debug, Clone)]
pub struct FoundFile {
    /// Where the file is, as the user knows it (for reports).
    pub path: PathBuf,
    pub size: u64,
    /// For a file found in a walk: the walked directory's descriptor and
    /// the path below it, opened without following any symlink.
    beneath: Option<(Arc<OwnedFd>, PathBuf)>,
    /// For a file of an image ([`collect_image`]): the names the walk found
    /// for each inode; a file with more links is refused when opened.
    census: Option<Arc<LinkCensus>>,
    /// `st_dev` and `st_ino` as the walk saw them.
    inode: Option<(u64, u64)>,
    /// Other names of the same inode in the image ([`collect_image`]).
    pub also_named: Vec<PathBuf>,
}

impl FoundFile {
    /// Opens the file read-only, refusing anything but a regular file; a
    /// file found in a walk is opened below the walked directory's
    /// descriptor, following no symlink on the way.
    pub fn open(&self) -> ima_core::Result<File> {
        let file = match &self.beneath {
            Some((dir, rel)) => ima_core::open_regular_beneath(dir.as_fd(), rel),
            None => ima_core::open_regular(&self.path),
        }?;
        if let Some(census) = &self.census {
            census.check(&file)?;
        }
        Ok(file)
    }
}

/// A path that gives no file to work on; the commands report it as a
/// failure (`sign`) or an `error` verdict (`verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: Unwalkable,
}

/// Why a path gives no file to work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwalkable {
    /// Named on the command line, but not a regular file or a directory.
    NotAFile { kind: &'static str, symlink: bool },
    /// A directory reached twice in a walk (a bind-mount loop).
    DirectoryLoop,
    /// Could not be read (stat, open, readdir): a short, specific reason.
    Io(String),
}

impl fmt::Display for Unwalkable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unwalkable::NotAFile { kind, symlink } => write!(
                f,
                "is a {kind}, not a regular file; not signed{}",
                if *symlink {
                    " (symlinks are never followed: name its target instead)"
                } else {
                    ""
                }
            ),
            Unwalkable::DirectoryLoop => f.write_str(
                "directory reached twice (a bind-mount loop, or named twice); not walked again",
            ),
            Unwalkable::Io(text) => f.write_str(text),
        }
    }
}

impl Problem {
    fn new(path: impl Into<PathBuf>, reason: Unwalkable) -> Problem {
        Problem {
            path: path.into(),
            reason,
        }
    }
}

/// Expands the command-line paths: a directory is walked recursively
/// without following symlinks; inside a walk only regular files are taken.
/// A path given explicitly that is not a regular file or directory, and a
/// directory reached twice (a bind-mount loop), is reported.
pub(crate) fn collect(paths: &[PathBuf]) -> (Vec<FoundFile>, Vec<Problem>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut seen_dirs = HashSet::new();
    for path in paths {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                problems.push(Problem::new(path, io_failure(&e)));
                continue;
            }
        };
        let kind = meta.file_type();
        if kind.is_file() {
            found.push(FoundFile {
                path: path.clone(),
                size: meta.len(),
                beneath: None,
                inode: None,
                census: None,
                also_named: Vec::new(),
            });
        } else if kind.is_dir() {
            let mut walk = Walk {
                seen_dirs: &mut seen_dirs,
                found: &mut found,
                problems: &mut problems,
                loops: Vec::new(),
            };
            walk.root(path);
            let loops = std::mem::take(&mut walk.loops);
            for path in loops {
                problems.push(Problem::new(path, Unwalkable::DirectoryLoop));
            }
        } else {
            let reason = Unwalkable::NotAFile {
                kind: kind_name(&meta),
                symlink: kind.is_symlink(),
            };
            problems.push(Problem::new(path, reason));
        }
    }
    (found, problems)
}

/// Walks an image (`${D}`) like [`collect`], and counts the names found for
/// each inode: opening a file with a hard link outside the image fails
/// ([`LinkCensus`]). The names in `copies` (trees Portage hard-links from
/// the image, such as the package phase's `${T}/packaging`) count too;
/// their files are not returned. Hard links inside the image come back as
/// one file (the first name), the others in [`FoundFile::also_named`], so
/// that an inode is signed once, not by two threads at the same time.
pub(crate) fn collect_image(image: &Path, copies: &[PathBuf]) -> (Vec<FoundFile>, Vec<Problem>) {
    let (all, problems) = collect(&[image.to_path_buf()]);
    let mut census = LinkCensus::default();
    let (copied, _) = collect(copies);
    for file in all.iter().chain(&copied) {
        if let Some((dev, ino)) = file.inode {
            census.add(dev, ino);
        }
    }
    let census = Arc::new(census);
    let mut found: Vec<FoundFile> = Vec::with_capacity(all.len());
    let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
    for mut file in all {
        if let Some(&i) = file.inode.as_ref().and_then(|id| first_of.get(id)) {
            found[i].also_named.push(file.path);
            continue;
        }
        if let Some(id) = file.inode {
            first_of.insert(id, found.len());
        }
        file.census = Some(Arc::clone(&census));
        found.push(file);
    }
    (found, problems)
}

/// One directory tree walked through descriptors.
struct Walk<'a> {
    seen_dirs: &'a mut HashSet<(u64, u64)>,
    found: &'a mut Vec<FoundFile>,
    problems: &'a mut Vec<Problem>,
    loops: Vec<PathBuf>,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Walk<'_> {
    fn root(&mut self, path: &Path) {
        let fd = match rustix::fs::open(path, dir_flags(), Mode::empty()) {
            Ok(fd) => Arc::new(fd),
            Err(e) => return self.fail(path, &e.into()),
        };
        self.dir(path, &fd, &fd, Path::new(""));
    }

    /// Walks `dir` (the descriptor of `shown`, at `rel` below `root`).
    fn dir(&mut self, shown: &Path, root: &Arc<OwnedFd>, dir: &OwnedFd, rel: &Path) {
        // st_dev and st_ino are not u64 on every architecture.
        #[allow(clippy::unnecessary_cast)]
        let id = rustix::fs::fstat(dir).map(|st| (st.st_dev as u64, st.st_ino as u64));
        match id {
            Ok(id) if !self.seen_dirs.insert(id) => {
                self.loops.push(shown.to_path_buf());
                return;
            }
            Ok(_) => {}
            Err(e) => return self.fail(shown, &e.into()),
        }
        let entries = match rustix::fs::Dir::read_from(dir) {
            Ok(d) => d,
            Err(e) => return self.fail(shown, &e.into()),
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let name = entry.file_name().to_bytes();
                    if name != b"." && name != b".." {
                        names.push(OsStr::from_bytes(name).to_os_string());
                    }
                }
                Err(e) => return self.fail(shown, &e.into()),
            }
        }
        names.sort();
        for name in names {
            let path = shown.join(&name);
            let st = match rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    self.fail(&path, &e.into());
                    continue;
                }
            };
            match FileType::from_raw_mode(st.st_mode) {
                // st_dev and st_ino are not u64 on every architecture.
                #[allow(clippy::unnecessary_cast)]
                FileType::RegularFile => self.found.push(FoundFile {
                    path,
                    size: st.st_size as u64,
                    beneath: Some((Arc::clone(root), rel.join(&name))),
                    inode: Some((st.st_dev as u64, st.st_ino as u64)),
                    census: None,
                    also_named: Vec::new(),
                }),
                FileType::Directory => {
                    // O_NOFOLLOW: a directory swapped for a symlink since
                    // the statat is refused (ELOOP/ENOTDIR), not entered.
                    match rustix::fs::openat(dir, name.as_os_str(), dir_flags(), Mode::empty()) {
                        Ok(sub) => self.dir(&path, root, &sub, &rel.join(&name)),
                        Err(e) => self.fail(&path, &e.into()),
                    }
                }
                // Symlinks and special files inside a walk are passed over.
                _ => {}
            }
        }
    }

    fn fail(&mut self, path: &Path, e: &std::io::Error) {
        self.problems.push(Problem::new(path, io_failure(e)));
    }
}

/// A short, specific reason for an I/O error on a path.
fn io_failure(e: &std::io::Error) -> Unwalkable {
    Unwalkable::Io(match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory (removed meanwhile?)".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    })
}

fn kind_name(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_walks_dirs_and_reports_specials() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a"), b"a").unwrap();
        std::fs::write(d.join("b"), b"bb").unwrap();
        std::os::unix::fs::symlink("b", d.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Inside a walk, the symlink and the fifo are passed over.
        let (found, problems) = collect(&[d.to_path_buf()]);
        let mut names: Vec<_> = found.iter().map(|f| f.path.clone()).collect();
        names.sort();
        assert_eq!(names, vec![d.join("b"), d.join("sub/a")]);
        assert!(problems.is_empty(), "{problems:?}");
        // Named explicitly, they are errors.
        let (found, problems) = collect(&[d.join("link"), d.join("fifo"), d.join("gone")]);
        assert!(found.is_empty());
        let reasons: Vec<_> = problems.iter().map(|p| p.reason.to_string()).collect();
        assert!(reasons[0].contains("symbolic link"), "{reasons:?}");
        assert!(reasons[1].contains("fifo"), "{reasons:?}");
        assert!(reasons[2].contains("no such file"), "{reasons:?}");
    }

    #[test]
    fn an_image_file_linked_from_outside_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir_all(image.join("bin")).unwrap();
        std::fs::write(image.join("bin/git"), b"git").unwrap();
        std::fs::hard_link(image.join("bin/git"), image.join("bin/git-add")).unwrap();
        std::fs::write(dir.path().join("outside"), b"x").unwrap();
        std::fs::hard_link(dir.path().join("outside"), image.join("bin/linked")).unwrap();
        let (found, problems) = collect_image(&image, &[]);
        assert!(problems.is_empty(), "{problems:?}");
        let opened: Vec<_> = found
            .iter()
            .map(|f| (f.path.file_name().unwrap().to_owned(), f.open().map(|_| ())))
            .collect();
        // git and git-add are one inode: one file, two names.
        assert_eq!(opened.len(), 2);
        let git = found.iter().find(|f| f.path.ends_with("bin/git")).unwrap();
        assert_eq!(git.also_named, vec![image.join("bin/git-add")]);
        for (name, result) in opened {
            match name.to_str().unwrap() {
                "linked" => assert!(
                    matches!(
                        result,
                        Err(ima_core::Error::LinkedOutside { links: 2, seen: 1 })
                    ),
                    "{result:?}"
                ),
                _ => assert!(result.is_ok(), "{name:?}: {result:?}"),
            }
        }
        // A plain walk (sign --files) does not count links.
        let (found, _) = collect(std::slice::from_ref(&image));
        assert!(found.iter().all(|f| f.open().is_ok()));
    }

    #[test]
    fn a_directory_named_twice_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        let (found, problems) = collect(&[dir.path().to_path_buf(), dir.path().to_path_buf()]);
        assert_eq!(found.len(), 1);
        assert_eq!(problems.len(), 1);
    }
}
