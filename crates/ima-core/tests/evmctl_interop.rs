//! Byte-identity with `evmctl ima_sign`, and mutual verification with
//! `evmctl ima_verify`, for every key size, key form, hash algorithm and
//! backend, on files of several sizes including an empty one. ECDSA
//! signatures are randomised: for EC keys, the header (algorithm, key id) is
//! evmctl's byte for byte and each side verifies the other's signature.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{
    can_write_security_xattrs, ec_key, getfattr, have, key, run, write_pattern, EcForm, Form,
};
use ima_core::{
    open_regular, providers, Certificate, EcCurve, HashAlgo, ImaHasher, ImaSigner, ImaXattr,
    KeyAlgorithm, KeyMaterial, KeySet, SignOptions, SignOutcome, VerifyStatus,
};

/// Empty, tiny, one page, exactly the read buffer, and several buffers plus a tail.
const FILE_SIZES: [usize; 5] = [0, 1, 4096, 256 * 1024, 600_001];

fn make_files(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for (i, &len) in FILE_SIZES.iter().enumerate() {
        write_pattern(&dir.join(format!("f{len}")), len, i as u8);
    }
}

/// One RSA key against evmctl: all algorithms, both backends, byte for byte.
fn check_key(bits: usize, form: Form) {
    let test = format!("evmctl interop rsa{bits} {form:?}");
    if !can_write_security_xattrs(&test) || !have("evmctl", &test) {
        return;
    }
    let k = key(bits, form);
    let km = KeyMaterial::load(&k.key, None).unwrap();
    assert_eq!(km.bits(), bits);
    let what = format!("rsa{bits} {form:?}");
    against_evmctl(
        &what,
        &k.key,
        &k.cert_der,
        &km,
        HashAlgo::SIGNING,
        |at, ours, evm| {
            assert_eq!(
                hex::encode(ours),
                hex::encode(evm),
                "{at}: security.ima differs from evmctl's"
            );
        },
    );
}

/// Signs files with evmctl and with each backend, for each of `algos`:
/// `compare(what, ours, evmctl's)` judges the two values, evmctl
/// `ima_verify` must accept ours and we must accept evmctl's.
fn against_evmctl(
    what: &str,
    key_file: &Path,
    cert_der: &Path,
    km: &KeyMaterial,
    algos: &[HashAlgo],
    compare: impl Fn(&str, &[u8], &[u8]),
) {
    let cert = Certificate::load(cert_der).unwrap();
    assert_eq!(km.key_id(), cert.key_id(), "default SKID is the key hash");
    for &algo in algos {
        let tmp = tempfile::tempdir().unwrap();
        let evm_dir = tmp.path().join("evmctl");
        make_files(&evm_dir);
        run(Command::new("evmctl")
            .args(["ima_sign", "-r", "--hashalgo", algo.name(), "--key"])
            .arg(key_file)
            .arg(&evm_dir));

        for provider in providers() {
            let what = format!("{what} {algo} {}", provider.name());
            let signer = ImaSigner::new(provider, km, algo, None).unwrap();
            let ours_dir = tmp.path().join(provider.name());
            make_files(&ours_dir);
            let mut keys = KeySet::new(provider);
            keys.add_certificate(&cert).unwrap();

            for &len in &FILE_SIZES {
                let name = format!("f{len}");
                let ours = ours_dir.join(&name);
                let theirs = evm_dir.join(&name);
                let outcome = signer.sign_path(&ours, &SignOptions::default()).unwrap();
                assert_eq!(outcome, SignOutcome::Signed, "{what} {name}");

                let evm_value =
                    getfattr(&theirs).unwrap_or_else(|| panic!("evmctl did not sign {name}"));
                let our_value = getfattr(&ours).unwrap();
                compare(&format!("{what} {name}"), &our_value, &evm_value);

                // evmctl accepts ours...
                let out = Command::new("evmctl")
                    .args(["ima_verify", "--key"])
                    .arg(cert_der)
                    .arg(&ours)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{what} {name}: evmctl ima_verify rejects ours: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // ...and we accept evmctl's.
                let report = keys
                    .verify_file(&open_regular(&theirs).unwrap(), true)
                    .unwrap();
                assert_eq!(report.status, VerifyStatus::Ok, "{what} {name}: {report:?}");
                assert_eq!(report.keyid, Some(signer.key_id()));
                assert_eq!(report.algo, Some(algo));
                assert!(report.md5.is_some());
            }
        }
    }
}

