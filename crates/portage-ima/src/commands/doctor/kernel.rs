//! The kernel: securityfs, IMA, the appraise mode, the hash, the policy.

use std::fs;
use std::path::{Path, PathBuf};

use ima_core::KeyId;

use super::keyring::{check_keyring, check_keyring_trust, KeyringSources};
use super::secure_boot::{check_secure_boot, ignored_mode};
use super::{CheckId, Report};
use crate::kernel::secure_boot::SecureBoot;
use crate::kernel::system::{cmdline_value, kernel_config_option, securityfs_mount};
use crate::settings::Settings;

/// What the kernel checks found, for the checks that depend on it.
#[derive(Debug, Default)]
pub(super) struct Kernel {
    /// IMA is built in (its securityfs directory exists).
    pub(super) ima: bool,
    /// Files are denied when their signature is bad.
    pub(super) enforcing: bool,
    /// The policy read (see [`read_policy`]), when it parsed.
    pub(super) policy: Option<LoadedPolicy>,
}

/// A policy and where it was read.
#[derive(Debug)]
pub(super) struct LoadedPolicy {
    /// The file read.
    pub(super) path: PathBuf,
    pub(super) policy: crate::policy::Policy,
}

/// The policy file the boot loads (systemd and Gentoo's init scripts).
pub(super) const BOOT_POLICY: &str = "etc/ima/ima-policy";

/// The policy text to check, the file, and why that one: `--policy FILE`,
/// else the loaded policy (securityfs, readable only with
/// CONFIG_IMA_READ_POLICY), else the file the boot loads under `root`.
fn read_policy(
    explicit: Option<&Path>,
    ima_dir: Option<&Path>,
    root: &Path,
) -> Option<(PathBuf, String, std::io::Result<String>)> {
    if let Some(path) = explicit {
        return Some((
            path.to_path_buf(),
            "--policy".into(),
            fs::read_to_string(path),
        ));
    }
    let loaded = ima_dir.map(|d| d.join("policy"));
    let unreadable = match loaded {
        Some(path) => match fs::read_to_string(&path) {
            Ok(text) => return Some((path, "the loaded policy".into(), Ok(text))),
            Err(e) => format!("{} is not readable ({e})", path.display()),
        },
        None => "no IMA securityfs".to_string(),
    };
    let boot = root.join(BOOT_POLICY);
    boot.exists().then(|| {
        let text = fs::read_to_string(&boot);
        let why = format!(
            "the policy the boot loads; {unreadable}: a kernel without \
             CONFIG_IMA_READ_POLICY keeps it write-only"
        );
        (boot, why, text)
    })
}

/// Where the Secure Boot checks read the firmware's variables and the
/// kernel log (hidden flags let tests give their own).
pub(super) struct KernelSources {
    pub(super) efivars: PathBuf,
    /// A file instead of /dev/kmsg.
    pub(super) kernel_log: Option<PathBuf>,
    /// What the keyring checks read instead of the running kernel's.
    pub(super) keyrings: KeyringSources,
}

