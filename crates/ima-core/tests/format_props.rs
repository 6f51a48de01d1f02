//! Property tests for the security.ima codec: arbitrary bytes never panic,
//! and every value encodes and decodes to itself.

use ima_core::{FormatError, HashAlgo, ImaXattr, KeyId};
use proptest::prelude::*;

fn algo() -> impl Strategy<Value = HashAlgo> {
    prop::sample::select(HashAlgo::ALL.to_vec())
}

fn xattr() -> impl Strategy<Value = ImaXattr> {
    let digest = algo().prop_flat_map(|a| {
        prop::collection::vec(any::<u8>(), a.digest_len())
            .prop_map(move |d| ImaXattr::Digest { algo: a, digest: d })
    });
    let sig = (
        algo(),
        any::<[u8; 4]>(),
        prop::collection::vec(any::<u8>(), 1..1100),
    )
        .prop_map(|(a, k, s)| ImaXattr::Signature {
            algo: a,
            keyid: KeyId(k),
            signature: s,
        });
    prop_oneof![digest, sig]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = ImaXattr::decode(&bytes);
    }

    /// Bytes that start like a real header reach the deeper checks.
    #[test]
    fn decode_never_panics_on_plausible_headers(
        kind in prop::sample::select(vec![1u8, 3, 4]),
        version in 0u8..4,
        algo in 0u8..10,
        rest in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut v = vec![kind, version, algo];
        v.extend(rest);
        let _ = ImaXattr::decode(&v);
    }

    #[test]
    fn round_trip(x in xattr()) {
        let bytes = x.encode();
        prop_assert_eq!(ImaXattr::decode(&bytes), Ok(x.clone()));
        prop_assert_eq!(ImaXattr::decode(&bytes).unwrap().algo(), x.algo());
    }

    /// Cutting a valid value short, or adding a byte, is always an error.
    #[test]
    fn truncation_and_extension_are_errors(x in xattr(), cut in any::<prop::sample::Index>(), extra in any::<u8>()) {
        let bytes = x.encode();
        let n = cut.index(bytes.len());
        prop_assert!(ImaXattr::decode(&bytes[..n]).is_err());
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert!(ImaXattr::decode(&longer).is_err());
    }

    /// The length field is big-endian: it reads as the signature length.
    #[test]
    fn signature_length_is_big_endian(len in 1usize..2000) {
        let x = ImaXattr::Signature { algo: HashAlgo::Sha256, keyid: KeyId([0; 4]), signature: vec![0xab; len] };
        let bytes = x.encode();
        prop_assert_eq!(u16::from_be_bytes([bytes[7], bytes[8]]) as usize, len);
    }
}

#[test]
fn errors_say_which() {
    let msg = ImaXattr::decode(&[0x03, 0x01]).unwrap_err().to_string();
    assert!(msg.contains("version 1"), "{msg}");
    assert_eq!(ImaXattr::decode(&[]).unwrap_err(), FormatError::Empty);
}
