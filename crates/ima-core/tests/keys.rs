//! Loading keys and certificates, and each way it can go wrong.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{key, run, Form};
use ima_core::{Certificate, Error, HashAlgo, KeyMaterial};

fn openssl(args: &[&str], out: &Path) {
    run(Command::new("openssl").args(args).arg(out));
}

#[test]
fn loads_both_forms_and_reports_bits() {
    for k in common::keys() {
        let km = KeyMaterial::load(&k.key, None).unwrap();
        assert_eq!(km.bits(), k.bits);
        assert!(km.certificate().is_none());
        let pem = fs::read_to_string(&k.key).unwrap();
        let label = match k.form {
            Form::Pkcs1 => "BEGIN RSA PRIVATE KEY",
            Form::Pkcs8 => "BEGIN PRIVATE KEY",
        };
        assert!(pem.contains(label), "{:?} should be {label}", k.key);
        // The public half is what the certificate holds.
        let cert = Certificate::load(&k.cert_pem).unwrap();
        assert_eq!(&cert.public_key().unwrap(), km.public_key());
        assert_eq!(km.algorithm(), ima_core::KeyAlgorithm::Rsa);
        // PKCS#1 and PKCS#8 forms of one key are the same private key.
        let tmp = tempfile::tempdir().unwrap();
        let other = tmp.path().join("other.pem");
        let conv: &[&str] = match k.form {
            Form::Pkcs1 => &["pkey", "-in"],
            Form::Pkcs8 => &["rsa", "-traditional", "-in"],
        };
        run(Command::new("openssl")
            .args(conv)
            .arg(&k.key)
            .arg("-out")
            .arg(&other));
        let km2 = KeyMaterial::load(&other, None).unwrap();
        assert_eq!(km2.private_key_bytes(), km.private_key_bytes());
        assert_eq!(km2.key_id(), km.key_id());
    }
}

#[test]
fn key_id_is_evmctls_public_key_hash() {
    // evmctl: last 4 bytes of SHA-1 over the PKCS#1 RSAPublicKey; the same
    // bytes as `openssl rsa -pubout -RSAPublicKey_out -outform DER`.
    let k = key(2048, Form::Pkcs8);
    let km = KeyMaterial::load(&k.key, None).unwrap();
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "openssl rsa -in '{}' -RSAPublicKey_out -outform DER 2>/dev/null | openssl sha1 -binary | tail -c 4 | od -An -tx1 | tr -d ' \\n'",
        k.key.display()
    )));
    assert_eq!(
        km.key_id().to_string(),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn certificate_details() {
    let k = key(3072, Form::Pkcs1);
    let pem = Certificate::load(&k.cert_pem).unwrap();
    let der = Certificate::load(&k.cert_der).unwrap();
    assert_eq!(pem.der(), der.der());
    assert_eq!(pem.der(), fs::read(&k.cert_der).unwrap());
    assert_eq!(pem.subject(), "CN=ima-core test rsa3072-pkcs1");
    assert!(!pem.is_ca(), "made with basicConstraints=critical,CA:FALSE");
    let ku = pem.key_usage().unwrap();
    assert!(ku.digital_signature && !ku.key_cert_sign && !ku.crl_sign);
    let left = pem
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left.as_secs() > 3000 * 86400, "made with -days 3650");

    // PEM after `openssl x509 -text` output, as some distributions ship certificates.
    let tmp = tempfile::tempdir().unwrap();
    let texty = tmp.path().join("text.pem");
    run(Command::new("openssl")
        .args(["x509", "-text", "-in"])
        .arg(&k.cert_pem)
        .arg("-out")
        .arg(&texty));
    assert!(fs::read_to_string(&texty)
        .unwrap()
        .starts_with("Certificate:"));
    assert_eq!(Certificate::load(&texty).unwrap().der(), der.der());

    // A CA certificate.
    let ca = tmp.path().join("ca.pem");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-new",
            "-days",
            "2",
            "-subj",
            "/CN=ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=keyCertSign,cRLSign",
            "-key",
        ])
        .arg(&k.key)
        .arg("-out")
        .arg(&ca));
    let ca = Certificate::load(&ca).unwrap();
    assert!(ca.is_ca());
    let ku = ca.key_usage().unwrap();
    assert!(ku.key_cert_sign && ku.crl_sign && !ku.digital_signature);
}

