//! UEFI Secure Boot, and what it changes for a first boot and a recovery.
//!
//! Under Secure Boot the kernel ignores `ima_appraise=` on its command
//! line (security/integrity/ima/ima_appraise.c, `default_appraise_setup`,
//! which logs "Secure boot enabled: ignoring ima_appraise=%s option"): a
//! loaded appraise policy always enforces. So the first boot cannot be a
//! `ima_appraise=log` one (`portage-ima policy --observe` writes a policy
//! that only measures and audits instead), and a recovery cannot be either:
//! it boots with `init=/bin/sh`, so that init, which loads the custom
//! policy, never runs.
//!
//! That needs a boot loader that takes command-line edits. A unified kernel
//! image (UKI) booted by systemd-stub ignores them under Secure Boot when it
//! embeds its command line; systemd-stub announces itself with the
//! `StubInfo` EFI variable (systemd's loader GUID), which is what is
//! detected here. Read: efivarfs ([`SecureBoot::read`]), the kernel log
//! (`/dev/kmsg`, or a file given with the hidden `--kernel-log`), and
//! `/proc/cmdline`.

use std::path::Path;

use super::{CheckId, Report};
use crate::kernel::secure_boot::SecureBoot;

/// systemd's boot loader interface GUID (`StubInfo`, `LoaderEntrySelected`).
const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The kernel's own words when it ignores the command line's mode.
const IGNORING: &str = "Secure boot enabled: ignoring ima_appraise=";

const FIRST_BOOT: &str =
    "first boot: write `portage-ima policy --observe` to /etc/ima/ima-policy, \
     boot, run `portage-ima audit --measurements` and sign what it lists, then write the policy \
     without --observe";

/// The value in "ignoring ima_appraise=VALUE option", when the log has it.
pub(super) fn ignored_mode(kernel_log: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(kernel_log);
    let line = text.lines().rev().find(|l| l.contains(IGNORING))?;
    let rest = &line[line.find(IGNORING)? + IGNORING.len()..];
    Some(
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Whether systemd-stub (a UKI) started this kernel, and the variable
/// that says so.
fn uki_boot(efivars: &Path) -> Option<String> {
    let name = format!("StubInfo-{LOADER_GUID}");
    efivars.join(&name).exists().then_some(name)
}

/// The `secure-boot` and `recovery` checks. `kernel_log` is the log's text,
/// or why it could not be read; `cmdline` is /proc/cmdline's.
pub(super) fn check_secure_boot(
    r: &mut Report,
    efivars: &Path,
    kernel_log: Result<Vec<u8>, String>,
    cmdline: &str,
) {
    let state = SecureBoot::read(efivars);
    let ignored = kernel_log.as_deref().ok().and_then(ignored_mode);
    let log_words = match (&kernel_log, &ignored) {
        (_, Some(mode)) => format!("the kernel logged \"{IGNORING}{mode} option\""),
        (Ok(_), None) => "the kernel log has no line about ignoring ima_appraise=".into(),
        (Err(e), None) => format!("the kernel log could not be read ({e})"),
    };
    let asked = crate::kernel::system::cmdline_value(cmdline, "ima_appraise");
    let enabled = match &state {
        SecureBoot::Enabled => true,
        // The kernel's word wins over variables that could not be read.
        _ => ignored.is_some(),
    };
    if enabled {
        let asked_words = match asked {
            Some(mode) if mode != "enforce" => {
                format!("; ima_appraise={mode} on this command line has no effect")
            }
            _ => String::new(),
        };
        r.warn(
            CheckId::SecureBoot,
            format!(
                "UEFI Secure Boot is on ({}): the kernel ignores ima_appraise= on its command \
                 line, so a loaded appraise policy always enforces; {log_words}{asked_words}",
                match &state {
                    SecureBoot::Enabled =>
                        format!("SecureBoot=1, SetupMode=0 in {}", efivars.display()),
                    other => format!("the kernel says so, though efivars read {other:?}"),
                }
            ),
            format!(
                "no ima_appraise=log boot here. {FIRST_BOOT}. Recovery: boot with init=/bin/sh \
                 (see the recovery check and docs/secure-boot.md)"
            ),
        );
    } else {
        let why = match &state {
            SecureBoot::Disabled(why) => format!("Secure Boot is off: {why}"),
            SecureBoot::NotUefi => format!("not booted through UEFI (no {})", efivars.display()),
            SecureBoot::Unknown(e) => format!("Secure Boot state unknown ({e})"),
            SecureBoot::Enabled => unreachable!("handled above"),
        };
        r.ok(
            CheckId::SecureBoot,
            format!("{why}; ima_appraise= on the command line is honoured ({log_words})"),
        );
    }
    check_recovery(r, efivars, enabled, cmdline);
}

/// Whether `init=/bin/sh` can be given at boot to recover a locked-out machine.
fn check_recovery(r: &mut Report, efivars: &Path, secure_boot: bool, cmdline: &str) {
    // A built-in policy on the command line is loaded by the kernel, before
    // any init: init=/bin/sh does not avoid it.
    let builtin = crate::kernel::system::cmdline_value(cmdline, "ima_policy")
        .filter(|p| p.contains("appraise") || p.contains("secure_boot"));
    let builtin_words = builtin.map_or(String::new(), |p| {
        format!(
            "; ima_policy={p} on the command line is the kernel's own and applies under \
             init=/bin/sh too: remove it for the recovery boot"
        )
    });
    match (secure_boot, uki_boot(efivars)) {
        (true, Some(var)) => r.warn(
            CheckId::Recovery,
            format!(
                "booted from a unified kernel image by systemd-stub ({var} is set): under \
                 Secure Boot it ignores command-line edits when the image embeds its command \
                 line, so init=/bin/sh cannot be added at boot{builtin_words}"
            ),
            "add a rescue boot entry now, while the machine boots: a second UKI, signed for \
             this machine's Secure Boot keys, whose embedded command line has init=/bin/sh \
             (docs/secure-boot.md)",
        ),
        (true, None) => r.ok(
            CheckId::Recovery,
            format!(
                "no systemd-stub UKI detected (no StubInfo variable): edit the command line at \
                 the boot loader (grub: e) and add init=/bin/sh, then mount / read-write, sign \
                 (portage-ima sign, or audit --fix) and reboot; the custom policy is loaded by \
                 init, so it is never loaded{builtin_words}"
            ),
        ),
        (false, _) => r.ok(
            CheckId::Recovery,
            format!(
                "boot once with ima_appraise=log (or init=/bin/sh), sign what audit lists, \
                 reboot{builtin_words}"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_line() {
        let log = b"6,93,31000,-;secureboot: Secure boot enabled\n\
                    5,94,31200,-;ima: Secure boot enabled: ignoring ima_appraise=log option\n";
        assert_eq!(ignored_mode(log).as_deref(), Some("log"));
        assert_eq!(
            ignored_mode(b"ima: Allocated hash algorithm: sha256\n"),
            None
        );
    }
}
