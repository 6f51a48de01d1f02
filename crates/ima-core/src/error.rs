//! The one error type of ima-core.
//!
//! Messages never contain the path of the file being signed or verified:
//! callers print `PATH: reason`. Key and certificate errors do name the key or
//! certificate file, since that is not the file the caller is reporting on.

use std::io;
use std::path::PathBuf;

/// `Result` with ima-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in ima-core, each with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on the file failed; `op` names it ("open", "read", "fstat", ...).
    #[error("cannot {op}: {source}")]
    Io {
        /// The operation, as a verb: "open", "read", "write security.ima", ...
        op: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// Only regular files are hashed and signed.
    #[error("not a regular file but a {kind}; only regular files are signed")]
    NotRegularFile {
        /// What it is instead: "symbolic link", "directory", "fifo", ...
        kind: &'static str,
    },

    /// Size, mtime or ctime changed between the start and the end of hashing.
    #[error(
        "file changed while it was being hashed; not signed (run again once nothing writes to it)"
    )]
    FileChanged,

    /// The inode has more hard links than the caller found inside the tree
    /// it is signing: another name for it lies outside that tree, where
    /// whoever made the link may control it.
    #[error(
        "has {links} hard links but only {seen} inside the tree being signed: another name \
         for this file lies outside it; not signed (remove the outside link)"
    )]
    LinkedOutside {
        /// `st_nlink` of the open file.
        links: u64,
        /// The names for it the caller found inside the tree.
        seen: u64,
    },

    /// The content is not what the package manager recorded.
    #[error("MD5 {actual} does not match the expected {expected}: the content is not what the caller expected; not signed")]
    Md5Mismatch {
        /// The recorded MD5, in hex.
        expected: String,
        /// The content's MD5, in hex.
        actual: String,
    },

    /// `fsetxattr` gave `EROFS`.
    #[error("read-only file system: cannot write security.ima (remount it read-write to sign)")]
    ReadOnlyFilesystem,

    /// `fsetxattr` gave `ENOTSUP`: the file system stores no `security.*` xattrs.
    #[error("file system does not support security.* extended attributes (IMA needs e.g. ext4, xfs, btrfs or tmpfs)")]
    XattrUnsupported,

    /// `fsetxattr` gave `EPERM`: an immutable or append-only inode, or IMA's
    /// own CAP_SYS_ADMIN check.
    #[error("operation not permitted: the file may be immutable or append-only (check `lsattr`, clear with `chattr -i -a`) or the process lacks CAP_SYS_ADMIN")]
    NotPermitted,

    /// `fsetxattr` gave `EACCES`.
    #[error("permission denied writing security.ima (run as root)")]
    PermissionDenied,

    /// A hash algorithm name that is not one of [`crate::HashAlgo`]'s.
    #[error(
        "unknown hash algorithm {name:?}; supported: md5, sha1, sha224, sha256, sha384, sha512"
    )]
    UnknownHashAlgo {
        /// The name given.
        name: String,
    },

    /// A key id that is not 8 hex digits.
    #[error("invalid key id {value:?}: expected 8 hex digits such as 0x1a2b3c4d")]
    InvalidKeyId {
        /// The text given.
        value: String,
    },

    /// A backend name that is not compiled in.
    #[error("unknown crypto backend {name:?}; compiled in: {available}")]
    UnknownBackend {
        /// The name given.
        name: String,
        /// The compiled-in backends, comma-separated.
        available: String,
    },

    /// The private key file could not be read.
    #[error("cannot read key {}: {source}", path.display())]
    KeyRead {
        /// The key file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// The private key file is not a PEM RSA or EC key we can read.
    #[error("cannot parse key {}: {reason}", path.display())]
    KeyParse {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The private key is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY` or a
    /// legacy `Proc-Type: 4,ENCRYPTED` PEM); refused, never decrypted.
    #[error("key {0} is protected by a passphrase, which cannot be asked for (signing runs unattended); write an unencrypted copy readable by root only and use that: `(umask 077; openssl pkey -in {0} -out {0}.plain)`", path.display())]
    KeyEncrypted {
        /// The key file.
        path: PathBuf,
    },

    /// The private key is of a kind IMA cannot use (DSA, Ed25519, an EC key
    /// on a curve other than P-256 or P-384, ...).
    #[error("key {} is {what}, which IMA cannot verify; use RSA (2048 to 4096 bits) or ECDSA on NIST P-256 or P-384", path.display())]
    KeyUnsupported {
        /// The key file.
        path: PathBuf,
        /// What it is: "a DSA PRIVATE KEY", "an EC key on curve 1.3.132.0.10".
        what: String,
    },

    /// The certificate file could not be read.
    #[error("cannot read certificate {}: {source}", path.display())]
    CertRead {
        /// The certificate file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// The certificate is not an X.509 certificate we can use.
    #[error("cannot parse certificate{}: {reason}", shown(path))]
    CertParse {
        /// The certificate file; empty for one parsed from memory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The certificate holds another public key: signatures made with the key
    /// would never verify against it.
    #[error("certificate {cert} does not belong to key {}: its public key differs, so signatures would never verify; pass the certificate made for this key", key.display())]
    CertificateMismatch {
        /// The certificate: its file, else its subject.
        cert: String,
        /// The key file.
        key: PathBuf,
    },

    /// A key held by hardware (a PKCS#11 token, a TPM) could not be opened
    /// or stopped signing. Never contains the PIN.
    #[error("hardware key {key}: {reason}")]
    Device {
        /// The key: its `pkcs11:` URI, TSS2 key file or TPM handle.
        key: String,
        /// What went wrong and what to do about it.
        reason: String,
    },

    /// A key held by hardware in a build without the OpenSSL backend.
    #[error("key {key} is held by hardware ({kind}); such keys are reached through OpenSSL's providers and engines and this build has only the rustcrypto backend: build with the cargo feature \"openssl\"")]
    HardwareNeedsOpenssl {
        /// The key as configured.
        key: String,
        /// "a PKCS#11 URI", "a TPM 2.0 key file", "a TPM persistent handle".
        kind: &'static str,
    },

    /// The crypto backend refused or failed (an algorithm it cannot sign
    /// with, a malformed key, a library error).
    #[error("crypto backend: {0}")]
    Crypto(String),

    /// A `security.ima` value that cannot be decoded.
    #[error("malformed security.ima: {0}")]
    Format(#[from] FormatError),
}

/// " PATH", or nothing for a certificate parsed from memory.
fn shown(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" {}", path.display())
    }
}

impl Error {
    /// An [`Error::Io`] for the system call `op`.
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            source: source.into(),
        }
    }
}

/// Why a `security.ima` value could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A value of zero bytes.
    #[error("empty value")]
    Empty,
    /// Too short for the header its type byte announces.
    #[error("value of type {kind:#04x} is {len} bytes, shorter than its {need}-byte header")]
    TruncatedHeader {
        /// The type byte.
        kind: u8,
        /// The value's length.
        len: usize,
        /// The header's length.
        need: usize,
    },
    /// The signature's length field disagrees with the bytes that follow.
    #[error("signature length field says {declared} bytes but {actual} follow the header")]
    LengthMismatch {
        /// What the length field says.
        declared: usize,
        /// The bytes after the header.
        actual: usize,
    },
    /// A type byte other than digest (0x01), signature (0x03) or ima-ng digest (0x04).
    #[error(
        "unknown type byte {0:#04x} (expected 0x01 digest, 0x03 signature or 0x04 ima-ng digest)"
    )]
    UnknownType(u8),
    /// A kernel hash algorithm id we do not support.
    #[error("unknown hash algorithm id {0}")]
    UnknownAlgo(u8),
    /// A signature format other than version 2.
    #[error("unsupported signature version {0} (only version 2 is supported)")]
    UnsupportedVersion(u8),
    /// A digest whose length is not its algorithm's.
    #[error("{algo} digest is {actual} bytes, expected {expected}")]
    DigestLength {
        /// The algorithm's name.
        algo: &'static str,
        /// Its digest length.
        expected: usize,
        /// The stored digest's length.
        actual: usize,
    },
    /// A signature of zero bytes.
    #[error("empty signature")]
    EmptySignature,
}