#[test]
fn certificate_appended_to_the_key_file() {
    let k = key(2048, Form::Pkcs1);
    let tmp = tempfile::tempdir().unwrap();
    let both = tmp.path().join("key+cert.pem");
    let text = fs::read_to_string(&k.key).unwrap() + &fs::read_to_string(&k.cert_pem).unwrap();
    fs::write(&both, text).unwrap();
    let km = KeyMaterial::load(&both, None).unwrap();
    let cert = km.certificate().expect("appended certificate is taken");
    assert_eq!(cert.der(), fs::read(&k.cert_der).unwrap());
    assert_eq!(km.key_id(), cert.key_id());

    // An appended certificate of another key is refused.
    let other = key(3072, Form::Pkcs1);
    let text = fs::read_to_string(&k.key).unwrap() + &fs::read_to_string(&other.cert_pem).unwrap();
    fs::write(&both, text).unwrap();
    let err = KeyMaterial::load(&both, None).unwrap_err();
    assert!(matches!(err, Error::CertificateMismatch { .. }), "{err}");
    // ...unless a certificate is given explicitly, which wins.
    let km = KeyMaterial::load(&both, Some(&k.cert_der)).unwrap();
    assert_eq!(
        km.certificate().unwrap().der(),
        fs::read(&k.cert_der).unwrap()
    );
}

#[test]
fn certificate_of_another_key_is_refused() {
    let k = key(2048, Form::Pkcs8);
    let other = key(2048, Form::Pkcs1);
    let err = KeyMaterial::load(&k.key, Some(&other.cert_der)).unwrap_err();
    match &err {
        Error::CertificateMismatch { cert, key } => {
            assert!(cert.contains("rsa2048-pkcs1.crt.der"), "{cert}");
            assert_eq!(key, &k.key);
        }
        e => panic!("want CertificateMismatch, got {e:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("never verify"), "{msg}");
}

#[test]
fn missing_and_unreadable_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.pem");
    let err = KeyMaterial::load(&missing, None).unwrap_err();
    match &err {
        Error::KeyRead { path, source } => {
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        e => panic!("want KeyRead, got {e:?}"),
    }
    assert!(err.to_string().contains("nope.pem"), "{err}");

    // A path through a regular file: ENOTDIR, unreadable even for root.
    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = KeyMaterial::load(&file.join("key.pem"), None).unwrap_err();
    assert!(matches!(err, Error::KeyRead { .. }), "{err:?}");

    // A directory.
    let err = KeyMaterial::load(tmp.path(), None).unwrap_err();
    assert!(
        matches!(&err, Error::KeyParse { reason, .. } if reason.contains("directory")),
        "{err:?}"
    );

    // A missing certificate.
    let k = key(2048, Form::Pkcs1);
    let err = KeyMaterial::load(&k.key, Some(&missing)).unwrap_err();
    assert!(matches!(err, Error::CertRead { .. }), "{err:?}");

    // Read as a PIN file is (issue 22 row 2): a symlink is refused, a FIFO
    // refused at once instead of blocking.
    let link = tmp.path().join("link.pem");
    std::os::unix::fs::symlink(&k.key, &link).unwrap();
    let err = KeyMaterial::load(&link, None).unwrap_err();
    assert!(
        matches!(&err, Error::KeyParse { reason, .. } if reason.contains("symbolic link")),
        "{err:?}"
    );
    let fifo = tmp.path().join("fifo.pem");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = KeyMaterial::load(&fifo, None).unwrap_err();
    assert!(
        matches!(&err, Error::KeyParse { reason, .. } if reason.contains("FIFO")),
        "{err:?}"
    );
}

#[test]
fn files_that_are_not_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        ("text", b"hello\n", "no PEM block"),
        ("binary", &[0x30, 0x82, 0xff, 0x00, 0xfe], "not PEM text"),
        ("empty", b"", "no PEM block"),
        (
            "bad-base64",
            b"-----BEGIN RSA PRIVATE KEY-----\n!!!!\n-----END RSA PRIVATE KEY-----\n",
            "bad PEM",
        ),
        (
            "openssh",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "ssh-keygen",
        ),
        (
            "not-rsa-der",
            b"-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n",
            "RSAPrivateKey",
        ),
    ];
    for (name, content, want) in cases {
        let p = tmp.path().join(name);
        fs::write(&p, content).unwrap();
        match KeyMaterial::load(&p, None).unwrap_err() {
            Error::KeyParse { path, reason } => {
                assert_eq!(path, p);
                assert!(reason.contains(want), "{name}: {reason}");
            }
            e => panic!("{name}: want KeyParse, got {e:?}"),
        }
    }
    // A certificate is not a key.
    let k = key(2048, Form::Pkcs1);
    match KeyMaterial::load(&k.cert_pem, None).unwrap_err() {
        Error::KeyParse { reason, .. } => assert!(reason.contains("found CERTIFICATE"), "{reason}"),
        e => panic!("want KeyParse, got {e:?}"),
    }
    // And a key is not a certificate.
    let err = Certificate::load(&k.key).unwrap_err();
    assert!(
        matches!(&err, Error::CertParse { path, .. } if path == &k.key),
        "{err:?}"
    );
    let garbage = tmp.path().join("garbage.der");
    fs::write(&garbage, [0x30, 0x03, 0x02, 0x01, 0x00]).unwrap();
    let err = Certificate::load(&garbage).unwrap_err();
    assert!(matches!(err, Error::CertParse { .. }), "{err:?}");
}

