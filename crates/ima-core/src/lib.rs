//! Linux IMA signatures from Rust.
//!
//! `ima-core` computes and writes the `security.ima` extended attribute byte for
//! byte as `evmctl ima_sign` (and `evmctl ima_hash`) does, and verifies such values. It knows nothing of
//! Portage. The cryptography sits behind [`CryptoProvider`] so a backend can be
//! swapped without touching callers: `openssl` (default feature, the system
//! libcrypto) and `rustcrypto` (pure Rust, for static builds).
//!
//! # The flow
//!
//! 1. **Keys and certificates** ([`KeyMaterial`], [`Certificate`],
//!    [`PublicKey`]): PEM/DER parsed with the RustCrypto ASN.1 crates, RSA
//!    into PKCS#1 DER, ECDSA (P-256, P-384) into scalar and point; the key id
//!    ([`KeyId`]) comes from the certificate's Subject Key Identifier, else
//!    from the public key, as evmctl computes it.
//! 2. **Provider** ([`CryptoProvider`], [`default_provider`]): a backend turns
//!    that DER once into a [`Signer`] / [`Verifier`] and makes [`Hasher`]s.
//! 3. **Sign / verify** ([`ImaSigner`], [`KeySet`]): one pass over the content
//!    gives the digest (and an MD5 to check the content against, when
//!    asked, [`digest_file`]); RSA PKCS#1 v1.5 over the digest,
//!    deterministic, so byte-identical to evmctl;
//!    or ECDSA, DER-encoded as evmctl writes it (randomised, so only
//!    verifiably the same).
//! 4. **File I/O on one descriptor** ([`open_regular`], [`FileStamp`],
//!    [`read_ima_xattr`], [`write_ima_xattr`]): the file is opened once
//!    without following symlinks, hashed with `pread`, stamped before and
//!    after, and `security.ima` is written with `fsetxattr` on that same
//!    descriptor, never by path.
//!    [`ImaHasher`] writes a digest-only value (`evmctl ima_hash`) by the
//!    same steps, for files that must stay writable under appraisal.
//! 5. **The xattr format** ([`ImaXattr`], [`HashAlgo`]): the value's bytes as
//!    the kernel reads them (`0x03 0x02 algo keyid len sig` for a signature).
//!
//! Every error is one [`Error`] that says what to do about it.
//!
//! # Unsafe code
//!
//! Only in `hardware/ffi.rs` (keys held by a TPM or a PKCS#11 token,
//! OpenSSL backend): the `openssl` crate has no safe API for OpenSSL's
//! store, engine and UI functions, so that module declares them itself and
//! alone carries `#[allow(unsafe_code)]`, with a `// SAFETY:` comment on
//! every `unsafe` block; `hardware.rs`, the safe API over it, has none.
//! Everything else goes through `rustix`, `openssl` or the RustCrypto
//! crates, and the crate denies `unsafe_code`.
//!
//! Why these crates, and not others: `docs/design.md` in the repository.
//!
//! # Example
//!
//! ```no_run
//! use ima_core::{HashAlgo, KeyMaterial, ImaSigner, SignOptions, default_provider, open_regular};
//! let key = KeyMaterial::load("/etc/keys/IMA_signing_key.priv".as_ref(), None)?;
//! let signer = ImaSigner::new(default_provider(), &key, HashAlgo::Sha256, None)?;
//! let file = open_regular("/usr/bin/foo".as_ref())?;
//! signer.sign_file(&file, &SignOptions::default())?;
//! # Ok::<(), ima_core::Error>(())
//! ```
//!
//! # Features
//!
//! - `openssl` (default): the system libcrypto backend.
//! - `rustcrypto`: the pure-Rust backend; never the default (RUSTSEC-2023-0071).
//! - `test-hooks`: `ImaSigner::sign_file_hooked`, for tests that change a
//!   file between hashing and writing. Off by default; not for production.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod algo;
mod cert;
mod digest;
mod error;
mod file;
mod format;
#[cfg(feature = "openssl")]
mod hardware;
mod hash;
mod key;
mod key_source;
mod keyid;
mod pem;
mod provider;
mod public_key;
mod secret_file;
mod sign;
mod verify;

pub use algo::HashAlgo;
pub use cert::{Certificate, KeyUsageBits};
pub use digest::{digest_bytes, digest_file, FileDigests};
pub use error::{Error, FormatError, Result};
pub use file::{
    check_regular_fd, open_regular, open_regular_beneath, read_ima_xattr, write_ima_xattr,
    FileStamp, IMA_XATTR,
};
pub use format::ImaXattr;
#[cfg(feature = "openssl")]
pub use hardware::HardwareKey;
pub use hash::ImaHasher;
pub use key::KeyMaterial;
pub use key_source::{read_pin_file, redacted_uri, HardwareOptions, KeySource, Pin};
pub use keyid::KeyId;
pub use provider::{
    default_provider, provider_by_name, providers, CryptoProvider, DeviceStats, Hasher, Signer,
    Verifier,
};
pub use public_key::{EcCurve, KeyAlgorithm, PublicKey};
pub use secret_file::{SecretFile, SecretFileError};
pub use sign::{ImaSigner, SignOptions, SignOutcome};
pub use verify::{KeySet, VerifyReport, VerifyStatus};
