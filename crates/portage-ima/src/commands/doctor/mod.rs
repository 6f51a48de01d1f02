//! `portage-ima doctor`: checks that a setup can work, end to end.
//!
//! Signing is only useful when every link holds: a private key only root can
//! read, a certificate the kernel accepts on its IMA keyring and that names
//! the key id the signatures carry, a kernel that appraises with that
//! keyring, a Portage that runs the hook (and keeps `security.ima` when it
//! merges), and a signer that itself may run under enforce. Each check prints
//! one line, `ok|warn|FAIL|skip  <check>: <finding>`, and, when something is
//! not right, an indented line saying what to do. Nothing is changed.
//!
//! Everything read from the kernel (`/proc/mounts`, `/proc/cmdline`,
//! `/proc/crypto`, `/proc/keys`, securityfs) is parsed by small functions that
//! take the text, so they are tested on captured samples as well as on the
//! machine the tests run on.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use ima_core::{Certificate, Error as CoreError, KeyId, KeyMaterial, KeySet, VerifyStatus};
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::settings::{self, Premerge, Settings};
use crate::status::Status;

/// Where the ebuild installs the bashrc snippet (under EPREFIX).
const SNIPPET: &str = "/usr/share/portage-ima/portage-ima.bashrc";
/// The snippet's file name, which a bashrc line must source.
const SNIPPET_NAME: &str = "portage-ima.bashrc";
/// The xattr Portage must keep for signing before the merge to work.
const IMA_XATTR: &str = "security.ima";
/// Portage's default PORTAGE_XATTR_EXCLUDE (make.globals, Portage 3.0.x),
/// used when neither portageq nor make.globals is there to ask.
const DEFAULT_XATTR_EXCLUDE: &str = "bcachefs.* bcachefs_effective.* btrfs.* security.evm \
     security.ima security.selinux system.nfs4_acl user.apache_handler user.Beagle.* \
     user.dublincore.* user.mime_encoding user.xdg.*";
/// Portage's default PORTAGE_TMPDIR.
const DEFAULT_TMPDIR: &str = "/var/tmp";
/// A certificate expiring sooner than this is worth a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something is worth knowing or fixing.
    Warn,
    /// Signing, or appraisal of what is signed, will not work.
    Fail,
    /// Could not be checked here; the finding says why.
    Skip,
}

impl Level {
    /// The label printed at the start of the line.
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// A short stable name: `key`, `cert-skid`, `keyring`, `bashrc`...
    pub check: &'static str,
    pub status: Level,
    /// What was found.
    pub finding: String,
    /// What to do about it, when it is not ok.
    pub fix: Option<String>,
}

/// Every check, in the order they ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// No check failed (warnings allowed).
    pub ok: bool,
}

impl Report {
    fn push(&mut self, check: &'static str, status: Level, finding: String, fix: Option<String>) {
        self.checks.push(Check {
            check,
            status,
            finding: one_line(&finding),
            fix: fix.as_deref().map(one_line),
        });
        self.ok = self.checks.iter().all(|c| c.status != Level::Fail);
    }

    fn ok(&mut self, check: &'static str, finding: impl Into<String>) {
        self.push(check, Level::Ok, finding.into(), None);
    }

    fn warn(&mut self, check: &'static str, finding: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Warn, finding.into(), Some(fix.into()));
    }

    fn fail(&mut self, check: &'static str, finding: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Fail, finding.into(), Some(fix.into()));
    }

    fn skip(&mut self, check: &'static str, finding: impl Into<String>) {
        self.push(check, Level::Skip, finding.into(), None);
    }

    /// The text report: one line per check, the fix indented below it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4}  {}: {}\n",
                c.status.label(),
                c.check,
                c.finding
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("      -> {fix}\n"));
            }
        }
        let count = |l| self.checks.iter().filter(|c| c.status == l).count();
        out.push_str(&format!(
            "portage-ima doctor: {} ok, {} warnings, {} failed, {} skipped\n",
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail),
            count(Level::Skip)
        ));
        out
    }
}

/// Folds a multi-line message (a TOML error with its source excerpt) into
/// one line, dropping the excerpt's `N | text` and `  | ^^^` gutter lines.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            let gutter = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs every check and prints the report (text, or JSON with `--json`).
/// Success when no check failed; warnings do not count.
pub fn run(config: Option<&Path>, args: &DoctorArgs) -> Result<Status> {
    // The same root the settings lookup uses: PORTAGE_CONFIGROOT, else /.
    let root = args
        .root
        .clone()
        .or_else(|| {
            std::env::var_os("PORTAGE_CONFIGROOT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/"));
    if !root.is_dir() {
        bail!(
            "{}: not a directory; give the root whose etc/portage to check with --root",
            root.display()
        );
    }
    let report = diagnose(config, args, &root);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.ok {
        Status::Success
    } else {
        Status::SomeFailed
    })
}

/// Runs every check against `root` (its etc/portage) and this machine's kernel.
pub fn diagnose(config: Option<&Path>, args: &DoctorArgs, root: &Path) -> Report {
    let mut r = Report {
        ok: true,
        ..Report::default()
    };
    let settings = load_settings(&mut r, config, args, root);
    if settings.is_none() {
        // Keep the list of checks the same whatever happens.
        for c in [
            "key",
            "key-access",
            "cert",
            "cert-key",
            "cert-skid",
            "cert-usage",
            "cert-expiry",
            "keyid",
        ] {
            r.skip(c, "settings did not load");
        }
    }
    let key = settings.as_ref().and_then(|s| check_key(&mut r, s));
    let cert = settings
        .as_ref()
        .and_then(|s| check_cert(&mut r, s, key.as_ref()));
    let keyid = settings
        .as_ref()
        .and_then(|s| check_keyid(&mut r, s, key.as_ref(), cert.as_ref()));
    let kernel = check_kernel(&mut r, settings.as_ref(), keyid);
    check_portage(&mut r, settings.as_ref(), root);
    check_self(
        &mut r,
        settings.as_ref(),
        key.as_ref(),
        cert.as_ref(),
        &kernel,
    );
    r
}

