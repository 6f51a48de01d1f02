//! Opening files by their CONTENTS path inside `ROOT`, never escaping it.
//!
//! CONTENTS paths are absolute but relative to `ROOT`: with
//! `ROOT=/mnt/gentoo`, the entry `/lib/libfoo.so` is the file
//! `/mnt/gentoo/lib/libfoo.so`, and if `/mnt/gentoo/lib` is the symlink
//! `lib -> /usr/lib` it must resolve to `/mnt/gentoo/usr/lib`, not the host's
//! `/usr/lib`. Resolution therefore happens as if `ROOT` were `/`:
//! `openat2(RESOLVE_IN_ROOT)` where the kernel has it (Linux 5.6), and a
//! component-by-component walk with the same rules where it does not.
//!
//! The final component is never followed: a symlink there is `ELOOP`. Files
//! are opened `O_NONBLOCK | O_NOCTTY`, so a FIFO or a device that slipped in
//! where a regular file was expected does not hang or grab a terminal; the
//! caller checks the file type with `fstat` on the returned descriptor.
//! `O_NONBLOCK` stays set; it changes nothing for reading regular files.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed in one lookup before giving up with `ELOOP`
/// (the kernel's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// How [`RootDir`] resolves paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, falling back to
    /// [`Resolver::Walk`] for good after the first `ENOSYS` (an old kernel),
    /// or after an `EPERM` the walk does not reproduce (a seccomp filter).
    Auto,
    /// Only `openat2`; `ENOSYS` is returned as is.
    Openat2,
    /// The portable walk: one `openat(O_PATH | O_NOFOLLOW)` per component,
    /// symlinks read and resolved against the root by hand.
    Walk,
}

/// A directory treated as `/` for every lookup (Portage's `ROOT`).
#[derive(Debug)]
pub struct RootDir {
    root: PathBuf,
    fd: OwnedFd,
    resolver: Resolver,
    /// Set once `openat2` proved unusable (only with `Resolver::Auto`).
    no_openat2: AtomicBool,
}

fn base_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

impl RootDir {
    /// Opens `root` as the root for lookups; `/` or an empty path means the
    /// host's root. A trailing `/` is ignored (`ROOT=/mnt/gentoo/`).
    pub fn open(root: &Path) -> io::Result<RootDir> {
        RootDir::open_with(root, Resolver::Auto)
    }

