//! Signing files: hash through the descriptor, sign, write `security.ima` on
//! the same descriptor, and never write over content that changed meanwhile.
//! [`crate::ImaHasher`] writes a digest-only value by the same steps
//! ([`write_checked`]).

use std::fs::File;
use std::path::Path;

use crate::digest::digest_file;
use crate::provider::check_signing_algo;
use crate::{
    open_regular, read_ima_xattr, write_ima_xattr, CryptoProvider, Error, FileStamp, HashAlgo,
    ImaXattr, KeyId, KeyMaterial, Result, Signer, Verifier,
};

/// What [`ImaSigner::sign_file`] should check and do.
#[derive(Clone, Debug, Default)]
pub struct SignOptions {
    /// An MD5 the content must have, checked in the same pass as the digest
    /// (the caller's record of the file, such as a package manager's);
    /// anything else is [`Error::Md5Mismatch`] and nothing is written.
    pub expect_md5: Option<[u8; 16]>,
    /// Keep an existing signature that is ours and verifies.
    pub keep_valid: bool,
    /// Do everything but write.
    pub dry_run: bool,
}

/// What [`ImaSigner::sign_file`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignOutcome {
    /// `security.ima` was written.
    Signed,
    /// Our valid signature was already there (`keep_valid`).
    AlreadyValid,
    /// `security.ima` was written over a signature by another key id
    /// (`keep_valid`, which reads the old value): a key rotation.
    Replaced {
        /// The key id of the signature written over.
        previous: KeyId,
    },
    /// Would have been signed (`dry_run`).
    WouldSign,
    /// A digest-only value was written ([`crate::ImaHasher`]).
    Hashed,
    /// Would have been hashed (`dry_run`, [`crate::ImaHasher`]).
    WouldHash,
}

/// A loaded key ready to sign many files; `Send + Sync`, meant to be shared
/// by reference across threads.
pub struct ImaSigner {
    provider: &'static dyn CryptoProvider,
    signer: Box<dyn Signer>,
    /// Our public key, to recognise a signature that is already valid.
    verifier: Box<dyn Verifier>,
    keyid: KeyId,
    algo: HashAlgo,
}

impl std::fmt::Debug for ImaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImaSigner")
            .field("provider", &self.provider.name())
            .field("keyid", &self.keyid)
            .field("algo", &self.algo)
            .finish_non_exhaustive()
    }
}

impl ImaSigner {
    /// Prepares `key` in `provider` once. `keyid` overrides the key's own
    /// (the certificate's SKID tail, else the public-key hash).
    pub fn new(
        provider: &'static dyn CryptoProvider,
        key: &KeyMaterial,
        algo: HashAlgo,
        keyid: Option<KeyId>,
    ) -> Result<Self> {
        check_signing_algo(algo)?;
        Ok(ImaSigner {
            provider,
            signer: provider.signer(key)?,
            verifier: provider.verifier(key.public_key())?,
            keyid: keyid.unwrap_or_else(|| key.key_id()),
            algo,
        })
    }

    /// Signs with a key held by hardware; `provider` still hashes (and
    /// verifies existing signatures), the device signs, one request at a time.
    /// `keyid` overrides the key's own.
    #[cfg(feature = "openssl")]
    pub fn with_hardware_key(
        provider: &'static dyn CryptoProvider,
        key: crate::HardwareKey,
        algo: HashAlgo,
        keyid: Option<KeyId>,
    ) -> Result<Self> {
        check_signing_algo(algo)?;
        let verifier = provider.verifier(key.public_key())?;
        let keyid = keyid.unwrap_or_else(|| key.key_id());
        Ok(ImaSigner {
            provider,
            signer: key.into_signer(),
            verifier,
            keyid,
            algo,
        })
    }

    /// For a key held by hardware, the signatures it made so far and the
    /// time the device took; `None` for a key in memory.
    pub fn device_stats(&self) -> Option<crate::DeviceStats> {
        self.signer.device_stats()
    }

    /// The key id written into signatures.
    pub fn key_id(&self) -> KeyId {
        self.keyid
    }

