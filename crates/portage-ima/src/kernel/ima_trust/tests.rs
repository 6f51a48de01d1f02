//! Every rule of [`super::ima_verdict`] and [`super::mok_refusal`] on
//! certificates made by the openssl command.

use std::path::PathBuf;
use std::process::Command;

use ima_core::Certificate;

use super::*;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed certificate `name.der` (key `name.key`) with `exts`.
    fn self_signed(&self, name: &str, key: &str, exts: &[&str]) -> Certificate {
        let mut args = vec!["req", "-x509", "-new", "-nodes", "-days", "3", "-subj"];
        let subj = format!("/CN={name}");
        let keyfile = format!("{name}.key");
        let out = format!("{name}.der");
        args.push(&subj);
        args.extend(new_key(key));
        args.extend(["-keyout", &keyfile, "-outform", "DER", "-out", &out]);
        for e in exts {
            args.extend(["-addext", e]);
        }
        self.openssl(&args);
        // The CA's PEM, for signing with it.
        self.openssl(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            &out,
            "-out",
            &format!("{name}.pem"),
        ]);
        Certificate::load(&self.path(&out)).unwrap()
    }

    /// `name.der` signed by the CA `ca` (its `ca.pem`, `ca.key`), with the
    /// extensions `exts` (openssl x509 -extfile lines).
    fn signed(&self, name: &str, key: &str, ca: &str, exts: &[&str]) -> Certificate {
        let subj = format!("/CN={name}");
        let (keyfile, csr, out) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.der"),
        );
        let mut args = vec!["req", "-new", "-nodes", "-subj", &subj];
        args.extend(new_key(key));
        args.extend(["-keyout", &keyfile, "-out", &csr]);
        self.openssl(&args);
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(&ext, exts.join("\n") + "\n").unwrap();
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            ext.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            &out,
        ]);
        Certificate::load(&self.path(&out)).unwrap()
    }
}

fn new_key(kind: &str) -> [&'static str; 4] {
    match kind {
        "p256" => ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        _ => ["-newkey", "rsa:2048", "-pkeyopt", "rsa_keygen_bits:2048"],
    }
}

const CA: &[&str] = &[
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign",
    "subjectKeyIdentifier=hash",
];
/// What setup gives the IMA certificate (the contract).
const IMA: &[&str] = &[
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid",
];
/// The README's self-signed certificate.
const README: &[&str] = &[
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=digitalSignature",
    "subjectKeyIdentifier=hash",
];

/// The key `cert` as the kernel lists it on `ring`.
fn on(ring: TrustedKeyring, cert: &Certificate) -> TrustedKey {
    let cn = cert.subject().trim_start_matches("CN=").to_string();
    TrustedKey {
        keyring: ring,
        description: format!(
            "{cn}: {}",
            hex::encode(cert.subject_key_identifier().unwrap())
        ),
    }
}

fn trusted() -> TrustConfig {
    TrustConfig {
        trusted_keyring: true,
        ecdsa: true,
        ..TrustConfig::default()
    }
}

