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
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// Only regular files are hashed and signed.
    #[error("not a regular file but a {kind}; only regular files are signed")]
    NotRegularFile { kind: &'static str },

    /// Size, mtime or ctime changed between the start and the end of hashing.
    #[error(
        "file changed while it was being hashed; not signed (run again once nothing writes to it)"
    )]
    FileChanged,

    /// The content is not what the package manager recorded.
    #[error("MD5 {actual} does not match the recorded {expected}: content differs from what was installed; not signed")]
    Md5Mismatch { expected: String, actual: String },

    #[error("read-only file system: cannot write security.ima (remount it read-write to sign)")]
    ReadOnlyFilesystem,

    #[error("file system does not support security.* extended attributes (IMA needs e.g. ext4, xfs, btrfs or tmpfs)")]
    XattrUnsupported,

    #[error("operation not permitted: the file may be immutable or append-only (check `lsattr`, clear with `chattr -i -a`) or the process lacks CAP_SYS_ADMIN")]
    NotPermitted,

    #[error("permission denied writing security.ima (run as root)")]
    PermissionDenied,

    #[error(
        "unknown hash algorithm {name:?}; supported: md5, sha1, sha224, sha256, sha384, sha512"
    )]
    UnknownHashAlgo { name: String },

    #[error("invalid key id {value:?}: expected 8 hex digits such as 0x1a2b3c4d")]
    InvalidKeyId { value: String },

    #[error("unknown crypto backend {name:?}; compiled in: {available}")]
    UnknownBackend { name: String, available: String },

    #[error("cannot read key {}: {source}", path.display())]
    KeyRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot parse key {}: {reason}", path.display())]
    KeyParse { path: PathBuf, reason: String },

    #[error("key {} is encrypted, which is not supported yet; write a plain copy with `openssl pkey -in KEY -out KEY.plain` (mode 0600) and use that", path.display())]
    KeyEncrypted { path: PathBuf },

    #[error("key {} is not an RSA key; only RSA keys (2048, 3072 or 4096 bits) are supported", path.display())]
    KeyNotRsa { path: PathBuf },

    #[error("cannot read certificate {}: {source}", path.display())]
    CertRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot parse certificate{}: {reason}", shown(path))]
    CertParse { path: PathBuf, reason: String },

    /// The certificate holds another public key: signatures made with the key
    /// would never verify against it.
    #[error("certificate {cert} does not belong to key {}: its public key differs, so signatures would never verify; pass the certificate made for this key", key.display())]
    CertificateMismatch { cert: String, key: PathBuf },

    #[error("crypto backend: {0}")]
    Crypto(String),

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
    pub fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
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
    #[error("empty value")]
    Empty,
    #[error("value of type {kind:#04x} is {len} bytes, shorter than its {need}-byte header")]
    TruncatedHeader { kind: u8, len: usize, need: usize },
    #[error("signature length field says {declared} bytes but {actual} follow the header")]
    LengthMismatch { declared: usize, actual: usize },
    #[error(
        "unknown type byte {0:#04x} (expected 0x01 digest, 0x03 signature or 0x04 ima-ng digest)"
    )]
    UnknownType(u8),
    #[error("unknown hash algorithm id {0}")]
    UnknownAlgo(u8),
    #[error("unsupported signature version {0} (only version 2 is supported)")]
    UnsupportedVersion(u8),
    #[error("{algo} digest is {actual} bytes, expected {expected}")]
    DigestLength {
        algo: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("empty signature")]
    EmptySignature,
}
