//! Step 1, the signing key and its certificate: keep a pair already
//! there, or make one with openssl, the certificate as `.ima` wants it
//! (not a CA, keyUsage digitalSignature, a Subject Key Identifier) and, on
//! keyring paths 2 to 4, signed by the kernel's module signing key or by a
//! local CA made here.

use std::path::Path;

use crate::setup::keyring::{Choice, KeyringPath};
use crate::setup::{Algorithm, Machine};

use super::{path, text, write, Action, Arg, Run, Step, StepKind};

/// The local CA's private key, beside the IMA key (paths 3 and 4).
pub const CA_KEY: &str = "/etc/keys/IMA_ca.priv";
/// The local CA's certificate (PEM, what `CONFIG_SYSTEM_TRUSTED_KEYS` reads).
pub const CA_CERT: &str = "/etc/keys/IMA_ca.pem";
/// The local CA's certificate in DER (what `mokutil --import` reads).
pub const CA_CERT_DER: &str = "/etc/keys/IMA_ca.der";
/// The openssl request file for the IMA certificate (kept for renewals).
pub const CERT_CONF: &str = "/etc/keys/x509_ima.cnf";
/// The openssl request file for the CA.
pub const CA_CONF: &str = "/etc/keys/IMA_ca.cnf";

/// `openssl genpkey` for `algorithm` into `key`.
fn genkey(algorithm: Algorithm, key: &str) -> Run {
    let mut argv = vec![text("openssl"), text("genpkey"), text("-algorithm")];
    match algorithm {
        Algorithm::Rsa => {
            argv.extend([text("RSA"), text("-pkeyopt"), text("rsa_keygen_bits:4096")])
        }
        Algorithm::P256 => argv.extend([
            text("EC"),
            text("-pkeyopt"),
            text("ec_paramgen_curve:P-256"),
            text("-pkeyopt"),
            text("ec_param_enc:named_curve"),
        ]),
    }
    argv.extend([text("-out"), path(key)]);
    Run {
        argv,
        creates: vec![key.into()],
        private: vec![key.into()],
    }
}

/// The openssl request file for a certificate: subject and extensions.
fn request_conf(common_name: &str, section: &str, extensions: &str, why: &str) -> String {
    format!(
        "# portage-ima setup: {why}\n\
         # (openssl req -config; kept to renew the certificate the same way)\n\
         [req]\n\
         distinguished_name = subject\n\
         prompt = no\n\
         x509_extensions = {section}\n\
         \n\
         [subject]\n\
         CN = {common_name}\n\
         \n\
         [{section}]\n\
         {extensions}"
    )
}

