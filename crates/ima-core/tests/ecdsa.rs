//! ECDSA keys (NIST P-256, P-384): loading SEC1 and PKCS#8, key ids,
//! certificates, signatures across backends, and malformed input that must
//! be an error or a failed verification, never a panic. (evmctl interop is in
//! evmctl_interop.rs, the kernel in tests/kernel.)

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{ec_key, key, run, EcForm, Form};
use ima_core::{
    providers, Certificate, EcCurve, Error, HashAlgo, ImaSigner, ImaXattr, KeyAlgorithm, KeyId,
    KeyMaterial, KeySet, PublicKey, VerifyStatus,
};
use proptest::prelude::*;

fn openssl(args: &[&str], out: &Path) {
    run(Command::new("openssl").args(args).arg(out));
}

/// A digest of `algo`'s length (its content does not matter to ECDSA).
fn digest(algo: HashAlgo, seed: u8) -> Vec<u8> {
    (0..algo.digest_len() as u8)
        .map(|i| i.wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn sec1_and_pkcs8_forms_of_one_key_load_the_same() {
    for &curve in EcCurve::ALL {
        let k = ec_key(curve, EcForm::Sec1);
        let pem = fs::read_to_string(&k.key).unwrap();
        // What `openssl ecparam -genkey` writes: parameters, then the key.
        assert!(pem.contains("BEGIN EC PARAMETERS"), "{pem}");
        assert!(pem.contains("BEGIN EC PRIVATE KEY"), "{pem}");
        let sec1 = KeyMaterial::load(&k.key, None).unwrap();
        assert_eq!(sec1.algorithm(), KeyAlgorithm::Ecdsa(curve));
        assert_eq!(sec1.bits(), curve.bits());
        assert_eq!(sec1.private_key_bytes().len(), curve.scalar_len());
        assert_eq!(
            sec1.public_key().to_string(),
            format!("ECDSA {}", curve.name())
        );

        let tmp = tempfile::tempdir().unwrap();
        let pkcs8 = tmp.path().join("pkcs8.pem");
        run(Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&k.key)
            .arg("-out")
            .arg(&pkcs8));
        assert!(fs::read_to_string(&pkcs8)
            .unwrap()
            .contains("BEGIN PRIVATE KEY"));
        let p8 = KeyMaterial::load(&pkcs8, None).unwrap();
        assert_eq!(p8.private_key_bytes(), sec1.private_key_bytes());
        assert_eq!(p8.public_key(), sec1.public_key());

        // The certificate holds the same public key; its default SKID is
        // evmctl's public-key hash.
        let cert = Certificate::load(&k.cert_pem).unwrap();
        assert_eq!(&cert.public_key().unwrap(), sec1.public_key());
        assert_eq!(cert.key_id(), sec1.public_key().key_id());
        let with_cert = KeyMaterial::load(&k.key, Some(&k.cert_der)).unwrap();
        assert_eq!(with_cert.key_id(), cert.key_id());
    }
}

/// The public key id is SHA-1 over the uncompressed point, as evmctl's
/// calc_keyid_v2 hashes the subjectPublicKey contents: the last 65 (97)
/// bytes of the DER SubjectPublicKeyInfo `openssl pkey -pubout` writes.
#[test]
fn public_key_id_is_sha1_of_the_point() {
    for &curve in EcCurve::ALL {
        let k = ec_key(curve, EcForm::Pkcs8);
        let km = KeyMaterial::load(&k.key, None).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let spki = tmp.path().join("pub.der");
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&k.key)
            .arg("-out")
            .arg(&spki));
        let der = fs::read(&spki).unwrap();
        let point = &der[der.len() - (1 + 2 * curve.scalar_len())..];
        assert_eq!(km.public_key().key_bytes(), point);
        let sha1 = run(Command::new("openssl").args(["sha1", "-binary"]).arg({
            let p = tmp.path().join("point");
            fs::write(&p, point).unwrap();
            p
        }))
        .stdout;
        assert_eq!(km.key_id(), KeyId::from_tail(&sha1).unwrap());
    }
}

