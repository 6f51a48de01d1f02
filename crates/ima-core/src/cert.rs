//! X.509 certificates (DER or PEM): the public key, the Subject Key
//! Identifier whose last 4 bytes are the key id, and what `doctor` checks
//! (validity, keyUsage, basicConstraints).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use der::{Decode, Encode};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};

use crate::pem::pem_blocks;
use crate::{Error, KeyId, PublicKey, Result};

/// An X.509 certificate (DER or PEM).
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
    skid: Option<Vec<u8>>,
    pub(crate) origin: Option<PathBuf>,
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
        // Every certificate is an ASN.1 SEQUENCE: anything else is another
        // kind of file, and the DER parser's words would not say so.
        if der.first() != Some(&0x30) {
            return Err(cert_parse(
                "this is not a certificate: neither DER (which starts with an ASN.1 SEQUENCE) \
                 nor PEM (no -----BEGIN CERTIFICATE----- line); give the X.509 certificate of \
                 the signing key (x509_ima.der)"
                    .to_string(),
            ));
        }
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| cert_parse(format!("not a valid X.509 certificate in DER: {e}")))?;
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

    /// The certificate's SubjectPublicKeyInfo, DER-encoded (the form
    /// attestation tools such as Keylime take a verification key in).
    pub fn subject_public_key_info_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .expect("a SubjectPublicKeyInfo decoded from DER encodes again")
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

    /// The Authority Key Identifier's keyIdentifier: the Subject Key
    /// Identifier of the key that signed this certificate (what the kernel
    /// looks the signer up by), if the extension has one.
    pub fn authority_key_identifier(&self) -> Option<Vec<u8>> {
        let (_, akid) = self
            .cert
            .tbs_certificate
            .get::<AuthorityKeyIdentifier>()
            .ok()??;
        akid.key_identifier.map(|id| id.as_bytes().to_vec())
    }

    /// The issuer name, RFC 4514 style.
    pub fn issuer(&self) -> String {
        self.cert.tbs_certificate.issuer.to_string()
    }

    /// The OID of the algorithm the issuer signed this certificate with
    /// (`1.2.840.10045.4.3.2` is ecdsa-with-SHA256).
    pub fn signature_algorithm_oid(&self) -> String {
        self.cert.signature_algorithm.oid.to_string()
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
    pub(crate) fn describe(&self) -> String {
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
pub(crate) fn with_cert_path(e: Error, path: &Path) -> Error {
    match e {
        Error::CertParse { reason, .. } => Error::CertParse {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    }
}
