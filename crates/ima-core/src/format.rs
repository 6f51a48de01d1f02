//! The byte formats of the `security.ima` extended attribute.
//!
//! ```text
//! 0x01 digest[20]                                  sha1 digest (IMA_XATTR_DIGEST)
//! 0x04 algo digest[n]                              other digests (IMA_XATTR_DIGEST_NG)
//! 0x03 0x02 algo keyid[4] len[2, big-endian] sig   signature v2 (EVM_IMA_XATTR_DIGSIG)
//! ```

pub use crate::error::FormatError;
use crate::{HashAlgo, KeyId};

const XATTR_DIGEST: u8 = 0x01;
const XATTR_DIGSIG: u8 = 0x03;
const XATTR_DIGEST_NG: u8 = 0x04;
const DIGSIG_VERSION_2: u8 = 0x02;
/// type, version, algo, key id, length.
const SIG_HEADER_LEN: usize = 1 + 1 + 1 + 4 + 2;

/// A decoded `security.ima` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImaXattr {
    /// A bare file digest (`evmctl ima_hash`).
    Digest {
        /// The digest's algorithm.
        algo: HashAlgo,
        /// The digest of the content.
        digest: Vec<u8>,
    },
    /// A v2 signature over the file digest.
    Signature {
        /// The algorithm of the signed digest.
        algo: HashAlgo,
        /// Which key signed (the kernel looks the certificate up by it).
        keyid: KeyId,
        /// The RSA PKCS#1 v1.5 signature, or the DER-encoded ECDSA signature.
        signature: Vec<u8>,
    },
}

impl ImaXattr {
    /// The value's bytes, exactly as evmctl writes them.
    ///
    /// Panics if a signature is longer than 65535 bytes, which no RSA or EC key
    /// that can be loaded produces.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ImaXattr::Digest {
                algo: HashAlgo::Sha1,
                digest,
            } => [&[XATTR_DIGEST][..], digest].concat(),
            ImaXattr::Digest { algo, digest } => {
                [&[XATTR_DIGEST_NG, algo.kernel_id()][..], digest].concat()
            }
            ImaXattr::Signature {
                algo,
                keyid,
                signature,
            } => {
                let len =
                    u16::try_from(signature.len()).expect("signature longer than 65535 bytes");
                let mut v = Vec::with_capacity(SIG_HEADER_LEN + signature.len());
                v.extend_from_slice(&[XATTR_DIGSIG, DIGSIG_VERSION_2, algo.kernel_id()]);
                v.extend_from_slice(&keyid.0);
                v.extend_from_slice(&len.to_be_bytes());
                v.extend_from_slice(signature);
                v
            }
        }
    }

    /// Decodes a value, rejecting anything malformed (never panics).
    pub fn decode(value: &[u8]) -> Result<Self, FormatError> {
        let (&kind, rest) = value.split_first().ok_or(FormatError::Empty)?;
        match kind {
            XATTR_DIGEST => Ok(ImaXattr::Digest {
                algo: HashAlgo::Sha1,
                digest: checked_digest(HashAlgo::Sha1, rest)?.to_vec(),
            }),
            XATTR_DIGEST_NG => {
                let (&id, digest) = rest.split_first().ok_or(FormatError::TruncatedHeader {
                    kind,
                    len: value.len(),
                    need: 2,
                })?;
                let algo = HashAlgo::from_kernel_id(id).ok_or(FormatError::UnknownAlgo(id))?;
                Ok(ImaXattr::Digest {
                    algo,
                    digest: checked_digest(algo, digest)?.to_vec(),
                })
            }
            XATTR_DIGSIG => {
                // Check the version first: v1 headers have another layout.
                if let Some(&version) = rest.first() {
                    if version != DIGSIG_VERSION_2 {
                        return Err(FormatError::UnsupportedVersion(version));
                    }
                }
                if value.len() < SIG_HEADER_LEN {
                    return Err(FormatError::TruncatedHeader {
                        kind,
                        len: value.len(),
                        need: SIG_HEADER_LEN,
                    });
                }
                let algo =
                    HashAlgo::from_kernel_id(value[2]).ok_or(FormatError::UnknownAlgo(value[2]))?;
                let keyid = KeyId([value[3], value[4], value[5], value[6]]);
                let declared = u16::from_be_bytes([value[7], value[8]]) as usize;
                let signature = &value[SIG_HEADER_LEN..];
                if declared != signature.len() {
                    return Err(FormatError::LengthMismatch {
                        declared,
                        actual: signature.len(),
                    });
                }
                if signature.is_empty() {
                    return Err(FormatError::EmptySignature);
                }
                Ok(ImaXattr::Signature {
                    algo,
                    keyid,
                    signature: signature.to_vec(),
                })
            }
            other => Err(FormatError::UnknownType(other)),
        }
    }

    /// The hash algorithm of the digest or signature.
    pub fn algo(&self) -> HashAlgo {
        match self {
            ImaXattr::Digest { algo, .. } | ImaXattr::Signature { algo, .. } => *algo,
        }
    }
}