/// With a certificate whose SKID is not the key hash, the key id is the
/// SKID's tail, as for RSA (and as the kernel looks it up).
#[test]
fn key_id_comes_from_the_certificate_skid() {
    let k = ec_key(EcCurve::P256, EcForm::Sec1);
    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("skid.pem");
    run(Command::new("openssl")
        .args(["req", "-x509", "-new", "-days", "7", "-subj", "/CN=skid"])
        .args([
            "-addext",
            "subjectKeyIdentifier=0102030405060708090a0b0c0d0e0f10a1b2c3d4",
        ])
        .arg("-key")
        .arg(&k.key)
        .arg("-out")
        .arg(&cert));
    let km = KeyMaterial::load(&k.key, Some(&cert)).unwrap();
    assert_eq!(km.key_id(), KeyId([0xa1, 0xb2, 0xc3, 0xd4]));
    assert_ne!(km.public_key().key_id(), km.key_id());
    for p in providers() {
        let signer = ImaSigner::new(p, &km, HashAlgo::Sha256, None).unwrap();
        assert_eq!(signer.key_id(), KeyId([0xa1, 0xb2, 0xc3, 0xd4]));
    }
}

#[test]
fn certificate_of_another_key_or_curve_is_refused() {
    let p256 = ec_key(EcCurve::P256, EcForm::Sec1);
    let other_p256 = ec_key(EcCurve::P256, EcForm::Pkcs8);
    let p384 = ec_key(EcCurve::P384, EcForm::Sec1);
    let rsa = key(2048, Form::Pkcs1);
    for cert in [&other_p256.cert_pem, &p384.cert_pem, &rsa.cert_pem] {
        let err = KeyMaterial::load(&p256.key, Some(cert)).unwrap_err();
        assert!(
            matches!(&err, Error::CertificateMismatch { key, .. } if key == &p256.key),
            "{cert:?}: {err:?}"
        );
    }
    // And the other way round: an EC certificate for an RSA key.
    let err = KeyMaterial::load(&rsa.key, Some(&p256.cert_der)).unwrap_err();
    assert!(matches!(err, Error::CertificateMismatch { .. }), "{err:?}");
}

/// Every backend verifies every backend's signatures; a signature by a key
/// on the other curve, or by another key on the same curve, under the same
/// key id, does not verify (BadSignature, what the kernel denies as
/// invalid-signature).
#[test]
fn signatures_cross_backends_and_wrong_key_or_curve_fails() {
    let keys: Vec<KeyMaterial> = [
        ec_key(EcCurve::P256, EcForm::Sec1),
        ec_key(EcCurve::P256, EcForm::Pkcs8),
        ec_key(EcCurve::P384, EcForm::Sec1),
    ]
    .iter()
    .map(|k| KeyMaterial::load(&k.key, None).unwrap())
    .collect();
    let (p256, other_p256, p384) = (&keys[0], &keys[1], &keys[2]);
    for algo in [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512] {
        let d = digest(algo, 7);
        for signing in providers() {
            for (key, wrong) in [(p256, other_p256), (p256, p384), (p384, p256)] {
                let what = format!("{} signs {algo} with {}", signing.name(), key.public_key());
                // Claims the wrong key's id: the lookup finds that key.
                let forged = ImaSigner::new(signing, key, algo, Some(wrong.key_id()))
                    .unwrap()
                    .sign_digest(&d)
                    .unwrap()
                    .encode();
                let value = ImaSigner::new(signing, key, algo, None)
                    .unwrap()
                    .sign_digest(&d)
                    .unwrap()
                    .encode();
                for verifying in providers() {
                    let mut set = KeySet::new(verifying);
                    set.add_key(key).unwrap();
                    set.add_key(wrong).unwrap();
                    let ok = set.verify_value(&value, |_| Ok(d.clone()));
                    assert_eq!(ok.status, VerifyStatus::Ok, "{what}, {}", verifying.name());
                    let bad = set.verify_value(&forged, |_| Ok(d.clone()));
                    assert_eq!(
                        bad.status,
                        VerifyStatus::BadSignature,
                        "{what} as {}, {}: {bad:?}",
                        wrong.public_key(),
                        verifying.name()
                    );
                    let changed = set.verify_value(&value, |_| Ok(digest(algo, 8)));
                    assert_eq!(changed.status, VerifyStatus::BadSignature, "{what}");
                }
            }
        }
    }
}

