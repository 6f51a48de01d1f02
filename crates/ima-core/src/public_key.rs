//! Public keys as certificates hold them: RSA, or ECDSA on the NIST curves
//! the kernel's IMA verifies (P-256, P-384), and the key id computed from
//! the key when there is no certificate.

use std::fmt;

use der::Decode;

use crate::{Error, KeyId, Result};

/// The `rsaEncryption` OID, 1.2.840.113549.1.1.1.
pub(crate) const RSA_OID: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// The `id-ecPublicKey` OID (RFC 5480), 1.2.840.10045.2.1.
pub(crate) const EC_PUBLIC_KEY_OID: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// What to say when a key is neither RSA nor ECDSA on a supported curve.
const SUPPORTED_KEYS: &str = "use RSA (2048 to 4096 bits) or ECDSA on NIST P-256 or P-384";

/// A named elliptic curve the kernel's IMA can verify signatures with
/// (`ecdsa-nist-p256`, `ecdsa-nist-p384`; Linux 5.13 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// NIST P-256 (`prime256v1`, `secp256r1`).
    P256,
    /// NIST P-384 (`secp384r1`).
    P384,
}

impl EcCurve {
    /// Both curves.
    pub const ALL: &'static [EcCurve] = &[EcCurve::P256, EcCurve::P384];

    /// The curve's OID, as in a certificate's or key's parameters.
    pub fn oid(self) -> spki::ObjectIdentifier {
        match self {
            EcCurve::P256 => spki::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            EcCurve::P384 => spki::ObjectIdentifier::new_unwrap("1.3.132.0.34"),
        }
    }

    /// The curve with this OID, if it is one of ours.
    pub fn from_oid(oid: &spki::ObjectIdentifier) -> Option<EcCurve> {
        EcCurve::ALL.iter().copied().find(|c| c.oid() == *oid)
    }

    /// The NIST name: `"P-256"`.
    pub fn name(self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
        }
    }

    /// The name `openssl ecparam -name` takes: `"prime256v1"`.
    pub fn openssl_name(self) -> &'static str {
        match self {
            EcCurve::P256 => "prime256v1",
            EcCurve::P384 => "secp384r1",
        }
    }

    /// The size of the field and of a private scalar, in bits.
    pub fn bits(self) -> usize {
        match self {
            EcCurve::P256 => 256,
            EcCurve::P384 => 384,
        }
    }

    /// The size of a private scalar (and of a coordinate) in bytes.
    pub fn scalar_len(self) -> usize {
        self.bits() / 8
    }
}

/// The signature scheme of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA, signing PKCS#1 v1.5 (deterministic: byte-identical to evmctl).
    Rsa,
    /// ECDSA on `curve`, the signature DER-encoded (randomised).
    Ecdsa(EcCurve),
}

/// A public key as a certificate's SubjectPublicKeyInfo holds it: RSA, or
/// ECDSA on P-256 or P-384.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    bits: usize,
    /// The subjectPublicKey BIT STRING contents.
    bytes: Vec<u8>,
}

impl PublicKey {
    /// An RSA key from its PKCS#1 `RSAPublicKey` DER.
    pub fn rsa_from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let rsa = pkcs1::RsaPublicKey::from_der(der)
            .map_err(|e| Error::Crypto(format!("bad PKCS#1 RSAPublicKey: {e}")))?;
        let modulus = rsa.modulus.as_bytes();
        let bits = match modulus.first() {
            Some(&b) if b != 0 => modulus.len() * 8 - b.leading_zeros() as usize,
            _ => return Err(Error::Crypto("RSA modulus is zero".into())),
        };
        Ok(PublicKey {
            algorithm: KeyAlgorithm::Rsa,
            bits,
            bytes: der.to_vec(),
        })
    }

    /// An ECDSA key from its SEC1 uncompressed point (`0x04 X Y`), the form
    /// certificates carry and the kernel requires.
    pub fn ec_from_sec1_point(curve: EcCurve, point: &[u8]) -> Result<Self> {
        let want = 1 + 2 * curve.scalar_len();
        if point.first() != Some(&0x04) || point.len() != want {
            return Err(Error::Crypto(format!(
                "the {} public key is not an uncompressed point ({} bytes starting 0x04; got {} bytes{})",
                curve.name(),
                want,
                point.len(),
                point.first().map(|b| format!(" starting {b:#04x}")).unwrap_or_default()
            )));
        }
        Ok(PublicKey {
            algorithm: KeyAlgorithm::Ecdsa(curve),
            bits: curve.bits(),
            bytes: point.to_vec(),
        })
    }

    /// The key of a SubjectPublicKeyInfo (a certificate's).
    pub(crate) fn from_spki(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<Self> {
        let bytes = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid {
            RSA_OID => Self::rsa_from_pkcs1_der(bytes),
            EC_PUBLIC_KEY_OID => {
                let curve_oid = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
                    .ok_or_else(|| {
                        Error::Crypto(
                            "EC public key without a named curve (explicit curve parameters are not supported)"
                                .into(),
                        )
                    })?;
                let curve = EcCurve::from_oid(&curve_oid).ok_or_else(|| {
                    Error::Crypto(format!(
                        "EC curve {curve_oid} is not supported; {SUPPORTED_KEYS}"
                    ))
                })?;
                Self::ec_from_sec1_point(curve, bytes)
            }
            other => Err(Error::Crypto(format!(
                "public key algorithm {other} is not supported; {SUPPORTED_KEYS}"
            ))),
        }
    }

    /// RSA or ECDSA on which curve.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The RSA modulus size, or the curve's size, in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The subjectPublicKey BIT STRING contents: PKCS#1 `RSAPublicKey` DER
    /// for RSA, the SEC1 uncompressed point for ECDSA.
    pub fn key_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What evmctl computes without a certificate (`calc_keyid_v2`): the
    /// last 4 bytes of SHA-1 over [`Self::key_bytes`].
    pub fn key_id(&self) -> KeyId {
        KeyId::from_rsa_public_key(&self.bytes)
    }
}

impl fmt::Display for PublicKey {
    /// `RSA-4096`, `ECDSA P-256`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.algorithm {
            KeyAlgorithm::Rsa => write!(f, "RSA-{}", self.bits),
            KeyAlgorithm::Ecdsa(curve) => write!(f, "ECDSA {}", curve.name()),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self}, key id {})", self.key_id())
    }
}
