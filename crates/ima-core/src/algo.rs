//! Hash algorithms with the kernel's numbering (`enum hash_algo` in
//! `include/uapi/linux/hash_info.h`), spelled as evmctl spells them.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A hash algorithm IMA can use for `security.ima`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgo {
    /// MD5 (kernel id 1): only to check content against a recorded MD5, never
    /// for signatures.
    Md5,
    /// SHA-1 (kernel id 2).
    Sha1,
    /// SHA-224 (kernel id 7).
    Sha224,
    /// SHA-256 (kernel id 4), evmctl's and our default.
    Sha256,
    /// SHA-384 (kernel id 5).
    Sha384,
    /// SHA-512 (kernel id 6).
    Sha512,
}

impl HashAlgo {
    /// Every algorithm, in kernel id order of first appearance.
    pub const ALL: &'static [HashAlgo] = &[
        HashAlgo::Md5,
        HashAlgo::Sha1,
        HashAlgo::Sha224,
        HashAlgo::Sha256,
        HashAlgo::Sha384,
        HashAlgo::Sha512,
    ];

    /// The algorithms a signature may use (MD5 only checks content).
    pub const SIGNING: &'static [HashAlgo] = &[
        HashAlgo::Sha1,
        HashAlgo::Sha224,
        HashAlgo::Sha256,
        HashAlgo::Sha384,
        HashAlgo::Sha512,
    ];

    /// The kernel's `enum hash_algo` value, stored in `security.ima`.
    pub fn kernel_id(self) -> u8 {
        match self {
            HashAlgo::Md5 => 1,
            HashAlgo::Sha1 => 2,
            HashAlgo::Sha256 => 4,
            HashAlgo::Sha384 => 5,
            HashAlgo::Sha512 => 6,
            HashAlgo::Sha224 => 7,
        }
    }

    /// The algorithm for a kernel `enum hash_algo` value, if we support it.
    pub fn from_kernel_id(id: u8) -> Option<Self> {
        HashAlgo::ALL.iter().copied().find(|a| a.kernel_id() == id)
    }

    /// The name evmctl and the kernel use: `"sha256"`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha224 => "sha224",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
        }
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha224 => 28,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha384 => 48,
            HashAlgo::Sha512 => 64,
        }
    }
}

impl FromStr for HashAlgo {
    type Err = Error;

    /// Parses evmctl's names, case-insensitively; `sha-256` is accepted too.
    fn from_str(s: &str) -> Result<Self, Error> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "");
        HashAlgo::ALL
            .iter()
            .copied()
            .find(|a| a.name() == norm)
            .ok_or_else(|| Error::UnknownHashAlgo {
                name: s.to_string(),
            })
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for &a in HashAlgo::ALL {
            assert_eq!(HashAlgo::from_kernel_id(a.kernel_id()), Some(a));
            assert_eq!(a.name().parse::<HashAlgo>().unwrap(), a);
            assert_eq!(a.to_string(), a.name());
        }
        assert_eq!(HashAlgo::from_kernel_id(0), None);
        assert_eq!(HashAlgo::from_kernel_id(3), None); // rmd160
        assert_eq!("SHA-512".parse::<HashAlgo>().unwrap(), HashAlgo::Sha512);
    }

    #[test]
    fn unknown_name_lists_supported() {
        let err = "sha3-256".parse::<HashAlgo>().unwrap_err();
        assert!(matches!(&err, Error::UnknownHashAlgo { name } if name == "sha3-256"));
        let msg = err.to_string();
        assert!(msg.contains("sha3-256") && msg.contains("sha512"), "{msg}");
    }
}