    /// Like [`RootDir::open`], choosing how paths are resolved (tests use
    /// [`Resolver::Walk`] to exercise the fallback on a kernel with `openat2`).
    pub fn open_with(root: &Path, resolver: Resolver) -> io::Result<RootDir> {
        let root = normalize_root(root);
        let fd = rustix::fs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(
                e.kind(),
                format!("cannot open ROOT {}: {e}", root.display()),
            )
        })?;
        Ok(RootDir {
            root,
            fd,
            resolver,
            no_openat2: AtomicBool::new(false),
        })
    }

    /// The root directory, normalized: `/` for the host, otherwise without a
    /// trailing `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The resolver in use.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Opens `path` (absolute, as written in CONTENTS) relative to the root:
    /// symlinks in directory components resolve inside the root (an absolute
    /// `lib -> /usr/lib` stays inside; `..` cannot climb above it); the final
    /// component is never followed (a symlink there is an error: `ELOOP`).
    ///
    /// Opened `O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC`.
    /// Whatever the final component is (a directory, a FIFO) is opened; check
    /// its type with `fstat` before use.
    pub fn open_file(&self, path: &Path) -> io::Result<File> {
        self.open_flags(path, base_flags())
    }

    /// Like [`RootDir::open_file`], for a directory (`O_DIRECTORY`: anything
    /// else is `ENOTDIR`).
    pub fn open_dir(&self, path: &Path) -> io::Result<File> {
        self.open_flags(path, base_flags() | OFlags::DIRECTORY)
    }

    /// The names in directory `dir` (without `.` and `..`), in directory
    /// order; used to find config-protected `._cfgNNNN_` siblings.
    pub fn read_dir_names(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let d = self.open_dir(dir)?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(d.as_fd())? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    }

    /// `${ROOT%/}${path}`: where `path` is on the host, for messages.
    pub fn display_path(&self, path: &Path) -> PathBuf {
        let p = path.as_os_str().as_bytes();
        if self.root == Path::new("/") {
            return if p.first() == Some(&b'/') {
                path.to_path_buf()
            } else {
                Path::new("/").join(path)
            };
        }
        let mut out = self.root.as_os_str().as_bytes().to_vec();
        if p.first() != Some(&b'/') {
            out.push(b'/');
        }
        out.extend_from_slice(p);
        PathBuf::from(OsString::from_vec(out))
    }

    fn open_flags(&self, path: &Path, flags: OFlags) -> io::Result<File> {
        let use_openat2 = match self.resolver {
            Resolver::Walk => false,
            Resolver::Openat2 => true,
            Resolver::Auto => !self.no_openat2.load(Ordering::Relaxed),
        };
        if !use_openat2 {
            return walk_in_root(&self.fd, path, flags).map(File::from);
        }
        let auto = self.resolver == Resolver::Auto;
        match openat2_in_root(&self.fd, path, flags) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::NOSYS) if auto => {
                self.no_openat2.store(true, Ordering::Relaxed);
                walk_in_root(&self.fd, path, flags).map(File::from)
            }
            // Container seccomp profiles of the Docker 19/20 era deny
            // unknown syscalls with EPERM. The walk gives the same answer
            // for a real EPERM, so try it, and stay with it if it works.
            Err(Errno::PERM) if auto => {
                let f = walk_in_root(&self.fd, path, flags)?;
                self.no_openat2.store(true, Ordering::Relaxed);
                Ok(File::from(f))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `""` and `/` are the host root; a trailing `/` is dropped.
fn normalize_root(root: &Path) -> PathBuf {
    let b = root.as_os_str().as_bytes();
    let trimmed = match b.iter().rposition(|&c| c != b'/') {
        Some(i) => &b[..=i],
        None => return PathBuf::from("/"),
    };
    PathBuf::from(OsStr::from_bytes(trimmed))
}

/// `openat2` in the root. The kernel answers `EAGAIN` when a rename or
/// mount raced with a `..` lookup; that is retried a few times.
fn openat2_in_root(root: &OwnedFd, path: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            other => return other,
        }
    }
}

/// Splits a path into its components as bytes (empty ones dropped; `.` is
/// kept: `lib/.` goes through `lib` even if it is a symlink).
fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// The `RESOLVE_IN_ROOT` walk for kernels without `openat2`.
///
/// Keeps the chain of directories walked through so `..` returns to the
/// real parent and stops at the root. Each intermediate component is opened
/// `O_PATH | O_NOFOLLOW` and `fstat`ed: a directory is entered, a symlink is
/// read and its target's components are put in front of the remaining ones
/// (an absolute target restarts at the root), anything else is `ENOTDIR`.
/// Symlinks on procfs are refused with `ELOOP`: that covers the magic links
/// (`/proc/self/root`, `/proc/PID/fd/N`) `RESOLVE_NO_MAGICLINKS` refuses, and
/// is stricter than the kernel for procfs's plain symlinks (`/proc/self`),
/// which no CONTENTS path goes through. The last component is
/// opened with `O_NOFOLLOW`, so a symlink there is `ELOOP`.
///
/// Unlike the kernel, the walk cannot notice a directory being moved out
/// of the root while it is inside it (`openat2` checks for it on `..`);
/// that needs write access outside ROOT, which only root has.
fn walk_in_root(root: &OwnedFd, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Errno::NOENT.into());
    }
    let mut pending: VecDeque<Vec<u8>> = components(bytes).map(<[u8]>::to_vec).collect();
    // As in the kernel, a trailing `/` makes the last name a directory to
    // go through (followed if it is a symlink): the same as a final `/.`.
    if bytes.ends_with(b"/") {
        pending.push_back(b".".to_vec());
    }
    // stack[0] is the root; the last element is the current directory.
    let mut stack: Vec<OwnedFd> = vec![root.try_clone()?];
    let mut links = 0usize;
    let dir_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;

    while let Some(comp) = pending.pop_front() {
        if comp == b"." {
            continue;
        }
        if comp == b".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let cur = stack.last().expect("the root is never popped");
        if pending.is_empty() {
            return Ok(rustix::fs::openat(
                cur,
                comp.as_slice(),
                flags,
                Mode::empty(),
            )?);
        }
        let fd = rustix::fs::openat(cur, comp.as_slice(), dir_flags, Mode::empty())?;
        let st = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => stack.push(fd),
            FileType::Symlink => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP.into());
                }
                let fs = rustix::fs::fstatfs(&fd)?;
                // f_type's integer type differs between architectures.
                #[allow(clippy::unnecessary_cast)]
                if fs.f_type as i64 == libc::PROC_SUPER_MAGIC as i64 {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                let target = target.as_bytes();
                if target.first() == Some(&b'/') {
                    stack.truncate(1);
                }
                for c in components(target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(c.to_vec());
                }
            }
            _ => return Err(Errno::NOTDIR.into()),
        }
    }
    // The path ended at a directory (`/`, or a trailing `..`): open it
    // with the caller's flags, as openat2 would.
    let cur = stack.last().expect("the root is never popped");
    Ok(rustix::fs::openat(cur, ".", flags, Mode::empty())?)
}