#[test]
fn encrypted_keys_say_how_to_decrypt() {
    let tmp = tempfile::tempdir().unwrap();
    let pkcs8 = tmp.path().join("enc8.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-aes256",
            "-pass",
            "pass:secret",
            "-out",
        ],
        &pkcs8,
    );
    assert!(fs::read_to_string(&pkcs8)
        .unwrap()
        .contains("ENCRYPTED PRIVATE KEY"));
    let legacy = tmp.path().join("enc1.pem");
    openssl(
        &[
            "genrsa",
            "-traditional",
            "-aes128",
            "-passout",
            "pass:secret",
            "-out",
        ],
        &legacy,
    );
    assert!(fs::read_to_string(&legacy)
        .unwrap()
        .contains("Proc-Type: 4,ENCRYPTED"));
    for p in [pkcs8, legacy] {
        let err = KeyMaterial::load(&p, None).unwrap_err();
        assert!(
            matches!(&err, Error::KeyEncrypted { path } if path == &p),
            "{err:?}"
        );
        assert!(err.to_string().contains("openssl pkey -in"), "{err}");
    }
}

/// Keys the kernel's IMA cannot verify: Ed25519, and EC keys on a curve
/// other than P-256 or P-384 (secp256k1, in SEC1 and in PKCS#8).
#[test]
fn unsupported_keys_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let k1_pkcs8 = tmp.path().join("k1-pkcs8.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
            "-out",
        ],
        &k1_pkcs8,
    );
    let ed = tmp.path().join("ed25519.pem");
    openssl(&["genpkey", "-algorithm", "ED25519", "-out"], &ed);
    let k1_sec1 = tmp.path().join("k1-sec1.pem");
    openssl(
        &["ecparam", "-name", "secp256k1", "-genkey", "-noout", "-out"],
        &k1_sec1,
    );
    assert!(fs::read_to_string(&k1_sec1)
        .unwrap()
        .contains("EC PRIVATE KEY"));
    for (p, what) in [
        (k1_pkcs8, "1.3.132.0.10"),
        (ed, "1.3.101.112"),
        (k1_sec1, "1.3.132.0.10"),
    ] {
        let err = KeyMaterial::load(&p, None).unwrap_err();
        assert!(
            matches!(&err, Error::KeyUnsupported { path, what: w } if path == &p && w.contains(what)),
            "{p:?}: {err:?}"
        );
        assert!(err.to_string().contains("P-256 or P-384"), "{err}");
    }
}

