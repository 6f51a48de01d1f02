//! KeySet: every verdict, on values written by evmctl and by us.

mod common;

use std::fs;
use std::process::Command;

use common::{can_write_security_xattrs, have, key, run, write_pattern, Form};
use ima_core::{
    default_provider, digest_bytes, open_regular, providers, write_ima_xattr, Certificate, Error,
    HashAlgo, ImaSigner, KeyMaterial, KeySet, SignOptions, VerifyStatus,
};

#[test]
fn every_status() {
    let test = "verify statuses";
    if !can_write_security_xattrs(test) || !have("evmctl", test) {
        return;
    }
    let k = key(2048, Form::Pkcs8);
    let km = KeyMaterial::load(&k.key, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    write_pattern(&p, 12_345, 9);

    for provider in providers() {
        let mut keys = KeySet::new(provider);
        assert!(keys.is_empty());
        let id = keys
            .add_certificate(&Certificate::load(&k.cert_pem).unwrap())
            .unwrap();
        assert_eq!(id, km.key_id());
        assert_eq!(keys.len(), 1);
        let check = |with_md5| {
            keys.verify_file(&open_regular(&p).unwrap(), with_md5)
                .unwrap()
        };

        // No value; MD5 still computed when asked.
        fs::write(&p, b"plain").unwrap();
        let _ = Command::new("setfattr")
            .args(["-x", "security.ima"])
            .arg(&p)
            .status();
        let r = check(true);
        assert_eq!(r.status, VerifyStatus::Unsigned);
        assert_eq!(
            hex::encode(r.md5.unwrap()),
            "ac7938d40cfc2307e2bf325d28e7884e"
        ); // printf plain | md5sum
        assert_eq!(check(false).md5, None);

        // Digests written by evmctl ima_hash: sha1 (0x01) and ima-ng (0x04).
        for algo in [HashAlgo::Sha1, HashAlgo::Sha256] {
            run(Command::new("evmctl")
                .args(["ima_hash", "--hashalgo", algo.name()])
                .arg(&p));
            let r = check(false);
            assert_eq!(r.status, VerifyStatus::Hashed, "{algo}");
            assert_eq!(r.algo, Some(algo));
            assert_eq!(
                r.digest.as_deref(),
                Some(&digest_bytes(provider, b"plain", algo).unwrap()[..])
            );
            assert!(r.detail.as_deref().unwrap().contains("matches"), "{r:?}");
        }
        fs::write(&p, b"plain, changed").unwrap(); // keeps the xattr
        let r = check(false);
        assert_eq!(r.status, VerifyStatus::BadHash);
        assert!(
            r.detail.as_deref().unwrap().contains("does not match"),
            "{r:?}"
        );

        // Our signature: ok; content changed: bad-signature.
        let signer = ImaSigner::new(provider, &km, HashAlgo::Sha384, None).unwrap();
        signer.sign_path(&p, &SignOptions::default()).unwrap();
        let r = check(true);
        assert_eq!(r.status, VerifyStatus::Ok, "{r:?}");
        assert_eq!(
            (r.algo, r.keyid),
            (Some(HashAlgo::Sha384), Some(km.key_id()))
        );
        assert_eq!(r.signature.as_ref().map(Vec::len), Some(256));
        assert!(r.md5.is_some());
        fs::write(&p, b"plain, changed again").unwrap();
        let r = check(false);
        assert_eq!(r.status, VerifyStatus::BadSignature, "{r:?}");
        assert!(r.detail.is_some());

        // Signed by a key not in the set.
        let other = KeyMaterial::load(&key(3072, Form::Pkcs8).key, None).unwrap();
        ImaSigner::new(provider, &other, HashAlgo::Sha256, None)
            .unwrap()
            .sign_path(&p, &SignOptions::default())
            .unwrap();
        let r = check(false);
        assert_eq!(r.status, VerifyStatus::UnknownKey, "{r:?}");
        assert_eq!(r.keyid, Some(other.key_id()));
        assert!(r
            .detail
            .as_deref()
            .unwrap()
            .contains(&other.key_id().to_string()));
        // ...until it is added (as a private key's public half).
        let mut more = KeySet::new(provider);
        more.add_key(&other).unwrap();
        assert_eq!(
            more.verify_file(&open_regular(&p).unwrap(), false)
                .unwrap()
                .status,
            VerifyStatus::Ok
        );
        // Both keys, ours expected: the other's valid signature is other-key.
        more.add_key(&km).unwrap();
        more.expect_key(km.key_id());
        let r = more.verify_file(&open_regular(&p).unwrap(), false).unwrap();
        assert_eq!(r.status, VerifyStatus::OtherKey, "{r:?}");
        assert_eq!(r.status.as_str(), "other-key");
        assert!(r
            .detail
            .as_deref()
            .unwrap()
            .contains(&other.key_id().to_string()));

        // Garbage: malformed, reported as "error", MD5 still there.
        write_ima_xattr(&open_regular(&p).unwrap(), &[0x03, 0x02, 0x04, 1, 2]).unwrap();
        let r = check(true);
        assert_eq!(r.status, VerifyStatus::Malformed);
        assert_eq!(r.status.as_str(), "error");
        assert!(r.detail.as_deref().unwrap().contains("header"), "{r:?}");
        assert!(r.md5.is_some());
    }
}

#[test]
fn verify_value_without_a_file() {
    let km = KeyMaterial::load(&key(2048, Form::Pkcs1).key, None).unwrap();
    let mut keys = KeySet::new(default_provider());
    keys.add_key(&km).unwrap();
    let signer = ImaSigner::new(default_provider(), &km, HashAlgo::Sha256, None).unwrap();
    let digest = digest_bytes(default_provider(), b"data", HashAlgo::Sha256).unwrap();
    let value = signer.sign_digest(&digest).unwrap().encode();

    let r = keys.verify_value(&value, |algo| {
        digest_bytes(default_provider(), b"data", algo)
    });
    assert_eq!(r.status, VerifyStatus::Ok);
    let r = keys.verify_value(&value, |algo| {
        digest_bytes(default_provider(), b"other", algo)
    });
    assert_eq!(r.status, VerifyStatus::BadSignature);
    // A hashing failure is an "error" report, not a panic.
    let r = keys.verify_value(&value, |_| Err(Error::FileChanged));
    assert_eq!(r.status, VerifyStatus::Malformed);
    assert!(r.detail.unwrap().contains("changed"));
    // A digest of the wrong length (a broken closure) is an error too.
    let r = keys.verify_value(&value, |_| Ok(vec![0; 3]));
    assert_eq!(r.status, VerifyStatus::Malformed);
    assert!(r.detail.unwrap().contains("not a sha256 digest"));
    // An MD5 signature (well formed, but nothing signs with MD5): an error
    // report, not an Err and not a panic.
    let mut md5_value = value.clone();
    md5_value[2] = HashAlgo::Md5.kernel_id();
    let r = keys.verify_value(&md5_value, |algo| {
        digest_bytes(default_provider(), b"data", algo)
    });
    assert_eq!(r.status, VerifyStatus::Malformed);
    assert!(r.detail.unwrap().contains("md5"));

    let names: Vec<_> = [
        VerifyStatus::Ok,
        VerifyStatus::Unsigned,
        VerifyStatus::Hashed,
        VerifyStatus::BadHash,
        VerifyStatus::BadSignature,
        VerifyStatus::UnknownKey,
        VerifyStatus::Malformed,
    ]
    .iter()
    .map(VerifyStatus::as_str)
    .collect();
    assert_eq!(
        names,
        [
            "ok",
            "unsigned",
            "hashed",
            "bad-hash",
            "bad-signature",
            "unknown-key",
            "error"
        ]
    );
}

/// Signatures that are not RSA PKCS#1 v1.5 of this key are refused by both
/// backends, and both accept each other's.
#[test]
fn backends_verify_each_other_and_refuse_forgeries() {
    let km = KeyMaterial::load(&key(3072, Form::Pkcs1).key, None).unwrap();
    let digest = digest_bytes(default_provider(), b"x", HashAlgo::Sha224).unwrap();
    for a in providers() {
        let sig = a
            .signer(&km)
            .unwrap()
            .sign_digest(HashAlgo::Sha224, &digest)
            .unwrap();
        assert_eq!(sig.len(), 384);
        for b in providers() {
            let v = b.verifier(km.public_key()).unwrap();
            assert!(v.verify_digest(HashAlgo::Sha224, &digest, &sig).unwrap());
            // A flipped bit, a truncated or empty signature, another digest: refused.
            let mut flipped = sig.clone();
            flipped[100] ^= 1;
            assert!(!v
                .verify_digest(HashAlgo::Sha224, &digest, &flipped)
                .unwrap());
            assert!(!v
                .verify_digest(HashAlgo::Sha224, &digest, &sig[1..])
                .unwrap());
            assert!(!v.verify_digest(HashAlgo::Sha224, &digest, &[]).unwrap());
            let other_digest = digest_bytes(default_provider(), b"y", HashAlgo::Sha224).unwrap();
            assert!(!v
                .verify_digest(HashAlgo::Sha224, &other_digest, &sig)
                .unwrap());
        }
    }
}