/// The settings file: `--config`, else `${root}/etc/portage/ima.toml`.
fn load_settings(
    r: &mut Report,
    config: Option<&Path>,
    args: &DoctorArgs,
    root: &Path,
) -> Option<Settings> {
    // --config wins; with --root, that root's ima.toml; else the usual
    // lookup (PORTAGE_CONFIGROOT, then /etc/portage/ima.toml).
    let in_root = root.join(settings::CONFIG_FILE);
    let with_root = config.is_none() && args.root.is_some();
    // A root without ima.toml means defaults, not the host's file.
    let missing_in_root = with_root && !in_root.exists();
    let loaded = match config {
        Some(path) => Settings::load(Some(path), &args.key, None),
        None if missing_in_root => Settings::defaults(&args.key, None),
        None if with_root => Settings::load(Some(&in_root), &args.key, None),
        None => Settings::load(None, &args.key, None),
    };
    match loaded {
        Ok(settings) => {
            let shown = if missing_in_root {
                format!("{} does not exist: defaults and flags", in_root.display())
            } else {
                match &settings.source {
                    Some(p) => format!("{}", p.display()),
                    None => "no ima.toml: defaults and flags".to_string(),
                }
            };
            r.ok(
                "config",
                format!(
                    "{shown}; key {}, hash {}, backend {}",
                    settings.key.display(),
                    settings.hash,
                    settings.backend.name()
                ),
            );
            Some(settings)
        }
        Err(e) => {
            r.fail(
                "config",
                crate::status::error_line(&e),
                "fix the settings file (keys: key, cert, keyid, hash, jobs, backend, premerge, strict, config_files) or the flags",
            );
            None
        }
    }
}

/// The command that makes a certificate the kernel takes on its IMA keyring.
fn cert_command(key: &Path) -> String {
    format!(
        "openssl req -new -x509 -key {} -outform DER -out {} -days 3650 \
         -subj '/CN=IMA signing key' -addext basicConstraints=critical,CA:FALSE \
         -addext keyUsage=critical,digitalSignature -addext subjectKeyIdentifier=hash",
        key.display(),
        settings::DEFAULT_CERT
    )
}

/// The private key: exists, readable, parses; owned by root, private.
fn check_key(r: &mut Report, s: &Settings) -> Option<KeyMaterial> {
    let path = &s.key;
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            r.fail(
                "key",
                format!("{}: does not exist", path.display()),
                format!(
                    "create a key (openssl genrsa -out {0} 4096 && chmod 0400 {0}), or set key = \"...\" in ima.toml or --key",
                    path.display()
                ),
            );
            r.skip("key-access", "no key file");
            return None;
        }
        Err(e) => {
            r.fail(
                "key",
                format!("{}: {e}", path.display()),
                "run as root, or check the directories leading to the key",
            );
            r.skip("key-access", "no key file");
            return None;
        }
    };
    let key = match KeyMaterial::load(path, None) {
        Ok(k) => {
            r.ok(
                "key",
                format!(
                    "{}: {}, public-key id {}",
                    path.display(),
                    k.public_key(),
                    k.public_key().key_id()
                ),
            );
            Some(k)
        }
        Err(CoreError::KeyRead { source, .. }) => {
            r.fail(
                "key",
                format!("{}: cannot read: {source}", path.display()),
                "run portage-ima as root (the hook runs as root)",
            );
            None
        }
        Err(e) => {
            r.fail(
                "key",
                e.to_string(),
                "give a PEM RSA private key (PKCS#1 from openssl genrsa, or PKCS#8)",
            );
            None
        }
    };
    // Whoever can read the key can sign anything the kernel will then run.
    let mode = meta.mode() & 0o7777;
    let mut problems = Vec::new();
    if meta.uid() != 0 {
        problems.push(format!("owned by uid {}, not root", meta.uid()));
    }
    if mode & 0o077 != 0 {
        let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        problems.push(format!("mode {mode:04o}: {who} may access it"));
    }
    if problems.is_empty() {
        r.ok("key-access", format!("owned by root, mode {mode:04o}"));
    } else {
        r.fail(
            "key-access",
            format!(
                "{}; whoever can read the key can sign files the kernel will trust",
                problems.join(", ")
            ),
            format!("chown root:root {0} && chmod 0400 {0}", path.display()),
        );
    }
    key
}

