//! The kernel keyrings: is the certificate on `.ima` or `_ima`, and would
//! the running kernel take each configured certificate there? (Read
//! through [`crate::kernel::keyring`]; the kernel's rules are
//! [`crate::kernel::ima_trust`].) The advice names the keyring the kernel
//! really uses: never `_ima` where `.ima` is the keyring.

use std::fs;
use std::path::{Path, PathBuf};

use ima_core::{Certificate, KeyId};

use super::{CheckId, Report};
use crate::kernel::config::KernelConfig;
use crate::kernel::ima_trust::{
    ima_verdict, keys_on, trusted_keys, TrustConfig, TrustedKeyring, Verdict,
};
use crate::kernel::keyring::{ima_keyrings, keyring_members, parse_proc_keys, ProcKey};
use crate::settings::{self, Settings};

/// What the keyring checks read instead of the running kernel's (hidden
/// flags, for tests).
pub(super) struct KeyringSources {
    /// A kernel .config instead of the running kernel's.
    pub(super) kernel_config: Option<PathBuf>,
    /// A keyring (serial) to take as `.ima`.
    pub(super) ima_keyring: Option<i32>,
    /// Keyrings (serials) to take as the builtin trusted keyring.
    pub(super) trusted_keyrings: Vec<i32>,
}

/// The keyrings IMA checks signatures with: `--ima-keyring`'s, else the
/// kernel's own `.ima`, else the `_ima` this process reaches.
fn rings(keys: &[ProcKey], sources: &KeyringSources) -> Vec<(&'static str, i32)> {
    match sources.ima_keyring {
        Some(serial) => vec![(".ima", serial)],
        None => ima_keyrings(keys),
    }
}

/// How the certificate gets on the keyring the kernel uses, at boot and now.
fn load_advice(trusted: bool, cert: &str) -> String {
    if trusted {
        format!(
            "the boot service puts it on .ima (rc-update add portage-ima boot, or \
             portage-ima.service, or dracut's integrity module: docs/boot.md); now: keyctl padd \
             asymmetric '' %keyring:.ima < {cert} (.ima takes it only if a trusted key signed \
             it: see keyring-trust)"
        )
    } else {
        format!(
            "the boot service puts it on _ima (rc-update add portage-ima boot, or \
             portage-ima.service, or dracut's integrity module: docs/boot.md); now: keyctl padd \
             asymmetric '' %keyring:_ima < {cert}"
        )
    }
}

/// Whether the key id is on the `.ima` (trusted) or `_ima` (userspace) keyring.
pub(super) fn check_keyring(
    r: &mut Report,
    ima: bool,
    keyid: Option<KeyId>,
    cert: Option<&Path>,
    sources: &KeyringSources,
) {
    let text = match fs::read_to_string("/proc/keys") {
        Ok(t) => t,
        Err(e) => {
            r.skip(
                CheckId::Keyring,
                format!("/proc/keys: {e} (kernel without CONFIG_KEYS?)"),
            );
            return;
        }
    };
    let keys = parse_proc_keys(&text);
    let rings = rings(&keys, sources);
    let Some(keyid) = keyid else {
        r.skip(
            CheckId::Keyring,
            "no key id to look for (the key and certificate did not load)",
        );
        return;
    };
    let trusted = rings.iter().any(|&(name, _)| name == ".ima");
    let cert = cert.map_or_else(
        || settings::DEFAULT_CERT.into(),
        |c| c.display().to_string(),
    );
    let load = load_advice(trusted, &cert);
    if rings.is_empty() {
        if ima {
            r.fail(
                CheckId::Keyring,
                format!(
                    "no .ima keyring and no _ima keyring reachable from this session: the \
                     kernel cannot find key {keyid}"
                ),
                format!("{load} (after keyctl newring _ima @u)"),
            );
        } else {
            r.skip(
                CheckId::Keyring,
                "no .ima or _ima keyring (no IMA in this kernel)",
            );
        }
        return;
    }
    let mut notes = Vec::new();
    for &(name, serial) in &rings {
        match keyring_members(serial) {
            Ok(members) => {
                let found = keys
                    .iter()
                    .find(|p| members.contains(&p.serial) && p.asymmetric_id() == Some(keyid));
                if let Some(key) = found {
                    r.ok(
                        CheckId::Keyring,
                        format!(
                            "key {keyid} is on the {name} keyring ({:08x}: {})",
                            key.serial as u32, key.description
                        ),
                    );
                    return;
                }
                notes.push(format!(
                    "{name} has {} keys, none with id {keyid}",
                    members.len()
                ));
            }
            Err(e) => notes.push(format!("{name}: cannot list it: {e}")),
        }
    }
    r.fail(
        CheckId::Keyring,
        format!(
            "{}: files signed with it would be refused",
            notes.join("; ")
        ),
        load,
    );
}

