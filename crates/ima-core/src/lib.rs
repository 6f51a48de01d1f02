//! Linux IMA signatures from Rust.
//!
//! `ima-core` computes and writes the `security.ima` extended attribute byte for
//! byte as `evmctl ima_sign` does, and verifies such values. It knows nothing of
//! Portage. The cryptography sits behind [`CryptoProvider`] so a backend can be
//! swapped without touching callers: `openssl` (default feature, the system
//! libcrypto) and `rustcrypto` (pure Rust, for static builds).
//!
//! Typical use:
//!
//! ```no_run
//! use ima_core::{HashAlgo, KeyMaterial, ImaSigner, SignOptions, default_provider, open_regular};
//! let key = KeyMaterial::load("/etc/keys/IMA_signing_key.priv".as_ref(), None)?;
//! let signer = ImaSigner::new(default_provider(), &key, HashAlgo::Sha256, None)?;
//! let file = open_regular("/usr/bin/foo".as_ref())?;
//! signer.sign_file(&file, &SignOptions::default())?;
//! # Ok::<(), ima_core::Error>(())
//! ```

pub mod algo;
pub mod digest;
pub mod error;
pub mod file;
pub mod format;
pub mod key;
pub mod keyid;
pub mod provider;
pub mod sign;
pub mod verify;

pub use algo::HashAlgo;
pub use digest::{digest_bytes, digest_file, FileDigests};
pub use error::{Error, FormatError, Result};
pub use file::{
    check_regular_fd, open_regular, open_regular_beneath, read_ima_xattr, write_ima_xattr,
    FileStamp, IMA_XATTR,
};
pub use format::ImaXattr;
pub use key::{Certificate, KeyMaterial, KeyUsageBits};
pub use keyid::KeyId;
pub use provider::{
    default_provider, provider_by_name, providers, CryptoProvider, Hasher, Signer, Verifier,
};
pub use sign::{ImaSigner, SignOptions, SignOutcome};
pub use verify::{KeySet, VerifyReport, VerifyStatus};
