//! Private keys and certificates, parsed with the RustCrypto ASN.1 crates.
//!
//! Only the bytes the backends need leave this module: for RSA the PKCS#1
//! `RSAPrivateKey` and `RSAPublicKey` DER, for ECDSA (NIST P-256 and P-384,
//! the curves the kernel's IMA verifies) the private scalar and the SEC1
//! uncompressed point. The private bytes are zeroized when the
//! [`KeyMaterial`] is dropped.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use der::zeroize::Zeroizing;
use der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};

use crate::{Error, KeyId, Result};

/// The `rsaEncryption` OID, 1.2.840.113549.1.1.1.
const RSA_OID: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// The `id-ecPublicKey` OID (RFC 5480), 1.2.840.10045.2.1.
const EC_PUBLIC_KEY_OID: spki::ObjectIdentifier =
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
    fn from_spki(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<Self> {
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

/// An X.509 certificate (DER or PEM).
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
    skid: Option<Vec<u8>>,
    origin: Option<PathBuf>,
}

/// The bits of the keyUsage extension that matter for a signing key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyUsageBits {
    /// digitalSignature: what IMA signing needs.
    pub digital_signature: bool,
    /// nonRepudiation (contentCommitment).
    pub non_repudiation: bool,
    /// keyEncipherment.
    pub key_encipherment: bool,
    /// dataEncipherment.
    pub data_encipherment: bool,
    /// keyAgreement.
    pub key_agreement: bool,
    /// keyCertSign: a CA key.
    pub key_cert_sign: bool,
    /// cRLSign.
    pub crl_sign: bool,
}

impl Certificate {
    /// Reads a certificate file, DER or PEM (the first `CERTIFICATE` block).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::CertRead {
            path: path.to_path_buf(),
            source,
        })?;
        // PEM is text with a BEGIN line (maybe after `openssl x509 -text`
        // output); anything else is taken as DER.
        let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
        let mut cert = if is_pem {
            Self::from_pem(&bytes)
        } else {
            Self::from_der(&bytes)
        }
        .map_err(|e| with_cert_path(e, path))?;
        cert.origin = Some(path.to_path_buf());
        Ok(cert)
    }

    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| cert_parse(e.to_string()))?;
        let skid = cert
            .tbs_certificate
            .get::<SubjectKeyIdentifier>()
            .map_err(|e| cert_parse(format!("bad subjectKeyIdentifier extension: {e}")))?
            .map(|(_, skid)| skid.0.as_bytes().to_vec());
        Ok(Certificate {
            der: der.to_vec(),
            cert,
            skid,
            origin: None,
        })
    }

    /// Parses the first `-----BEGIN CERTIFICATE-----` block of PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| cert_parse("neither DER nor PEM text".to_string()))?;
        let block = pem_blocks(text)
            .into_iter()
            .find(|b| b.label == "CERTIFICATE")
            .ok_or_else(|| cert_parse("no -----BEGIN CERTIFICATE----- block".to_string()))?;
        let der = block.decode().map_err(cert_parse)?;
        Self::from_der(&der)
    }

    /// The certificate's DER encoding (what `keyctl padd asymmetric` takes).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The key id the kernel looks the certificate up by: the last 4 bytes of
    /// the Subject Key Identifier, else of SHA-1 over the public key.
    pub fn key_id(&self) -> KeyId {
        self.skid
            .as_deref()
            .and_then(KeyId::from_tail)
            .unwrap_or_else(|| KeyId::from_rsa_public_key(self.spk_bytes()))
    }

    /// The Subject Key Identifier extension's value, if present.
    pub fn subject_key_identifier(&self) -> Option<&[u8]> {
        self.skid.as_deref()
    }

    /// The certificate's public key: RSA, or ECDSA on P-256 or P-384; any
    /// other is [`Error::CertParse`].
    pub fn public_key(&self) -> Result<PublicKey> {
        PublicKey::from_spki(&self.cert.tbs_certificate.subject_public_key_info).map_err(|e| {
            Error::CertParse {
                path: self.origin_path(),
                reason: match e {
                    Error::Crypto(reason) => reason,
                    other => other.to_string(),
                },
            }
        })
    }

    fn spk_bytes(&self) -> &[u8] {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
    }

    /// The subject name, RFC 4514 style (`CN=IMA signing key,O=Example`).
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// Whether basicConstraints says cA (the kernel's IMA keyring wants a
    /// non-CA signing certificate, signed by a CA on the builtin keyring).
    pub fn is_ca(&self) -> bool {
        matches!(
            self.cert.tbs_certificate.get::<BasicConstraints>(),
            Ok(Some((_, bc))) if bc.ca
        )
    }

    /// The keyUsage extension, if present and well formed.
    pub fn key_usage(&self) -> Option<KeyUsageBits> {
        let (_, ku) = self.cert.tbs_certificate.get::<KeyUsage>().ok()??;
        Some(KeyUsageBits {
            digital_signature: ku.digital_signature(),
            non_repudiation: ku.non_repudiation(),
            key_encipherment: ku.key_encipherment(),
            data_encipherment: ku.data_encipherment(),
            key_agreement: ku.key_agreement(),
            key_cert_sign: ku.key_cert_sign(),
            crl_sign: ku.crl_sign(),
        })
    }

    /// The end of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.cert
            .tbs_certificate
            .validity
            .not_after
            .to_system_time()
    }

    /// The file the certificate was loaded from, if any.
    pub fn origin(&self) -> Option<&Path> {
        self.origin.as_deref()
    }

    fn origin_path(&self) -> PathBuf {
        self.origin.clone().unwrap_or_default()
    }

    /// How to name this certificate in a message.
    fn describe(&self) -> String {
        match &self.origin {
            Some(p) => p.display().to_string(),
            None => format!("\"{}\"", self.subject()),
        }
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject())
            .field("key_id", &self.key_id())
            .field("origin", &self.origin)
            .finish()
    }
}