#[test]
fn unknown_hash_and_backend_names() {
    let err = "sha3-256".parse::<HashAlgo>().unwrap_err();
    assert!(matches!(&err, Error::UnknownHashAlgo { name } if name == "sha3-256"));
    assert!(err.to_string().contains("sha256"), "{err}");
    let err = ima_core::provider_by_name("wolfssl").unwrap_err();
    match &err {
        Error::UnknownBackend { name, available } => {
            assert_eq!(name, "wolfssl");
            let names: Vec<_> = ima_core::providers().iter().map(|p| p.name()).collect();
            assert_eq!(available, &names.join(", "));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn md5_is_not_a_signing_algorithm() {
    let km = KeyMaterial::load(&key(2048, Form::Pkcs1).key, None).unwrap();
    for p in ima_core::providers() {
        let err = ima_core::ImaSigner::new(p, &km, HashAlgo::Md5, None).unwrap_err();
        assert!(matches!(err, Error::Crypto(_)), "{err:?}");
    }
}

#[test]
fn insecure_key_mode_is_reported() {
    let k = key(2048, Form::Pkcs1);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("k.pem");
    fs::copy(&k.key, &p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        KeyMaterial::load(&p, None).unwrap().insecure_mode(),
        Some(0o644)
    );
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(KeyMaterial::load(&p, None).unwrap().insecure_mode(), None);
}

/// A key whose CRT values do not match: OpenSSL would sign garbage with it,
/// so the openssl backend refuses it; rustcrypto recomputes them from p and q.
#[cfg(feature = "openssl")]
#[test]
fn inconsistent_key_is_refused_by_openssl() {
    use openssl::rsa::Rsa;
    let good = KeyMaterial::load(&key(2048, Form::Pkcs1).key, None).unwrap();
    let r = Rsa::private_key_from_der(good.private_key_bytes()).unwrap();
    let c = |b: &openssl::bn::BigNumRef| b.to_owned().unwrap();
    let mut dmp1 = c(r.dmp1().unwrap());
    dmp1.add_word(2).unwrap();
    let bad = Rsa::from_private_components(
        c(r.n()),
        c(r.e()),
        c(r.d()),
        c(r.p().unwrap()),
        c(r.q().unwrap()),
        dmp1,
        c(r.dmq1().unwrap()),
        c(r.iqmp().unwrap()),
    )
    .unwrap();
    let pem = bad.private_key_to_pem().unwrap();
    let km = KeyMaterial::from_pem(&pem, Path::new("bad.pem"), None).unwrap();
    let err = ima_core::provider_by_name("openssl")
        .unwrap()
        .signer(&km)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("inconsistent"), "{err}");
}

#[test]
fn subject_public_key_info_is_what_openssl_extracts() {
    let k = key(2048, Form::Pkcs1);
    let tmp = tempfile::tempdir().unwrap();
    let spki = tmp.path().join("spki.der");
    openssl(
        &[
            "pkey",
            "-pubout",
            "-outform",
            "DER",
            "-in",
            k.key.to_str().unwrap(),
            "-out",
        ],
        &spki,
    );
    let cert = Certificate::load(&k.cert_pem).unwrap();
    assert_eq!(cert.subject_public_key_info_der(), fs::read(&spki).unwrap());
}
