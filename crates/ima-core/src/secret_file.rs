//! Reading a secret from a file: the private key, a token PIN.
//!
//! Both are read the same careful way, through one descriptor:
//! `open(O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)`, then `fstat` on
//! that descriptor decides. So a symlink is refused (whoever planted it
//! chooses what is read), a FIFO or a device is refused without blocking
//! (`O_NONBLOCK`: opening a FIFO with no writer would wait forever), and at
//! most [`SecretFile::LIMIT`] bytes are read (a secret is small; a huge file
//! is a mistake or an attack on memory).
//!
//! Who may read or own the file is a second question ([`SecretFile::exposure`]):
//! a PIN file is refused when exposed, a key file lets its caller decide
//! (`allow_insecure_key`).

use std::io::Read;
use std::path::Path;

use der::zeroize::Zeroizing;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// A secret file's content and the owner and mode its descriptor had.
pub struct SecretFile {
    /// The bytes, wiped from memory when dropped.
    pub bytes: Zeroizing<Vec<u8>>,
    /// The owner (`st_uid`).
    pub uid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl SecretFile {
    /// The most a secret file may hold: a 16384-bit RSA key in PEM with a
    /// certificate chain appended fits many times over.
    pub const LIMIT: u64 = 1 << 20;

    /// Reads `path` as described in the module docs.
    pub fn read(path: &Path) -> std::result::Result<SecretFile, SecretFileError> {
        use SecretFileError::{Io, Refused};
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP => Refused(
                "is a symbolic link; refused, since whoever can plant a link chooses what is \
                 read: name the file itself"
                    .to_string(),
            ),
            e => Io(e.into()),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Io(e.into()))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(Refused(format!(
                "is not a regular file but a {}; a secret is read from a plain file",
                kind_name(kind)
            )));
        }
        let size = st.st_size as u64;
        if size > Self::LIMIT {
            return Err(Refused(format!(
                "is {size} bytes, more than the {} a secret file may hold",
                Self::LIMIT
            )));
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(size as usize));
        // One byte past the limit tells a file that grew since fstat.
        std::fs::File::from(fd)
            .take(Self::LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(Io)?;
        if bytes.len() as u64 > Self::LIMIT {
            return Err(Refused(format!(
                "holds more than the {} bytes a secret file may hold",
                Self::LIMIT
            )));
        }
        Ok(SecretFile {
            bytes,
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
        })
    }

    /// What exposes the secret to other users, each with the command that
    /// fixes it (`path` is only used in those commands): any group or other
    /// permission bit, or an owner other than root or the user running this.
    pub fn exposure(&self, path: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        if self.mode & 0o077 != 0 {
            problems.push(format!(
                "is readable or writable by group or others (mode {:04o}); run: chmod 0400 {}",
                self.mode,
                path.display()
            ));
        }
        let me = rustix::process::geteuid().as_raw();
        if self.uid != 0 && self.uid != me {
            problems.push(format!(
                "is owned by uid {}, not root or the user running this; run: chown root:root {}",
                self.uid,
                path.display()
            ));
        }
        problems
    }
}

/// Why a secret file was not read.
#[derive(Debug)]
pub enum SecretFileError {
    /// The system refused (no such file, no permission...).
    Io(std::io::Error),
    /// The file is not one a secret may be read from (the sentence says why
    /// and what to do, without the path).
    Refused(String),
}

impl std::fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretFileError::Io(e) => write!(f, "{e}"),
            SecretFileError::Refused(why) => f.write_str(why),
        }
    }
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "directory",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Symlink => "symbolic link",
        _ => "special file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn refused(path: &Path) -> String {
        match SecretFile::read(path) {
            Err(SecretFileError::Refused(why)) => why,
            other => panic!("{}: want a refusal, got {:?}", path.display(), other.err()),
        }
    }

    #[test]
    fn reads_plain_files_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "1234\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        let secret = SecretFile::read(&file).unwrap();
        assert_eq!(&secret.bytes[..], b"1234\n");
        assert_eq!(secret.mode, 0o400);
        assert!(secret.exposure(&file).is_empty());

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(refused(&link).contains("symbolic link"));

        // A FIFO without a writer: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(refused(&fifo).contains("FIFO"));
        assert!(refused(dir.path()).contains("directory"));

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; SecretFile::LIMIT as usize + 1]).unwrap();
        assert!(refused(&big).contains("bytes"));

        assert!(matches!(
            SecretFile::read(&dir.path().join("gone")),
            Err(SecretFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn exposure_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "1234\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let problems = SecretFile::read(&file).unwrap().exposure(&file);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("chmod 0400"), "{problems:?}");
        let foreign = SecretFile {
            bytes: Zeroizing::new(Vec::new()),
            uid: 4242,
            mode: 0o400,
        };
        if rustix::process::geteuid().as_raw() != 4242 {
            assert!(foreign.exposure(&file)[0].contains("chown root:root"));
        }
    }
}
