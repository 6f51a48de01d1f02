//! The signing key, its certificate and the key id signatures carry.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ima_core::{Certificate, Error as CoreError, KeyId, KeyMaterial};

use super::{CheckId, Report};
use crate::settings::{self, Settings};

/// A certificate expiring sooner than this is worth a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The checks made here, skipped as a group when the settings do not load.
pub(super) const CHECKS: &[CheckId] = &[
    CheckId::Key,
    CheckId::KeyAccess,
    CheckId::Cert,
    CheckId::CertKey,
    CheckId::CertSkid,
    CheckId::CertUsage,
    CheckId::CertExpiry,
    CheckId::KeyId,
];

/// `mode = "verify"`: no key (never opened), no key id of our own; the
/// certificate is checked only when one is configured (`cert`: what
/// [`check_cert`] found, run in between).
pub(super) fn check_keyless(
    r: &mut Report,
    s: &Settings,
    cert: impl FnOnce(&mut Report) -> Option<Certificate>,
) -> Option<Certificate> {
    r.ok(
        CheckId::Key,
        "mode = \"verify\": no private key here; it is never opened",
    );
    r.skip(CheckId::KeyAccess, "no key in mode = \"verify\"");
    let found = if s.cert().is_some() {
        cert(r)
    } else {
        for &c in &CHECKS[2..7] {
            r.skip(c, "no certificate of this host: see trusted-certs");
        }
        None
    };
    r.skip(
        CheckId::KeyId,
        "nothing is signed here in mode = \"verify\"",
    );
    found
}

/// The command that makes a certificate the kernel takes on its IMA keyring
/// (a `pkcs11:` key shown with any PIN hidden).
fn cert_command(key: &Path) -> String {
    let key = ima_core::redacted_uri(&key.to_string_lossy());
    format!(
        "openssl req -new -x509 -key {} -outform DER -out {} -days 3650 \
         -subj '/CN=IMA signing key' -addext basicConstraints=critical,CA:FALSE \
         -addext keyUsage=critical,digitalSignature -addext subjectKeyIdentifier=hash",
        key,
        settings::DEFAULT_CERT
    )
}

/// The private key: exists, readable, parses; owned by root, private.
pub(super) fn check_key(r: &mut Report, s: &Settings) -> Option<KeyMaterial> {
    let path = &s.key;
    match ima_core::KeySource::classify(path) {
        Err(e) => {
            r.fail(
                CheckId::Key,
                e.to_string(),
                "fix `key` in ima.toml (README: Keys held by a TPM or a PKCS#11 token)",
            );
            r.skip(CheckId::KeyAccess, "no usable key");
            return None;
        }
        Ok(source) if source.is_hardware() => {
            check_hardware_key(r, s, &source);
            return None;
        }
        Ok(_) => {}
    }
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            r.fail(
                CheckId::Key,
                format!("{}: does not exist", path.display()),
                format!(
                    "create a key and its certificate: (umask 077; openssl req -x509 -newkey \
                     rsa:4096 -nodes -days 3650 -sha256 -subj \"/CN=$(hostname) IMA signing key\" \
                     -addext basicConstraints=critical,CA:FALSE -addext keyUsage=digitalSignature \
                     -addext subjectKeyIdentifier=hash -keyout {0} -outform DER -out {1}) \
                     (README, Quick start); or name an existing key with key = \"...\" in \
                     ima.toml or --key",
                    path.display(),
                    s.cert()
                        .unwrap_or_else(|| settings::DEFAULT_CERT.into())
                        .display()
                ),
            );
            r.skip(CheckId::KeyAccess, "no key file");
            return None;
        }
        Err(e) => {
            r.fail(
                CheckId::Key,
                format!("{}: {e}", path.display()),
                "run as root, or check the directories leading to the key",
            );
            r.skip(CheckId::KeyAccess, "no key file");
            return None;
        }
    };
    let key = match KeyMaterial::load(path, None) {
        Ok(k) => {
            r.ok(
                CheckId::Key,
                format!(
                    "{}: {}, public-key id {}",
                    path.display(),
                    k.public_key(),
                    k.public_key().key_id()
                ),
            );
            Some(k)
        }
        Err(CoreError::KeyRead { source, .. }) => {
            r.fail(
                CheckId::Key,
                format!("{}: cannot read: {source}", path.display()),
                "run portage-ima as root (the hook runs as root)",
            );
            None
        }
        Err(e @ CoreError::KeyEncrypted { .. }) => {
            r.fail(
                CheckId::Key,
                e.to_string(),
                "keep the unencrypted copy readable by root only (chmod 0400), or hold the key \
                 in a TPM or on a PKCS#11 token (README, Keys held by hardware)",
            );
            None
        }
        Err(e) => {
            r.fail(
                CheckId::Key,
                e.to_string(),
                "give a PEM private key: RSA (PKCS#1 from openssl genrsa, or PKCS#8) or \
                 ECDSA P-256/P-384 (SEC1 from openssl ecparam -genkey, or PKCS#8)",
            );
            None
        }
    };
    // The signer's own rule (settings::key_exposure): whoever can read or
    // replace the key can sign anything the kernel will then run.
    let problems = settings::key_exposure(path);
    let mode = meta.mode() & 0o7777;
    let safe_fix = format!("chown root:root {0} && chmod 0400 {0}", path.display());
    if problems.is_empty() {
        r.ok(
            CheckId::KeyAccess,
            match meta.uid() {
                0 => format!("owned by root, mode {mode:04o}"),
                uid => format!("owned by uid {uid} (who runs this), mode {mode:04o}"),
            },
        );
    } else if s.allow_insecure_key {
        r.warn(
            CheckId::KeyAccess,
            format!(
                "{}; allow_insecure_key = true: portage-ima signs with it anyway, warning each time",
                problems.join("; ")
            ),
            format!("{safe_fix}, then remove allow_insecure_key from ima.toml"),
        );
    } else {
        r.fail(
            CheckId::KeyAccess,
            format!(
                "{}; portage-ima refuses to sign with this key (whoever can read or replace it \
                 can sign files the kernel will trust)",
                problems.join("; ")
            ),
            format!(
                "{safe_fix} (and fix its directory as said); or, to sign with it anyway, set \
                 allow_insecure_key = true in ima.toml"
            ),
        );
    }
    key
}

