//! Private keys and certificates, parsed with the RustCrypto ASN.1 crates.
//!
//! Only the bytes the backends need leave this module: the PKCS#1
//! `RSAPrivateKey` and `RSAPublicKey` DER. The private bytes are zeroized when
//! the [`KeyMaterial`] is dropped.

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

    /// The PKCS#1 `RSAPublicKey` DER (the subjectPublicKey BIT STRING contents).
    pub fn rsa_public_key_der(&self) -> Result<&[u8]> {
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        if spki.algorithm.oid != RSA_OID {
            return Err(Error::CertParse {
                path: self.origin_path(),
                reason: format!(
                    "public key algorithm {} is not RSA; only RSA keys are supported",
                    spki.algorithm.oid
                ),
            });
        }
        Ok(self.spk_bytes())
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

/// An RSA private key, with its certificate when one was given.
pub struct KeyMaterial {
    /// PKCS#1 RSAPrivateKey DER; zeroized on drop.
    private_der: Zeroizing<Vec<u8>>,
    public_der: Vec<u8>,
    bits: usize,
    cert: Option<Certificate>,
    origin: PathBuf,
    mode: Option<u32>,
}

impl KeyMaterial {
    /// Reads a PEM private key: PKCS#1 ("RSA PRIVATE KEY", `openssl genrsa`) or PKCS#8
    /// ("PRIVATE KEY"). A "CERTIFICATE" block appended to the same file is taken as
    /// the certificate unless `cert` is given. An encrypted key ("ENCRYPTED PRIVATE KEY",
    /// or "Proc-Type: 4,ENCRYPTED") is [`Error::KeyEncrypted`]. A certificate whose
    /// public key is not this key's is [`Error::CertificateMismatch`] (its signatures
    /// could never verify).
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
        let parse = |reason: String| Error::KeyParse {
            path: origin.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(pem)
            .map_err(|_| parse("not PEM text (binary data); expected -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----".into()))?;
        let blocks = pem_blocks(text);
        let key_block = blocks.iter().find(|b| b.label.ends_with("PRIVATE KEY")).ok_or_else(|| {
            parse(if blocks.is_empty() {
                "no PEM block found; expected -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----".into()
            } else {
                let labels: Vec<_> = blocks.iter().map(|b| b.label).collect();
                format!("no private key in it (found {}); expected RSA PRIVATE KEY or PRIVATE KEY", labels.join(", "))
            })
        })?;

        let private_der: Zeroizing<Vec<u8>> = match key_block.label {
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
            "RSA PRIVATE KEY" => Zeroizing::new(key_block.decode().map_err(parse)?),
            "PRIVATE KEY" => {
                let der = Zeroizing::new(key_block.decode().map_err(parse)?);
                let info = pkcs8::PrivateKeyInfo::from_der(&der)
                    .map_err(|e| parse(format!("bad PKCS#8 PrivateKeyInfo: {e}")))?;
                if info.algorithm.oid != RSA_OID {
                    return Err(Error::KeyNotRsa {
                        path: origin.to_path_buf(),
                    });
                }
                Zeroizing::new(info.private_key.to_vec())
            }
            // May hold an RSA key, in a format evmctl does not read either.
            "OPENSSH PRIVATE KEY" => {
                return Err(parse(
                    "OpenSSH key format; convert a copy with `ssh-keygen -p -m PEM -f COPY` or use `openssl genrsa`".into(),
                ))
            }
            // "EC PRIVATE KEY", "DSA PRIVATE KEY", ...
            _ => {
                return Err(Error::KeyNotRsa {
                    path: origin.to_path_buf(),
                })
            }
        };

        let rsa = pkcs1::RsaPrivateKey::from_der(&private_der)
            .map_err(|e| parse(format!("bad PKCS#1 RSAPrivateKey: {e}")))?;
        let public_der = rsa
            .public_key()
            .to_der()
            .map_err(|e| parse(format!("cannot encode the public key: {e}")))?;
        let modulus = rsa.modulus.as_bytes();
        let bits = match modulus.first() {
            Some(&b) => modulus.len() * 8 - b.leading_zeros() as usize,
            None => return Err(parse("RSA modulus is zero".into())),
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
            let matches = c.rsa_public_key_der().map(|p| p == public_der.as_slice());
            if !matches.unwrap_or(false) {
                return Err(Error::CertificateMismatch {
                    cert: c.describe(),
                    key: origin.to_path_buf(),
                });
            }
        }

        Ok(KeyMaterial {
            private_der,
            public_der,
            bits,
            cert,
            origin: origin.to_path_buf(),
            mode: None,
        })
    }

    /// The certificate's key id when there is one, else the public-key hash.
    pub fn key_id(&self) -> KeyId {
        match &self.cert {
            Some(c) => c.key_id(),
            None => KeyId::from_rsa_public_key(&self.public_der),
        }
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The certificate given or appended to the key file.
    pub fn certificate(&self) -> Option<&Certificate> {
        self.cert.as_ref()
    }

    /// PKCS#1 `RSAPublicKey` DER.
    pub fn rsa_public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// PKCS#1 `RSAPrivateKey` DER, for the backends.
    pub fn rsa_private_key_der(&self) -> &[u8] {
        &self.private_der
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
            .field("bits", &self.bits)
            .field("key_id", &self.key_id())
            .field("certificate", &self.cert)
            .finish_non_exhaustive()
    }
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
