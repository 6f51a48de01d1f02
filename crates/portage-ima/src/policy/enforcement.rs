//! Whether the running kernel appraises, and enforces, what root executes:
//! the question behind fail-safe merges (`enforce = "auto"` in ima.toml).
//!
//! Two facts decide it:
//!
//! - the appraise mode. `ima_appraise=` on the command line (`enforce`,
//!   `fix`, `log`, `off`; the kernel's default is enforce), except that a
//!   kernel booted with Secure Boot ignores it and enforces
//!   (ima_appraise.c, `default_appraise_setup`; [`crate::kernel::secure_boot`]);
//! - the policy: whether a rule appraises `BPRM_CHECK` by uid 0 of a
//!   root-owned file on the filesystem packages are merged into, matched
//!   the kernel's way ([`super::eval`]). The loaded policy is read
//!   from securityfs where the kernel lets it be read
//!   (CONFIG_IMA_READ_POLICY); else the policy the boot loads,
//!   `/etc/ima/ima-policy` (a custom policy replaces the built-in one);
//!   else the built-in `ima_policy=appraise_tcb`, which appraises every
//!   file root owns.
//!
//! A kernel whose securityfs is mounted without an `ima` directory has no
//! IMA. What cannot be read or parsed counts as not enforced, with the
//! reason: the hook then warns as before rather than stopping every merge.
//! Only the running system is enforced: a merge into another ROOT
//! (`ROOT=/mnt/gentoo emerge`) is not run by this kernel.

use std::fs;
use std::path::Path;

use super::eval::{appraisal, Appraisal, FileAccess, FileSystem};
use super::rule::{Access, Func};
use super::setup::FsInfo;
use crate::kernel::secure_boot::{self, SecureBoot};
use crate::kernel::system::cmdline_value;
use crate::settings::Enforce;

/// Where securityfs is mounted, and IMA's directory in it.
pub(crate) const SECURITYFS: &str = "/sys/kernel/security";
const IMA_DIR: &str = "/sys/kernel/security/ima";
const LOADED_POLICY: &str = "/sys/kernel/security/ima/policy";
const BOOT_POLICY: &str = "/etc/ima/ima-policy";

/// What the kernel does to an unsigned program root runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Enforcement {
    /// It is refused; the string says why we think so.
    Enforced(String),
    /// It runs (or we cannot tell); the string says why.
    NotEnforced(String),
}

impl Enforcement {
    pub(crate) fn enforced(&self) -> bool {
        matches!(self, Enforcement::Enforced(_))
    }

    pub(crate) fn reason(&self) -> &str {
        match self {
            Enforcement::Enforced(r) | Enforcement::NotEnforced(r) => r,
        }
    }
}

/// The policy the kernel applies, as far as it can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PolicySource {
    /// The loaded policy (securityfs).
    Loaded(String),
    /// The policy the boot loads, not readable from the kernel.
    Boot(String),
    /// Neither is readable.
    None,
}

/// Everything the decision reads, gathered so tests can give their own.
#[derive(Clone, Debug)]
pub(crate) struct KernelFacts {
    /// `Some(false)`: securityfs is mounted and has no `ima` directory.
    pub ima: Option<bool>,
    pub policy: PolicySource,
    pub cmdline: String,
    pub secure_boot: SecureBoot,
    /// The filesystem packages are merged into.
    pub system_fs: FileSystem,
}

impl KernelFacts {
    /// Reads the running system; `eroot` is where packages are merged.
    pub(crate) fn read(eroot: &Path) -> KernelFacts {
        let ima = if Path::new(IMA_DIR).is_dir() {
            Some(true)
        } else if fs::read_dir(SECURITYFS).is_ok_and(|mut d| d.next().is_some()) {
            Some(false)
        } else {
            None
        };
        let policy = match fs::read_to_string(LOADED_POLICY) {
            Ok(text) => PolicySource::Loaded(text),
            Err(_) => match fs::read_to_string(BOOT_POLICY) {
                Ok(text) => PolicySource::Boot(text),
                Err(_) => PolicySource::None,
            },
        };
        KernelFacts {
            ima,
            policy,
            cmdline: fs::read_to_string("/proc/cmdline").unwrap_or_default(),
            secure_boot: SecureBoot::read(Path::new(secure_boot::EFIVARS)),
            system_fs: FsInfo::of(eroot)
                .map(|f| f.file_system())
                .unwrap_or_default(),
        }
    }
}

