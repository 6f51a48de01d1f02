//! The kernel options step: what appraisal needs built in (the shipped
//! `boot/kernel/portage-ima.config`, less the unused signature algorithm)
//! that the running kernel's configuration lacks; a fragment the
//! dist-kernel merges at its build, or options to set by hand.

use crate::gentoo::system::KernelPackage;
use crate::setup::keyring::{Choice, KeyringPath};
use crate::setup::{Algorithm, Machine};

use super::{write, Step, StepKind, CA_CERT};

/// The kernel configuration fragment for a dist-kernel.
pub const KERNEL_FRAGMENT: &str = "/etc/kernel/config.d/portage-ima.config";
/// The options appraisal needs, as shipped (boot/kernel/portage-ima.config).
const SHIPPED_KERNEL_OPTIONS: &str = include_str!("../../../../../boot/kernel/portage-ima.config");

/// The options of the shipped fragment (`NAME=y` lines), but for the
/// signature algorithm not used: ECDSA for RSA keys, RSA for P-256 ones.
fn appraisal_options(algorithm: Algorithm) -> impl Iterator<Item = &'static str> {
    SHIPPED_KERNEL_OPTIONS
        .lines()
        .filter_map(|l| l.strip_suffix("=y"))
        .filter(|o| o.starts_with("CONFIG_"))
        .filter(move |o| match algorithm {
            Algorithm::Rsa => *o != "CONFIG_CRYPTO_ECDSA",
            Algorithm::P256 => *o != "CONFIG_CRYPTO_RSA",
        })
}

/// The options the running kernel lacks, and the step that adds them;
/// with the rebuild the admin must do before the first boot.
pub(super) fn kernel_step(
    machine: &Machine,
    choice: &Choice,
    algorithm: Algorithm,
) -> Option<(Step, Option<String>)> {
    let config = &machine.kernel_config;
    let mut lines: Vec<String> = appraisal_options(algorithm)
        .filter(|o| !config.builtin(o))
        .map(|o| format!("{o}=y"))
        .collect();
    if choice.path == KeyringPath::BuiltinCa
        && config.string("CONFIG_SYSTEM_TRUSTED_KEYS") != Some(CA_CERT)
    {
        if !config.builtin("CONFIG_SYSTEM_TRUSTED_KEYRING") {
            lines.push("CONFIG_SYSTEM_TRUSTED_KEYRING=y".into());
        }
        lines.push(format!("CONFIG_SYSTEM_TRUSTED_KEYS=\"{CA_CERT}\""));
    }
    if lines.is_empty() {
        return None;
    }
    let mut step = Step::new(
        StepKind::Kernel,
        "Kernel options the running kernel lacks",
        format!(
            "{} does not set them, and appraisal (or the chosen keyring path) needs them built in",
            config.source.display()
        ),
    );
    let fragment = format!(
        "# portage-ima setup: what IMA appraisal needs that the running kernel lacks\n{}\n",
        lines.join("\n")
    );
    let rebuild = match &machine.kernel_package {
        KernelPackage::DistSource { cpv, .. } => {
            step.actions.push(write(KERNEL_FRAGMENT, fragment, 0o644));
            step.reason += "; the dist-kernel merges /etc/kernel/config.d at its build";
            let name = cpv
                .split_once('/')
                .and_then(|(c, pf)| crate::gentoo::cpv::Cpv::new(c, pf).ok())
                .map_or_else(|| cpv.clone(), |c| c.cpn());
            let r =
                format!("emerge --oneshot {name}   (rebuilds the kernel with {KERNEL_FRAGMENT})");
            step.manual.push(r.clone());
            Some(r)
        }
        KernelPackage::DistBinary { cpv } => {
            step.blocked = Some(format!(
                "{cpv} is built elsewhere and cannot take options: switch to \
                 sys-kernel/gentoo-kernel, which merges /etc/kernel/config.d"
            ));
            None
        }
        KernelPackage::Other => {
            step.manual
                .push(format!("set in your kernel's .config: {}", lines.join(" ")));
            let r = "rebuild and install the kernel with these options (make olddefconfig, make, \
                     make modules_install install)"
                .to_string();
            step.manual.push(r.clone());
            Some(r)
        }
    };
    Some((step, rebuild))
}
