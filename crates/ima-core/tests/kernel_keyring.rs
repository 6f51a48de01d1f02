//! The running kernel accepts our signatures: it loads the certificate into a
//! session keyring, finds it by the key id we wrote (`id:%08x`, the lookup IMA
//! does) and its own RSA code verifies the signature over the file digest.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{can_write_security_xattrs, getfattr, have, key, run, write_pattern, Form};
use ima_core::{
    digest_file, open_regular, Certificate, HashAlgo, ImaSigner, KeyId, KeyMaterial, SignOptions,
};

/// Signs one file per algorithm with `signer_for(algo)`, and has the kernel
/// check each in one keyring session: it must find the certificate by the key
/// id read from the `security.ima` bytes on disk (getfattr, parsed here by
/// hand: the lookup IMA does), and its own RSA code must accept the signature
/// over the file digest.
fn kernel_accepts(
    cert_der: &Path,
    dir: &Path,
    keyid: KeyId,
    signer_for: impl Fn(HashAlgo) -> ImaSigner,
) {
    let mut script = String::from("set -eu\n");
    script += &format!(
        "id=$(keyctl padd asymmetric '' @s < '{}')\n",
        cert_der.display()
    );

    for &algo in HashAlgo::SIGNING {
        let file = dir.join(format!("data-{algo}"));
        write_pattern(&file, 70_000, algo.kernel_id());
        let signer = signer_for(algo);
        signer.sign_path(&file, &SignOptions::default()).unwrap();
        // signature v2: 03 02 algo keyid[4] len[2, big-endian] signature
        let value = getfattr(&file).expect("security.ima written");
        assert_eq!(
            &value[..3],
            &[0x03, 0x02, algo.kernel_id()],
            "{algo}: header"
        );
        let disk_id = hex::encode(&value[3..7]);
        let len = u16::from_be_bytes([value[7], value[8]]) as usize;
        let signature = &value[9..];
        assert_eq!(signature.len(), len, "{algo}: signature length field");
        assert_eq!(disk_id, keyid.to_string(), "{algo}: key id written");
        let f = open_regular(&file).unwrap();
        let digest = digest_file(signer.provider(), &f, algo, false)
            .unwrap()
            .digest;
        fs::write(dir.join(format!("{algo}.digest")), &digest).unwrap();
        fs::write(dir.join(format!("{algo}.sig")), signature).unwrap();
        // The same signature over another digest must be refused: proves
        // pkey_verify really checks.
        let mut wrong = digest.clone();
        wrong[0] ^= 1;
        fs::write(dir.join(format!("{algo}.wrong")), &wrong).unwrap();
        let d = dir.display();
        script += &format!(
            "found=$(keyctl search @s asymmetric id:{disk_id}) || {{ echo 'no key with id {disk_id} (from the {algo} file)'; exit 1; }}\n"
        );
        script +=
            "[ \"$id\" = \"$found\" ] || { echo \"search found $found, added $id\"; exit 1; }\n";
        script += &format!(
            "keyctl pkey_verify \"$found\" 0 '{d}/{algo}.digest' '{d}/{algo}.sig' enc=pkcs1 hash={algo} || {{ echo 'kernel rejects {algo}'; exit 1; }}\n"
        );
        script += &format!(
            "if keyctl pkey_verify \"$found\" 0 '{d}/{algo}.wrong' '{d}/{algo}.sig' enc=pkcs1 hash={algo} 2>/dev/null; then echo 'kernel accepts a wrong {algo} digest'; exit 1; fi\n"
        );
    }
    script += "echo all-verified\n";
    let out = run(Command::new("keyctl").args(["session", "-", "bash", "-c", &script]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all-verified"));
}

fn skip(test: &str) -> bool {
    !can_write_security_xattrs(test) || !have("keyctl", test)
}

#[test]
fn kernel_verifies_every_size_and_algorithm_with_both_backends() {
    if skip("kernel keyring test") {
        return;
    }
    for &bits in &common::SIZES {
        let k = key(bits, Form::Pkcs8);
        let km = KeyMaterial::load(&k.key, Some(&k.cert_der)).unwrap();
        for provider in ima_core::providers() {
            let tmp = tempfile::tempdir().unwrap();
            kernel_accepts(&k.cert_der, tmp.path(), km.key_id(), |algo| {
                ImaSigner::new(provider, &km, algo, None).unwrap()
            });
        }
    }
}

/// A certificate whose Subject Key Identifier is not the key hash: the key id
/// is the SKID's last 4 bytes, and the kernel finds the key by exactly that.
#[test]
fn skid_certificate_gives_the_key_id_the_kernel_finds() {
    if skip("SKID certificate test") {
        return;
    }
    let k = key(2048, Form::Pkcs1);
    let tmp = tempfile::tempdir().unwrap();
    let skid = "0123456789abcdef0123456789abcdef01a2b3c4";
    let cert_pem = tmp.path().join("skid.pem");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-new",
            "-days",
            "30",
            "-subj",
            "/CN=custom skid",
        ])
        .args(["-addext", &format!("subjectKeyIdentifier={skid}")])
        .arg("-key")
        .arg(&k.key)
        .arg("-out")
        .arg(&cert_pem));
    let cert_der = tmp.path().join("skid.der");
    run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert_pem)
        .arg("-out")
        .arg(&cert_der));

    let cert = Certificate::load(&cert_pem).unwrap();
    assert_eq!(hex::encode(cert.subject_key_identifier().unwrap()), skid);
    let want = KeyId([0x01, 0xa2, 0xb3, 0xc4]);
    assert_eq!(cert.key_id(), want);
    assert_eq!(Certificate::load(&cert_der).unwrap().key_id(), want);
    // The public-key hash differs, so this really tests the SKID path.
    let plain = KeyMaterial::load(&k.key, None).unwrap();
    assert_ne!(plain.key_id(), want);

    let km = KeyMaterial::load(&k.key, Some(&cert_pem)).unwrap();
    assert_eq!(km.key_id(), want);

    // Byte-identical to `evmctl ima_sign --keyid-from-cert` (evmctl 1.4's
    // ima_verify itself indexes certificates by the key hash, not the SKID,
    // so only the kernel can check such a signature).
    if have("evmctl", "SKID evmctl comparison") {
        let ours = tmp.path().join("ours");
        let theirs = tmp.path().join("theirs");
        common::write_pattern(&ours, 1000, 7);
        common::write_pattern(&theirs, 1000, 7);
        run(Command::new("evmctl")
            .args(["ima_sign", "--hashalgo", "sha256", "--keyid-from-cert"])
            .arg(&cert_der)
            .arg("--key")
            .arg(&k.key)
            .arg(&theirs));
        ImaSigner::new(ima_core::default_provider(), &km, HashAlgo::Sha256, None)
            .unwrap()
            .sign_path(&ours, &SignOptions::default())
            .unwrap();
        assert_eq!(
            hex::encode(common::getfattr(&ours).unwrap()),
            hex::encode(common::getfattr(&theirs).unwrap())
        );
    }
    kernel_accepts(&cert_der, tmp.path(), want, |algo| {
        ImaSigner::new(ima_core::default_provider(), &km, algo, None).unwrap()
    });
}
