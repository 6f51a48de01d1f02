//! The OpenSSL backend: the system libcrypto, as evmctl uses.

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::hash::MessageDigest;
use openssl::md::{Md, MdRef};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};

use super::{check_digest_len, check_signing_algo, CryptoProvider, Hasher, Signer, Verifier};
use crate::{EcCurve, Error, HashAlgo, KeyAlgorithm, KeyMaterial, PublicKey, Result};

/// OpenSSL (libcrypto) backend.
#[derive(Debug)]
pub(crate) struct OpensslProvider;

fn md(algo: HashAlgo) -> MessageDigest {
    match algo {
        HashAlgo::Md5 => MessageDigest::md5(),
        HashAlgo::Sha1 => MessageDigest::sha1(),
        HashAlgo::Sha224 => MessageDigest::sha224(),
        HashAlgo::Sha256 => MessageDigest::sha256(),
        HashAlgo::Sha384 => MessageDigest::sha384(),
        HashAlgo::Sha512 => MessageDigest::sha512(),
    }
}

/// The same algorithm as an `EVP_MD` reference, for the signing context.
fn sig_md(algo: HashAlgo) -> &'static MdRef {
    match algo {
        HashAlgo::Md5 => Md::md5(),
        HashAlgo::Sha1 => Md::sha1(),
        HashAlgo::Sha224 => Md::sha224(),
        HashAlgo::Sha256 => Md::sha256(),
        HashAlgo::Sha384 => Md::sha384(),
        HashAlgo::Sha512 => Md::sha512(),
    }
}

fn crypto(what: &str, e: openssl::error::ErrorStack) -> Error {
    Error::Crypto(format!("openssl: {what}: {e}"))
}

struct OpensslHasher(openssl::hash::Hasher);

impl Hasher for OpensslHasher {
    fn update(&mut self, data: &[u8]) {
        // Only fails on allocation failure inside libcrypto.
        self.0.update(data).expect("openssl digest update failed");
    }

    fn finish(mut self: Box<Self>) -> Vec<u8> {
        self.0
            .finish()
            .expect("openssl digest final failed")
            .to_vec()
    }
}

fn ec_group(curve: EcCurve) -> Result<EcGroup> {
    let nid = match curve {
        EcCurve::P256 => Nid::X9_62_PRIME256V1,
        EcCurve::P384 => Nid::SECP384R1,
    };
    EcGroup::from_curve_name(nid).map_err(|e| crypto(curve.name(), e))
}

/// The key is parsed once, here; each signature only makes a cheap context.
struct OpensslSigner {
    key: PKey<Private>,
    rsa: bool,
}

impl Signer for OpensslSigner {
    fn sign_digest(&self, algo: HashAlgo, digest: &[u8]) -> Result<Vec<u8>> {
        let ctx = PkeyCtx::new(&self.key).map_err(|e| crypto("signing context", e))?;
        sign_with(ctx, self.rsa, algo, digest)
    }
}

/// Signs `digest` in a fresh signing context of the key: RSA PKCS#1 v1.5
/// (`rsa`) or ECDSA. Also how a key held by hardware signs (`crate::hardware`),
/// whose context is made in the device's provider.
pub(crate) fn sign_with(
    mut ctx: PkeyCtx<Private>,
    rsa: bool,
    algo: HashAlgo,
    digest: &[u8],
) -> Result<Vec<u8>> {
    check_signing_algo(algo)?;
    check_digest_len(algo, digest)?;
    ctx.sign_init().map_err(|e| crypto("sign init", e))?;
    if rsa {
        ctx.set_rsa_padding(Padding::PKCS1)
            .map_err(|e| crypto("PKCS#1 padding", e))?;
    }
    // With the digest set, OpenSSL prepends the DigestInfo for RSA, as
    // for evmctl (for ECDSA it only checks the digest's length). ECDSA
    // signs with a fresh random nonce and writes the DER ECDSA-Sig-Value.
    ctx.set_signature_md(sig_md(algo))
        .map_err(|e| crypto("signature digest", e))?;
    let mut sig = Vec::new();
    ctx.sign_to_vec(digest, &mut sig)
        .map_err(|e| crypto("sign", e))?;
    Ok(sig)
}

/// The arithmetic checks of `RSA_check_key()` without its primality tests
/// (a second for RSA-4096): n = p*q, e*d = 1 mod p-1 and q-1, and the CRT
/// values OpenSSL signs with. A key failing them would sign garbage.
fn consistent(rsa: &Rsa<Private>) -> std::result::Result<bool, openssl::error::ErrorStack> {
    let (Some(p), Some(q), Some(dp), Some(dq), Some(qinv)) =
        (rsa.p(), rsa.q(), rsa.dmp1(), rsa.dmq1(), rsa.iqmp())
    else {
        // Without CRT values OpenSSL uses d alone; nothing more to check.
        return Ok(true);
    };
    let mut ctx = BigNumContext::new()?;
    let one = BigNum::from_u32(1)?;
    let mut n = BigNum::new()?;
    n.checked_mul(p, q, &mut ctx)?;
    if n != *rsa.n() {
        return Ok(false);
    }
    for (prime, crt_exp) in [(p, dp), (q, dq)] {
        let mut pm1 = BigNum::new()?;
        pm1.checked_sub(prime, &one)?;
        let mut r = BigNum::new()?;
        r.nnmod(rsa.d(), &pm1, &mut ctx)?;
        if r != *crt_exp {
            return Ok(false);
        }
        r.mod_mul(rsa.e(), rsa.d(), &pm1, &mut ctx)?;
        if r != one {
            return Ok(false);
        }
    }
    let mut r = BigNum::new()?;
    r.mod_mul(qinv, q, p, &mut ctx)?;
    Ok(r == one)
}

