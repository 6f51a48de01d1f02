//! Checking `security.ima` values against file content and a set of keys.

use std::collections::HashMap;
use std::fs::File;

use crate::digest::digest_file;
use crate::{
    read_ima_xattr, Certificate, CryptoProvider, Error, HashAlgo, ImaXattr, KeyId, KeyMaterial,
    Result, Verifier,
};

/// Public keys indexed by key id, as the kernel's keyring looks them up.
pub struct KeySet {
    provider: &'static dyn CryptoProvider,
    /// Several keys may share a 32-bit id; each is tried.
    keys: HashMap<KeyId, Vec<Box<dyn Verifier>>>,
    /// The key id signatures are expected to carry (the signing key's);
    /// a valid signature by another key in the set is [`VerifyStatus::OtherKey`].
    expected: Option<KeyId>,
    /// Certificate subjects by key id, to say whose a signature is.
    subjects: HashMap<KeyId, String>,
}

/// The verdict on one `security.ima` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyStatus {
    /// A signature by a known key that verifies over the content.
    Ok,
    /// A signature that verifies, by a key in the set that is not the
    /// expected one ([`KeySet::expect_key`]), e.g. the previous key during
    /// a key rotation.
    OtherKey,
    /// No `security.ima`.
    Unsigned,
    /// A digest-only value (`evmctl ima_hash`) that matches the content.
    Hashed,
    /// A digest-only value that does not match the content (the kernel
    /// refuses such a file wherever it appraises it).
    BadHash,
    /// A signature by a known key that does not verify: content or signature changed.
    BadSignature,
    /// A signature by a key not in the set.
    UnknownKey,
    /// The value could not be decoded (or the content could not be hashed).
    Malformed,
}

impl VerifyStatus {
    /// A stable short name for reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            VerifyStatus::Ok => "ok",
            VerifyStatus::OtherKey => "other-key",
            VerifyStatus::Unsigned => "unsigned",
            VerifyStatus::Hashed => "hashed",
            VerifyStatus::BadHash => "bad-hash",
            VerifyStatus::BadSignature => "bad-signature",
            VerifyStatus::UnknownKey => "unknown-key",
            VerifyStatus::Malformed => "error",
        }
    }
}

impl std::fmt::Display for VerifyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`KeySet::verify_file`] found.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// The verdict.
    pub status: VerifyStatus,
    /// The value's algorithm.
    pub algo: Option<HashAlgo>,
    /// The signature's key id.
    pub keyid: Option<KeyId>,
    /// The content's digest in `algo`.
    pub digest: Option<Vec<u8>>,
    /// The stored signature.
    pub signature: Option<Vec<u8>>,
    /// The content's MD5, when asked for.
    pub md5: Option<[u8; 16]>,
    /// Why, in words.
    pub detail: Option<String>,
}

impl VerifyReport {
    fn new(status: VerifyStatus) -> Self {
        VerifyReport {
            status,
            algo: None,
            keyid: None,
            digest: None,
            signature: None,
            md5: None,
            detail: None,
        }
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("provider", &self.provider.name())
            .field("keyids", &self.keys.keys().collect::<Vec<_>>())
            .field("expected", &self.expected)
            .finish()
    }
}

impl KeySet {
    /// An empty set whose keys live in `provider`.
    pub fn new(provider: &'static dyn CryptoProvider) -> Self {
        KeySet {
            provider,
            keys: HashMap::new(),
            expected: None,
            subjects: HashMap::new(),
        }
    }

    /// Names the key id signatures should carry: a valid signature by any
    /// other key of the set is then [`VerifyStatus::OtherKey`], not `Ok`.
    pub fn expect_key(&mut self, id: KeyId) {
        self.expected = Some(id);
    }

    /// Whether `id` is the expected key id (always, when none is expected).
    fn is_expected(&self, id: KeyId) -> bool {
        self.expected.is_none_or(|e| e == id)
    }

    /// Adds a certificate's public key (RSA or ECDSA) under its key id (SKID tail).
    pub fn add_certificate(&mut self, cert: &Certificate) -> Result<KeyId> {
        let verifier = self.provider.verifier(&cert.public_key()?)?;
        self.subjects
            .entry(cert.key_id())
            .or_insert_with(|| cert.subject());
        Ok(self.insert(cert.key_id(), verifier))
    }

    /// Adds the public half of a private key under [`KeyMaterial::key_id`].
    pub fn add_key(&mut self, key: &KeyMaterial) -> Result<KeyId> {
        let verifier = self.provider.verifier(key.public_key())?;
        Ok(self.insert(key.key_id(), verifier))
    }

    /// Adds a public key from its DER SubjectPublicKeyInfo (the form
    /// Keylime's `verification-keys` carries), under the key id `evmctl`
    /// computes for it.
    pub fn add_public_key_der(&mut self, der: &[u8]) -> Result<KeyId> {
        let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(der)
            .map_err(|e| Error::Crypto(format!("not a DER SubjectPublicKeyInfo: {e}")))?;
        let key = crate::PublicKey::from_spki(&spki)?;
        let verifier = self.provider.verifier(&key)?;
        Ok(self.insert(key.key_id(), verifier))
    }