fn cert_parse(reason: String) -> Error {
    Error::CertParse {
        path: PathBuf::new(),
        reason,
    }
}

/// Fills in the path of a [`Error::CertParse`] made without one.
fn with_cert_path(e: Error, path: &Path) -> Error {
    match e {
        Error::CertParse { reason, .. } => Error::CertParse {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    }
}

/// A private key (RSA, or ECDSA on P-256 or P-384), with its certificate
/// when one was given.
pub struct KeyMaterial {
    /// RSA: PKCS#1 RSAPrivateKey DER; ECDSA: the private scalar, big-endian,
    /// the curve's size. Zeroized on drop.
    private: Zeroizing<Vec<u8>>,
    public: PublicKey,
    cert: Option<Certificate>,
    origin: PathBuf,
    mode: Option<u32>,
}

impl KeyMaterial {
    /// Reads a PEM private key: RSA PKCS#1 ("RSA PRIVATE KEY", `openssl genrsa`),
    /// EC SEC1 ("EC PRIVATE KEY", `openssl ecparam -genkey`) or PKCS#8 of
    /// either ("PRIVATE KEY", `openssl genpkey`). A "CERTIFICATE" block appended
    /// to the same file is taken as the certificate unless `cert` is given. An
    /// encrypted key ("ENCRYPTED PRIVATE KEY", or "Proc-Type: 4,ENCRYPTED") is
    /// [`Error::KeyEncrypted`]. A certificate whose public key is not this key's
    /// is [`Error::CertificateMismatch`] (its signatures could never verify).
    pub fn load(key: &Path, cert: Option<&Path>) -> Result<Self> {
        let read_err = |source| Error::KeyRead {
            path: key.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(key).map_err(read_err)?;
        if meta.is_dir() {
            return Err(Error::KeyParse {
                path: key.to_path_buf(),
                reason: "is a directory, not a PEM key file".to_string(),
            });
        }
        let pem = Zeroizing::new(std::fs::read(key).map_err(read_err)?);
        let cert = cert.map(Certificate::load).transpose()?;
        let mut km = Self::from_pem(&pem, key, cert)?;
        km.mode = Some(meta.permissions().mode());
        Ok(km)
    }

    /// Parses PEM text; `origin` names the key in error messages.
    pub fn from_pem(pem: &[u8], origin: &Path, cert: Option<Certificate>) -> Result<Self> {
        const EXPECTED: &str =
            "expected -----BEGIN RSA PRIVATE KEY-----, -----BEGIN EC PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----";
        let parse = |reason: String| Error::KeyParse {
            path: origin.to_path_buf(),
            reason,
        };
        let unsupported = |what: String| Error::KeyUnsupported {
            path: origin.to_path_buf(),
            what,
        };
        let text = std::str::from_utf8(pem)
            .map_err(|_| parse(format!("not PEM text (binary data); {EXPECTED}")))?;
        let blocks = pem_blocks(text);
        let key_block = blocks
            .iter()
            .find(|b| b.label.ends_with("PRIVATE KEY"))
            .ok_or_else(|| {
                parse(if blocks.is_empty() {
                    format!("no PEM block found; {EXPECTED}")
                } else {
                    let labels: Vec<_> = blocks.iter().map(|b| b.label).collect();
                    format!(
                        "no private key in it (found {}); {EXPECTED}",
                        labels.join(", ")
                    )
                })
            })?;

        let (private, public) = match key_block.label {
            "ENCRYPTED PRIVATE KEY" => {
                return Err(Error::KeyEncrypted {
                    path: origin.to_path_buf(),
                })
            }
            _ if key_block.text.contains("Proc-Type: 4,ENCRYPTED") => {
                return Err(Error::KeyEncrypted {
                    path: origin.to_path_buf(),
                })
            }
            "RSA PRIVATE KEY" => rsa_private(Zeroizing::new(key_block.decode().map_err(parse)?))
                .map_err(parse)?,
            "EC PRIVATE KEY" => {
                let der = Zeroizing::new(key_block.decode().map_err(parse)?);
                ec_private(&der, None).map_err(|e| match e {
                    KeyProblem::Parse(reason) => parse(reason),
                    KeyProblem::Unsupported(what) => unsupported(what),
                })?
            }
            "PRIVATE KEY" => {
                let der = Zeroizing::new(key_block.decode().map_err(parse)?);
                let info = pkcs8::PrivateKeyInfo::from_der(&der)
                    .map_err(|e| parse(format!("bad PKCS#8 PrivateKeyInfo: {e}")))?;
                match info.algorithm.oid {
                    RSA_OID => rsa_private(Zeroizing::new(info.private_key.to_vec()))
                        .map_err(parse)?,
                    EC_PUBLIC_KEY_OID => {
                        let curve_oid = info.algorithm.parameters_oid().map_err(|_| {
                            unsupported(
                                "an EC key without a named curve (explicit parameters)".into(),
                            )
                        })?;
                        ec_private(info.private_key, Some(curve_oid)).map_err(|e| match e {
                            KeyProblem::Parse(reason) => parse(reason),
                            KeyProblem::Unsupported(what) => unsupported(what),
                        })?
                    }
                    other => return Err(unsupported(format!("a key of algorithm {other}"))),
                }
            }
            // May hold an RSA key, in a format evmctl does not read either.
            "OPENSSH PRIVATE KEY" => {
                return Err(parse(
                    "OpenSSH key format; convert a copy with `ssh-keygen -p -m PEM -f COPY` or use `openssl genrsa`".into(),
                ))
            }
            // "DSA PRIVATE KEY", ...
            other => return Err(unsupported(format!("a {other}"))),
        };

        let cert = match cert {
            Some(c) => Some(c),
            None => match blocks.iter().find(|b| b.label == "CERTIFICATE") {
                Some(b) => {
                    let der = b.decode().map_err(|reason| Error::CertParse {
                        path: origin.to_path_buf(),
                        reason,
                    })?;
                    let mut c =
                        Certificate::from_der(&der).map_err(|e| with_cert_path(e, origin))?;
                    c.origin = Some(origin.to_path_buf());
                    Some(c)
                }
                None => None,
            },
        };
        if let Some(c) = &cert {
            let matches = c.public_key().map(|p| p == public);
            if !matches.unwrap_or(false) {
                return Err(Error::CertificateMismatch {
                    cert: c.describe(),
                    key: origin.to_path_buf(),
                });
            }
        }

        Ok(KeyMaterial {
            private,
            public,
            cert,
            origin: origin.to_path_buf(),
            mode: None,
        })
    }

    /// The certificate's key id when there is one, else the public-key hash.
    pub fn key_id(&self) -> KeyId {
        match &self.cert {
            Some(c) => c.key_id(),
            None => self.public.key_id(),
        }
    }

    /// RSA, or ECDSA on which curve.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    /// The modulus size, or the curve's size, in bits.
    pub fn bits(&self) -> usize {
        self.public.bits()
    }

    /// The certificate given or appended to the key file.
    pub fn certificate(&self) -> Option<&Certificate> {
        self.cert.as_ref()
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The private half, for the backends: PKCS#1 `RSAPrivateKey` DER for
    /// RSA; for ECDSA the private scalar, big-endian, [`EcCurve::scalar_len`]
    /// bytes.
    pub fn private_key_bytes(&self) -> &[u8] {
        &self.private
    }

    /// The key file this came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The key file's mode when group or others may access it (a private key
    /// should be 0600 or 0400), for the caller to warn about. `None` when
    /// private, or when not loaded from a file.
    pub fn insecure_mode(&self) -> Option<u32> {
        self.mode.filter(|m| m & 0o077 != 0).map(|m| m & 0o7777)
    }
}

impl fmt::Debug for KeyMaterial {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("origin", &self.origin)
            .field("public_key", &self.public)
            .field("key_id", &self.key_id())
            .field("certificate", &self.cert)
            .finish_non_exhaustive()
    }
}

/// A PKCS#1 `RSAPrivateKey` and its public half.
fn rsa_private(
    der: Zeroizing<Vec<u8>>,
) -> std::result::Result<(Zeroizing<Vec<u8>>, PublicKey), String> {
    let rsa = pkcs1::RsaPrivateKey::from_der(&der)
        .map_err(|e| format!("bad PKCS#1 RSAPrivateKey: {e}"))?;
    let public_der = rsa
        .public_key()
        .to_der()
        .map_err(|e| format!("cannot encode the public key: {e}"))?;
    let public = PublicKey::rsa_from_pkcs1_der(&public_der).map_err(|e| match e {
        Error::Crypto(reason) => reason,
        other => other.to_string(),
    })?;
    Ok((der, public))
}

/// Why an EC private key cannot be used.
enum KeyProblem {
    /// Malformed.
    Parse(String),
    /// Well formed, but not a key IMA can use (another curve).
    Unsupported(String),
}

/// A SEC1 `ECPrivateKey` (RFC 5915); `pkcs8_curve` is the curve named by
/// the PKCS#8 wrapper, if any (the SEC1 structure may then omit it).
fn ec_private(
    der: &[u8],
    pkcs8_curve: Option<spki::ObjectIdentifier>,
) -> std::result::Result<(Zeroizing<Vec<u8>>, PublicKey), KeyProblem> {
    let ec = sec1::EcPrivateKey::from_der(der).map_err(|e| {
        // A SEQUENCE where the curve's OID belongs: `-param_enc explicit`.
        let explicit = matches!(
            e.kind(),
            der::ErrorKind::TagUnexpected {
                expected: Some(der::Tag::ObjectIdentifier),
                actual: der::Tag::Sequence
            }
        );
        KeyProblem::Parse(if explicit {
            "the EC key spells out its curve's parameters instead of naming the curve; write a copy with `openssl ec -param_enc named_curve -in KEY -out NEW` (mode 0600)".into()
        } else {
            format!("bad SEC1 ECPrivateKey: {e}")
        })
    })?;
    let inner_curve = ec.parameters.and_then(|p| p.named_curve());
    let curve_oid = match (pkcs8_curve, inner_curve) {
        (Some(a), Some(b)) if a != b => {
            return Err(KeyProblem::Parse(format!(
                "the PKCS#8 wrapper names curve {a} but the EC key inside names {b}"
            )))
        }
        (Some(oid), _) | (None, Some(oid)) => oid,
        (None, None) => return Err(KeyProblem::Parse(
            "the EC key names no curve; write it with `openssl ec -in KEY -out NEW` (mode 0600)"
                .into(),
        )),
    };
    let curve = EcCurve::from_oid(&curve_oid)
        .ok_or_else(|| KeyProblem::Unsupported(format!("an EC key on curve {curve_oid}")))?;
    let scalar = ec.private_key;
    if scalar.is_empty() || scalar.len() > curve.scalar_len() || scalar.iter().all(|&b| b == 0) {
        return Err(KeyProblem::Parse(format!(
            "the {} private key is {} bytes or zero, not a scalar of at most {}",
            curve.name(),
            scalar.len(),
            curve.scalar_len()
        )));
    }
    // Left-pad to the curve's size, as RFC 5915 says it should be already.
    let mut private = Zeroizing::new(vec![0u8; curve.scalar_len()]);
    private[curve.scalar_len() - scalar.len()..].copy_from_slice(scalar);
    let point = ec.public_key.ok_or_else(|| {
        KeyProblem::Parse(
            "the EC key has no public key in it; write a complete copy with `openssl ec -in KEY -out NEW` (mode 0600)"
                .into(),
        )
    })?;
    let public = PublicKey::ec_from_sec1_point(curve, point).map_err(|e| {
        KeyProblem::Parse(match e {
            Error::Crypto(reason) => reason,
            other => other.to_string(),
        })
    })?;
    Ok((private, public))
}

/// One `-----BEGIN label-----` ... `-----END label-----` block of a PEM file.
struct PemBlock<'a> {
    label: &'a str,
    /// The whole block, BEGIN and END lines included.
    text: &'a str,
}

impl PemBlock<'_> {
    /// Base64-decodes the block (strict RFC 7468: no headers).
    fn decode(&self) -> std::result::Result<Vec<u8>, String> {
        der::pem::decode_vec(self.text.as_bytes())
            .map(|(_, der)| der)
            .map_err(|e| format!("bad PEM {} block: {e}", self.label))
    }
}

