//! Opening files safely and reading/writing `security.ima` on the descriptor.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, XattrFlags};
use rustix::io::Errno;

use crate::{Error, Result};

/// The extended attribute IMA appraises.
pub const IMA_XATTR: &str = "security.ima";

/// Opens `path` read-only without following a final symlink
/// (`O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC`) and refuses anything that is
/// not a regular file with [`Error::NotRegularFile`].
///
/// Special files are refused from `lstat` before opening them (opening a
/// device can have side effects), and the descriptor's own `fstat` decides.
pub fn open_regular(path: &Path) -> Result<File> {
    open_regular_at(rustix::fs::CWD, path)
}

/// `lstat`, refuse, open `O_NOFOLLOW`, `fstat`, refuse: `name` relative to
/// `dirfd` (which resolves the directories on the way as `openat` does).
fn open_regular_at(dirfd: impl AsFd, name: impl AsRef<Path>) -> Result<File> {
    let (dirfd, name) = (dirfd.as_fd(), name.as_ref());
    let st = rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("stat", e))?;
    check_regular(FileType::from_raw_mode(st.st_mode))?;
    let fd = rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // Replaced by a symlink between lstat and open.
        Errno::LOOP => Error::NotRegularFile {
            kind: "symbolic link",
        },
        e => Error::io("open", e),
    })?;
    check_regular_fd(&fd)?;
    Ok(File::from(fd))
}

/// Opens `rel`, a relative path below the directory `dir`, like
/// [`open_regular`], without following a symlink anywhere on the way: not in
/// the last component, and not in any directory component either, so a
/// directory swapped for a symlink while a tree is walked cannot lead outside
/// it. `..` cannot climb above `dir` either.
///
/// The parent directory is opened with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (Linux 5.6), or where the
/// kernel lacks it one `openat(O_NOFOLLOW | O_DIRECTORY)` per component;
/// the file itself is then opened relative to that descriptor, as
/// [`open_regular`] does. A symlink on the way is [`Error::NotRegularFile`]
/// ("symbolic link"); `..` or an absolute path is an `EXDEV` I/O error.
pub fn open_regular_beneath(dir: impl AsFd, rel: &Path) -> Result<File> {
    let (parent, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(Error::io("open", Errno::INVAL)),
    };
    if rel.is_absolute() {
        return Err(Error::io("open", Errno::XDEV));
    }
    let parent_fd = open_dir_beneath(dir.as_fd(), parent).map_err(|e| match e {
        // A symlink where a directory was (openat2, or the walk's lstat).
        Errno::LOOP => Error::NotRegularFile {
            kind: "path through a symbolic link",
        },
        e => Error::io("open", e),
    })?;
    open_regular_at(&parent_fd, name)
}

/// The directory `rel` below `dir` as an `O_PATH` descriptor, following no
/// symlink (see [`open_regular_beneath`]).
fn open_dir_beneath(dir: std::os::fd::BorrowedFd<'_>, rel: &Path) -> rustix::io::Result<OwnedFd> {
    // No O_NOFOLLOW: RESOLVE_NO_SYMLINKS makes a final symlink ELOOP too
    // (O_NOFOLLOW would open it as an O_PATH symlink and say ENOTDIR).
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, rel, flags, Mode::empty(), resolve) {
            // A rename raced with the lookup: the kernel asks to retry.
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            // No openat2 (before Linux 5.6, or a seccomp filter): walk.
            Err(Errno::NOSYS) | Err(Errno::PERM) => return walk_dir_beneath(dir, rel, flags),
            other => return other,
        }
    }
}

/// The portable form of [`open_dir_beneath`]: one `openat` per component,
/// each with `O_NOFOLLOW | O_DIRECTORY`, so a symlink is `ELOOP` and `..`
/// is refused (`EXDEV`, as `RESOLVE_BENEATH` would for a path that climbs).
fn walk_dir_beneath(
    dir: std::os::fd::BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW;
    let mut cur = rustix::fs::openat(dir, ".", flags, Mode::empty())?;
    for comp in rel.as_os_str().as_bytes().split(|&b| b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err(Errno::XDEV),
            name => {
                let st = rustix::fs::statat(&cur, name, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                    return Err(Errno::LOOP);
                }
                cur = rustix::fs::openat(&cur, name, flags, Mode::empty())?;
            }
        }
    }
    Ok(cur)
}

/// Refuses a descriptor that is not a regular file (`fstat`), so nothing
/// reads a device, fifo or socket that came where a file was expected.
pub fn check_regular_fd(fd: impl AsFd) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::io("fstat", e))?;
    check_regular(FileType::from_raw_mode(st.st_mode))
}

fn check_regular(ft: FileType) -> Result<()> {
    let kind = match ft {
        FileType::RegularFile => return Ok(()),
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "fifo",
        FileType::Directory => "directory",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Socket => "socket",
        _ => "file of unknown type",
    };
    Err(Error::NotRegularFile { kind })
}