/// The certificate: parses, belongs to the key, has a SKID, the usage the
/// IMA keyring accepts, and is within its dates.
fn check_cert(r: &mut Report, s: &Settings, key: Option<&KeyMaterial>) -> Option<Certificate> {
    const CHECKS: [&str; 4] = ["cert-key", "cert-skid", "cert-usage", "cert-expiry"];
    let Some(path) = s.cert() else {
        r.warn(
            "cert",
            format!(
                "none configured and {} does not exist; the kernel needs the certificate on its \
                 IMA keyring to check signatures, and signatures carry the public-key id",
                settings::DEFAULT_CERT
            ),
            format!(
                "make one: {} (and set cert in ima.toml if you put it elsewhere)",
                cert_command(&s.key)
            ),
        );
        for c in CHECKS {
            r.skip(c, "no certificate");
        }
        return None;
    };
    let cert = match Certificate::load(&path) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "cert",
                e.to_string(),
                format!(
                    "give an X.509 certificate (DER or PEM), or {}",
                    cert_command(&s.key)
                ),
            );
            for c in CHECKS {
                r.skip(c, "the certificate did not load");
            }
            return None;
        }
    };
    r.ok(
        "cert",
        format!(
            "{}: subject {}, key id {}",
            path.display(),
            cert.subject(),
            cert.key_id()
        ),
    );

    match (key, KeyMaterial::load(&s.key, Some(&path))) {
        (None, _) => r.skip("cert-key", "the key did not load"),
        (Some(_), Ok(_)) => r.ok("cert-key", "the certificate holds this key's public half"),
        (Some(_), Err(CoreError::CertificateMismatch { .. })) => r.fail(
            "cert-key",
            format!(
                "the certificate is for another key than {}: the kernel would check every \
                 signature against the wrong public key",
                s.key.display()
            ),
            format!(
                "use the certificate of this key, or make one: {}",
                cert_command(&s.key)
            ),
        ),
        (Some(_), Err(e)) => r.fail("cert-key", e.to_string(), "fix the key or the certificate"),
    }

    match cert.subject_key_identifier() {
        Some(skid) => r.ok(
            "cert-skid",
            format!(
                "Subject Key Identifier {}; the kernel finds the key by its last 4 bytes",
                hex::encode(skid)
            ),
        ),
        None => r.fail(
            "cert-skid",
            format!(
                "no Subject Key Identifier: the kernel looks keys up by it (id:{}), so it \
                 would not find this one",
                cert.key_id()
            ),
            format!(
                "re-create the certificate with a SKID: {}",
                cert_command(&s.key)
            ),
        ),
    }

    let usage = cert.key_usage();
    let mut refused = Vec::new();
    if cert.is_ca() {
        refused.push("it is a CA (basicConstraints cA)");
    }
    if usage.is_some_and(|u| u.key_cert_sign) {
        refused.push("keyUsage has keyCertSign");
    }
    if usage.is_some_and(|u| !u.digital_signature) {
        refused.push("keyUsage lacks digitalSignature");
    }
    if !refused.is_empty() {
        r.fail(
            "cert-usage",
            format!(
                "{}: kernels since 6.4 refuse such a certificate on the .ima keyring",
                refused.join(", ")
            ),
            format!(
                "re-create it as a signing certificate: {}",
                cert_command(&s.key)
            ),
        );
    } else if usage.is_none() {
        r.warn(
            "cert-usage",
            "no keyUsage extension: the kernel's trusted .ima keyring (6.4 and later) wants \
             digitalSignature; a userspace _ima keyring takes it",
            format!("to be safe, re-create it: {}", cert_command(&s.key)),
        );
    } else {
        r.ok("cert-usage", "keyUsage digitalSignature, not a CA");
    }

    let not_after = cert.not_after();
    let now = SystemTime::now();
    let date = httpdate_like(not_after);
    if not_after < now {
        r.warn(
            "cert-expiry",
            format!(
                "expired on {date}; the kernel does not check the dates, but other verifiers may"
            ),
            format!("renew it: {}", cert_command(&s.key)),
        );
    } else if not_after < now + EXPIRY_WARNING {
        r.warn(
            "cert-expiry",
            format!("expires on {date}, within 30 days"),
            format!("renew it: {}", cert_command(&s.key)),
        );
    } else {
        r.ok("cert-expiry", format!("valid until {date}"));
    }
    Some(cert)
}

/// `2026-11-28 UTC` for a time; the day is enough for an expiry date.
fn httpdate_like(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} UTC")
}

/// The key id signatures will carry, and whether the certificate agrees.
fn check_keyid(
    r: &mut Report,
    s: &Settings,
    key: Option<&KeyMaterial>,
    cert: Option<&Certificate>,
) -> Option<KeyId> {
    let cert_id = cert.map(Certificate::key_id);
    match (s.keyid, cert_id) {
        (Some(set), Some(c)) if set != c => {
            r.fail(
                "keyid",
                format!(
                    "keyid {set} is configured but the certificate's is {c}: the kernel would \
                     look for a key that is not on its keyring"
                ),
                "remove keyid from ima.toml (the certificate gives it)",
            );
            Some(set)
        }
        (Some(set), _) => {
            r.ok("keyid", format!("signatures carry {set} (configured)"));
            Some(set)
        }
        (None, Some(c)) => {
            r.ok(
                "keyid",
                format!("signatures carry {c} (from the certificate)"),
            );
            Some(c)
        }
        (None, None) => match key {
            Some(k) => {
                let id = k.key_id();
                r.ok(
                    "keyid",
                    format!("signatures carry {id} (from the public key)"),
                );
                Some(id)
            }
            None => {
                r.skip("keyid", "neither key nor certificate loaded");
                None
            }
        },
    }
}

/// What the kernel checks found, for the checks that depend on it.
#[derive(Debug, Default)]
struct Kernel {
    /// IMA is built in (its securityfs directory exists).
    ima: bool,
    /// Files are denied when their signature is bad.
    enforcing: bool,
}

