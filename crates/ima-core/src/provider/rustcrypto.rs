//! The pure-Rust backend: the `rsa`, `p256`, `p384`, `sha1`, `sha2` and
//! `md-5` crates.
//!
//! For fully static builds. Slower than OpenSSL, and the `rsa` crate has an
//! open timing advisory (RUSTSEC-2023-0071), so it is never the default;
//! signatures are blinded with OS randomness to narrow that. ECDSA nonces
//! are derived per RFC 6979 (deterministic), which the kernel and evmctl
//! verify like any other ECDSA signature.

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::rand_core::OsRng;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::Digest;

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};

use super::{check_digest_len, check_signing_algo, CryptoProvider, Hasher, Signer, Verifier};
use crate::{EcCurve, Error, HashAlgo, KeyAlgorithm, KeyMaterial, PublicKey, Result};

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

enum RustCryptoSigner {
    Rsa(RsaPrivateKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// The ECDSA crates take a digest of at least half the curve's size; a
/// shorter one is, as for OpenSSL and the kernel, the same integer padded
/// with zeros on the left.
fn ecdsa_prehash(curve: EcCurve, digest: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let len = curve.scalar_len();
    if digest.len() >= len {
        digest.into()
    } else {
        let mut padded = vec![0u8; len];
        padded[len - digest.len()..].copy_from_slice(digest);
        padded.into()
    }
}

fn sign_error(e: impl std::fmt::Display) -> Error {
    Error::Crypto(format!("rustcrypto: sign: {e}"))
}

impl Signer for RustCryptoSigner {
    fn sign_digest(&self, algo: HashAlgo, digest: &[u8]) -> Result<Vec<u8>> {
        check_digest_len(algo, digest)?;
        match self {
            // Blinding changes the computation, not the (deterministic) result.
            RustCryptoSigner::Rsa(key) => key
                .sign_with_rng(&mut OsRng, scheme(algo)?, digest)
                .map_err(sign_error),
            RustCryptoSigner::P256(key) => {
                check_signing_algo(algo)?;
                let sig: p256::ecdsa::Signature = key
                    .sign_prehash(&ecdsa_prehash(EcCurve::P256, digest))
                    .map_err(sign_error)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            RustCryptoSigner::P384(key) => {
                check_signing_algo(algo)?;
                let sig: p384::ecdsa::Signature = key
                    .sign_prehash(&ecdsa_prehash(EcCurve::P384, digest))
                    .map_err(sign_error)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }
}

enum RustCryptoVerifier {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl Verifier for RustCryptoVerifier {
    fn verify_digest(&self, algo: HashAlgo, digest: &[u8], signature: &[u8]) -> Result<bool> {
        check_digest_len(algo, digest)?;
        Ok(match self {
            RustCryptoVerifier::Rsa(key) => key.verify(scheme(algo)?, digest, signature).is_ok(),
            RustCryptoVerifier::P256(key) => {
                check_signing_algo(algo)?;
                // Malformed DER simply does not verify.
                p256::ecdsa::Signature::from_der(signature).is_ok_and(|sig| {
                    key.verify_prehash(&ecdsa_prehash(EcCurve::P256, digest), &sig)
                        .is_ok()
                })
            }
            RustCryptoVerifier::P384(key) => {
                check_signing_algo(algo)?;
                p384::ecdsa::Signature::from_der(signature).is_ok_and(|sig| {
                    key.verify_prehash(&ecdsa_prehash(EcCurve::P384, digest), &sig)
                        .is_ok()
                })
            }
        })
    }
}

/// The scalar's public point must be the one stored with it (and in the
/// certificate), else no signature would ever verify.
fn check_ec_pair(curve: EcCurve, derived: &[u8], stored: &PublicKey) -> Result<()> {
    if derived == stored.key_bytes() {
        Ok(())
    } else {
        Err(Error::Crypto(format!(
            "rustcrypto: the {} private key does not match the public key stored with it; regenerate it",
            curve.name()
        )))
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
        let load = |e: &dyn std::fmt::Display| {
            Error::Crypto(format!(
                "rustcrypto: load {} private key: {e}",
                key.public_key()
            ))
        };
        let private = key.private_key_bytes();
        Ok(Box::new(match key.algorithm() {
            // Parses and validates the key and precomputes the CRT values once.
            KeyAlgorithm::Rsa => {
                RustCryptoSigner::Rsa(RsaPrivateKey::from_pkcs1_der(private).map_err(|e| load(&e))?)
            }
            KeyAlgorithm::Ecdsa(curve @ EcCurve::P256) => {
                let sk = p256::ecdsa::SigningKey::from_slice(private).map_err(|e| load(&e))?;
                let point = sk.verifying_key().to_encoded_point(false);
                check_ec_pair(curve, point.as_bytes(), key.public_key())?;
                RustCryptoSigner::P256(sk)
            }
            KeyAlgorithm::Ecdsa(curve @ EcCurve::P384) => {
                let sk = p384::ecdsa::SigningKey::from_slice(private).map_err(|e| load(&e))?;
                let point = sk.verifying_key().to_encoded_point(false);
                check_ec_pair(curve, point.as_bytes(), key.public_key())?;
                RustCryptoSigner::P384(sk)
            }
        }))
    }

    fn verifier(&self, key: &PublicKey) -> Result<Box<dyn Verifier>> {
        let load = |e: &dyn std::fmt::Display| {
            Error::Crypto(format!("rustcrypto: load {key} public key: {e}"))
        };
        let bytes = key.key_bytes();
        Ok(Box::new(match key.algorithm() {
            KeyAlgorithm::Rsa => {
                RustCryptoVerifier::Rsa(RsaPublicKey::from_pkcs1_der(bytes).map_err(|e| load(&e))?)
            }
            // Checks that the point is on the curve.
            KeyAlgorithm::Ecdsa(EcCurve::P256) => RustCryptoVerifier::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|e| load(&e))?,
            ),
            KeyAlgorithm::Ecdsa(EcCurve::P384) => RustCryptoVerifier::P384(
                p384::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|e| load(&e))?,
            ),
        }))
    }
}
