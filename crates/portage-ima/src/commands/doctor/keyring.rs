//! The kernel keyrings: is the certificate on `.ima` or `_ima`? (Read
//! through [`crate::kernel::keyring`].)

use std::fs;

use ima_core::KeyId;

use super::{CheckId, Report};
use crate::kernel::keyring::{ima_keyrings, keyring_members, parse_proc_keys};
use crate::settings;

/// Whether the key id is on the `.ima` (trusted) or `_ima` (userspace) keyring.
pub(super) fn check_keyring(r: &mut Report, ima: bool, keyid: Option<KeyId>) {
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
    let rings = ima_keyrings(&keys);
    let Some(keyid) = keyid else {
        r.skip(
            CheckId::Keyring,
            "no key id to look for (the key and certificate did not load)",
        );
        return;
    };
    let load = format!(
        "load the certificate: keyctl padd asymmetric '' %keyring:_ima < {} (a kernel with \
         CONFIG_INTEGRITY_TRUSTED_KEYRING loads it into .ima at boot, signed by a built-in CA)",
        settings::DEFAULT_CERT
    );
    if rings.is_empty() {
        if ima {
            r.fail(
                CheckId::Keyring,
                format!(
                    "no .ima keyring and no _ima keyring reachable from this session: the \
                     kernel cannot find key {keyid}"
                ),
                format!("create it (keyctl newring _ima @u) and {load}"),
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