/// ECDSA signatures differ each time, so "already signed" must mean "a
/// signature of ours that verifies", not "the same bytes": a second run
/// (`sign --all`, a reinstall) keeps it, in either backend.
#[test]
fn existing_ecdsa_signature_is_kept_by_keep_valid() {
    if !common::can_write_security_xattrs("keep_valid with ECDSA") {
        return;
    }
    let km = KeyMaterial::load(&ec_key(EcCurve::P384, EcForm::Sec1).key, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    common::write_pattern(&file, 10_000, 5);
    let opts = ima_core::SignOptions {
        keep_valid: true,
        ..Default::default()
    };
    let all = providers();
    let first = ImaSigner::new(all[0], &km, HashAlgo::Sha384, None).unwrap();
    assert_eq!(
        first.sign_path(&file, &opts).unwrap(),
        ima_core::SignOutcome::Signed
    );
    let value = common::getfattr(&file).unwrap();
    for p in all {
        let again = ImaSigner::new(p, &km, HashAlgo::Sha384, None).unwrap();
        assert_eq!(
            again.sign_path(&file, &opts).unwrap(),
            ima_core::SignOutcome::AlreadyValid,
            "{}",
            p.name()
        );
        assert_eq!(common::getfattr(&file).unwrap(), value, "{}", p.name());
    }
}

/// A key whose scalar does not belong to the public key stored with it
/// would sign what its certificate never verifies: both backends refuse it.
#[cfg(feature = "openssl")]
#[test]
fn mismatched_private_and_public_key_is_refused() {
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let a = EcKey::generate(&group).unwrap();
    let b = EcKey::generate(&group).unwrap();
    let scalar = BigNum::from_slice(&a.private_key().to_vec()).unwrap();
    let mixed = EcKey::from_private_components(&group, &scalar, b.public_key()).unwrap();
    let pem = mixed.private_key_to_pem().unwrap();
    let km = KeyMaterial::from_pem(&pem, Path::new("mixed.pem"), None).unwrap();
    for p in providers() {
        let err = ImaSigner::new(p, &km, HashAlgo::Sha256, None).unwrap_err();
        assert!(
            err.to_string().contains("does not match the public key"),
            "{}: {err}",
            p.name()
        );
    }
}

#[test]
fn ec_key_without_curve_or_public_key_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // `-param_enc explicit` writes the curve's parameters instead of its name.
    let explicit = tmp.path().join("explicit.pem");
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-param_enc",
            "explicit",
            "-out",
        ],
        &explicit,
    );
    let err = KeyMaterial::load(&explicit, None).unwrap_err();
    assert!(matches!(err, Error::KeyParse { .. }), "{err:?}");
    assert!(err.to_string().contains("curve"), "{err}");

    // `-no_public` leaves the public key out of the SEC1 structure.
    let k = ec_key(EcCurve::P384, EcForm::Sec1);
    let no_public = tmp.path().join("nopub.pem");
    run(Command::new("openssl")
        .args(["ec", "-no_public", "-in"])
        .arg(&k.key)
        .arg("-out")
        .arg(&no_public));
    let err = KeyMaterial::load(&no_public, None).unwrap_err();
    assert!(matches!(err, Error::KeyParse { .. }), "{err:?}");
    assert!(err.to_string().contains("no public key"), "{err}");
}

#[test]
fn compressed_or_off_curve_points_are_refused() {
    let k = KeyMaterial::load(&ec_key(EcCurve::P256, EcForm::Sec1).key, None).unwrap();
    let point = k.public_key().key_bytes();
    // Compressed form: 0x02/0x03 and X only; the kernel takes only 0x04.
    let mut compressed = vec![0x02 | (point[64] & 1)];
    compressed.extend_from_slice(&point[1..33]);
    let err = PublicKey::ec_from_sec1_point(EcCurve::P256, &compressed).unwrap_err();
    assert!(err.to_string().contains("uncompressed"), "{err}");
    // The right length for P-384 is the wrong one for P-256.
    assert!(PublicKey::ec_from_sec1_point(EcCurve::P384, point).is_err());
    // Y + 1: well formed, but not on the curve.
    let mut off = point.to_vec();
    off[64] ^= 1;
    let off = PublicKey::ec_from_sec1_point(EcCurve::P256, &off).unwrap();
    for p in providers() {
        assert!(
            p.verifier(&off).is_err(),
            "{} took an off-curve point",
            p.name()
        );
    }
}

/// A PEM `EC PRIVATE KEY` block around `der`.
fn sec1_pem(der: &[u8]) -> Vec<u8> {
    der::pem::encode_string("EC PRIVATE KEY", der::pem::LineEnding::LF, der)
        .unwrap()
        .into_bytes()
}

/// The DER inside the first `EC PRIVATE KEY` block of a fixture.
fn sec1_der(curve: EcCurve) -> Vec<u8> {
    let pem = fs::read_to_string(ec_key(curve, EcForm::Sec1).key).unwrap();
    let start = pem.find("-----BEGIN EC PRIVATE KEY-----").unwrap();
    der::pem::decode_vec(&pem.as_bytes()[start..]).unwrap().1
}

