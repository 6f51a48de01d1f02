//! The boot integration step: what puts the certificate on the keyring
//! and loads the policy at boot (the OpenRC service, the systemd unit, or
//! systemd itself after dracut's `integrity` module), and the initramfs's
//! part of it.

use std::path::Path;

use crate::gentoo::system::{Init, Initramfs};
use crate::setup::Machine;

use super::{current, write, Action, Step, StepKind, SYSTEMD_UNIT_POLICY};

/// The OpenRC service the ebuild installs.
pub const OPENRC_SERVICE: &str = "/etc/init.d/portage-ima";
/// Its link in the boot runlevel (`rc-update add portage-ima boot`).
pub const OPENRC_LINK: &str = "/etc/runlevels/boot/portage-ima";
/// The systemd unit the ebuild installs.
pub const SYSTEMD_UNIT: &str = "/usr/lib/systemd/system/portage-ima.service";
/// Its link (`systemctl enable portage-ima.service`).
pub const SYSTEMD_LINK: &str = "/etc/systemd/system/sysinit.target.wants/portage-ima.service";
/// Where dracut's `integrity` module loads IMA keys from (`IMAKEYSDIR`).
pub const DRACUT_KEYS_DIR: &str = "/etc/keys/ima";
/// The dracut configuration that adds the `integrity` module.
pub const DRACUT_CONF: &str = "/etc/dracut.conf.d/portage-ima.conf";
/// dracut's configuration as shipped (boot/dracut/portage-ima.conf).
const SHIPPED_DRACUT_CONF: &str = include_str!("../../../../../boot/dracut/portage-ima.conf");

/// The boot step for this init and initramfs.
pub(super) fn boot_step(machine: &Machine, cert: &Path) -> Step {
    let mut step = Step::new(
        StepKind::Boot,
        "Load the certificate and the policy at boot",
        "",
    );
    match machine.init {
        Init::Openrc => {
            step.reason = "OpenRC: the portage-ima service in the boot runlevel puts the \
                           certificate on the IMA keyring, then loads /etc/ima/ima-policy, and \
                           fails loudly (the equivalent of rc-update add portage-ima boot)"
                .into();
            step.actions.push(Action::Symlink {
                path: OPENRC_LINK.into(),
                target: OPENRC_SERVICE.into(),
            });
            if !machine.path(Path::new(OPENRC_SERVICE)).exists() {
                step.manual.push(format!(
                    "{OPENRC_SERVICE} is missing: reinstall app-portage/portage-ima (it ships it)"
                ));
            }
        }
        Init::Systemd if machine.initramfs == Initramfs::Dracut => {
            step.reason = "systemd loads /etc/ima/ima-policy itself, before any unit; dracut's \
                           integrity module puts the certificate on the keyring before that, in \
                           the initramfs, so portage-ima.service is not needed"
                .into();
        }
        Init::Systemd => {
            step.reason = format!(
                "systemd without an initramfs: portage-ima.service puts the certificate on the \
                 IMA keyring, then loads {SYSTEMD_UNIT_POLICY} (the equivalent of systemctl \
                 enable portage-ima.service)"
            );
            step.actions.push(Action::Symlink {
                path: SYSTEMD_LINK.into(),
                target: SYSTEMD_UNIT.into(),
            });
            if !machine.path(Path::new(SYSTEMD_UNIT)).exists() {
                step.manual.push(format!(
                    "{SYSTEMD_UNIT} is missing: reinstall app-portage/portage-ima (it ships it)"
                ));
            }
        }
    }
    match &machine.initramfs {
        Initramfs::Dracut => {
            step.reason += "; dracut: its integrity module loads /etc/keys/ima/* in the \
                            initramfs, so the certificate goes there too, and a dracut.conf.d \
                            file adds the module";
            let name = cert
                .file_name()
                .map_or("x509_ima.der".into(), |n| n.to_string_lossy().into_owned());
            step.actions.push(Action::Copy {
                from: cert.to_path_buf(),
                to: Path::new(DRACUT_KEYS_DIR).join(name),
            });
            // A copy of the shipped file (the ebuild puts it under
            // /usr/share/portage-ima/dracut/), unless one adds the module already.
            let has_module = current(machine, DRACUT_CONF).is_some_and(|c| c.contains("integrity"));
            if !has_module {
                step.actions
                    .push(write(DRACUT_CONF, SHIPPED_DRACUT_CONF.into(), 0o644));
            }
            step.manual.push(
                "dracut --force --kver \"$(uname -r)\"   (rebuilds the initramfs with the \
                 integrity module and the certificate)"
                    .into(),
            );
        }
        Initramfs::Unsupported(name) => {
            step.reason += &format!("; {name} is not configured by setup");
            step.manual.push(format!(
                "{name}: setup does not configure it. The boot service loads the keys after the \
                 initramfs; if your initramfs runs programs after loading a policy, put \
                 {} on the IMA keyring in it yourself (keyctl padd asymmetric '' %keyring:.ima, \
                 or %keyring:_ima on a kernel without a trusted keyring)",
                cert.display()
            ));
        }
        Initramfs::None => {}
    }
    step
}