/// securityfs, IMA, appraise mode, the hash, the keyring, the policy.
fn check_kernel(r: &mut Report, s: Option<&Settings>, keyid: Option<KeyId>) -> Kernel {
    let mut k = Kernel::default();
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let securityfs = securityfs_mount(&mounts);
    match &securityfs {
        Some(dir) => r.ok("securityfs", format!("mounted on {}", dir.display())),
        None => r.warn(
            "securityfs",
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
            r.ok("ima", format!("present ({})", dir.display()));
        }
        (None, Some(dir)) => r.warn(
            "ima",
            format!(
                "not in this kernel: no ima under {}; signatures are written but nothing \
                 appraises them",
                dir.display()
            ),
            "build the kernel with CONFIG_IMA=y, CONFIG_IMA_APPRAISE=y, CONFIG_INTEGRITY_SIGNATURE=y, CONFIG_INTEGRITY_ASYMMETRIC_KEYS=y",
        ),
        (None, None) => match kernel_config_option("CONFIG_IMA") {
            Some((false, from)) => r.warn(
                "ima",
                format!(
                    "not in this kernel (CONFIG_IMA is not set, per {from}): signatures are \
                     written but nothing appraises them"
                ),
                "build the kernel with CONFIG_IMA=y, CONFIG_IMA_APPRAISE=y, CONFIG_INTEGRITY_SIGNATURE=y, CONFIG_INTEGRITY_ASYMMETRIC_KEYS=y",
            ),
            Some((true, from)) => r.warn(
                "ima",
                format!(
                    "built in (CONFIG_IMA=y, per {from}), but securityfs is not mounted, so its \
                     state cannot be read"
                ),
                "mount securityfs and run doctor again",
            ),
            None => r.warn(
                "ima",
                "unknown: securityfs is not mounted, so IMA cannot be seen; if it is absent, \
                 signatures are written but nothing appraises them",
                "mount securityfs and run doctor again",
            ),
        },
    }

    let policy = ima_dir
        .as_ref()
        .map(|d| fs::read_to_string(d.join("policy")));
    let (policy, policy_error) = match policy {
        Some(Ok(text)) => (Some(Policy::parse(&text)), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    check_appraise(r, &mut k, &cmdline, policy.as_ref());

    match s {
        Some(s) => check_hash(r, s.hash.name()),
        None => r.skip("hash", "settings did not load"),
    }

    check_keyring(r, &k, keyid);

    match (&ima_dir, policy) {
        (None, _) => r.skip("policy", "no IMA in this kernel to have a policy"),
        (Some(dir), None) => r.skip(
            "policy",
            format!(
                "{}: {} (a kernel without CONFIG_IMA_READ_POLICY keeps it write-only)",
                dir.join("policy").display(),
                policy_error.map_or_else(|| "not readable".to_string(), |e| e.to_string())
            ),
        ),
        (Some(_), Some(p)) => {
            if p.imasig > 0 {
                r.ok("policy", p.describe());
            } else if p.appraise > 0 {
                r.warn(
                    "policy",
                    p.describe(),
                    "add appraise_type=imasig to the appraise rules so unsigned files are refused, not merely checked against a digest",
                );
            } else {
                r.warn(
                    "policy",
                    p.describe(),
                    "load a policy with appraise rules (e.g. appraise func=BPRM_CHECK appraise_type=imasig) or boot with ima_policy=appraise_tcb",
                );
            }
        }
    }
    k
}

/// Whether the running kernel's configuration sets `option` (`=y` or `=m`),
/// and where that was read: /boot/config-RELEASE, else /proc/config.gz
/// (through gzip, which every system has).
fn kernel_config_option(option: &str) -> Option<(bool, String)> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let boot = format!("/boot/config-{}", release.trim());
    let (text, from) = match fs::read_to_string(&boot) {
        Ok(text) => (text, boot),
        Err(_) => {
            let out = Command::new("gzip")
                .args(["-dc", "/proc/config.gz"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                "/proc/config.gz".to_string(),
            )
        }
    };
    Some((config_sets(&text, option), from))
}

/// Whether kernel .config text sets `option` to y or m.
fn config_sets(text: &str, option: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(option)
            .and_then(|rest| rest.strip_prefix('='))
            .is_some_and(|v| v == "y" || v == "m")
    })
}

/// The mount point of securityfs, from /proc/mounts text.
fn securityfs_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "securityfs").then(|| PathBuf::from(unescape_mount(dir)))
    })
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
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

/// The value of `name=` on the kernel command line (the last one wins).
fn cmdline_value<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    let before_init = cmdline.split(" -- ").next().unwrap_or(cmdline);
    before_init
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .next_back()
}