fn curve() -> impl Strategy<Value = EcCurve> {
    prop::sample::select(EcCurve::ALL.to_vec())
}

proptest! {
    // Each case signs and verifies with both backends: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any signature bytes (DER or not) under an EC key id: a failed
    /// verification, never an error or a panic, in every backend.
    #[test]
    fn arbitrary_ecdsa_signature_bytes_never_verify(
        curve in curve(),
        sig in prop::collection::vec(any::<u8>(), 1..160),
    ) {
        let km = KeyMaterial::load(&ec_key(curve, EcForm::Sec1).key, None).unwrap();
        let d = digest(HashAlgo::Sha256, 1);
        let value = ImaXattr::Signature { algo: HashAlgo::Sha256, keyid: km.key_id(), signature: sig.clone() };
        for p in providers() {
            let v = p.verifier(km.public_key()).unwrap();
            prop_assert!(!v.verify_digest(HashAlgo::Sha256, &d, &sig).unwrap());
            // Through the whole security.ima path: a bad signature by a known key.
            let mut set = KeySet::new(p);
            set.add_key(&km).unwrap();
            let report = set.verify_value(&value.encode(), |_| Ok(d.clone()));
            prop_assert_eq!(report.status, VerifyStatus::BadSignature);
        }
    }

    /// A valid signature with one byte changed, cut short or extended does
    /// not verify (r and s or their DER framing change), and never panics.
    #[test]
    fn damaged_ecdsa_signatures_never_verify(
        curve in curve(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<prop::sample::Index>(),
        extra in any::<u8>(),
    ) {
        let km = KeyMaterial::load(&ec_key(curve, EcForm::Pkcs8).key, None).unwrap();
        let d = digest(HashAlgo::Sha384, 2);
        for p in providers() {
            let signer = ImaSigner::new(p, &km, HashAlgo::Sha384, None).unwrap();
            let ImaXattr::Signature { signature, .. } = signer.sign_digest(&d).unwrap() else {
                unreachable!("a signer makes signatures")
            };
            let mut flipped = signature.clone();
            let i = at.index(flipped.len());
            flipped[i] ^= xor;
            let short = &signature[..cut.index(signature.len())];
            let mut long = signature.clone();
            long.push(extra);
            for q in providers() {
                let v = q.verifier(km.public_key()).unwrap();
                prop_assert!(v.verify_digest(HashAlgo::Sha384, &d, &signature).unwrap());
                for bad in [&flipped[..], short, &long[..]] {
                    prop_assert!(!v.verify_digest(HashAlgo::Sha384, &d, bad).unwrap(),
                        "{} signed, {} verified {:02x?}", p.name(), q.name(), bad);
                }
            }
        }
    }

    /// An `EC PRIVATE KEY` with a byte changed or cut short: an error, or a
    /// key that both backends either refuse or sign with verifiably (a
    /// change in the scalar makes a key whose public half no longer
    /// matches: refused). Never a panic.
    #[test]
    fn damaged_sec1_keys_error_or_stay_consistent(
        curve in curve(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let der = sec1_der(curve);
        let mut flipped = der.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= xor;
        let short = der[..cut.index(der.len())].to_vec();
        for bad in [flipped, short] {
            let Ok(km) = KeyMaterial::from_pem(&sec1_pem(&bad), Path::new("k.pem"), None) else {
                continue;
            };
            let d = digest(HashAlgo::Sha256, 3);
            for p in providers() {
                if let Ok(signer) = ImaSigner::new(p, &km, HashAlgo::Sha256, None) {
                    let value = signer.sign_digest(&d).unwrap().encode();
                    let mut set = KeySet::new(p);
                    set.add_key(&km).unwrap();
                    prop_assert_eq!(set.verify_value(&value, |_| Ok(d.clone())).status, VerifyStatus::Ok);
                }
            }
        }
    }

    /// Random bytes as an EC key, and random points as a public key: errors.
    #[test]
    fn random_ec_keys_and_points_are_errors(
        curve in curve(),
        der in prop::collection::vec(any::<u8>(), 0..200),
        tail in prop::collection::vec(any::<u8>(), 64..=96),
    ) {
        prop_assert!(KeyMaterial::from_pem(&sec1_pem(&der), Path::new("k.pem"), None).is_err());
        let mut point = vec![0x04];
        point.extend_from_slice(&tail);
        if let Ok(key) = PublicKey::ec_from_sec1_point(curve, &point) {
            for p in providers() {
                // A random point is almost never on the curve.
                let _ = p.verifier(&key);
            }
        }
    }
}