/// The key step: the pair kept, or made (with its CA, on paths 3 and 4).
pub(super) fn key_step(
    machine: &Machine,
    keyring: &Choice,
    algorithm: Algorithm,
    key: &str,
    cert: &Path,
    exists: bool,
) -> Step {
    if exists {
        let mut step = Step::new(
            StepKind::Key,
            format!(
                "Use the signing key {key} and its certificate {}",
                cert.display()
            ),
            "they are already there (setup keeps a key it finds)",
        );
        if keyring.path != KeyringPath::UserKeyring {
            step.reason.push_str(
                "; on this kernel the certificate must be signed by the key the keyring \
                 step names, else .ima refuses it (portage-ima doctor says whether it does)",
            );
        }
        return step;
    }
    let cert_s = cert.display().to_string();
    let mut step = Step::new(
        StepKind::Key,
        format!(
            "Make a {} signing key {key} and its certificate {cert_s}",
            match algorithm {
                Algorithm::Rsa => "RSA-4096",
                Algorithm::P256 => "NIST P-256",
            }
        ),
        match algorithm {
            Algorithm::P256 => {
                "the kernel has CONFIG_CRYPTO_ECDSA=y (built in, so it verifies \
                                from the first appraisal): P-256 signs fast and its signatures \
                                are small"
            }
            Algorithm::Rsa => {
                "RSA-4096, which every kernel with IMA signatures verifies \
                               (P-256 needs CONFIG_CRYPTO_ECDSA=y)"
            }
        }
        .to_string()
            + "; the certificate carries what .ima wants: not a CA, keyUsage digitalSignature, \
               its Subject Key Identifier (the key id in every signature)",
    );
    let host = &machine.hostname;
    // The issuer's key id; a MODULES_SIGN_KEY certificate made without a
    // SKID is named by issuer and serial instead (the kernel matches either).
    let akid = if keyring.path == KeyringPath::ModulesSignKey {
        "keyid,issuer"
    } else {
        "keyid:always"
    };
    let ima_ext = format!(
        "basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = {akid}\n"
    );
    let issuer: Option<(String, String)> = match keyring.path {
        KeyringPath::BuiltinCa | KeyringPath::MachineKeyring => {
            step.actions.push(write(
                CA_CONF,
                request_conf(
                    &format!("{host} IMA CA"),
                    "ima_ca",
                    "basicConstraints = critical,CA:TRUE\n\
                     keyUsage = critical,keyCertSign\n\
                     subjectKeyIdentifier = hash\n\
                     authorityKeyIdentifier = keyid:always\n",
                    "the local CA that signs the IMA certificate (no digitalSignature: \
                     the machine keyring takes only a pure CA)",
                ),
                0o644,
            ));
            step.actions.push(Action::Run(genkey(algorithm, CA_KEY)));
            step.actions.push(Action::Run(Run {
                argv: vec![
                    text("openssl"),
                    text("req"),
                    text("-new"),
                    text("-x509"),
                    text("-config"),
                    path(CA_CONF),
                    text("-key"),
                    path(CA_KEY),
                    text("-days"),
                    text("3650"),
                    text("-sha256"),
                    text("-out"),
                    path(CA_CERT),
                ],
                creates: vec![CA_CERT.into()],
                private: vec![],
            }));
            if keyring.path == KeyringPath::MachineKeyring {
                step.actions.push(Action::Run(Run {
                    argv: vec![
                        text("openssl"),
                        text("x509"),
                        text("-in"),
                        path(CA_CERT),
                        text("-outform"),
                        text("DER"),
                        text("-out"),
                        path(CA_CERT_DER),
                    ],
                    creates: vec![CA_CERT_DER.into()],
                    private: vec![],
                }));
            }
            step.reason.push_str(&format!(
                "; a local CA ({CA_KEY}, private, and {CA_CERT}) signs it"
            ));
            Some((CA_CERT.to_string(), CA_KEY.to_string()))
        }
        KeyringPath::ModulesSignKey => {
            let m = machine.modules_sign_key.as_ref().expect("path 2 has a key");
            if m.key.starts_with("pkcs11:") {
                step.blocked = Some(format!(
                    "MODULES_SIGN_KEY is a PKCS#11 URI ({}): sign the certificate request \
                     with it yourself (openssl req -x509 -CA ... -CAkey '{}' -provider pkcs11)",
                    m.key, m.key
                ));
            }
            step.reason.push_str(&format!(
                "; the kernel's module signing key ({}) signs it",
                m.key
            ));
            Some((m.cert.clone(), m.key.clone()))
        }
        KeyringPath::UserKeyring | KeyringPath::Blocked => None,
    };
    step.actions.push(write(
        CERT_CONF,
        request_conf(
            &format!("{host} IMA signing key"),
            "ima_signing",
            &ima_ext,
            "the IMA signing certificate (what .ima wants: not a CA, digitalSignature)",
        ),
        0o644,
    ));
    step.actions.push(Action::Run(genkey(algorithm, key)));
    let mut argv = vec![
        text("openssl"),
        text("req"),
        text("-new"),
        text("-x509"),
        text("-config"),
        path(CERT_CONF),
        text("-key"),
        path(key),
    ];
    if let Some((ca_cert, ca_key)) = &issuer {
        argv.extend([text("-CA"), path(ca_cert), text("-CAkey"), path(ca_key)]);
    }
    argv.extend([
        text("-days"),
        text("3650"),
        text("-sha256"),
        text("-outform"),
        text("DER"),
        text("-out"),
        Arg::Path(cert.to_path_buf()),
    ]);
    step.actions.push(Action::Run(Run {
        argv,
        creates: vec![cert.to_path_buf()],
        private: vec![],
    }));
    step
}