/// The appraise mode (`ima_appraise=`), explained with the policy.
fn check_appraise(r: &mut Report, k: &mut Kernel, cmdline: &str, policy: Option<&Policy>) {
    if !k.ima {
        r.skip(
            "appraise",
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
                "appraise",
                format!("ima_appraise=enforce: files the policy appraises must verify{tcb_note}"),
            );
        }
        Some(mode @ ("fix" | "log" | "off")) => r.warn(
            "appraise",
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
            "appraise",
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
                        "appraise",
                        format!(
                            "ima_appraise not on the command line: the kernel default (enforce) \
                             applies to the policy's {n} appraise rules{tcb_note}"
                        ),
                    );
                }
                Some(_) => r.warn(
                    "appraise",
                    "ima_appraise not on the command line and the policy has no appraise \
                     rules: nothing is appraised (the default mode, enforce, has nothing to \
                     act on)",
                    "load an appraise policy, or boot with ima_policy=appraise_tcb ima_appraise=enforce",
                ),
                None if tcb => {
                    k.enforcing = true;
                    r.ok(
                        "appraise",
                        format!("ima_appraise not on the command line: default enforce{tcb_note}"),
                    );
                }
                None => r.warn(
                    "appraise",
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
        r.ok("hash", format!("{name} is available ({driver})"));
        return;
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let aliases = fs::read_to_string(format!("/lib/modules/{}/modules.alias", release.trim()))
        .unwrap_or_default();
    match crypto_module(&aliases, name) {
        Some(module) => r.warn(
            "hash",
            format!(
                "{name} is not loaded; it is the module {module}: until it loads, IMA cannot \
                 check (or write) {name} signatures"
            ),
            format!(
                "modprobe {module}, and load it at boot: echo {module} > /etc/modules-load.d/ima-hash.conf"
            ),
        ),
        None => r.fail(
            "hash",
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

/// One key from /proc/keys.
#[derive(Debug, PartialEq, Eq)]
struct ProcKey {
    serial: i32,
    /// Truncated to 9 characters by the kernel: `asymmetri`, `keyring`.
    kind: String,
    description: String,
}

impl ProcKey {
    /// A keyring's name: its description without the `: N` count.
    fn keyring_name(&self) -> Option<&str> {
        (self.kind == "keyring").then(|| {
            self.description
                .rsplit_once(": ")
                .map_or(self.description.as_str(), |(name, _)| name)
        })
    }

    /// An asymmetric key's id as /proc/keys shows it: the last 4 bytes of
    /// its SKID, after the subtype (`... X509.rsa b5e9934f []`).
    fn asymmetric_id(&self) -> Option<KeyId> {
        if self.kind != "asymmetri" {
            return None;
        }
        let d = self.description.trim_end();
        let d = d
            .strip_suffix(']')
            .and_then(|d| d.rsplit_once(" ["))
            .map_or(d, |(d, _)| d);
        let (_, last) = d.rsplit_once(' ')?;
        (last.len() == 8).then(|| last.parse().ok())?
    }
}

/// Parses /proc/keys text: serial flags usage timeout perm uid gid type description.
fn parse_proc_keys(text: &str) -> Vec<ProcKey> {
    text.lines()
        .filter_map(|line| {
            let mut rest = line.trim_start();
            let mut fields = Vec::with_capacity(8);
            for _ in 0..8 {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            Some(ProcKey {
                serial: u32::from_str_radix(fields[0], 16).ok()? as i32,
                kind: fields[7].to_string(),
                description: rest.to_string(),
            })
        })
        .collect()
}

/// The serials of the keys linked into a keyring (keyctl KEYCTL_READ).
fn keyring_members(serial: i32) -> io::Result<Vec<i32>> {
    /// `KEYCTL_READ` from <linux/keyctl.h>.
    const KEYCTL_READ: libc::c_long = 11;
    let mut buf: Vec<i32> = vec![0; 256];
    loop {
        let len = buf.len() * 4;
        // SAFETY: the kernel writes at most `len` bytes into `buf`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_READ,
                libc::c_long::from(serial),
                buf.as_mut_ptr(),
                len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n <= len {
            buf.truncate(n / 4);
            return Ok(buf);
        }
        buf.resize(n.div_ceil(4), 0);
    }
}

/// The keyring named `name` that request_key(2) finds from this process,
/// as the kernel's IMA looks up `_ima` (no upcall: callout_info is NULL).
fn request_keyring(name: &str) -> io::Result<i32> {
    let kind = c"keyring";
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: two valid C strings, a NULL callout and no destination keyring.
    let n = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            kind.as_ptr(),
            name.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_long,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as i32)
    }
}

/// Whether the key id is on the `.ima` (trusted) or `_ima` (userspace) keyring.
fn check_keyring(r: &mut Report, k: &Kernel, keyid: Option<KeyId>) {
    let text = match fs::read_to_string("/proc/keys") {
        Ok(t) => t,
        Err(e) => {
            r.skip(
                "keyring",
                format!("/proc/keys: {e} (kernel without CONFIG_KEYS?)"),
            );
            return;
        }
    };
    let keys = parse_proc_keys(&text);
    // The keyring IMA checks signatures with: the kernel's own `.ima` when
    // it was built with CONFIG_INTEGRITY_TRUSTED_KEYRING, else the `_ima`
    // keyring request_key() finds from the process (session, then user
    // keyring). Other sessions' `_ima` keyrings in /proc/keys do not count.
    let mut rings: Vec<(&str, i32)> = keys
        .iter()
        .filter(|p| p.keyring_name() == Some(".ima"))
        .map(|p| (".ima", p.serial))
        .collect();
    if rings.is_empty() {
        if let Ok(serial) = request_keyring("_ima") {
            rings.push(("_ima", serial));
        }
    }
    let Some(keyid) = keyid else {
        r.skip(
            "keyring",
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
        if k.ima {
            r.fail(
                "keyring",
                format!(
                    "no .ima keyring and no _ima keyring reachable from this session: the \
                     kernel cannot find key {keyid}"
                ),
                format!("create it (keyctl newring _ima @u) and {load}"),
            );
        } else {
            r.skip("keyring", "no .ima or _ima keyring (no IMA in this kernel)");
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
                        "keyring",
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
        "keyring",
        format!(
            "{}: files signed with it would be refused",
            notes.join("; ")
        ),
        load,
    );
}

/// Portage's side: the bashrc hook, the xattr settings, PORTAGE_TMPDIR.
fn check_portage(r: &mut Report, s: Option<&Settings>, root: &Path) {
    let bashrc = root.join("etc/portage/bashrc");
    match fs::read_to_string(&bashrc) {
        Ok(text) => match sourced_snippet(&text) {
            Some(path) if path.contains('$') || Path::new(&path).is_file() => {
                r.ok("bashrc", format!("{} sources {path}", bashrc.display()))
            }
            Some(path) => r.fail(
                "bashrc",
                format!("{} sources {path}, which does not exist", bashrc.display()),
                format!("install portage-ima (it puts the snippet at {SNIPPET}) or fix the path"),
            ),
            None => r.fail(
                "bashrc",
                format!(
                    "{} does not source {SNIPPET_NAME}: Portage never runs the hook",
                    bashrc.display()
                ),
                format!("echo 'source {SNIPPET}' >> {}", bashrc.display()),
            ),
        },
        Err(e) => r.fail(
            "bashrc",
            format!("{}: {e}: Portage never runs the hook", bashrc.display()),
            format!("echo 'source {SNIPPET}' >> {}", bashrc.display()),
        ),
    }

    let vars = portage_vars(root);
    let features: BTreeSet<&str> = vars.features.split_whitespace().collect();
    let has_xattr = features.contains("xattr");
    let patterns: Vec<String> = vars
        .xattr_exclude
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let excluded_by = crate::gentoo::env::xattr_exclude_match(&patterns, IMA_XATTR);
    let excluded = excluded_by.is_some();
    let xattr_kept = has_xattr && !excluded;

    // Portage builds in ${PORTAGE_TMPDIR}/portage, which is often a tmpfs
    // of its own (the Gentoo handbook suggests one): stat that when it exists.
    let base = PathBuf::from(&vars.tmpdir);
    let build = base.join("portage");
    let tmpdir = if build.is_dir() { build } else { base };
    let shown = format!("{} (PORTAGE_TMPDIR={})", tmpdir.display(), vars.tmpdir);
    // The hook's own rule (by mount, not by device: a bind mount of ROOT's
    // filesystem has its st_dev, yet rename() across it fails with EXDEV).
    use crate::gentoo::env::{renames_between, MountId};
    let renames = match (MountId::of_path(&tmpdir), MountId::of_path(root)) {
        (Ok(t), Ok(r)) => Some(renames_between(t, r)),
        _ => None,
    };
    let same_fs = renames.map(|r| r.is_ok());
    match renames {
        Some(Ok(())) => r.ok(
            "tmpdir",
            format!(
                "{shown} is on the same mount as {}: the merge renames files and they \
                 keep security.ima",
                root.display()
            ),
        ),
        Some(Err(why)) => r.warn(
            "tmpdir",
            format!(
                "{shown} {why} {}: the merge copies files, and only \
                 FEATURES=xattr keeps security.ima",
                root.display()
            ),
            format!(
                "build on the mount of {} (PORTAGE_TMPDIR, and no separate or bind mount \
                 on its portage/ directory), or keep the xattr (see the xattr check)",
                root.display()
            ),
        ),
        None => r.warn(
            "tmpdir",
            format!(
                "{shown} does not exist here (or {} cannot be read): cannot tell whether the \
                 merge keeps security.ima",
                root.display()
            ),
            "create PORTAGE_TMPDIR, or run doctor where Portage runs",
        ),
    }

    let mut finding = match (has_xattr, excluded) {
        (true, false) => "FEATURES has xattr and PORTAGE_XATTR_EXCLUDE keeps security.ima".into(),
        (false, _) => "FEATURES lacks xattr: a copying merge drops every xattr".to_string(),
        (true, true) => format!(
            "FEATURES has xattr but PORTAGE_XATTR_EXCLUDE drops security.ima (pattern {})",
            excluded_by.unwrap_or("?")
        ),
    };
    finding.push_str(&format!(" ({})", vars.source));
    let xattr_fix = format!(
        "add to make.conf: FEATURES=\"${{FEATURES}} xattr\" and {}",
        xattr_exclude_line(&vars.xattr_exclude)
    );
    if xattr_kept || same_fs == Some(true) {
        if !xattr_kept {
            finding.push_str("; not needed while PORTAGE_TMPDIR is on the same mount");
        }
        r.ok("xattr", finding);
    } else {
        r.warn("xattr", finding, &xattr_fix);
    }

    let premerge = s.map(|s| s.premerge).unwrap_or_default();
    let can = xattr_kept || same_fs == Some(true);
    let why = if same_fs == Some(true) {
        "the merge renames files within one mount"
    } else if xattr_kept {
        "FEATURES=xattr keeps security.ima across filesystems"
    } else {
        "the merge copies files and drops security.ima"
    };
    match (premerge, can) {
        (Premerge::Never, _) => r.ok(
            "premerge",
            format!(
                "premerge = never: files are signed in postinst only, and are live unsigned \
                 until then ({why})"
            ),
        ),
        (_, true) => r.ok("premerge", format!("signing before the merge works: {why}")),
        (Premerge::Always, false) => r.warn(
            "premerge",
            format!(
                "premerge = always, but {why}: signatures made in preinst are lost and \
                 postinst signs everything again"
            ),
            format!("{xattr_fix}; or set premerge = \"auto\""),
        ),
        (Premerge::Auto, false) => r.warn(
            "premerge",
            format!(
                "signing before the merge cannot work ({why}): new files are live and \
                 unsigned until postinst, and under enforce an old version's pkg_postrm \
                 that runs them is denied"
            ),
            format!(
                "{xattr_fix}; or put PORTAGE_TMPDIR on the filesystem of {}",
                root.display()
            ),
        ),
    }
}

/// The `PORTAGE_XATTR_EXCLUDE` line to paste into make.conf: the list the
/// running Portage uses (its make.globals default unless make.conf changed
/// it) without the patterns that match security.ima, so that nothing else
/// Portage excludes (a list that grows between releases) is lost.
fn xattr_exclude_line(current: &str) -> String {
    let kept: Vec<&str> = current
        .split_whitespace()
        .filter(|p| !crate::gentoo::env::fnmatch(p, IMA_XATTR))
        .collect();
    format!("PORTAGE_XATTR_EXCLUDE=\"{}\"", kept.join(" "))
}

/// The path a bashrc line sources our snippet from, if one does.
fn sourced_snippet(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|'))
            .filter(|w| !w.is_empty())
            .collect();
        let at = words.iter().position(|w| *w == "source" || *w == ".")?;
        let path = words.get(at + 1)?.trim_matches(|c| c == '"' || c == '\'');
        path.ends_with(SNIPPET_NAME).then(|| path.to_string())
    })
}

/// FEATURES, PORTAGE_XATTR_EXCLUDE and PORTAGE_TMPDIR, and where they came from.
#[derive(Debug)]
struct PortageVars {
    features: String,
    xattr_exclude: String,
    tmpdir: String,
    source: String,
}

/// Asks portageq when it exists (what Portage itself will use), else reads
/// make.globals and make.conf roughly.
fn portage_vars(root: &Path) -> PortageVars {
    // Never through PATH inside an ebuild phase (see portageq_command).
    if let Some(mut cmd) = crate::gentoo::env::portageq_command() {
        cmd.args([
            "envvar",
            "FEATURES",
            "PORTAGE_XATTR_EXCLUDE",
            "PORTAGE_TMPDIR",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
        if root != Path::new("/") {
            cmd.env("PORTAGE_CONFIGROOT", root);
        }
        if let Ok(out) = cmd.output() {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            if out.status.success() && lines.len() == 3 {
                return PortageVars {
                    features: lines[0].to_string(),
                    xattr_exclude: lines[1].to_string(),
                    tmpdir: non_empty(lines[2], DEFAULT_TMPDIR),
                    source: "from portageq".into(),
                };
            }
        }
    }
    let mut conf = MakeConf::default();
    let globals = root.join("usr/share/portage/config/make.globals");
    let had_globals = match fs::read_to_string(&globals) {
        Ok(text) => {
            conf.apply(&text);
            true
        }
        Err(_) => false,
    };
    let make_conf = root.join("etc/portage/make.conf");
    for file in conf_files(&make_conf) {
        if let Ok(text) = fs::read_to_string(&file) {
            conf.apply(&text);
        }
    }
    let exclude = conf
        .get("PORTAGE_XATTR_EXCLUDE")
        .map_or(DEFAULT_XATTR_EXCLUDE.to_string(), str::to_string);
    let tmpdir = non_empty(conf.get("PORTAGE_TMPDIR").unwrap_or(""), DEFAULT_TMPDIR);
    PortageVars {
        features: conf.features.iter().cloned().collect::<Vec<_>>().join(" "),
        xattr_exclude: exclude,
        tmpdir,
        source: format!(
            "portageq not found: read roughly from {}{}",
            make_conf.display(),
            if had_globals {
                " and make.globals"
            } else {
                " and Portage's defaults"
            }
        ),
    }
}

fn non_empty(value: &str, default: &str) -> String {
    if value.trim().is_empty() {
        default.to_string()
    } else {
        value.trim().to_string()
    }
}

/// make.conf is a file or a directory of files read in name order.
fn conf_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    }
}

/// A rough reader of make.conf-style assignments: `NAME="value"`,
/// `NAME='value'`, `NAME=value`, with `${NAME}`/`$NAME` expanded and FEATURES
/// incremental (`-name` removes, `-*` clears) across files, as Portage does.
#[derive(Debug, Default)]
struct MakeConf {
    vars: Vec<(String, String)>,
    features: BTreeSet<String>,
}

impl MakeConf {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Applies one file's assignments.
    fn apply(&mut self, text: &str) {
        let mut features = None;
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            // Skip blanks and comments.
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            if chars[i] == '#' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let mut name: String = chars[start..i].iter().collect();
            if name == "export" && i < chars.len() && chars[i] == ' ' {
                i += 1;
                continue;
            }
            if name.is_empty() || i >= chars.len() || chars[i] != '=' {
                // Not an assignment: skip the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            i += 1;
            let mut value = String::new();
            match chars.get(i) {
                Some('"') => {
                    i += 1;
                    let mut raw = String::new();
                    while i < chars.len() && chars[i] != '"' {
                        if chars[i] == '\\' && i + 1 < chars.len() {
                            i += 1;
                            if chars[i] != '\n' {
                                raw.push(chars[i]);
                            }
                        } else {
                            raw.push(chars[i]);
                        }
                        i += 1;
                    }
                    i += 1;
                    value.push_str(&self.expand(&raw, features.as_deref()));
                }
                Some('\'') => {
                    i += 1;
                    while i < chars.len() && chars[i] != '\'' {
                        value.push(chars[i]);
                        i += 1;
                    }
                    i += 1;
                }
                _ => {
                    let mut raw = String::new();
                    while i < chars.len() && !chars[i].is_whitespace() {
                        raw.push(chars[i]);
                        i += 1;
                    }
                    value.push_str(&self.expand(&raw, features.as_deref()));
                }
            }
            if name == "FEATURES" {
                features = Some(value);
            } else {
                self.vars.push((std::mem::take(&mut name), value));
            }
        }
        if let Some(f) = features {
            for word in f.split_whitespace() {
                if word == "-*" {
                    self.features.clear();
                } else if let Some(gone) = word.strip_prefix('-') {
                    self.features.remove(gone);
                } else {
                    self.features.insert(word.to_string());
                }
            }
        }
    }

    /// Expands `${NAME}` and `$NAME`; FEATURES expands to this file's value
    /// so far (the incremental stacking is done afterwards).
    fn expand(&self, raw: &str, features: Option<&str>) -> String {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, len) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            if name.is_empty() {
                out.push('$');
                rest = after;
                continue;
            }
            let value = if name == "FEATURES" {
                features.unwrap_or("")
            } else {
                self.get(name).unwrap_or("")
            };
            out.push_str(value);
            rest = &after[len..];
        }
        out.push_str(rest);
        out
    }
}

