//! The keyring path step: which way the certificate reaches the keyring
//! IMA checks signatures with (chosen in `setup/keyring.rs`), and what of
//! it is left for the admin (a MOK enrollment, a kernel built with the CA).

use crate::setup::keyring::{Choice, KeyringPath};
use crate::setup::Machine;

use super::{Step, StepKind, CA_CERT, CA_CERT_DER};

/// The keyring path step, in words; blocked when no path fits the kernel.
pub(super) fn keyring_step(machine: &Machine, choice: &Choice) -> Step {
    let mut step = Step::new(
        StepKind::Keyring,
        format!(
            "Keyring path {}: {}",
            choice.number,
            match choice.path {
                KeyringPath::UserKeyring => "the certificate goes on _ima at boot",
                KeyringPath::ModulesSignKey =>
                    "the IMA certificate is signed with MODULES_SIGN_KEY",
                KeyringPath::BuiltinCa =>
                    "a local CA built into the kernel signs the IMA certificate",
                KeyringPath::MachineKeyring =>
                    "a local CA enrolled in the MOK list signs the IMA certificate",
                KeyringPath::Blocked => "none fits this kernel",
            }
        ),
        choice.why.clone(),
    );
    match choice.path {
        KeyringPath::MachineKeyring => step.manual.push(format!(
            "mokutil --import {CA_CERT_DER}   (asks for a one-time password; at the next boot \
             shim's MokManager asks for it to enroll the CA)"
        )),
        KeyringPath::BuiltinCa
            if machine.kernel_config.string("CONFIG_SYSTEM_TRUSTED_KEYS") != Some(CA_CERT) =>
        {
            step.reason += &format!(
                "; the kernel must be built with CONFIG_SYSTEM_TRUSTED_KEYS=\"{CA_CERT}\" \
                 (the kernel options step)"
            );
        }
        KeyringPath::Blocked => step.blocked = Some(choice.why.clone()),
        _ => {}
    }
    step
}
