//! The crypto backends behind one small trait, rustls-style.
//!
//! A backend hashes, signs a precomputed digest (RSA PKCS#1 v1.5 with the
//! algorithm's DigestInfo, or ECDSA with a DER-encoded signature, as evmctl
//! does) and verifies. Keys are parsed once, when a [`Signer`] or
//! [`Verifier`] is made, never per signature.

use crate::{Error, HashAlgo, KeyMaterial, PublicKey, Result};

#[cfg(feature = "openssl")]
pub(crate) mod openssl;
#[cfg(feature = "rustcrypto")]
mod rustcrypto;

#[cfg(not(any(feature = "openssl", feature = "rustcrypto")))]
compile_error!("ima-core needs a crypto backend: enable feature \"openssl\" or \"rustcrypto\"");

/// A streaming hash.
pub trait Hasher: Send {
    /// Feeds `data` to the hash.
    fn update(&mut self, data: &[u8]);
    /// The digest of everything fed so far.
    fn finish(self: Box<Self>) -> Vec<u8>;
}

/// A private key, ready to sign.
pub trait Signer: Send + Sync {
    /// RSA PKCS#1 v1.5 over `digest` with the DigestInfo of `algo`
    /// (deterministic, so byte-identical to evmctl), or ECDSA over `digest`
    /// as a DER `ECDSA-Sig-Value` (randomised, as evmctl's).
    fn sign_digest(&self, algo: HashAlgo, digest: &[u8]) -> Result<Vec<u8>>;

    /// For a key held by hardware: how many signatures it made and the time
    /// spent in the device. `None` for a key in memory.
    fn device_stats(&self) -> Option<DeviceStats> {
        None
    }
}

/// The work a signing device did ([`Signer::device_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Signatures made.
    pub signatures: u64,
    /// Time spent waiting for the device, summed over the signatures.
    pub busy: std::time::Duration,
}

impl DeviceStats {
    /// Signatures per second of device time.
    pub fn rate(&self) -> f64 {
        let secs = self.busy.as_secs_f64();
        if secs > 0.0 {
            self.signatures as f64 / secs
        } else {
            0.0
        }
    }
}

/// A public key, ready to verify.
pub trait Verifier: Send + Sync {
    /// `Ok(false)` when the signature does not verify; `Err` only when the
    /// check could not be made.
    fn verify_digest(&self, algo: HashAlgo, digest: &[u8], signature: &[u8]) -> Result<bool>;
}

/// A crypto backend.
pub trait CryptoProvider: Send + Sync + std::fmt::Debug {
    /// "openssl" or "rustcrypto".
    fn name(&self) -> &'static str;
    /// A fresh streaming hash in `algo`.
    fn hasher(&self, algo: HashAlgo) -> Result<Box<dyn Hasher>>;
    /// `key`'s private half parsed once, ready for many signatures.
    fn signer(&self, key: &KeyMaterial) -> Result<Box<dyn Signer>>;
    /// A public key parsed once, ready for many verifications.
    fn verifier(&self, key: &PublicKey) -> Result<Box<dyn Verifier>>;
}

/// OpenSSL when compiled in (what evmctl uses, and faster), else RustCrypto.
pub fn default_provider() -> &'static dyn CryptoProvider {
    providers()[0]
}

/// The backend called `name`, or [`Error::UnknownBackend`] listing the compiled-in ones.
pub fn provider_by_name(name: &str) -> Result<&'static dyn CryptoProvider> {
    let all = providers();
    all.iter()
        .copied()
        .find(|p| p.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::UnknownBackend {
            name: name.to_string(),
            available: all.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        })
}

static PROVIDERS: &[&dyn CryptoProvider] = &[
    #[cfg(feature = "openssl")]
    &openssl::OpensslProvider,
    #[cfg(feature = "rustcrypto")]
    &rustcrypto::RustCryptoProvider,
];

/// Every compiled-in backend, the default first.
pub fn providers() -> Vec<&'static dyn CryptoProvider> {
    PROVIDERS.to_vec()
}

/// MD5 only checks content against a recorded MD5; neither evmctl nor a sane
/// policy signs with it.
pub(crate) fn check_signing_algo(algo: HashAlgo) -> Result<()> {
    if HashAlgo::SIGNING.contains(&algo) {
        Ok(())
    } else {
        Err(Error::Crypto(format!(
            "{algo} cannot be used for signatures; use sha256 or stronger"
        )))
    }
}

/// The digest handed to sign or verify must be one of `algo`.
pub(crate) fn check_digest_len(algo: HashAlgo, digest: &[u8]) -> Result<()> {
    if digest.len() == algo.digest_len() {
        Ok(())
    } else {
        Err(Error::Crypto(format!(
            "{} bytes is not a {algo} digest ({} bytes)",
            digest.len(),
            algo.digest_len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        assert_eq!(default_provider().name(), providers()[0].name());
        for p in providers() {
            assert_eq!(provider_by_name(p.name()).unwrap().name(), p.name());
        }
        let err = provider_by_name("gnutls").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("gnutls") && msg.contains(providers()[0].name()),
            "{msg}"
        );
    }

    #[test]
    fn hashes_agree_with_known_vectors() {
        // "abc" test vectors (FIPS 180, RFC 1321).
        let want = [
            (HashAlgo::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (HashAlgo::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (HashAlgo::Sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
            (HashAlgo::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (HashAlgo::Sha384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (HashAlgo::Sha512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
        ];
        for p in providers() {
            for (algo, hex_digest) in want {
                let mut h = p.hasher(algo).unwrap();
                h.update(b"a");
                h.update(b"bc");
                assert_eq!(hex::encode(h.finish()), hex_digest, "{} {algo}", p.name());
            }
        }
    }
}