/// For each configured certificate (`cert` and `trusted_certs`): would the
/// running kernel take it on its IMA keyring, and why not.
pub(super) fn check_keyring_trust(r: &mut Report, s: Option<&Settings>, sources: &KeyringSources) {
    let Some(s) = s else {
        r.skip(CheckId::KeyringTrust, "settings did not load");
        return;
    };
    let certs: Vec<PathBuf> = s
        .cert()
        .into_iter()
        .chain(s.trusted_certs.iter().cloned())
        .collect();
    if certs.is_empty() {
        r.skip(CheckId::KeyringTrust, "no certificate configured");
        return;
    }
    let keys = parse_proc_keys(&fs::read_to_string("/proc/keys").unwrap_or_default());
    let has_ima = rings(&keys, sources)
        .iter()
        .any(|&(name, _)| name == ".ima");
    let kernel_config = match &sources.kernel_config {
        Some(path) => KernelConfig::read(path),
        None => KernelConfig::running(Path::new("/")),
    };
    let (mut config, from) = match &kernel_config {
        Ok(k) => (TrustConfig::from_config(k), k.source.display().to_string()),
        Err(e) => (
            TrustConfig::default(),
            format!("{e:#}; .ima looked up in /proc/keys"),
        ),
    };
    // The keyring the kernel made is the fact; the config only explains it.
    if has_ima {
        config.trusted_keyring = true;
    }
    if kernel_config.is_err() {
        // Unknown: do not refuse an ECDSA key for want of a config.
        config.ecdsa = true;
    }
    let anchors = if sources.trusted_keyrings.is_empty() {
        trusted_keys(&keys)
    } else {
        sources
            .trusted_keyrings
            .iter()
            .flat_map(|&serial| keys_on(&keys, serial, TrustedKeyring::Builtin))
            .collect()
    };
    // What is on .ima already got past its restriction (or was put there
    // by the kernel itself: the module signing certificate, with
    // CONFIG_IMA_APPRAISE_MODSIG, load_module_cert).
    let on_ima: Vec<KeyId> = rings(&keys, sources)
        .iter()
        .filter(|&&(name, _)| name == ".ima")
        .flat_map(|&(_, serial)| keyring_members(serial).unwrap_or_default())
        .filter_map(|serial| keys.iter().find(|k| k.serial == serial))
        .filter_map(ProcKey::asymmetric_id)
        .collect();
    let mut refused = Vec::new();
    let mut taken = Vec::new();
    for path in &certs {
        let cert = match Certificate::load(path) {
            Ok(c) => c,
            Err(e) => {
                refused.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if on_ima.contains(&cert.key_id()) {
            taken.push(format!("{}: already on .ima", path.display()));
            continue;
        }
        match ima_verdict(&cert, &config, &anchors) {
            Verdict::Userspace => taken.push(format!(
                "{}: no .ima in this kernel (no CONFIG_INTEGRITY_TRUSTED_KEYRING), _ima takes it",
                path.display()
            )),
            Verdict::Accepted { signer } => taken.push(format!(
                "{}: .ima takes it, signed by {} on {}",
                path.display(),
                signer.description,
                signer.keyring.name()
            )),
            Verdict::Refused(why) => refused.push(format!(
                "{}: the kernel refuses it on {}: {}",
                path.display(),
                if config.trusted_keyring {
                    ".ima"
                } else {
                    "_ima"
                },
                why.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
    if refused.is_empty() {
        r.ok(
            CheckId::KeyringTrust,
            format!("{} ({from})", taken.join("; ")),
        );
    } else {
        let fix = if config.trusted_keyring {
            let mut ways = vec![
                "a local CA built into the kernel (CONFIG_SYSTEM_TRUSTED_KEYS; a \
                 /etc/kernel/config.d fragment for gentoo-kernel)",
                "gentoo-kernel's module signing key (USE=modules-sign, MODULES_SIGN_KEY)",
            ];
            if config.permit_secondary && config.machine_keyring {
                ways.push("a MOK CA (mokutil --import, shim's MokListTrustedRT)");
            }
            format!(
                "sign the IMA certificate (CA:FALSE, keyUsage digitalSignature, \
                 authorityKeyIdentifier) with a key the kernel trusts: {}; portage-ima setup \
                 plans this",
                ways.join(", or ")
            )
        } else {
            "make the certificate again (portage-ima setup): the kernel must be able to parse it"
                .to_string()
        };
        refused.extend(taken);
        r.fail(
            CheckId::KeyringTrust,
            format!("{} ({from})", refused.join("; ")),
            fix,
        );
    }
}