/// securityfs, IMA, appraise mode, Secure Boot, the hash, the keyring, the policy.
pub(super) fn check_kernel(
    r: &mut Report,
    s: Option<&Settings>,
    keyid: Option<KeyId>,
    policy_file: Option<&Path>,
    root: &Path,
    sources: &KernelSources,
) -> Kernel {
    let mut k = Kernel::default();
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let securityfs = securityfs_mount(&mounts);
    match &securityfs {
        Some(dir) => r.ok(CheckId::Securityfs, format!("mounted on {}", dir.display())),
        None => r.warn(
            CheckId::Securityfs,
            "not mounted (no securityfs line in /proc/mounts): IMA's files cannot be read",
            "mount -t securityfs securityfs /sys/kernel/security (and add it to /etc/fstab)",
        ),
    }

    let ima_dir = securityfs.as_ref().and_then(|dir| {
        [dir.join("ima"), dir.join("integrity/ima")]
            .into_iter()
            .find(|d| d.is_dir())
    });
    match (&ima_dir, &securityfs) {
        (Some(dir), _) => {
            k.ima = true;
            r.ok(CheckId::Ima, format!("present ({})", dir.display()));
        }
        (None, Some(dir)) => r.warn(
            CheckId::Ima,
            format!(
                "not in this kernel: no ima under {}; signatures are written but nothing \
                 appraises them",
                dir.display()
            ),
            "build the kernel with CONFIG_IMA=y, CONFIG_IMA_APPRAISE=y, CONFIG_INTEGRITY_SIGNATURE=y, CONFIG_INTEGRITY_ASYMMETRIC_KEYS=y",
        ),
        (None, None) => match kernel_config_option("CONFIG_IMA") {
            Some((false, from)) => r.warn(
                CheckId::Ima,
                format!(
                    "not in this kernel (CONFIG_IMA is not set, per {from}): signatures are \
                     written but nothing appraises them"
                ),
                "build the kernel with CONFIG_IMA=y, CONFIG_IMA_APPRAISE=y, CONFIG_INTEGRITY_SIGNATURE=y, CONFIG_INTEGRITY_ASYMMETRIC_KEYS=y",
            ),
            Some((true, from)) => r.warn(
                CheckId::Ima,
                format!(
                    "built in (CONFIG_IMA=y, per {from}), but securityfs is not mounted, so its \
                     state cannot be read"
                ),
                "mount securityfs and run doctor again",
            ),
            None => r.warn(
                CheckId::Ima,
                "unknown: securityfs is not mounted, so IMA cannot be seen; if it is absent, \
                 signatures are written but nothing appraises them",
                "mount securityfs and run doctor again",
            ),
        },
    }

    let read = read_policy(policy_file, ima_dir.as_deref(), root);
    let read = read.map(|(path, why, text)| {
        let source = format!("{} ({why})", path.display());
        (path, source, text)
    });
    let (policy, policy_error, source) = match read {
        Some((path, source, Ok(text))) => {
            match crate::policy::parse_policy(&text) {
                Ok(parsed) => {
                    k.policy = Some(LoadedPolicy {
                        path,
                        policy: parsed,
                    })
                }
                Err(e) => r.fail(
                    CheckId::Policy,
                    format!("{source}: {e}: the kernel refuses the whole policy"),
                    "correct that line (`portage-ima policy` writes a policy fitted to this machine)",
                ),
            }
            (Some(Policy::parse(&text)), None, Some(source))
        }
        Some((_, source, Err(e))) => (None, Some(e), Some(source)),
        None => (None, None, None),
    };
    let policy_failed = r.checks.iter().any(|c| c.check == CheckId::Policy);
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let kernel_log = match &sources.kernel_log {
        Some(path) => fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            crate::kernel::kmsg::read().map_err(|e| format!("{}: {e}", crate::kernel::kmsg::KMSG))
        }
    };
    // Under Secure Boot the kernel ignored ima_appraise=: judge the mode
    // without it.
    let ignored = SecureBoot::read(&sources.efivars) == SecureBoot::Enabled
        || kernel_log.as_deref().ok().and_then(ignored_mode).is_some();
    let effective = if ignored {
        cmdline
            .split_whitespace()
            .filter(|w| !w.starts_with("ima_appraise="))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        cmdline.clone()
    };
    check_appraise(r, &mut k, &effective, policy.as_ref());
    if ignored {
        if let Some(c) = r.checks.last_mut().filter(|c| c.check == CheckId::Appraise) {
            c.finding = c.finding.replace(
                "ima_appraise not on the command line",
                "ima_appraise= ignored under Secure Boot",
            );
        }
    }
    check_secure_boot(r, &sources.efivars, kernel_log, &cmdline);

    match s {
        Some(s) => check_hash(r, s.hash.name()),
        None => r.skip(CheckId::Hash, "settings did not load"),
    }

    let cert = s.and_then(|s| s.cert());
    check_keyring(r, k.ima, keyid, cert.as_deref(), &sources.keyrings);
    check_keyring_trust(r, s, &sources.keyrings);

    match (&ima_dir, policy, source) {
        _ if policy_failed => {}
        (_, None, Some(source)) => r.fail(
            CheckId::Policy,
            format!(
                "{source}: {}",
                policy_error.map_or_else(|| "not readable".to_string(), |e| e.to_string())
            ),
            "give a readable policy file with --policy",
        ),
        (None, None, _) => r.skip(CheckId::Policy, "no IMA in this kernel to have a policy"),
        (Some(dir), None, _) => r.skip(
            CheckId::Policy,
            format!(
                "{}: not readable (a kernel without CONFIG_IMA_READ_POLICY keeps it \
                 write-only), and no {} to read instead; give the policy with --policy",
                dir.join("policy").display(),
                root.join(BOOT_POLICY).display(),
            ),
        ),
        (_, Some(p), source) => {
            let source = source.unwrap_or_default();
            if p.imasig > 0 {
                r.ok(CheckId::Policy, format!("{source}: {}", p.describe()));
            } else if p.appraise > 0 {
                r.warn(
                    CheckId::Policy,
                    format!("{source}: {}", p.describe()),
                    "add appraise_type=imasig to the appraise rules so unsigned files are refused, not merely checked against a digest",
                );
            } else {
                r.warn(
                    CheckId::Policy,
                    format!("{source}: {}", p.describe()),
                    "load a policy with appraise rules (e.g. appraise func=BPRM_CHECK appraise_type=imasig) or boot with ima_policy=appraise_tcb",
                );
            }
        }
    }
    k
}