/// The config-protection siblings Portage writes for `name`:
/// `._cfg0000_name` ... `._cfg9999_name` (`._cfg` + 4 digits + `_` + name),
/// sorted, which is also their numeric order.
pub fn cfg_siblings(names: &[OsString], name: &OsStr) -> Vec<OsString> {
    let name = name.as_bytes();
    let mut out: Vec<OsString> = names
        .iter()
        .filter(|n| {
            let n = n.as_bytes();
            n.len() == 10 + name.len()
                && n.starts_with(b"._cfg")
                && n[5..9].iter().all(u8::is_ascii_digit)
                && n[9] == b'_'
                && &n[10..] == name
        })
        .cloned()
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shareable_across_threads() {
        // The signing engine opens files from a rayon pool.
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RootDir>();
    }

    #[test]
    fn root_normalization() {
        assert_eq!(normalize_root(Path::new("")), Path::new("/"));
        assert_eq!(normalize_root(Path::new("/")), Path::new("/"));
        assert_eq!(normalize_root(Path::new("//")), Path::new("/"));
        assert_eq!(
            normalize_root(Path::new("/mnt/gentoo/")),
            Path::new("/mnt/gentoo")
        );
        assert_eq!(
            normalize_root(Path::new("/mnt/gentoo")),
            Path::new("/mnt/gentoo")
        );
    }

    #[test]
    fn display_path_joins_like_portage() {
        let host = RootDir::open(Path::new("")).unwrap();
        assert_eq!(host.root(), Path::new("/"));
        assert_eq!(
            host.display_path(Path::new("/usr/bin/x")),
            Path::new("/usr/bin/x")
        );
        let d = tempfile::tempdir().unwrap();
        let with_slash = format!("{}/", d.path().display());
        let r = RootDir::open(Path::new(&with_slash)).unwrap();
        assert_eq!(r.root(), d.path());
        assert_eq!(
            r.display_path(Path::new("/usr/bin/x")),
            d.path().join("usr/bin/x")
        );
    }

    #[test]
    fn cfg_sibling_names() {
        let names: Vec<OsString> = [
            "foo.conf",
            "._cfg0001_foo.conf",
            "._cfg0000_foo.conf",
            "._cfg0002_foo.conf.bak",
            "._cfg002_foo.conf",
            "._cfgabcd_foo.conf",
            "._cfg0003_bar.conf",
            "._cfg0010_foo.conf",
            "._mrg0000_foo.conf",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            cfg_siblings(&names, OsStr::new("foo.conf")),
            [
                "._cfg0000_foo.conf",
                "._cfg0001_foo.conf",
                "._cfg0010_foo.conf"
            ]
            .map(OsString::from)
        );
        assert!(cfg_siblings(&names, OsStr::new("nothing")).is_empty());
        // Non-UTF-8 names work too.
        let raw = OsString::from_vec(b"._cfg0000_\xff".to_vec());
        assert_eq!(
            cfg_siblings(std::slice::from_ref(&raw), OsStr::from_bytes(b"\xff")),
            vec![raw]
        );
    }

    #[test]
    fn open_failure_names_root() {
        let e = RootDir::open(Path::new("/nonexistent/portage-ima-root")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string().contains("/nonexistent/portage-ima-root"),
            "{e}"
        );
    }
}
