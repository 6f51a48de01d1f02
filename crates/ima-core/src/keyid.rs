//! The 4-byte key id stored in a v2 signature.
//!
//! The kernel finds the verifying key with `id:%08x` over these bytes, which it
//! matches against the tail of the certificate's Subject Key Identifier.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

use crate::Error;

/// A key id as stored in `security.ima` (network byte order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    /// What evmctl computes without a certificate: the last 4 bytes of SHA-1
    /// over the subjectPublicKey BIT STRING contents: the PKCS#1
    /// `RSAPublicKey` for RSA (hence the name), the SEC1 point for ECDSA
    /// (see [`crate::PublicKey::key_id`]).
    pub fn from_rsa_public_key(pkcs1_der: &[u8]) -> KeyId {
        let hash = Sha1::digest(pkcs1_der);
        KeyId::from_tail(&hash).expect("SHA-1 is 20 bytes")
    }

    /// The last 4 bytes of `bytes` (e.g. a Subject Key Identifier), if it has 4.
    pub fn from_tail(bytes: &[u8]) -> Option<KeyId> {
        let tail = bytes.get(bytes.len().checked_sub(4)?..)?;
        Some(KeyId(tail.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for KeyId {
    type Err = Error;

    /// Eight hex digits, with or without `0x`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let mut id = [0u8; 4];
        hex::decode_to_slice(digits, &mut id).map_err(|_| Error::InvalidKeyId {
            value: s.to_string(),
        })?;
        Ok(KeyId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let id = KeyId([0x0a, 0xbc, 0x01, 0xff]);
        assert_eq!(id.to_string(), "0abc01ff");
        assert_eq!("0abc01ff".parse::<KeyId>().unwrap(), id);
        assert_eq!("0x0ABC01FF".parse::<KeyId>().unwrap(), id);
        assert!("abc01ff".parse::<KeyId>().is_err());
        assert!("0abc01ff00".parse::<KeyId>().is_err());
        assert!("zzzzzzzz".parse::<KeyId>().is_err());
    }

    #[test]
    fn tail() {
        assert_eq!(
            KeyId::from_tail(&[1, 2, 3, 4, 5]),
            Some(KeyId([2, 3, 4, 5]))
        );
        assert_eq!(KeyId::from_tail(&[1, 2, 3]), None);
    }
}