/// A key held by hardware: opened as the signer opens it (no signature is
/// made). Its file mode matters only for a TSS2 key file.
fn check_hardware_key(r: &mut Report, s: &Settings, source: &ima_core::KeySource) {
    match s.signer() {
        Ok(signer) => r.ok(
            CheckId::Key,
            format!(
                "{source}: {}, held by hardware and opened through OpenSSL; key id {}",
                source.kind(),
                signer.key_id()
            ),
        ),
        Err(e) => r.fail(
            CheckId::Key,
            format!("{e:#}"),
            "check the device is present and [hardware] in ima.toml (provider or engine, \
             module, pin_file or pin_env)",
        ),
    }
    r.skip(
        CheckId::KeyAccess,
        "held by hardware: no private key file to protect",
    );
}

/// The certificate: parses, belongs to the key, has a SKID, the usage the
/// IMA keyring accepts, and is within its dates.
pub(super) fn check_cert(
    r: &mut Report,
    s: &Settings,
    key: Option<&KeyMaterial>,
) -> Option<Certificate> {
    const AFTER_CERT: [CheckId; 4] = [
        CheckId::CertKey,
        CheckId::CertSkid,
        CheckId::CertUsage,
        CheckId::CertExpiry,
    ];
    let Some(path) = s.cert() else {
        r.warn(
            CheckId::Cert,
            format!(
                "none configured and {} does not exist; the kernel needs the certificate on its \
                 IMA keyring to check signatures, and signatures carry the public-key id",
                settings::DEFAULT_CERT
            ),
            format!(
                "make one: {} (and set cert in ima.toml if you put it elsewhere)",
                cert_command(&s.key)
            ),
        );
        for c in AFTER_CERT {
            r.skip(c, "no certificate");
        }
        return None;
    };
    let cert = match Certificate::load(&path) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                CheckId::Cert,
                e.to_string(),
                format!(
                    "give an X.509 certificate (DER or PEM), or {}",
                    cert_command(&s.key)
                ),
            );
            for c in AFTER_CERT {
                r.skip(c, "the certificate did not load");
            }
            return None;
        }
    };
    r.ok(
        CheckId::Cert,
        format!(
            "{}: subject {}, key id {}",
            path.display(),
            cert.subject(),
            cert.key_id()
        ),
    );

    match (key, KeyMaterial::load(&s.key, Some(&path))) {
        (None, _) => r.skip(CheckId::CertKey, "the key did not load"),
        (Some(_), Ok(_)) => r.ok(
            CheckId::CertKey,
            "the certificate holds this key's public half",
        ),
        (Some(_), Err(CoreError::CertificateMismatch { .. })) => r.fail(
            CheckId::CertKey,
            format!(
                "the certificate is for another key than {}: the kernel would check every \
                 signature against the wrong public key",
                s.key_shown()
            ),
            format!(
                "use the certificate of this key, or make one: {}",
                cert_command(&s.key)
            ),
        ),
        (Some(_), Err(e)) => r.fail(
            CheckId::CertKey,
            e.to_string(),
            "fix the key or the certificate",
        ),
    }

    match cert.subject_key_identifier() {
        Some(skid) => r.ok(
            CheckId::CertSkid,
            format!(
                "Subject Key Identifier {}; the kernel finds the key by its last 4 bytes",
                hex::encode(skid)
            ),
        ),
        None => r.fail(
            CheckId::CertSkid,
            format!(
                "no Subject Key Identifier: the kernel looks keys up by it (id:{}), so it \
                 would not find this one",
                cert.key_id()
            ),
            format!(
                "re-create the certificate with a SKID: {}",
                cert_command(&s.key)
            ),
        ),
    }

    let usage = cert.key_usage();
    let mut refused = Vec::new();
    if cert.is_ca() {
        refused.push("it is a CA (basicConstraints cA)");
    }
    if usage.is_some_and(|u| u.key_cert_sign) {
        refused.push("keyUsage has keyCertSign");
    }
    if usage.is_some_and(|u| !u.digital_signature) {
        refused.push("keyUsage lacks digitalSignature");
    }
    if !refused.is_empty() {
        r.fail(
            CheckId::CertUsage,
            format!(
                "{}: kernels since 6.4 refuse such a certificate on the .ima keyring",
                refused.join(", ")
            ),
            format!(
                "re-create it as a signing certificate: {}",
                cert_command(&s.key)
            ),
        );
    } else if usage.is_none() {
        r.warn(
            CheckId::CertUsage,
            "no keyUsage extension: the kernel's trusted .ima keyring (6.4 and later) wants \
             digitalSignature; a userspace _ima keyring takes it",
            format!("to be safe, re-create it: {}", cert_command(&s.key)),
        );
    } else {
        r.ok(CheckId::CertUsage, "keyUsage digitalSignature, not a CA");
    }

    let not_after = cert.not_after();
    let now = SystemTime::now();
    let date = httpdate_like(not_after);
    if not_after < now {
        r.warn(
            CheckId::CertExpiry,
            format!(
                "expired on {date}; the kernel does not check the dates, but other verifiers may"
            ),
            format!("renew it: {}", cert_command(&s.key)),
        );
    } else if not_after < now + EXPIRY_WARNING {
        r.warn(
            CheckId::CertExpiry,
            format!("expires on {date}, within 30 days"),
            format!("renew it: {}", cert_command(&s.key)),
        );
    } else {
        r.ok(CheckId::CertExpiry, format!("valid until {date}"));
    }
    Some(cert)
}