/// The tool itself: its binary and every shared library it has mapped
/// executable must carry a valid signature, or under enforce it cannot run.
fn check_self(
    r: &mut Report,
    s: Option<&Settings>,
    key: Option<&KeyMaterial>,
    cert: Option<&Certificate>,
    kernel: &Kernel,
) {
    let Some(s) = s else {
        r.skip("self", "settings did not load");
        return;
    };
    let mut keys = KeySet::new(s.backend);
    let added = match (cert, key) {
        (Some(c), _) => keys.add_certificate(c).map(|_| "the certificate"),
        (None, Some(k)) => keys.add_key(k).map(|_| "the key's public half"),
        (None, None) => {
            r.skip("self", "no certificate or key to verify with");
            return;
        }
    };
    let with = match added {
        Ok(w) => w,
        Err(e) => {
            r.skip("self", format!("cannot verify: {e}"));
            return;
        }
    };
    let mut paths = Vec::new();
    match fs::read_link("/proc/self/exe") {
        Ok(exe) => paths.push(exe),
        Err(e) => {
            r.skip("self", format!("/proc/self/exe: {e}"));
            return;
        }
    }
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    // Sorted: the mapping order changes from run to run (ASLR).
    let mut libs = executable_mappings(&maps);
    libs.retain(|l| !paths.contains(l));
    libs.sort();
    paths.extend(libs);
    let mut bad = Vec::new();
    for path in &paths {
        let status = ima_core::open_regular(path)
            .and_then(|f| keys.verify_file(&f, false))
            .map(|rep| rep.status);
        match status {
            Ok(VerifyStatus::Ok) => {}
            Ok(st) => bad.push((path, st.as_str().to_string())),
            Err(e) => bad.push((path, e.to_string())),
        }
    }
    if bad.is_empty() {
        r.ok(
            "self",
            format!(
                "{} and its {} shared libraries verify with {with}",
                paths[0].display(),
                paths.len() - 1
            ),
        );
        return;
    }
    let list: Vec<String> = bad
        .iter()
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect();
    let fix_paths: Vec<String> = bad.iter().map(|(p, _)| p.display().to_string()).collect();
    let finding = format!(
        "{} of {} files do not verify with {with}: {}; under enforce, a signer the policy appraises (BPRM_CHECK, MMAP_CHECK) cannot run unsigned",
        bad.len(),
        paths.len(),
        list.join(", ")
    );
    let fix = format!("portage-ima sign --files {}", fix_paths.join(" "));
    if kernel.enforcing {
        r.fail("self", finding, fix);
    } else {
        r.warn("self", finding, fix);
    }
}