/// Splits PEM text into its blocks, skipping anything between them (openssl
/// writes "Bag Attributes" and such); a file may hold a key and a certificate.
fn pem_blocks(text: &str) -> Vec<PemBlock<'_>> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let from_begin = &rest[start..];
        let Some(label_end) = from_begin[BEGIN.len()..].find("-----") else {
            break;
        };
        let label = &from_begin[BEGIN.len()..BEGIN.len() + label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = from_begin.find(&end_marker) else {
            break;
        };
        let block_len = end + end_marker.len();
        blocks.push(PemBlock {
            label,
            text: &from_begin[..block_len],
        });
        rest = &from_begin[block_len..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_blocks_and_skips_text_between() {
        let text = "junk\n-----BEGIN A B-----\nQUJD\n-----END A B-----\nBag Attributes\n-----BEGIN CERTIFICATE-----\nREVG\n-----END CERTIFICATE-----\n-----BEGIN X-----\nunterminated";
        let blocks = pem_blocks(text);
        let labels: Vec<_> = blocks.iter().map(|b| b.label).collect();
        assert_eq!(labels, ["A B", "CERTIFICATE"]);
        assert_eq!(blocks[0].decode().unwrap(), b"ABC");
        assert_eq!(blocks[1].decode().unwrap(), b"DEF");
    }
}