/// `2026-11-28 UTC` for a time; the day is enough for an expiry date.
fn httpdate_like(t: SystemTime) -> String {
    crate::report::date::UtcTime::of(t).date()
}

/// The key id signatures will carry, and whether the certificate agrees.
pub(super) fn check_keyid(
    r: &mut Report,
    s: &Settings,
    key: Option<&KeyMaterial>,
    cert: Option<&Certificate>,
) -> Option<KeyId> {
    let cert_id = cert.map(Certificate::key_id);
    match (s.keyid, cert_id) {
        (Some(set), Some(c)) if set != c => {
            r.fail(
                CheckId::KeyId,
                format!(
                    "keyid {set} is configured but the certificate's is {c}: the kernel would \
                     look for a key that is not on its keyring"
                ),
                "remove keyid from ima.toml (the certificate gives it)",
            );
            Some(set)
        }
        (Some(set), _) => {
            r.ok(
                CheckId::KeyId,
                format!("signatures carry {set} (configured)"),
            );
            Some(set)
        }
        (None, Some(c)) => {
            r.ok(
                CheckId::KeyId,
                format!("signatures carry {c} (from the certificate)"),
            );
            Some(c)
        }
        (None, None) => match key {
            Some(k) => {
                let id = k.key_id();
                r.ok(
                    CheckId::KeyId,
                    format!("signatures carry {id} (from the public key)"),
                );
                Some(id)
            }
            None => {
                r.skip(CheckId::KeyId, "neither key nor certificate loaded");
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_842_074);
        assert_eq!(httpdate_like(t), "2026-11-28 UTC");
        assert_eq!(httpdate_like(SystemTime::UNIX_EPOCH), "1970-01-01 UTC");
    }
}