fn refused(v: Verdict) -> Vec<Refusal> {
    match v {
        Verdict::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn without_a_trusted_keyring_any_certificate_goes_on_ima() {
    let pki = Pki::new();
    let readme = pki.self_signed("readme", "rsa", README);
    let config = TrustConfig::default();
    assert_eq!(ima_verdict(&readme, &config, &[]), Verdict::Userspace);
    // A CA too: _ima has no restriction.
    let ca = pki.self_signed("ca", "rsa", CA);
    assert_eq!(ima_verdict(&ca, &config, &[]), Verdict::Userspace);
}

#[test]
fn the_readme_certificate_is_refused_as_self_signed() {
    let pki = Pki::new();
    let readme = pki.self_signed("readme", "rsa", README);
    // Even with itself on the builtin keyring the verdict names the cause.
    let keys = [on(TrustedKeyring::Builtin, &readme)];
    assert_eq!(
        refused(ima_verdict(&readme, &trusted(), &keys)),
        [Refusal::SelfSigned]
    );
    assert!(Refusal::SelfSigned.to_string().contains("self-signed"));
}

#[test]
fn a_certificate_signed_by_a_builtin_ca_is_accepted() {
    let pki = Pki::new();
    let ca = pki.self_signed("ca", "rsa", CA);
    let ima = pki.signed("ima", "rsa", "ca", IMA);
    let keys = [on(TrustedKeyring::Builtin, &ca)];
    assert_eq!(
        ima_verdict(&ima, &trusted(), &keys),
        Verdict::Accepted {
            signer: keys[0].clone()
        }
    );
}

#[test]
fn a_signer_on_no_trusted_keyring_is_named() {
    let pki = Pki::new();
    pki.self_signed("ca", "rsa", CA);
    let other = pki.self_signed("other", "rsa", CA);
    let ima = pki.signed("ima", "rsa", "ca", IMA);
    let akid = hex::encode(ima.authority_key_identifier().unwrap());
    assert_eq!(
        refused(ima_verdict(
            &ima,
            &trusted(),
            &[on(TrustedKeyring::Builtin, &other)]
        )),
        [Refusal::SignerNotTrusted {
            akid: akid.clone(),
            elsewhere: None
        }]
    );
    let why = Refusal::SignerNotTrusted {
        akid: akid.clone(),
        elsewhere: None,
    }
    .to_string();
    assert!(
        why.contains(&akid) && why.contains("no keyring .ima trusts"),
        "{why}"
    );
}

#[test]
fn the_secondary_keyring_counts_only_with_permit_secondary() {
    let pki = Pki::new();
    let ca = pki.self_signed("ca", "rsa", CA);
    let ima = pki.signed("ima", "rsa", "ca", IMA);
    let keys = [on(TrustedKeyring::Secondary, &ca)];
    let r = refused(ima_verdict(&ima, &trusted(), &keys));
    assert!(
        matches!(
            &r[..],
            [Refusal::SignerNotTrusted {
                elsewhere: Some(TrustedKeyring::Secondary),
                ..
            }]
        ),
        "{r:?}"
    );
    assert!(r[0]
        .to_string()
        .contains("CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY"));
    let permit = TrustConfig {
        permit_secondary: true,
        ..trusted()
    };
    assert!(matches!(
        ima_verdict(&ima, &permit, &keys),
        Verdict::Accepted { .. }
    ));
}

#[test]
fn a_mok_ca_on_the_machine_keyring_needs_permit_secondary_and_the_machine_keyring() {
    let pki = Pki::new();
    let ca = pki.self_signed("ca", "rsa", CA);
    let ima = pki.signed("ima", "rsa", "ca", IMA);
    let keys = [on(TrustedKeyring::Machine, &ca)];
    // .machine is linked into the secondary keyring only with the machine
    // keyring option, and .ima searches the secondary one only with permit.
    for config in [
        trusted(),
        TrustConfig {
            permit_secondary: true,
            ..trusted()
        },
        TrustConfig {
            machine_keyring: true,
            ..trusted()
        },
    ] {
        let r = refused(ima_verdict(&ima, &config, &keys));
        assert!(
            matches!(
                &r[..],
                [Refusal::SignerNotTrusted {
                    elsewhere: Some(TrustedKeyring::Machine),
                    ..
                }]
            ),
            "{config:?}: {r:?}"
        );
    }
    let mok = TrustConfig {
        permit_secondary: true,
        machine_keyring: true,
        ..trusted()
    };
    assert!(matches!(
        ima_verdict(&ima, &mok, &keys),
        Verdict::Accepted { .. }
    ));
    // A MOK the CA restriction sent to .platform vouches for nothing.
    let r = refused(ima_verdict(
        &ima,
        &mok,
        &[on(TrustedKeyring::Platform, &ca)],
    ));
    assert!(
        r[0].to_string().contains("which .ima never trusts"),
        "{r:?}"
    );
}

#[test]
fn mok_ca_restrictions() {
    let pki = Pki::new();
    let ca = pki.self_signed("ca", "rsa", CA);
    let leaf_like = pki.self_signed("mok", "rsa", README);
    let ca_with_digsig = pki.self_signed(
        "ca2",
        "rsa",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,digitalSignature",
            "subjectKeyIdentifier=hash",
        ],
    );
    let mok = TrustConfig {
        permit_secondary: true,
        machine_keyring: true,
        ..trusted()
    };
    assert_eq!(mok_refusal(&ca, &mok), None);
    // Without the CA restriction any MOK goes on .machine.
    assert_eq!(mok_refusal(&leaf_like, &mok), None);
    let ca_only = TrustConfig {
        ca_machine_keyring: true,
        ..mok
    };
    assert_eq!(mok_refusal(&ca, &ca_only), None);
    assert!(mok_refusal(&leaf_like, &ca_only)
        .unwrap()
        .contains("restrict_link_by_ca"));
    assert_eq!(mok_refusal(&ca_with_digsig, &ca_only), None);
    let max = TrustConfig {
        ca_machine_keyring_max: true,
        ..ca_only
    };
    assert!(mok_refusal(&ca_with_digsig, &max).unwrap().contains("_MAX"));
    assert_eq!(mok_refusal(&ca, &max), None);
    for config in [
        TrustConfig::default(),
        trusted(),
        TrustConfig {
            machine_keyring: true,
            ..trusted()
        },
    ] {
        assert!(mok_refusal(&ca, &config).is_some(), "{config:?}");
    }
}

#[test]
fn digsig_rules_in_the_kernels_order() {
    let pki = Pki::new();
    let ca = pki.self_signed("ca", "rsa", CA);
    let keys = [on(TrustedKeyring::Builtin, &ca)];
    let no_digsig = pki.signed(
        "enc",
        "rsa",
        "ca",
        &[
            "basicConstraints=CA:FALSE",
            "keyUsage=keyEncipherment",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid",
        ],
    );
    assert_eq!(
        refused(ima_verdict(&no_digsig, &trusted(), &keys)),
        [Refusal::NoDigitalSignature]
    );
    let no_usage = pki.signed(
        "nousage",
        "rsa",
        "ca",
        &["subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"],
    );
    assert_eq!(
        refused(ima_verdict(&no_usage, &trusted(), &keys)),
        [Refusal::NoDigitalSignature]
    );
    let sub_ca = pki.signed(
        "subca",
        "rsa",
        "ca",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,digitalSignature",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid",
        ],
    );
    assert_eq!(
        refused(ima_verdict(&sub_ca, &trusted(), &keys)),
        [Refusal::Ca, Refusal::KeyCertSign]
    );
    let cert_sign = pki.signed(
        "certsign",
        "rsa",
        "ca",
        &[
            "basicConstraints=CA:FALSE",
            "keyUsage=digitalSignature,keyCertSign",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid",
        ],
    );
    assert_eq!(
        refused(ima_verdict(&cert_sign, &trusted(), &keys)),
        [Refusal::KeyCertSign]
    );
    // The CA itself: a CA with keyCertSign and no digitalSignature, and
    // self-signed.
    assert_eq!(
        refused(ima_verdict(&ca, &trusted(), &keys)),
        [
            Refusal::NoDigitalSignature,
            Refusal::Ca,
            Refusal::KeyCertSign,
            Refusal::SelfSigned
        ]
    );
}