    fn insert(&mut self, id: KeyId, verifier: Box<dyn Verifier>) -> KeyId {
        self.keys.entry(id).or_default().push(verifier);
        id
    }

    /// The subject of the certificate added with key id `id`, if any.
    pub fn subject(&self, id: KeyId) -> Option<&str> {
        self.subjects.get(&id).map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    /// Whether no key was added.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads `security.ima`, decodes it, hashes the file once in the value's
    /// algorithm (plus MD5 when `with_md5`, also when there is no value) and
    /// checks the signature. I/O errors are errors; everything about the
    /// value is in the report.
    pub fn verify_file(&self, file: &File, with_md5: bool) -> Result<VerifyReport> {
        let provider = self.provider;
        let mut report = match read_ima_xattr(file)? {
            None => VerifyReport {
                detail: Some("no security.ima".to_string()),
                ..VerifyReport::new(VerifyStatus::Unsigned)
            },
            Some(value) => {
                let mut md5 = None;
                let mut report = self.check_value(&value, |algo| {
                    let d = digest_file(provider, file, algo, with_md5)?;
                    md5 = d.md5;
                    Ok(d.digest)
                })?;
                report.md5 = md5;
                report
            }
        };
        if with_md5 && report.md5.is_none() {
            let d = digest_file(provider, file, HashAlgo::Md5, false)?;
            report.md5 = Some(d.digest.try_into().expect("MD5 is 16 bytes"));
        }
        Ok(report)
    }

    /// Checks a raw value; `digest_of` hashes the content in the value's
    /// algorithm. A failure of `digest_of` is reported as
    /// [`VerifyStatus::Malformed`] ("error") with the reason in `detail`.
    pub fn verify_value(
        &self,
        value: &[u8],
        digest_of: impl FnOnce(HashAlgo) -> Result<Vec<u8>>,
    ) -> VerifyReport {
        self.check_value(value, digest_of)
            .unwrap_or_else(|e| VerifyReport {
                detail: Some(format!("cannot hash the content: {e}")),
                ..VerifyReport::new(VerifyStatus::Malformed)
            })
    }

    fn check_value(
        &self,
        value: &[u8],
        digest_of: impl FnOnce(HashAlgo) -> Result<Vec<u8>>,
    ) -> Result<VerifyReport> {
        let xattr = match ImaXattr::decode(value) {
            Ok(x) => x,
            Err(e) => {
                return Ok(VerifyReport {
                    detail: Some(Error::Format(e).to_string()),
                    ..VerifyReport::new(VerifyStatus::Malformed)
                })
            }
        };
        let algo = xattr.algo();
        let digest = digest_of(algo)?;
        let mut report = VerifyReport {
            algo: Some(algo),
            ..VerifyReport::new(VerifyStatus::Malformed)
        };
        match xattr {
            ImaXattr::Digest { digest: stored, .. } => {
                report.detail = Some(if stored == digest {
                    report.status = VerifyStatus::Hashed;
                    format!("no signature; the stored {algo} digest matches the content")
                } else {
                    report.status = VerifyStatus::BadHash;
                    format!(
                        "no signature; the stored {algo} digest {} does not match the content",
                        hex::encode(&stored)
                    )
                });
            }
            ImaXattr::Signature {
                keyid, signature, ..
            } => {
                report.keyid = Some(keyid);
                match self.keys.get(&keyid) {
                    None => {
                        report.status = VerifyStatus::UnknownKey;
                        report.detail = Some(format!(
                            "signed by key id {keyid}, which is not among the {} key(s) given",
                            self.len()
                        ));
                    }
                    Some(verifiers) => {
                        // A check that cannot be made (an MD5 signature, a
                        // digest of the wrong length) is an error report.
                        let mut failure = None;
                        let mut ok = false;
                        for v in verifiers {
                            match v.verify_digest(algo, &digest, &signature) {
                                Ok(true) => {
                                    ok = true;
                                    break;
                                }
                                Ok(false) => {}
                                Err(e) => failure = Some(e),
                            }
                        }
                        if ok && self.is_expected(keyid) {
                            report.status = VerifyStatus::Ok;
                        } else if ok {
                            report.status = VerifyStatus::OtherKey;
                            let whose = self
                                .subject(keyid)
                                .map(|s| format!(" ({s})"))
                                .unwrap_or_default();
                            report.detail = Some(format!(
                                "valid signature by key id {keyid}{whose}, not by the expected key id {}",
                                self.expected.map(|e| e.to_string()).unwrap_or_default()
                            ));
                        } else if let Some(e) = failure {
                            report.detail = Some(format!("cannot check the signature: {e}"));
                        } else {
                            report.status = VerifyStatus::BadSignature;
                            report.detail = Some(format!(
                                "the {algo} signature by key id {keyid} does not match the content (file changed after signing, or another key with this id)"
                            ));
                        }
                    }
                }
                report.signature = Some(signature);
            }
        }
        report.digest = Some(digest);
        Ok(report)
    }
}
