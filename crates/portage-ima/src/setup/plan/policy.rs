//! The IMA policy step: the policy `portage-ima policy` derives from
//! Portage's setup, where the boot route loads it from; under Secure Boot
//! (the kernel ignores `ima_appraise=`) an observe policy first, the
//! enforcing one beside it.

use std::path::Path;

use crate::gentoo::system::{Init, Initramfs};
use crate::kernel::secure_boot::SecureBoot;
use crate::policy::generate::Scope;
use crate::setup::{Choices, Machine};

use super::{current, write, Step, StepKind};

/// The policy the boot loads: systemd itself, the OpenRC service, dracut.
pub const POLICY: &str = "/etc/ima/ima-policy";
/// The policy portage-ima.service loads on systemd without an initramfs
/// (systemd would load /etc/ima/ima-policy before the unit's certificates).
pub const SYSTEMD_UNIT_POLICY: &str = "/etc/ima/portage-ima.policy";
/// What the enforcing policy's file is called under Secure Boot, beside the
/// observe policy the first boot loads: the policy's name with this added.
pub const ENFORCE_SUFFIX: &str = ".enforce";

/// Where the boot route setup installs loads the policy from.
pub fn policy_path(machine: &Machine) -> &'static str {
    if machine.init == Init::Systemd && machine.initramfs != Initramfs::Dracut {
        SYSTEMD_UNIT_POLICY
    } else {
        POLICY
    }
}

/// The policy step: the policy written where [`policy_path`] says.
pub(super) fn policy_step(
    machine: &Machine,
    portage: &crate::policy::Setup,
    choices: &Choices,
) -> Step {
    let policy = policy_path(machine);
    let enforce_path = format!("{policy}{ENFORCE_SUFFIX}");
    let scope = choices.appraise.unwrap_or(Scope::RootExec);
    let request = |observe| crate::policy::Request {
        scope,
        measure: false,
        require_signed_policy: false,
        observe,
    };
    let secure_boot = machine.secure_boot == SecureBoot::Enabled;
    let mut step = Step::new(
        StepKind::Policy,
        format!("Write the IMA policy {policy}"),
        "fitted to this machine's Portage setup (what `portage-ima policy` prints): it \
         appraises what --appraise asks and exempts what builds run; the boot loads it",
    );
    let enforcing = match crate::policy::generate(portage, &request(false)) {
        Ok(g) => g,
        Err(e) => {
            step.blocked = Some(e.to_string());
            return step;
        }
    };
    for w in &enforcing.warnings {
        step.reason += &format!("; note: {w}");
    }
    let enforcing = enforcing.policy.to_string();
    if policy == SYSTEMD_UNIT_POLICY {
        step.reason += "; systemd without an initramfs: portage-ima.service loads it after the \
                        certificates (systemd itself would load /etc/ima/ima-policy before them)";
        if machine.path(Path::new(POLICY)).exists() {
            step.manual.push(format!(
                "remove {POLICY}: systemd loads it before portage-ima.service has put the \
                 certificate on the keyring, and everything appraised would then be refused"
            ));
        }
    }
    if !secure_boot {
        step.actions.push(write(policy, enforcing, 0o644));
        return step;
    }
    step.reason += "; Secure Boot is on, so the kernel ignores ima_appraise=log: the first boot \
                    loads an observe policy (measure and audit rules where the appraise rules \
                    will be: nothing refused), and the enforcing one waits beside it";
    let observe = match crate::policy::generate(portage, &request(true)) {
        Ok(g) => g.policy.to_string(),
        Err(e) => {
            step.blocked = Some(e.to_string());
            return step;
        }
    };
    // Once the admin put the enforcing policy in place, it stays.
    if current(machine, policy).as_deref() != Some(enforcing.as_str()) {
        step.actions.push(write(policy, observe, 0o644));
    }
    step.actions.push(write(&enforce_path, enforcing, 0o644));
    step
}
