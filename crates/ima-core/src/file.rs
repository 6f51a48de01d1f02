//! Opening files safely and reading/writing `security.ima` on the descriptor.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, XattrFlags};
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
    let st = rustix::fs::lstat(path).map_err(|e| Error::io("stat", e))?;
    check_regular(FileType::from_raw_mode(st.st_mode))?;
    let fd = rustix::fs::open(
        path,
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
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io("fstat", e))?;
    check_regular(FileType::from_raw_mode(st.st_mode))?;
    Ok(File::from(fd))
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