/// Files mapped executable, from /proc/self/maps text (ld.so and the
/// shared libraries), in order, without duplicates or deleted files.
fn executable_mappings(maps: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let mut rest = line;
        let mut fields = Vec::with_capacity(5);
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        let path = rest.trim_start();
        if fields.len() < 5 || !fields[1].contains('x') || !path.starts_with('/') {
            continue;
        }
        if path.ends_with(" (deleted)") {
            continue;
        }
        let path = PathBuf::from(path);
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_keys_x509_and_keyrings() {
        let text = "\
1501ea6b I--Q---     1 perm 39010000     0     0 asymmetri t: e526930812e74a12a405cdde4329be6cb5e9934f: X509.rsa b5e9934f []
2a0b5d3c I------     1 perm 1f0b0000     0     0 keyring   .ima: 1
0ad0aac5 I--Q---     2 perm 1f3f0000     0 65534 keyring   _uid.0: empty
33b1a2c0 I--Q---     1 perm 3f030000     0     0 keyring   _ima: empty
";
        let keys = parse_proc_keys(text);
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[0].serial, 0x1501ea6b);
        assert_eq!(keys[0].asymmetric_id(), Some("b5e9934f".parse().unwrap()));
        assert_eq!(keys[1].keyring_name(), Some(".ima"));
        assert_eq!(keys[2].keyring_name(), Some("_uid.0"));
        assert_eq!(keys[3].keyring_name(), Some("_ima"));
        assert_eq!(keys[1].asymmetric_id(), None);
    }

    #[test]
    fn xattr_exclude_line_drops_only_what_matches_security_ima() {
        assert_eq!(
            xattr_exclude_line("bcachefs.* btrfs.* security.evm security.ima  user.xdg.*"),
            "PORTAGE_XATTR_EXCLUDE=\"bcachefs.* btrfs.* security.evm user.xdg.*\""
        );
        assert_eq!(
            xattr_exclude_line("security.i* system.nfs4_acl"),
            "PORTAGE_XATTR_EXCLUDE=\"system.nfs4_acl\""
        );
    }

    #[test]
    fn proc_keys_subject_with_spaces() {
        let text = "3c0ff1e3 I------     1 perm 1f030000     0     0 asymmetri Gentoo IMA key: 0011223344556677889900112233445566778899: X509.rsa 66778899 []\n";
        let keys = parse_proc_keys(text);
        assert_eq!(keys[0].asymmetric_id(), Some("66778899".parse().unwrap()));
        assert!(keys[0].description.starts_with("Gentoo IMA key:"));
    }

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
    fn mounts_and_cmdline() {
        let mounts = "proc /proc proc rw 0 0\nsecurityfs /sys/kernel/security securityfs rw 0 0\n";
        assert_eq!(
            securityfs_mount(mounts),
            Some(PathBuf::from("/sys/kernel/security"))
        );
        assert_eq!(securityfs_mount("proc /proc proc rw 0 0\n"), None);
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        let cmdline =
            "root=/dev/sda ima_appraise=fix ima_appraise=enforce quiet -- ima_appraise=off";
        assert_eq!(cmdline_value(cmdline, "ima_appraise"), Some("enforce"));
        assert_eq!(cmdline_value(cmdline, "ima_policy"), None);
    }

    #[test]
    fn kernel_config_lines() {
        let text = "# CONFIG_INTEGRITY is not set\nCONFIG_IMA_APPRAISE=y\nCONFIG_IMA=y\n";
        assert!(config_sets(text, "CONFIG_IMA"));
        assert!(!config_sets(text, "CONFIG_INTEGRITY"));
        assert!(!config_sets("CONFIG_IMA_APPRAISE=y\n", "CONFIG_IMA"));
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

    #[test]
    fn maps_keep_executable_files_once() {
        let maps = "\
55d0c0a00000-55d0c0a10000 r--p 00000000 fd:01 123 /usr/bin/portage-ima
55d0c0a10000-55d0c0a90000 r-xp 00010000 fd:01 123 /usr/bin/portage-ima
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000100000-7f0000200000 r-xp 00000000 fd:01 457 /opt/my libs/libx.so
7f0000200000-7f0000300000 r-xp 00000000 fd:01 458 /tmp/gone.so (deleted)
7f0000300000-7f0000400000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0                          [vdso]
7f0000400000-7f0000500000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        assert_eq!(
            executable_mappings(maps),
            vec![
                PathBuf::from("/usr/bin/portage-ima"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/opt/my libs/libx.so"),
            ]
        );
    }

    #[test]
    fn bashrc_source_lines() {
        assert_eq!(
            sourced_snippet("source /usr/share/portage-ima/portage-ima.bashrc\n").as_deref(),
            Some("/usr/share/portage-ima/portage-ima.bashrc")
        );
        assert_eq!(
            sourced_snippet("[[ -f /x/portage-ima.bashrc ]] && . \"/x/portage-ima.bashrc\"\n")
                .as_deref(),
            Some("/x/portage-ima.bashrc")
        );
        assert_eq!(
            sourced_snippet("# source /usr/share/portage-ima/portage-ima.bashrc\n"),
            None
        );
        assert_eq!(sourced_snippet("source /etc/portage/other.bashrc\n"), None);
    }

    #[test]
    fn make_conf_features_are_incremental() {
        let mut c = MakeConf::default();
        c.apply("FEATURES=\"sandbox strict\nuserpriv\"\nPORTAGE_XATTR_EXCLUDE=\"btrfs.* security.ima\"\n");
        c.apply(
            "# comment\nexport PORTAGE_TMPDIR=/tmp\nFEATURES=\"${FEATURES} xattr -sandbox\"\n\
             PORTAGE_XATTR_EXCLUDE='btrfs.*'\nCFLAGS=\"-O2 \\\n -pipe\"\nX=\"$CFLAGS\"\n",
        );
        let f: Vec<_> = c.features.iter().map(String::as_str).collect();
        assert_eq!(f, ["strict", "userpriv", "xattr"]);
        assert_eq!(c.get("PORTAGE_XATTR_EXCLUDE"), Some("btrfs.*"));
        assert_eq!(c.get("PORTAGE_TMPDIR"), Some("/tmp"));
        assert_eq!(c.get("X"), Some("-O2  -pipe"));
        c.apply("FEATURES=\"-*\"\n");
        assert!(c.features.is_empty());
    }

    #[test]
    fn dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_842_074);
        assert_eq!(httpdate_like(t), "2026-11-28 UTC");
        assert_eq!(httpdate_like(SystemTime::UNIX_EPOCH), "1970-01-01 UTC");
    }
}