fn checked_digest(algo: HashAlgo, digest: &[u8]) -> Result<&[u8], FormatError> {
    if digest.len() == algo.digest_len() {
        Ok(digest)
    } else {
        Err(FormatError::DigestLength {
            algo: algo.name(),
            expected: algo.digest_len(),
            actual: digest.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_layouts() {
        let d = ImaXattr::Digest {
            algo: HashAlgo::Sha1,
            digest: vec![7; 20],
        };
        assert_eq!(d.encode()[0], 0x01);
        assert_eq!(d.encode().len(), 21);
        let d = ImaXattr::Digest {
            algo: HashAlgo::Sha256,
            digest: vec![7; 32],
        };
        assert_eq!(&d.encode()[..2], &[0x04, 4]);
        let s = ImaXattr::Signature {
            algo: HashAlgo::Sha512,
            keyid: KeyId([1, 2, 3, 4]),
            signature: vec![9; 0x0102],
        };
        assert_eq!(&s.encode()[..9], &[0x03, 0x02, 6, 1, 2, 3, 4, 0x01, 0x02]);
        for v in [d, s] {
            assert_eq!(ImaXattr::decode(&v.encode()).unwrap(), v);
        }
    }

    #[test]
    fn rejects_each_malformation() {
        use FormatError::*;
        let cases: &[(&[u8], FormatError)] = &[
            (b"", Empty),
            (
                &[0x04],
                TruncatedHeader {
                    kind: 4,
                    len: 1,
                    need: 2,
                },
            ),
            (
                &[0x03, 0x02, 4, 1, 2],
                TruncatedHeader {
                    kind: 3,
                    len: 5,
                    need: 9,
                },
            ),
            (&[0x03, 0x01, 4], UnsupportedVersion(1)),
            (
                &[0x03, 0x02, 4, 1, 2, 3, 4, 0, 2, 0xaa],
                LengthMismatch {
                    declared: 2,
                    actual: 1,
                },
            ),
            (&[0x03, 0x02, 4, 1, 2, 3, 4, 0, 0], EmptySignature),
            (&[0x03, 0x02, 3, 1, 2, 3, 4, 0, 1, 0xaa], UnknownAlgo(3)),
            (&[0x02, 1, 2], UnknownType(2)),
            (
                &[0x01, 1, 2],
                DigestLength {
                    algo: "sha1",
                    expected: 20,
                    actual: 2,
                },
            ),
            (&[0x04, 99, 1], UnknownAlgo(99)),
        ];
        for (value, want) in cases {
            assert_eq!(&ImaXattr::decode(value).unwrap_err(), want, "{value:02x?}");
            assert!(!want.to_string().is_empty());
        }
    }
}