/// The decision for the setting: `auto` detects it on the running system
/// when `root` is `/`.
pub(crate) fn decide(setting: Enforce, root: &Path, eroot: &Path) -> Enforcement {
    match setting {
        Enforce::Yes => Enforcement::Enforced("enforce = true in ima.toml".into()),
        Enforce::No => Enforcement::NotEnforced("enforce = false in ima.toml".into()),
        Enforce::Auto if root != Path::new("/") => Enforcement::NotEnforced(format!(
            "ROOT={} is not the running system (enforce = \"auto\")",
            root.display()
        )),
        Enforce::Auto => detect(&KernelFacts::read(eroot)),
    }
}

/// Decides from gathered facts (see the module docs).
pub(crate) fn detect(f: &KernelFacts) -> Enforcement {
    use Enforcement::{Enforced, NotEnforced};
    if f.ima == Some(false) {
        return NotEnforced(
            "the running kernel has no IMA (securityfs has no ima directory)".into(),
        );
    }
    let mode = match (
        f.secure_boot.cmdline_appraise_honoured(),
        cmdline_value(&f.cmdline, "ima_appraise"),
    ) {
        (false, Some(v)) => {
            format!("Secure Boot is on, so the kernel ignores ima_appraise={v} and enforces")
        }
        (false, None) => "Secure Boot is on (ima_appraise= would be ignored): enforce".into(),
        (true, None) => "no ima_appraise= on the command line: the default, enforce".into(),
        (true, Some("enforce")) => "ima_appraise=enforce".into(),
        (true, Some(other)) => {
            return NotEnforced(format!("ima_appraise={other}: the kernel denies nothing"));
        }
    };
    let builtin_tcb = cmdline_value(&f.cmdline, "ima_policy")
        .is_some_and(|v| v.contains("appraise_tcb"))
        || f.cmdline
            .split_whitespace()
            .any(|w| w == "ima_appraise_tcb");
    let (source, text) = match &f.policy {
        PolicySource::Loaded(text) => (format!("{LOADED_POLICY} (loaded)"), text.as_str()),
        PolicySource::Boot(text) => (format!("{BOOT_POLICY} (loaded at boot)"), text.as_str()),
        // The built-in policy, as far as programs go: files root owns.
        PolicySource::None if builtin_tcb => {
            ("ima_policy=appraise_tcb".into(), "appraise fowner=0\n")
        }
        PolicySource::None => {
            return NotEnforced(format!(
                "no appraise policy found: {LOADED_POLICY} is not readable and there is no \
                 {BOOT_POLICY}"
            ))
        }
    };
    let policy = match super::parse_policy(text) {
        Ok(p) => p,
        Err(e) => return NotEnforced(format!("{source} cannot be read as a policy: {e}")),
    };
    let exec_by_root = FileAccess {
        func: Func::BprmCheck,
        mask: vec![Access::Exec],
        uid: 0,
        euid: 0,
        gid: 0,
        egid: 0,
        fowner: 0,
        fgroup: 0,
        fs: f.system_fs.clone(),
    };
    match appraisal(&policy, &exec_by_root) {
        Appraisal::Appraised { line, rule, .. } => Enforced(format!(
            "{source} line {line} `{rule}` appraises the programs root runs, and {mode}"
        )),
        Appraisal::Exempted { line, rule } => NotEnforced(format!(
            "{source} line {line} `{rule}` exempts the programs root runs"
        )),
        Appraisal::NotCovered => {
            NotEnforced(format!("{source} does not appraise the programs root runs"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT4: u64 = 0xef53;
    const ROOT_EXEC: &str = "dont_appraise fsmagic=0x1021994\n\
                             appraise func=BPRM_CHECK uid=0 appraise_type=imasig\n";

    fn facts(policy: PolicySource, cmdline: &str, secure_boot: SecureBoot) -> KernelFacts {
        KernelFacts {
            ima: Some(true),
            policy,
            cmdline: cmdline.into(),
            secure_boot,
            system_fs: FileSystem {
                magic: EXT4,
                uuid: None,
                name: None,
            },
        }
    }

    fn off() -> SecureBoot {
        SecureBoot::Disabled("SecureBoot is 0".into())
    }

    #[test]
    fn loaded_policy_and_command_line() {
        let loaded = || PolicySource::Loaded(ROOT_EXEC.into());
        let e = detect(&facts(
            loaded(),
            "root=/dev/sda ima_appraise=enforce",
            off(),
        ));
        assert!(e.enforced(), "{e:?}");
        assert!(
            e.reason()
                .contains("line 2 `appraise func=BPRM_CHECK uid=0"),
            "{e:?}"
        );
        // The kernel's default mode is enforce.
        assert!(detect(&facts(loaded(), "root=/dev/sda", SecureBoot::NotUefi)).enforced());
        for mode in ["log", "fix", "off"] {
            let e = detect(&facts(
                loaded(),
                &format!("ima_appraise={mode} quiet"),
                off(),
            ));
            assert_eq!(
                e,
                Enforcement::NotEnforced(format!("ima_appraise={mode}: the kernel denies nothing"))
            );
        }
        // The last one wins; what follows ` -- ` is init's.
        assert!(!detect(&facts(
            loaded(),
            "ima_appraise=enforce ima_appraise=log",
            off()
        ))
        .enforced());
        assert!(detect(&facts(
            loaded(),
            "ima_appraise=enforce -- ima_appraise=log",
            off()
        ))
        .enforced());
    }

    #[test]
    fn secure_boot_ignores_the_command_line() {
        let e = detect(&facts(
            PolicySource::Boot(ROOT_EXEC.into()),
            "ima_appraise=log",
            SecureBoot::Enabled,
        ));
        assert!(e.enforced(), "{e:?}");
        assert!(e.reason().contains("ignores ima_appraise=log"), "{e:?}");
        assert!(
            e.reason()
                .starts_with("/etc/ima/ima-policy (loaded at boot) line 2"),
            "{e:?}"
        );
        // Secure Boot present but off: the command line counts again.
        let e = detect(&facts(
            PolicySource::Boot(ROOT_EXEC.into()),
            "ima_appraise=log",
            off(),
        ));
        assert!(!e.enforced(), "{e:?}");
    }

    #[test]
    fn policies_that_do_not_appraise_what_root_runs() {
        for text in [
            "measure func=BPRM_CHECK\n",
            "appraise func=BPRM_CHECK fowner=1000 appraise_type=imasig\n",
            "appraise func=MODULE_CHECK appraise_type=imasig\n",
        ] {
            let e = detect(&facts(PolicySource::Loaded(text.into()), "", off()));
            assert!(!e.enforced(), "{text}: {e:?}");
        }
        // Merged onto a tmpfs the policy exempts.
        let mut f = facts(PolicySource::Loaded(ROOT_EXEC.into()), "", off());
        f.system_fs.magic = 0x0102_1994;
        let e = detect(&f);
        assert!(
            e.reason()
                .contains("line 1 `dont_appraise fsmagic=0x1021994` exempts"),
            "{e:?}"
        );
        // A policy the kernel would refuse is no reason to stop merges.
        let e = detect(&facts(
            PolicySource::Boot("appraise bogus=1\n".into()),
            "",
            off(),
        ));
        assert!(
            !e.enforced() && e.reason().contains("cannot be read"),
            "{e:?}"
        );
    }

    #[test]
    fn no_policy_file_no_ima() {
        let e = detect(&facts(PolicySource::None, "ima_appraise=enforce", off()));
        assert!(
            !e.enforced() && e.reason().starts_with("no appraise policy"),
            "{e:?}"
        );
        // The built-in appraise_tcb appraises root's files.
        assert!(detect(&facts(PolicySource::None, "ima_policy=appraise_tcb", off())).enforced());
        assert!(detect(&facts(
            PolicySource::None,
            "ima_appraise_tcb",
            SecureBoot::Enabled
        ))
        .enforced());
        let mut f = facts(PolicySource::Boot(ROOT_EXEC.into()), "", off());
        f.ima = Some(false);
        assert!(!detect(&f).enforced());
    }

    #[test]
    fn the_setting_wins_and_other_roots_are_not_enforced() {
        let root = Path::new("/");
        assert!(decide(Enforce::Yes, Path::new("/mnt/gentoo"), root).enforced());
        assert!(!decide(Enforce::No, root, root).enforced());
        let e = decide(
            Enforce::Auto,
            Path::new("/mnt/gentoo"),
            Path::new("/mnt/gentoo"),
        );
        assert!(
            e.reason()
                .contains("ROOT=/mnt/gentoo is not the running system"),
            "{e:?}"
        );
    }
}