/// The appraise rules of an IMA policy.
#[derive(Debug, Default, PartialEq, Eq)]
struct Policy {
    rules: usize,
    appraise: usize,
    /// Appraise rules that require a signature.
    imasig: usize,
}

impl Policy {
    fn parse(text: &str) -> Policy {
        let mut p = Policy::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            p.rules += 1;
            let mut words = line.split_whitespace();
            if words.next() == Some("appraise") {
                p.appraise += 1;
                if words.any(|w| {
                    w.strip_prefix("appraise_type=")
                        .is_some_and(|t| t.split('|').any(|t| t == "imasig"))
                }) {
                    p.imasig += 1;
                }
            }
        }
        p
    }

    fn describe(&self) -> String {
        format!(
            "{} rules, {} appraise, {} of them require a signature (appraise_type=imasig)",
            self.rules, self.appraise, self.imasig
        )
    }
}

/// The appraise mode (`ima_appraise=`), explained with the policy.
fn check_appraise(r: &mut Report, k: &mut Kernel, cmdline: &str, policy: Option<&Policy>) {
    if !k.ima {
        r.skip(
            CheckId::Appraise,
            "no IMA in this kernel (or securityfs not mounted)",
        );
        return;
    }
    let tcb = cmdline_value(cmdline, "ima_policy").is_some_and(|v| v.contains("appraise_tcb"))
        || cmdline.split_whitespace().any(|w| w == "ima_appraise_tcb");
    let tcb_note = if tcb {
        "; ima_policy=appraise_tcb appraises files owned by root"
    } else {
        ""
    };
    match cmdline_value(cmdline, "ima_appraise") {
        Some("enforce") => {
            k.enforcing = true;
            r.ok(
                CheckId::Appraise,
                format!("ima_appraise=enforce: files the policy appraises must verify{tcb_note}"),
            );
        }
        Some(mode @ ("fix" | "log" | "off")) => r.warn(
            CheckId::Appraise,
            format!(
                "ima_appraise={mode}: nothing is denied{}",
                if mode == "fix" {
                    ", unsigned files get a digest written"
                } else {
                    ""
                }
            ),
            "once every file is signed (portage-ima sign --all), boot with ima_appraise=enforce",
        ),
        Some(other) => r.warn(
            CheckId::Appraise,
            format!("ima_appraise={other}: not a mode the kernel knows (enforce, fix, log, off)"),
            "boot with ima_appraise=enforce",
        ),
        None => {
            // CONFIG_IMA_APPRAISE makes enforce the default; what is
            // appraised is up to the policy.
            let rules = policy.map(|p| p.appraise);
            match rules {
                Some(n) if n > 0 || tcb => {
                    k.enforcing = true;
                    r.ok(
                        CheckId::Appraise,
                        format!(
                            "ima_appraise not on the command line: the kernel default (enforce) \
                             applies to the policy's {n} appraise rules{tcb_note}"
                        ),
                    );
                }
                Some(_) => r.warn(
                    CheckId::Appraise,
                    "ima_appraise not on the command line and the policy has no appraise \
                     rules: nothing is appraised (the default mode, enforce, has nothing to \
                     act on)",
                    "load an appraise policy, or boot with ima_policy=appraise_tcb ima_appraise=enforce",
                ),
                None if tcb => {
                    k.enforcing = true;
                    r.ok(
                        CheckId::Appraise,
                        format!("ima_appraise not on the command line: default enforce{tcb_note}"),
                    );
                }
                None => r.warn(
                    CheckId::Appraise,
                    "ima_appraise not on the command line: the kernel default is enforce, but \
                     it only acts on appraise rules, and the policy is not readable here to \
                     tell whether there are any",
                    "boot with ima_appraise=enforce and an appraise policy to be explicit",
                ),
            }
        }
    }
}

