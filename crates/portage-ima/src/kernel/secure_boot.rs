//! Whether the machine booted with UEFI Secure Boot, as the kernel decides
//! it, read from efivarfs.
//!
//! It matters to IMA because the kernel ignores `ima_appraise=` on the
//! command line when it booted with Secure Boot
//! (security/integrity/ima/ima_appraise.c, `default_appraise_setup`:
//! "Secure boot enabled: ignoring ima_appraise=%s option"): there is no
//! log-mode first boot and no log-mode recovery on such a machine.
//!
//! The kernel's own rule (drivers/firmware/efi/libstub/secureboot.c,
//! `efi_get_secureboot`): Secure Boot is on when the `SecureBoot` variable
//! is 1, `SetupMode` is not 1, and shim was not put into insecure mode
//! (`MokSBState` 1, mirrored at run time as `MokSBStateRT`). An efivarfs
//! file holds a 4-byte attribute word, then the variable's data.

use std::fs;
use std::io;
use std::path::Path;

/// Where efivarfs is mounted on a running system.
pub(crate) const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// The UEFI global variable GUID (`SecureBoot`, `SetupMode`).
const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// shim's variable GUID (`MokSBStateRT`).
const SHIM_GUID: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// The Secure Boot state, with what it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecureBoot {
    /// Booted with Secure Boot enforced: `ima_appraise=` is ignored.
    Enabled,
    /// Firmware with Secure Boot, but it is off, in setup mode, or shim's
    /// validation is disabled; the string says which.
    Disabled(String),
    /// No efivarfs at the given place: not booted through UEFI (or efivarfs
    /// is not mounted), so there is no Secure Boot.
    NotUefi,
    /// efivarfs is there but could not be read; the string says why.
    Unknown(String),
}

impl SecureBoot {
    /// Reads the state from an efivarfs directory ([`EFIVARS`] on a running
    /// system; a scratch directory in tests).
    pub fn read(efivars: &Path) -> SecureBoot {
        if !efivars.is_dir() {
            return SecureBoot::NotUefi;
        }
        let secure_boot = match read_byte(efivars, "SecureBoot", GLOBAL_GUID) {
            Ok(Some(v)) => v,
            // The kernel: no SecureBoot variable means Secure Boot is off.
            Ok(None) => {
                return SecureBoot::Disabled("the firmware has no SecureBoot variable".into())
            }
            Err(e) => return SecureBoot::Unknown(e),
        };
        if secure_boot != 1 {
            return SecureBoot::Disabled("SecureBoot is 0 (off in the firmware)".into());
        }
        match read_byte(efivars, "SetupMode", GLOBAL_GUID) {
            Ok(Some(1)) => return SecureBoot::Disabled("the firmware is in setup mode".into()),
            Ok(_) => {}
            Err(e) => return SecureBoot::Unknown(e),
        }
        match read_byte(efivars, "MokSBStateRT", SHIM_GUID) {
            Ok(Some(1)) => SecureBoot::Disabled(
                "shim's validation is disabled (MokSBState, mokutil --disable-validation)".into(),
            ),
            // The kernel: "If it fails, we don't care why. Default to secure".
            _ => SecureBoot::Enabled,
        }
    }

    /// Whether the kernel honours `ima_appraise=` from its command line.
    pub fn cmdline_appraise_honoured(&self) -> bool {
        !matches!(self, SecureBoot::Enabled)
    }
}

/// Whether shim's Machine Owner Key list is there (`MokListRT`, which shim
/// mirrors at run time): keys enrolled with `mokutil --import` reach the
/// kernel's `.machine` keyring from it.
pub(crate) fn mok_list_present(efivars: &Path) -> bool {
    efivars.join(format!("MokListRT-{SHIM_GUID}")).exists()
}

/// The first data byte of `NAME-GUID`, `None` when the variable is absent.
fn read_byte(efivars: &Path, name: &str, guid: &str) -> Result<Option<u8>, String> {
    let path = efivars.join(format!("{name}-{guid}"));
    match fs::read(&path) {
        Ok(data) if data.len() >= 5 => Ok(Some(data[4])),
        Ok(data) => Err(format!(
            "{}: {} bytes, expected a 4-byte attribute word and data",
            path.display(),
            data.len()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(dir: &Path, name: &str, guid: &str, value: u8) {
        // Attributes: non-volatile, boot-service and run-time access (7).
        fs::write(dir.join(format!("{name}-{guid}")), [7, 0, 0, 0, value]).unwrap();
    }

    #[test]
    fn states() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            SecureBoot::read(&dir.path().join("absent")),
            SecureBoot::NotUefi
        );
        assert!(matches!(
            SecureBoot::read(dir.path()),
            SecureBoot::Disabled(_)
        ));

        var(dir.path(), "SecureBoot", GLOBAL_GUID, 1);
        var(dir.path(), "SetupMode", GLOBAL_GUID, 0);
        assert_eq!(SecureBoot::read(dir.path()), SecureBoot::Enabled);
        assert!(!SecureBoot::read(dir.path()).cmdline_appraise_honoured());

        var(dir.path(), "MokSBStateRT", SHIM_GUID, 1);
        assert!(
            matches!(SecureBoot::read(dir.path()), SecureBoot::Disabled(r) if r.contains("shim"))
        );
        fs::remove_file(dir.path().join(format!("MokSBStateRT-{SHIM_GUID}"))).unwrap();

        var(dir.path(), "SetupMode", GLOBAL_GUID, 1);
        assert!(
            matches!(SecureBoot::read(dir.path()), SecureBoot::Disabled(r) if r.contains("setup"))
        );

        var(dir.path(), "SetupMode", GLOBAL_GUID, 0);
        var(dir.path(), "SecureBoot", GLOBAL_GUID, 0);
        assert!(SecureBoot::read(dir.path()).cmdline_appraise_honoured());

        fs::write(dir.path().join(format!("SecureBoot-{GLOBAL_GUID}")), [7]).unwrap();
        assert!(matches!(
            SecureBoot::read(dir.path()),
            SecureBoot::Unknown(_)
        ));
    }
}