#[test]
fn rsa2048_pkcs1() {
    check_key(2048, Form::Pkcs1);
}

#[test]
fn rsa2048_pkcs8() {
    check_key(2048, Form::Pkcs8);
}

#[test]
fn rsa3072_pkcs1() {
    check_key(3072, Form::Pkcs1);
}

#[test]
fn rsa3072_pkcs8() {
    check_key(3072, Form::Pkcs8);
}

#[test]
fn rsa4096_pkcs1() {
    check_key(4096, Form::Pkcs1);
}

#[test]
fn rsa4096_pkcs8() {
    check_key(4096, Form::Pkcs8);
}

/// One EC key against evmctl: sha256, sha384 and sha512, both backends.
/// evmctl accepts our signatures and we accept evmctl's; the header
/// (algorithm, key id from the public key as evmctl computes it) is
/// evmctl's byte for byte; a signature is never the same twice.
fn check_ec_key(curve: EcCurve, form: EcForm) {
    let test = format!("evmctl interop {} {form:?}", curve.name());
    if !can_write_security_xattrs(&test) || !have("evmctl", &test) {
        return;
    }
    let k = ec_key(curve, form);
    let km = KeyMaterial::load(&k.key, None).unwrap();
    assert_eq!(km.algorithm(), KeyAlgorithm::Ecdsa(curve));
    assert_eq!(km.bits(), curve.bits());
    let cert = Certificate::load(&k.cert_der).unwrap();
    assert_eq!(&cert.public_key().unwrap(), km.public_key());
    let algos = [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512];
    let what = format!("{} {form:?}", curve.name());
    against_evmctl(&what, &k.key, &k.cert_der, &km, &algos, |at, ours, evm| {
        // type, version, algorithm and key id: evmctl's bytes.
        assert_eq!(
            hex::encode(&ours[..7]),
            hex::encode(&evm[..7]),
            "{at}: header differs from evmctl's"
        );
        assert_ne!(ours, evm, "{at}: ECDSA is randomised");
        let Ok(ImaXattr::Signature { signature, .. }) = ImaXattr::decode(ours) else {
            panic!("{at}: not a signature: {ours:02x?}")
        };
        // A DER SEQUENCE of two INTEGERs, at most 2 * (scalar + 1) + 8.
        assert_eq!(signature[0], 0x30, "{at}: not DER");
        assert!(signature.len() <= 2 * (curve.scalar_len() + 1) + 8);
    });
}

#[test]
fn ec_p256_sec1() {
    check_ec_key(EcCurve::P256, EcForm::Sec1);
}

#[test]
fn ec_p256_pkcs8() {
    check_ec_key(EcCurve::P256, EcForm::Pkcs8);
}

#[test]
fn ec_p384_sec1() {
    check_ec_key(EcCurve::P384, EcForm::Sec1);
}

#[test]
fn ec_p384_pkcs8() {
    check_ec_key(EcCurve::P384, EcForm::Pkcs8);
}