/// Whether the kernel can compute the configured hash.
fn check_hash(r: &mut Report, name: &str) {
    let crypto = fs::read_to_string("/proc/crypto").unwrap_or_default();
    if let Some(driver) = crypto_driver(&crypto, name) {
        r.ok(CheckId::Hash, format!("{name} is available ({driver})"));
        return;
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let aliases = fs::read_to_string(format!("/lib/modules/{}/modules.alias", release.trim()))
        .unwrap_or_default();
    match crypto_module(&aliases, name) {
        Some(module) => r.warn(
            CheckId::Hash,
            format!(
                "{name} is not loaded; it is the module {module}: until it loads, IMA cannot \
                 check (or write) {name} signatures"
            ),
            format!(
                "modprobe {module}, and load it at boot: echo {module} > /etc/modules-load.d/ima-hash.conf"
            ),
        ),
        None => r.fail(
            CheckId::Hash,
            format!("{name} is not in /proc/crypto and no kernel module provides it"),
            format!("build the kernel with {name} (CONFIG_CRYPTO_SHA256 / CONFIG_CRYPTO_SHA512), or set hash to one /proc/crypto lists"),
        ),
    }
}

/// The driver of `name` in /proc/crypto text, when the kernel has it.
fn crypto_driver(crypto: &str, name: &str) -> Option<String> {
    crypto.split("\n\n").find_map(|block| {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        (field("name")? == name).then(|| {
            let driver = field("driver").unwrap_or_else(|| name.to_string());
            match field("module") {
                Some(m) if m != "kernel" => format!("driver {driver}, module {m}"),
                _ => format!("driver {driver}, built in"),
            }
        })
    })
}

/// The module that provides `crypto-<name>` in a modules.alias file.
fn crypto_module(aliases: &str, name: &str) -> Option<String> {
    let want = format!("crypto-{name}");
    aliases.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "alias" && w.next()? == want).then(|| w.next().map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::Level;

    #[test]
    fn crypto_lookup() {
        let text = "name         : sha256\ndriver       : sha256-lib\nmodule       : kernel\npriority     : 300\n\n\
name         : sha512\ndriver       : sha512-generic\nmodule       : sha512_generic\n\n";
        assert_eq!(
            crypto_driver(text, "sha256").as_deref(),
            Some("driver sha256-lib, built in")
        );
        assert_eq!(
            crypto_driver(text, "sha512").as_deref(),
            Some("driver sha512-generic, module sha512_generic")
        );
        assert_eq!(crypto_driver(text, "sha384"), None);
        let aliases = "alias crypto-sha384 sha512_generic\nalias crypto-sha512 sha512_generic\n";
        assert_eq!(
            crypto_module(aliases, "sha384").as_deref(),
            Some("sha512_generic")
        );
        assert_eq!(crypto_module(aliases, "sha1"), None);
    }

    #[test]
    fn policy_counts_signature_rules() {
        let p = Policy::parse(
            "measure func=BPRM_CHECK fowner=1000\n\
             appraise func=BPRM_CHECK fowner=1000 appraise_type=imasig\n\
             appraise func=MMAP_CHECK appraise_type=imasig|modsig\n\
             appraise fowner=0\n\
             dont_appraise fsmagic=0x9fa0\n",
        );
        assert_eq!(
            p,
            Policy {
                rules: 5,
                appraise: 3,
                imasig: 2
            }
        );
    }

    #[test]
    fn appraise_mode_without_ima_is_skipped() {
        let mut r = Report::default();
        let mut k = Kernel::default();
        check_appraise(&mut r, &mut k, "ima_appraise=enforce", None);
        assert_eq!(r.checks[0].status, Level::Skip);
        assert!(!k.enforcing);
    }

    #[test]
    fn appraise_mode_default_is_explained() {
        let mut r = Report::default();
        let mut k = Kernel {
            ima: true,
            ..Kernel::default()
        };
        let rules = Policy::parse("appraise func=BPRM_CHECK appraise_type=imasig\n");
        check_appraise(&mut r, &mut k, "quiet", Some(&rules));
        assert_eq!(r.checks[0].status, Level::Ok);
        assert!(k.enforcing);
        let mut k = Kernel {
            ima: true,
            ..Kernel::default()
        };
        check_appraise(&mut r, &mut k, "quiet", Some(&Policy::default()));
        assert_eq!(r.checks[1].status, Level::Warn);
        assert!(r.checks[1].finding.contains("nothing is appraised"));
        assert!(!k.enforcing);
        check_appraise(&mut r, &mut k, "ima_appraise=fix", None);
        assert_eq!(r.checks[2].status, Level::Warn);
    }
}
