//! Private keys, parsed with the RustCrypto ASN.1 crates (certificates are
//! in `cert.rs`, public keys in `public_key.rs`).
//!
//! Only the bytes the backends need leave this module: for RSA the PKCS#1
//! `RSAPrivateKey` and `RSAPublicKey` DER, for ECDSA (NIST P-256 and P-384,
//! the curves the kernel's IMA verifies) the private scalar and the SEC1
//! uncompressed point. The private bytes are zeroized when the
//! [`KeyMaterial`] is dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use der::zeroize::Zeroizing;
use der::{Decode, Encode};

use crate::cert::with_cert_path;
use crate::key_source::redacted_uri;
use crate::pem::pem_blocks;
use crate::public_key::{EC_PUBLIC_KEY_OID, RSA_OID};
use crate::secret_file::{SecretFile, SecretFileError};
use crate::{Certificate, EcCurve, Error, KeyAlgorithm, KeyId, PublicKey, Result};

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
        // A directory named by mistake gets plain words, not "not a regular file".
        if std::fs::symlink_metadata(key).is_ok_and(|m| m.is_dir()) {
            return Err(Error::KeyParse {
                path: key.to_path_buf(),
                reason: "it is a directory: name the private key file itself \
                         (e.g. /etc/keys/IMA_signing_key.priv)"
                    .to_string(),
            });
        }
        // One descriptor, no symlink, no FIFO wait, a size limit: as a PIN file.
        // A pkcs11: URI given here by mistake is named without its PIN.
        let shown = || PathBuf::from(redacted_uri(&key.to_string_lossy()));
        let secret = SecretFile::read(key).map_err(|e| match e {
            SecretFileError::Io(source) => Error::KeyRead {
                path: shown(),
                source,
            },
            SecretFileError::Refused(reason) => Error::KeyParse {
                path: shown(),
                reason,
            },
        })?;
        let cert = cert.map(Certificate::load).transpose()?;
        let mut km = Self::from_pem(&secret.bytes, key, cert)?;
        km.mode = Some(secret.mode);
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