struct OpensslVerifier {
    key: PKey<Public>,
    rsa: bool,
}

impl Verifier for OpensslVerifier {
    fn verify_digest(&self, algo: HashAlgo, digest: &[u8], signature: &[u8]) -> Result<bool> {
        check_signing_algo(algo)?;
        check_digest_len(algo, digest)?;
        let mut ctx = PkeyCtx::new(&self.key).map_err(|e| crypto("verify context", e))?;
        ctx.verify_init().map_err(|e| crypto("verify init", e))?;
        if self.rsa {
            ctx.set_rsa_padding(Padding::PKCS1)
                .map_err(|e| crypto("PKCS#1 padding", e))?;
        }
        ctx.set_signature_md(sig_md(algo))
            .map_err(|e| crypto("signature digest", e))?;
        // OpenSSL reports a malformed signature (wrong length, bad padding,
        // bad DER) as an error rather than `false`: either way it does not verify.
        Ok(ctx.verify(digest, signature).unwrap_or(false))
    }
}

impl CryptoProvider for OpensslProvider {
    fn name(&self) -> &'static str {
        "openssl"
    }

    fn hasher(&self, algo: HashAlgo) -> Result<Box<dyn Hasher>> {
        let h = openssl::hash::Hasher::new(md(algo)).map_err(|e| crypto(algo.name(), e))?;
        Ok(Box::new(OpensslHasher(h)))
    }

    fn signer(&self, key: &KeyMaterial) -> Result<Box<dyn Signer>> {
        let (key, rsa) = match key.algorithm() {
            KeyAlgorithm::Rsa => (rsa_private_key(key.private_key_bytes())?, true),
            KeyAlgorithm::Ecdsa(curve) => (
                ec_private_key(curve, key.private_key_bytes(), key.public_key())?,
                false,
            ),
        };
        Ok(Box::new(OpensslSigner { key, rsa }))
    }

    fn verifier(&self, key: &PublicKey) -> Result<Box<dyn Verifier>> {
        let (pkey, rsa) = match key.algorithm() {
            KeyAlgorithm::Rsa => {
                let rsa = Rsa::public_key_from_der_pkcs1(key.key_bytes())
                    .map_err(|e| crypto("load RSA public key", e))?;
                let pkey = PKey::from_rsa(rsa).map_err(|e| crypto("load RSA public key", e))?;
                (pkey, true)
            }
            KeyAlgorithm::Ecdsa(curve) => {
                let what = "load EC public key";
                let group = ec_group(curve)?;
                let mut ctx = BigNumContext::new().map_err(|e| crypto(what, e))?;
                // Checks that the point is on the curve.
                let point = EcPoint::from_bytes(&group, key.key_bytes(), &mut ctx)
                    .map_err(|e| crypto(what, e))?;
                let ec = EcKey::from_public_key(&group, &point).map_err(|e| crypto(what, e))?;
                (PKey::from_ec_key(ec).map_err(|e| crypto(what, e))?, false)
            }
        };
        Ok(Box::new(OpensslVerifier { key: pkey, rsa }))
    }
}

fn rsa_private_key(pkcs1_der: &[u8]) -> Result<PKey<Private>> {
    let rsa =
        Rsa::private_key_from_der(pkcs1_der).map_err(|e| crypto("load RSA private key", e))?;
    if !consistent(&rsa).map_err(|e| crypto("check RSA key", e))? {
        return Err(Error::Crypto(
            "openssl: RSA private key is inconsistent (n != p*q or a CRT value is wrong); regenerate it".into(),
        ));
    }
    PKey::from_rsa(rsa).map_err(|e| crypto("load RSA private key", e))
}

/// The scalar and point of an EC key, checked to belong together (else its
/// signatures would never verify against its certificate).
fn ec_private_key(curve: EcCurve, scalar: &[u8], public: &PublicKey) -> Result<PKey<Private>> {
    let what = "load EC private key";
    let group = ec_group(curve)?;
    let mut ctx = BigNumContext::new().map_err(|e| crypto(what, e))?;
    let private = BigNum::from_slice(scalar).map_err(|e| crypto(what, e))?;
    let point =
        EcPoint::from_bytes(&group, public.key_bytes(), &mut ctx).map_err(|e| crypto(what, e))?;
    let ec =
        EcKey::from_private_components(&group, &private, &point).map_err(|e| crypto(what, e))?;
    ec.check_key().map_err(|_| {
        Error::Crypto(format!(
            "openssl: the {} private key does not match the public key stored with it (or is out of range); regenerate it",
            curve.name()
        ))
    })?;
    PKey::from_ec_key(ec).map_err(|e| crypto(what, e))
}