/// What identifies a file's content version: compared before and after
/// hashing to notice a file that changed while it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// The device the inode lives on.
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// (seconds, nanoseconds)
    pub mtime: (i64, i64),
    /// (seconds, nanoseconds)
    pub ctime: (i64, i64),
}

impl FileStamp {
    /// `fstat` of the open file.
    pub fn of(file: &File) -> Result<Self> {
        let st = rustix::fs::fstat(file).map_err(|e| Error::io("fstat", e))?;
        Ok(FileStamp {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        })
    }
}

/// The raw `security.ima` value, `None` when the file has none.
pub fn read_ima_xattr(file: &File) -> Result<Option<Vec<u8>>> {
    // Fits every RSA signature up to 16384 bits; larger values are retried.
    let mut buf = vec![0u8; 4096];
    loop {
        match rustix::fs::fgetxattr(file.as_fd(), IMA_XATTR, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA) => return Ok(None),
            // The file system has no xattrs at all: nothing stored either.
            Err(Errno::NOTSUP) => return Ok(None),
            Err(Errno::RANGE) => {
                let n = rustix::fs::fgetxattr_query(file.as_fd(), IMA_XATTR)
                    .map_err(|e| Error::io("read security.ima", e))?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(Error::io("read security.ima", e)),
        }
    }
}

/// Sets `security.ima` on the open file (`fsetxattr`), mapping the errors a
/// user can act on to specific variants.
pub fn write_ima_xattr(file: &File, value: &[u8]) -> Result<()> {
    rustix::fs::fsetxattr(file.as_fd(), IMA_XATTR, value, XattrFlags::empty())
        .map_err(setxattr_error)
}

/// The `fsetxattr` errors a user can act on, each with its own variant.
fn setxattr_error(e: Errno) -> Error {
    match e {
        Errno::ROFS => Error::ReadOnlyFilesystem,
        // ENOTSUP and EOPNOTSUPP are one value on Linux.
        Errno::NOTSUP => Error::XattrUnsupported,
        // Immutable or append-only inode, or no CAP_SYS_ADMIN (IMA's own check).
        Errno::PERM => Error::NotPermitted,
        Errno::ACCESS => Error::PermissionDenied,
        e => Error::io("write security.ima", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EACCES cannot be provoked as root here (IMA answers EPERM without
    /// CAP_SYS_ADMIN); the others are also tested for real in tests/files.rs.
    #[test]
    fn setxattr_errno_mapping() {
        assert!(matches!(
            setxattr_error(Errno::ROFS),
            Error::ReadOnlyFilesystem
        ));
        assert!(matches!(
            setxattr_error(Errno::OPNOTSUPP),
            Error::XattrUnsupported
        ));
        assert!(matches!(setxattr_error(Errno::PERM), Error::NotPermitted));
        assert!(matches!(
            setxattr_error(Errno::ACCESS),
            Error::PermissionDenied
        ));
        match setxattr_error(Errno::NOSPC) {
            Error::Io { op, source } => {
                assert_eq!(op, "write security.ima");
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            e => panic!("{e:?}"),
        }
        assert!(Error::PermissionDenied.to_string().contains("root"));
    }
}

#[cfg(test)]
mod beneath_tests {
    use super::*;

    /// Both resolvers (openat2, and the walk for kernels without it) refuse
    /// a symlink in any component and `..`, and open plain files.
    #[test]
    fn no_symlink_anywhere_below_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("tree/sub")).unwrap();
        std::fs::create_dir(d.join("outside")).unwrap();
        std::fs::write(d.join("tree/sub/f"), b"in").unwrap();
        std::fs::write(d.join("outside/f"), b"out").unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("tree/link")).unwrap();
        std::os::unix::fs::symlink("sub", d.join("tree/rel")).unwrap();
        std::os::unix::fs::symlink("sub/f", d.join("tree/flink")).unwrap();
        let tree = File::open(d.join("tree")).unwrap();
        assert!(open_regular_beneath(&tree, Path::new("sub/f")).is_ok());
        for bad in ["link/f", "rel/f", "flink"] {
            let e = open_regular_beneath(&tree, Path::new(bad)).unwrap_err();
            assert!(
                matches!(e, Error::NotRegularFile { kind } if kind.contains("symbolic link")),
                "{bad}: {e:?}"
            );
        }
        let e = open_regular_beneath(&tree, Path::new("../outside/f")).unwrap_err();
        assert!(e.to_string().contains("cross-device"), "{e}");
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        assert!(walk_dir_beneath(tree.as_fd(), Path::new("sub"), flags).is_ok());
        for (bad, errno) in [
            ("link", Errno::LOOP),
            ("rel", Errno::LOOP),
            ("..", Errno::XDEV),
        ] {
            let e = walk_dir_beneath(tree.as_fd(), Path::new(bad), flags).unwrap_err();
            assert_eq!(e, errno, "{bad}");
        }
    }
}