    /// The hash algorithm of the signatures.
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// The backend.
    pub fn provider(&self) -> &'static dyn CryptoProvider {
        self.provider
    }

    /// A [`crate::ImaHasher`] with this signer's backend and algorithm.
    pub fn hasher(&self) -> crate::ImaHasher {
        crate::ImaHasher::new(self.provider, self.algo).expect("a signing algorithm")
    }

    /// The `security.ima` value for a file whose digest (in [`Self::algo`]) is `digest`.
    pub fn sign_digest(&self, digest: &[u8]) -> Result<ImaXattr> {
        Ok(ImaXattr::Signature {
            algo: self.algo,
            keyid: self.keyid,
            signature: self.signer.sign_digest(self.algo, digest)?,
        })
    }

    /// Whether `value` is a signature of ours (key id and algorithm) that
    /// verifies over `digest`.
    fn is_our_valid_signature(&self, value: &[u8], digest: &[u8]) -> bool {
        match ImaXattr::decode(value) {
            Ok(ImaXattr::Signature {
                algo,
                keyid,
                signature,
            }) if algo == self.algo && keyid == self.keyid => self
                .verifier
                .verify_digest(algo, digest, &signature)
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Signs an open file.
    ///
    /// Stamps the file before; reads the existing value when `keep_valid`;
    /// one pass computes the digest (and MD5 when `expect_md5`); an MD5 that
    /// differs is [`Error::Md5Mismatch`] and nothing is written; an existing
    /// signature of ours that verifies is [`SignOutcome::AlreadyValid`]; else
    /// signs, and if the stamp after differs it is [`Error::FileChanged`] and
    /// nothing is written; `dry_run` stops there with [`SignOutcome::WouldSign`];
    /// else the value is written with `fsetxattr` on the same descriptor.
    pub fn sign_file(&self, file: &File, opts: &SignOptions) -> Result<SignOutcome> {
        self.sign_file_with_hook(file, opts, || {})
    }

    /// [`Self::sign_file`] with `after_hash` run between hashing and the
    /// second stamp, so tests can change the file at the worst moment.
    ///
    /// Only with the `test-hooks` feature (off by default; ima-core's own
    /// tests turn it on through a dev-dependency on the crate itself).
    #[cfg(feature = "test-hooks")]
    pub fn sign_file_hooked(
        &self,
        file: &File,
        opts: &SignOptions,
        after_hash: impl FnOnce(),
    ) -> Result<SignOutcome> {
        self.sign_file_with_hook(file, opts, after_hash)
    }

    /// The body of [`Self::sign_file`]; `after_hash` runs between hashing and
    /// the second stamp (a no-op outside tests).
    fn sign_file_with_hook(
        &self,
        file: &File,
        opts: &SignOptions,
        after_hash: impl FnOnce(),
    ) -> Result<SignOutcome> {
        let written = write_checked(
            self.provider,
            self.algo,
            file,
            opts,
            after_hash,
            |existing, digest| self.is_our_valid_signature(existing, digest),
            |digest| self.sign_digest(digest),
        )?;
        Ok(match written {
            Written::Kept => SignOutcome::AlreadyValid,
            Written::DryRun => SignOutcome::WouldSign,
            Written::Over(Some(ImaXattr::Signature { keyid, .. })) if keyid != self.keyid => {
                SignOutcome::Replaced { previous: keyid }
            }
            Written::Over(_) => SignOutcome::Signed,
        })
    }

    /// [`open_regular`] and [`Self::sign_file`].
    pub fn sign_path(&self, path: &Path, opts: &SignOptions) -> Result<SignOutcome> {
        self.sign_file(&open_regular(path)?, opts)
    }
}

/// What [`write_checked`] did.
pub(crate) enum Written {
    /// The existing value was kept (`keep_valid` and it was valid).
    Kept,
    /// Everything but the write was done (`dry_run`).
    DryRun,
    /// The value was written over what was there (when `keep_valid`
    /// read it and it decodes).
    Over(Option<ImaXattr>),
}

/// The one path from an open file to its new `security.ima`, shared by
/// signing and hashing: stamp the file; read the existing value when
/// `keep_valid`; one pass gives the digest in `algo` (and the MD5 when
/// `expect_md5`); an MD5 that differs is [`Error::Md5Mismatch`]; an
/// existing value `is_valid` accepts is kept; `value_of` makes the new
/// value from the digest; if the stamp after differs it is
/// [`Error::FileChanged`]; `dry_run` stops there; else one `fsetxattr` on
/// the same descriptor. Nothing is written on any error.
pub(crate) fn write_checked(
    provider: &dyn CryptoProvider,
    algo: HashAlgo,
    file: &File,
    opts: &SignOptions,
    after_hash: impl FnOnce(),
    is_valid: impl FnOnce(&[u8], &[u8]) -> bool,
    value_of: impl FnOnce(&[u8]) -> Result<ImaXattr>,
) -> Result<Written> {
    let before = FileStamp::of(file)?;
    let existing = if opts.keep_valid {
        read_ima_xattr(file)?
    } else {
        None
    };
    let digests = digest_file(provider, file, algo, opts.expect_md5.is_some())?;
    after_hash();
    if let (Some(expected), Some(actual)) = (opts.expect_md5, digests.md5) {
        if expected != actual {
            return Err(Error::Md5Mismatch {
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            });
        }
    }
    if let Some(value) = &existing {
        if is_valid(value, &digests.digest) {
            return Ok(Written::Kept);
        }
    }
    let value = value_of(&digests.digest)?.encode();
    let after = FileStamp::of(file)?;
    if after != before || digests.size != before.size {
        return Err(Error::FileChanged);
    }
    if opts.dry_run {
        return Ok(Written::DryRun);
    }
    write_ima_xattr(file, &value)?;
    Ok(Written::Over(
        existing.and_then(|v| ImaXattr::decode(&v).ok()),
    ))
}

#[cfg(test)]
mod tests {
    /// Shared by reference across rayon threads.
    #[test]
    fn signer_and_keyset_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<super::ImaSigner>();
        send_sync::<crate::KeySet>();
        send_sync::<crate::KeyMaterial>();
        send_sync::<crate::Certificate>();
    }
}
