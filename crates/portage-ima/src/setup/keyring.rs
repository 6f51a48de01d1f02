//! Which way the IMA certificate reaches the keyring the kernel checks
//! signatures with, from the running kernel's configuration.
//!
//! The kernel's rules are [`crate::kernel::ima_trust`]'s (which cites
//! security/integrity/digsig.c, certs/system_keyring.c and
//! crypto/asymmetric_keys/restrict.c):
//!
//! - Without `CONFIG_INTEGRITY_TRUSTED_KEYRING` IMA looks keys up on the
//!   `_ima` keyring, which anyone with root creates and fills
//!   (`keyctl newring _ima @u`): any certificate will do.
//! - With it, IMA uses `.ima`, which accepts only a certificate with
//!   keyUsage digitalSignature, not a CA, signed by a key on the builtin
//!   trusted keyring, or, with
//!   `CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY`, on the
//!   secondary one, which links the machine keyring
//!   (`CONFIG_INTEGRITY_MACHINE_KEYRING`, 5.18+, filled from shim's MOK
//!   list; with `CONFIG_INTEGRITY_CA_MACHINE_KEYRING` only CAs with
//!   keyCertSign). So the machine keyring path needs both options.
//!   `CONFIG_IMA_LOAD_X509` goes through the same check.

use crate::gentoo::system::KernelPackage;
use crate::kernel::ima_trust::{TrustConfig, TrustedKeyring};

use super::Machine;

/// The four ways, as issue 21 numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyringPath {
    /// 1: no trusted keyring; the certificate goes on `_ima` at boot.
    UserKeyring,
    /// 2: a dist-kernel built with `USE=modules-sign`; the IMA certificate
    /// is signed with `MODULES_SIGN_KEY`, whose certificate is builtin.
    ModulesSignKey,
    /// 3: a local CA built into the kernel (`CONFIG_SYSTEM_TRUSTED_KEYS`)
    /// signs the IMA certificate.
    BuiltinCa,
    /// 4: a local CA enrolled in shim's MOK list (`mokutil --import`)
    /// signs the IMA certificate.
    MachineKeyring,
    /// None fits: a binary kernel with a trusted keyring and no machine
    /// keyring (gentoo-kernel-bin); the reason says what to change.
    Blocked,
}

impl KeyringPath {
    /// The number for it (0 for none).
    pub fn number(self) -> u8 {
        match self {
            KeyringPath::UserKeyring => 1,
            KeyringPath::ModulesSignKey => 2,
            KeyringPath::BuiltinCa => 3,
            KeyringPath::MachineKeyring => 4,
            KeyringPath::Blocked => 0,
        }
    }

    /// Whether a local CA is made to sign the IMA certificate.
    pub fn needs_ca(self) -> bool {
        matches!(self, KeyringPath::BuiltinCa | KeyringPath::MachineKeyring)
    }

    /// The keyring the certificate ends up on.
    pub fn keyring(self) -> &'static str {
        match self {
            KeyringPath::UserKeyring => "_ima",
            _ => ".ima",
        }
    }
}

/// The path chosen, and why, in words.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Choice {
    /// Which one.
    pub path: KeyringPath,
    /// Its number (1-4; 0 when none fits).
    pub number: u8,
    /// Why this one.
    pub why: String,
}

/// Chooses the path for `machine`.
pub fn choose(machine: &Machine) -> Choice {
    let config = &machine.kernel_config;
    let from = config.source.display();
    let choice = |path: KeyringPath, why: String| Choice {
        path,
        number: path.number(),
        why,
    };
    if !config.set("CONFIG_INTEGRITY_TRUSTED_KEYRING") {
        return choice(
            KeyringPath::UserKeyring,
            format!(
                "{from} has no CONFIG_INTEGRITY_TRUSTED_KEYRING: IMA checks signatures with \
                 the _ima keyring, which the boot service creates and loads the certificate into"
            ),
        );
    }
    if let KernelPackage::DistSource {
        cpv,
        modules_sign: true,
    } = &machine.kernel_package
    {
        if let Some(key) = &machine.modules_sign_key {
            return choice(
                KeyringPath::ModulesSignKey,
                format!(
                    "the kernel ({cpv}) is built with USE=modules-sign, so the certificate of \
                     its module signing key ({}) is on the builtin trusted keyring, and .ima \
                     accepts a certificate it signed",
                    key.source
                ),
            );
        }
    }
    // .ima trusts .machine only through the secondary keyring.
    let machine_keyring = TrustConfig::from_config(config)
        .searched()
        .contains(&TrustedKeyring::Machine);
    if machine_keyring && machine.mok {
        return choice(
            KeyringPath::MachineKeyring,
            format!(
                "{from} has CONFIG_INTEGRITY_MACHINE_KEYRING and \
                 CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY, and shim's MOK list \
                 is there: a local CA enrolled with mokutil reaches the .machine keyring, and \
                 .ima accepts a certificate it signed, with no kernel rebuild"
            ),
        );
    }
    match &machine.kernel_package {
        KernelPackage::DistSource { cpv, .. } => choice(
            KeyringPath::BuiltinCa,
            format!(
                "{from} has CONFIG_INTEGRITY_TRUSTED_KEYRING, so .ima accepts only certificates \
                 signed by a builtin key; {cpv} merges /etc/kernel/config.d, so a local CA goes \
                 in through CONFIG_SYSTEM_TRUSTED_KEYS at its next build"
            ),
        ),
        KernelPackage::Other => choice(
            KeyringPath::BuiltinCa,
            format!(
                "{from} has CONFIG_INTEGRITY_TRUSTED_KEYRING, so .ima accepts only certificates \
                 signed by a builtin key; no dist-kernel is installed, so the kernel is built \
                 here: a local CA goes in through CONFIG_SYSTEM_TRUSTED_KEYS at its next build"
            ),
        ),
        KernelPackage::DistBinary { cpv } => choice(
            KeyringPath::Blocked,
            format!(
                "{from} has CONFIG_INTEGRITY_TRUSTED_KEYRING, so .ima accepts only certificates \
                 signed by a builtin key, and {cpv} is built elsewhere (its signing key was \
                 thrown away){}: switch to sys-kernel/gentoo-kernel (USE=modules-sign, or a \
                 local CA through /etc/kernel/config.d) and run setup again",
                if machine_keyring {
                    "; .ima trusts its machine keyring, but shim's MOK list is not there (not \
                     booted through shim)"
                } else {
                    ""
                }
            ),
        ),
    }
}
