//! Digest-only `security.ima` values, as `evmctl ima_hash` writes them.
//!
//! A digest (`0x01 sha1[20]`, or `0x04 algo digest` for the others) is what
//! IMA appraisal accepts for a file that must stay writable: under an
//! appraise rule the kernel refuses opening a *signed* file for writing,
//! while it lets a hashed one be written and stores the new digest when the
//! last writer closes it. The kernel also refuses a digest where a rule asks
//! for a signature (`appraise_type=imasig`), so this is for data such as
//! configuration, never for what is executed.
//!
//! Written by the same steps as a signature ([`crate::ImaSigner`]): one
//! descriptor from open to `fsetxattr`, the MD5 check, the stamps before and
//! after; and with the same outcome type, [`SignOutcome`].

use std::fs::File;
use std::path::Path;

use crate::sign::{write_checked, Written};
use crate::{
    open_regular, CryptoProvider, Error, HashAlgo, ImaXattr, Result, SignOptions, SignOutcome,
};

/// Writes digest-only values in one algorithm; needs no key. `Send + Sync`.
#[derive(Clone, Copy)]
pub struct ImaHasher {
    provider: &'static dyn CryptoProvider,
    algo: HashAlgo,
}

impl std::fmt::Debug for ImaHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImaHasher")
            .field("provider", &self.provider.name())
            .field("algo", &self.algo)
            .finish()
    }
}

impl ImaHasher {
    /// A hasher for `algo` (any but MD5, which only checks content).
    pub fn new(provider: &'static dyn CryptoProvider, algo: HashAlgo) -> Result<Self> {
        if !HashAlgo::SIGNING.contains(&algo) {
            return Err(Error::Crypto(format!(
                "{algo} cannot be used for security.ima digests; use sha256 or stronger"
            )));
        }
        Ok(ImaHasher { provider, algo })
    }

    /// The digests' algorithm.
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// The value for content whose digest (in [`Self::algo`]) is `digest`.
    pub fn value(&self, digest: &[u8]) -> ImaXattr {
        ImaXattr::Digest {
            algo: self.algo,
            digest: digest.to_vec(),
        }
    }

    /// Writes the file's digest as its `security.ima`, by the steps of
    /// [`crate::ImaSigner::sign_file`]: with `keep_valid`, a digest in our
    /// algorithm that matches the content is kept
    /// ([`SignOutcome::AlreadyValid`]); anything else there (a signature,
    /// a stale digest) is written over ([`SignOutcome::Hashed`]);
    /// `dry_run` gives [`SignOutcome::WouldHash`].
    pub fn hash_file(&self, file: &File, opts: &SignOptions) -> Result<SignOutcome> {
        let written = write_checked(
            self.provider,
            self.algo,
            file,
            opts,
            || {},
            |existing, digest| ImaXattr::decode(existing).is_ok_and(|v| v == self.value(digest)),
            |digest| Ok(self.value(digest)),
        )?;
        Ok(match written {
            Written::Kept => SignOutcome::AlreadyValid,
            Written::DryRun => SignOutcome::WouldHash,
            Written::Over(_) => SignOutcome::Hashed,
        })
    }

    /// [`open_regular`] and [`Self::hash_file`].
    pub fn hash_path(&self, path: &Path, opts: &SignOptions) -> Result<SignOutcome> {
        self.hash_file(&open_regular(path)?, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_refused_and_values_have_evmctl_layout() {
        let p = crate::default_provider();
        let e = ImaHasher::new(p, HashAlgo::Md5).unwrap_err();
        assert!(e.to_string().contains("md5"), "{e}");
        let h = ImaHasher::new(p, HashAlgo::Sha1).unwrap();
        assert_eq!(h.value(&[7; 20]).encode()[..2], [0x01, 7]);
        let h = ImaHasher::new(p, HashAlgo::Sha512).unwrap();
        assert_eq!(h.value(&[7; 64]).encode()[..3], [0x04, 6, 7]);
    }

    #[test]
    fn hasher_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ImaHasher>();
    }
}