#[test]
fn ecdsa_needs_the_kernels_ecdsa() {
    let pki = Pki::new();
    let ec_ca = pki.self_signed("ecca", "p256", CA);
    let ec_ima = pki.signed("ecima", "p256", "ecca", IMA);
    let rsa_by_ec = pki.signed("rsaima", "rsa", "ecca", IMA);
    let keys = [on(TrustedKeyring::Builtin, &ec_ca)];
    let no_ec = TrustConfig {
        ecdsa: false,
        ..trusted()
    };
    assert!(matches!(
        ima_verdict(&ec_ima, &trusted(), &keys),
        Verdict::Accepted { .. }
    ));
    assert_eq!(
        refused(ima_verdict(&ec_ima, &no_ec, &keys))[0],
        Refusal::NoEcdsa {
            what: "its ECDSA key"
        }
    );
    assert_eq!(
        refused(ima_verdict(&rsa_by_ec, &no_ec, &keys)),
        [Refusal::NoEcdsa {
            what: "its ECDSA signature"
        }]
    );
    // And on _ima the key still has to parse.
    assert!(matches!(
        ima_verdict(&ec_ima, &TrustConfig::default(), &[]),
        Verdict::Refused(_)
    ));
}

#[test]
fn without_an_authority_key_id_the_issuer_name_finds_the_signer() {
    let pki = Pki::new();
    let ca = pki.self_signed("ca", "rsa", CA);
    let ima = pki.signed(
        "noakid",
        "rsa",
        "ca",
        &[
            "basicConstraints=CA:FALSE",
            "keyUsage=digitalSignature",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=none",
        ],
    );
    assert_eq!(ima.authority_key_identifier(), None);
    assert!(matches!(
        ima_verdict(&ima, &trusted(), &[on(TrustedKeyring::Builtin, &ca)]),
        Verdict::Accepted { .. }
    ));
    let other = pki.self_signed("other", "rsa", CA);
    assert_eq!(
        refused(ima_verdict(
            &ima,
            &trusted(),
            &[on(TrustedKeyring::Builtin, &other)]
        )),
        [Refusal::NoAuthorityKeyId]
    );
}

#[test]
fn config_and_proc_keys_readings() {
    let config = TrustConfig::from_config(&KernelConfig::from_text(
        "CONFIG_INTEGRITY_TRUSTED_KEYRING=y\n# CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY is not set\n\
         CONFIG_INTEGRITY_MACHINE_KEYRING=y\nCONFIG_CRYPTO_ECDSA=m\n",
        std::path::Path::new("test"),
    ));
    assert_eq!(
        config,
        TrustConfig {
            trusted_keyring: true,
            machine_keyring: true,
            ecdsa: true,
            ..TrustConfig::default()
        }
    );
    assert_eq!(config.searched(), [TrustedKeyring::Builtin]);
    assert_eq!(
        proc_key_name("Build time autogenerated kernel key: 1a2b3c: X509.rsa 1a2b3c []"),
        "Build time autogenerated kernel key: 1a2b3c"
    );
    let key = TrustedKey {
        keyring: TrustedKeyring::Builtin,
        description: "Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1".into(),
    };
    assert_eq!(
        key.skid_hex(),
        Some("6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1")
    );
    assert_eq!(common_name("CN=test CA,O=Example"), Some("test CA".into()));
}
