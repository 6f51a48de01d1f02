//! The pure-Rust backend: the `rsa`, `sha1`, `sha2` and `md-5` crates.
//!
//! For fully static builds. Slower than OpenSSL, and the `rsa` crate has an
//! open timing advisory (RUSTSEC-2023-0071), so it is never the default;
//! signatures are blinded with OS randomness to narrow that.

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::rand_core::OsRng;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::Digest;

use super::{check_digest_len, check_signing_algo, CryptoProvider, Hasher, Signer, Verifier};
use crate::{Error, HashAlgo, KeyMaterial, Result};

/// RustCrypto backend.
#[derive(Debug)]
pub(crate) struct RustCryptoProvider;

/// The PKCS#1 v1.5 scheme with `algo`'s DigestInfo prefix.
fn scheme(algo: HashAlgo) -> Result<Pkcs1v15Sign> {
    check_signing_algo(algo)?;
    Ok(match algo {
        HashAlgo::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlgo::Sha224 => Pkcs1v15Sign::new::<sha2::Sha224>(),
        HashAlgo::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlgo::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlgo::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
        HashAlgo::Md5 => unreachable!("rejected by check_signing_algo"),
    })
}

struct DigestHasher<D>(D);

impl<D: Digest + Send + 'static> Hasher for DigestHasher<D> {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

struct RustCryptoSigner(RsaPrivateKey);

impl Signer for RustCryptoSigner {
    fn sign_digest(&self, algo: HashAlgo, digest: &[u8]) -> Result<Vec<u8>> {
        check_digest_len(algo, digest)?;
        // Blinding changes the computation, not the (deterministic) result.
        self.0
            .sign_with_rng(&mut OsRng, scheme(algo)?, digest)
            .map_err(|e| Error::Crypto(format!("rustcrypto: sign: {e}")))
    }
}

struct RustCryptoVerifier(RsaPublicKey);

impl Verifier for RustCryptoVerifier {
    fn verify_digest(&self, algo: HashAlgo, digest: &[u8], signature: &[u8]) -> Result<bool> {
        check_digest_len(algo, digest)?;
        Ok(self.0.verify(scheme(algo)?, digest, signature).is_ok())
    }
}

impl CryptoProvider for RustCryptoProvider {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn hasher(&self, algo: HashAlgo) -> Result<Box<dyn Hasher>> {
        Ok(match algo {
            HashAlgo::Md5 => Box::new(DigestHasher(md5::Md5::new())),
            HashAlgo::Sha1 => Box::new(DigestHasher(sha1::Sha1::new())),
            HashAlgo::Sha224 => Box::new(DigestHasher(sha2::Sha224::new())),
            HashAlgo::Sha256 => Box::new(DigestHasher(sha2::Sha256::new())),
            HashAlgo::Sha384 => Box::new(DigestHasher(sha2::Sha384::new())),
            HashAlgo::Sha512 => Box::new(DigestHasher(sha2::Sha512::new())),
        })
    }

    fn signer(&self, key: &KeyMaterial) -> Result<Box<dyn Signer>> {
        // Parses and validates the key and precomputes the CRT values once.
        let key = RsaPrivateKey::from_pkcs1_der(key.rsa_private_key_der())
            .map_err(|e| Error::Crypto(format!("rustcrypto: load RSA private key: {e}")))?;
        Ok(Box::new(RustCryptoSigner(key)))
    }

    fn verifier(&self, rsa_public_key_der: &[u8]) -> Result<Box<dyn Verifier>> {
        let key = RsaPublicKey::from_pkcs1_der(rsa_public_key_der)
            .map_err(|e| Error::Crypto(format!("rustcrypto: load RSA public key: {e}")))?;
        Ok(Box::new(RustCryptoVerifier(key)))
    }
}