/// Digest-only values: byte-identical to `evmctl ima_hash` (sha1 in the old
/// `0x01` form, the others as `0x04 algo digest`) for every algorithm,
/// backend and file size; a matching one is kept, a signature is written
/// over, and each side's value verifies as `hashed` until the content changes.
#[test]
fn ima_hash_byte_identity() {
    let test = "evmctl ima_hash interop";
    if !can_write_security_xattrs(test) || !have("evmctl", test) {
        return;
    }
    let keys = KeySet::new(ima_core::default_provider());
    for &algo in HashAlgo::SIGNING {
        let tmp = tempfile::tempdir().unwrap();
        let evm_dir = tmp.path().join("evmctl");
        make_files(&evm_dir);
        for &len in &FILE_SIZES {
            run(Command::new("evmctl")
                .args(["ima_hash", "--hashalgo", algo.name()])
                .arg(evm_dir.join(format!("f{len}"))));
        }
        for provider in providers() {
            let what = format!("{algo} {}", provider.name());
            let hasher = ImaHasher::new(provider, algo).unwrap();
            let ours_dir = tmp.path().join(provider.name());
            make_files(&ours_dir);
            for &len in &FILE_SIZES {
                let name = format!("f{len}");
                let ours = ours_dir.join(&name);
                let keep = SignOptions {
                    keep_valid: true,
                    ..SignOptions::default()
                };
                assert_eq!(
                    hasher.hash_path(&ours, &keep).unwrap(),
                    SignOutcome::Hashed,
                    "{what} {name}"
                );
                let evm_value = getfattr(&evm_dir.join(&name)).unwrap();
                let our_value = getfattr(&ours).unwrap();
                assert_eq!(
                    hex::encode(&our_value),
                    hex::encode(&evm_value),
                    "{what} {name}: security.ima differs from evmctl ima_hash's"
                );
                assert_eq!(our_value[0], if algo == HashAlgo::Sha1 { 1 } else { 4 });
                assert_eq!(
                    hasher.hash_path(&ours, &keep).unwrap(),
                    SignOutcome::AlreadyValid,
                    "{what} {name}: a matching digest is kept"
                );
                let r = keys
                    .verify_file(&open_regular(&evm_dir.join(&name)).unwrap(), false)
                    .unwrap();
                assert_eq!(r.status, VerifyStatus::Hashed, "{what} {name}: {r:?}");
            }
            // A stale digest and a signature are written over; dry runs write nothing.
            let f = ours_dir.join("f1");
            fs::OpenOptions::new()
                .append(true)
                .open(&f)
                .and_then(|mut h| std::io::Write::write_all(&mut h, b"more"))
                .unwrap();
            let r = keys.verify_file(&open_regular(&f).unwrap(), false).unwrap();
            assert_eq!(r.status, VerifyStatus::BadHash, "{what}: {r:?}");
            let dry = SignOptions {
                keep_valid: true,
                dry_run: true,
                ..SignOptions::default()
            };
            assert_eq!(hasher.hash_path(&f, &dry).unwrap(), SignOutcome::WouldHash);
            let r = keys.verify_file(&open_regular(&f).unwrap(), false).unwrap();
            assert_eq!(r.status, VerifyStatus::BadHash, "{what}: the dry run wrote");
            let km = KeyMaterial::load(&key(2048, Form::Pkcs8).key, None).unwrap();
            ImaSigner::new(provider, &km, algo, None)
                .unwrap()
                .sign_path(&f, &SignOptions::default())
                .unwrap();
            let keep = SignOptions {
                keep_valid: true,
                ..SignOptions::default()
            };
            assert_eq!(hasher.hash_path(&f, &keep).unwrap(), SignOutcome::Hashed);
            let r = keys.verify_file(&open_regular(&f).unwrap(), false).unwrap();
            assert_eq!(r.status, VerifyStatus::Hashed, "{what}: {r:?}");
        }
    }
}

/// The tests above compare every backend compiled in with evmctl; the
/// all-features build (what tests/run-all and CI run) must have both, or
/// "byte-identical across backends" was never checked.
#[test]
fn all_features_build_has_both_backends() {
    let names: Vec<&str> = ima_core::providers().iter().map(|p| p.name()).collect();
    let both = cfg!(feature = "openssl") && cfg!(feature = "rustcrypto");
    if both {
        assert_eq!(names, ["openssl", "rustcrypto"]);
    }
    common::require(
        both,
        "both signing backends (cargo test --all-features)",
        "backend check",
    );
}
