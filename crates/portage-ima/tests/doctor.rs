//! `portage-ima doctor` run as a user runs it, against a scratch config root
//! (`--root`) with real keys and certificates made by openssl, the real
//! kernel keyring (`keyctl`) and, where it is there, the real `portageq`.
//!
//! Every case asserts the outcome of each check it is about, in the text
//! output and in `--json`, and the exit status (0 unless a check failed).
//! Kernel checks depend on the machine; the cases that need something
//! specific of it (a keyring, securityfs) build it in a private session or
//! mount namespace.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portage_ima::commands::doctor::CheckId;

mod common;

use common::{bin, run_ok};

/// The bashrc snippet in this repository.
fn snippet() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bashrc.d/portage-ima.bashrc")
}

/// Runs openssl with `args` (strings and paths alike).
fn openssl<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) {
    run_ok(Command::new("openssl").args(args));
}

/// The key id the kernel will use for a DER certificate: the last 4 bytes of
/// its SKID, as openssl prints it.
fn skid_tail(cert: &Path) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args([
                "x509",
                "-inform",
                "DER",
                "-noout",
                "-ext",
                "subjectKeyIdentifier",
                "-in",
            ])
            .arg(cert),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let hex: String = text
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .replace(':', "")
        .to_lowercase();
    hex[hex.len() - 8..].to_string()
}

/// A scratch setup: a key and certificate, a config root with ima.toml,
/// bashrc and make.conf, and a PORTAGE_TMPDIR beside it.
struct Setup {
    dir: tempfile::TempDir,
}

/// How to make a certificate.
enum Cert {
    /// A signing certificate as the kernel wants it.
    Good,
    /// Without a Subject Key Identifier.
    NoSkid,
    /// A CA certificate with keyCertSign.
    Ca,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(s.root().join("etc/portage")).unwrap();
        fs::create_dir_all(s.path("tmp")).unwrap();
        s.make_key("key.pem");
        s.make_cert("key.pem", "cert.der", Cert::Good);
        s.write_toml("");
        s.write_bashrc(&format!("source {}\n", snippet().display()));
        s.write_make_conf(&format!(
            "FEATURES=\"xattr\"\nPORTAGE_XATTR_EXCLUDE=\"btrfs.* security.evm\"\nPORTAGE_TMPDIR=\"{}\"\n",
            s.path("tmp").display()
        ));
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn make_key(&self, name: &str) {
        let key = self.path(name);
        openssl([
            OsStr::new("genrsa"),
            OsStr::new("-out"),
            key.as_os_str(),
            OsStr::new("2048"),
        ]);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
    }

    fn make_cert(&self, key: &str, name: &str, kind: Cert) {
        let mut args: Vec<&OsStr> = [
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-subj",
            "/CN=doctor test",
            "-outform",
            "DER",
        ]
        .map(OsStr::new)
        .to_vec();
        args.extend(
            match kind {
                Cert::Good => [
                    "-addext",
                    "basicConstraints=critical,CA:FALSE",
                    "-addext",
                    "keyUsage=critical,digitalSignature",
                    "-addext",
                    "subjectKeyIdentifier=hash",
                ],
                Cert::NoSkid => [
                    "-addext",
                    "basicConstraints=critical,CA:FALSE",
                    "-addext",
                    "keyUsage=critical,digitalSignature",
                    "-addext",
                    "subjectKeyIdentifier=none",
                ],
                Cert::Ca => [
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,digitalSignature",
                    "-addext",
                    "subjectKeyIdentifier=hash",
                ],
            }
            .map(OsStr::new),
        );
        let (key, out) = (self.path(key), self.path(name));
        args.extend([
            OsStr::new("-key"),
            key.as_os_str(),
            OsStr::new("-out"),
            out.as_os_str(),
        ]);
        openssl(args);
    }

    /// ima.toml naming key.pem and cert.der, plus `extra`.
    fn write_toml(&self, extra: &str) {
        fs::write(
            self.root().join("etc/portage/ima.toml"),
            format!(
                "key = \"{}\"\ncert = \"{}\"\n{extra}",
                self.path("key.pem").display(),
                self.path("cert.der").display()
            ),
        )
        .unwrap();
    }

    fn write_bashrc(&self, text: &str) {
        fs::write(self.root().join("etc/portage/bashrc"), text).unwrap();
    }

    fn write_make_conf(&self, text: &str) {
        fs::write(self.root().join("etc/portage/make.conf"), text).unwrap();
    }

    /// `portage-ima doctor --root ROOT` with a PATH that has no portageq.
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = common::cmd();
        cmd.arg("doctor")
            .arg("--root")
            .arg(self.root())
            .args(extra)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env_remove("PORTAGE_CONFIGROOT");
        cmd
    }

    fn doctor(&self, extra: &[&str]) -> Doctor {
        Doctor::from(self.command(extra).output().unwrap())
    }
}

/// The check a printed or JSON name stands for (panics on an unknown name).
fn check_id(name: impl serde::Serialize) -> CheckId {
    let value = serde_json::to_value(name).unwrap();
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("check {value}: {e}"))
}

/// One parsed text report.
struct Doctor {
    code: i32,
    text: String,
    /// check -> (label, finding, fix)
    checks: BTreeMap<CheckId, (String, String, Option<String>)>,
}

impl From<Output> for Doctor {
    fn from(out: Output) -> Doctor {
        let text = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut checks = BTreeMap::new();
        let mut last: Option<CheckId> = None;
        for line in text.lines() {
            if let Some(fix) = line.strip_prefix("      -> ") {
                let name = last.expect("a fix follows a check line");
                let entry: &mut (String, String, Option<String>) = checks.get_mut(&name).unwrap();
                assert!(entry.2.is_none(), "one fix per check: {text}");
                entry.2 = Some(fix.to_string());
                continue;
            }
            // KERNEL=: what keyctl said, printed first by in_restricted_session.
            if line.starts_with("portage-ima doctor: ") || line.starts_with("KERNEL=") {
                continue;
            }
            let (label, rest) = line.split_at(4);
            let rest = rest
                .strip_prefix("  ")
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let (name, finding) = rest.split_once(": ").unwrap();
            assert!(
                matches!(label.trim(), "ok" | "warn" | "FAIL" | "skip"),
                "bad label in {line:?}"
            );
            let id = check_id(name);
            let old = checks.insert(id, (label.trim().to_string(), finding.to_string(), None));
            assert!(old.is_none(), "check {name} printed twice: {text}");
            last = Some(id);
        }
        Doctor {
            code: out.status.code().unwrap_or(-1),
            text: format!("{text}\nstderr:\n{stderr}"),
            checks,
        }
    }
}

impl Doctor {
    /// Asserts the label of a check and returns its finding and fix.
    #[track_caller]
    fn expect(&self, check: CheckId, label: &str) -> (&str, Option<&str>) {
        let (got, finding, fix) = self
            .checks
            .get(&check)
            .unwrap_or_else(|| panic!("no check {check}:\n{}", self.text));
        assert_eq!(got, label, "check {check}:\n{}", self.text);
        if label == "ok" {
            assert!(fix.is_none(), "an ok check has no fix:\n{}", self.text);
        } else if label != "skip" {
            assert!(fix.is_some(), "{check} says what to do:\n{}", self.text);
        }
        (finding, fix.as_deref())
    }
}

#[test]
fn good_setup_passes() {
    let s = Setup::new();
    let d = s.doctor(&[]);
    assert_eq!(d.code, 0, "{}", d.text);
    let names: Vec<CheckId> = d.checks.keys().copied().collect();
    let mut all = CheckId::ALL.to_vec();
    all.sort();
    assert_eq!(names, all, "{}", d.text);
    let keyid = skid_tail(&s.path("cert.der"));

    let (f, _) = d.expect(CheckId::Config, "ok");
    assert!(f.contains("ima.toml") && f.contains("sha256"), "{f}");
    // The config_files mode, here the default.
    assert!(f.contains("config_files executable"), "{f}");
    let (f, _) = d.expect(CheckId::Key, "ok");
    assert!(f.contains("RSA-2048"), "{f}");
    let (f, _) = d.expect(CheckId::KeyAccess, "ok");
    assert!(f.contains("0400"), "{f}");
    let (f, _) = d.expect(CheckId::Cert, "ok");
    assert!(f.contains(&keyid) && f.contains("doctor test"), "{f}");
    d.expect(CheckId::CertKey, "ok");
    d.expect(CheckId::CertSkid, "ok");
    d.expect(CheckId::CertUsage, "ok");
    d.expect(CheckId::CertExpiry, "ok");
    let (f, _) = d.expect(CheckId::KeyId, "ok");
    assert!(f.contains(&keyid), "{f}");
    let (f, _) = d.expect(CheckId::Hash, "ok");
    assert!(f.starts_with("sha256 is available"), "{f}");
    d.expect(CheckId::Bashrc, "ok");
    let (f, _) = d.expect(CheckId::Xattr, "ok");
    assert!(f.contains("read roughly"), "no portageq on PATH: {f}");
    d.expect(CheckId::Tmpdir, "ok");
    d.expect(CheckId::Premerge, "ok");
    // The test binary is not signed: a warning unless the kernel enforces.
    let (label, finding, fix) = &d.checks[&CheckId::Signer];
    assert!(matches!(label.as_str(), "warn" | "FAIL"), "{}", d.text);
    assert!(
        finding.contains(bin()) || finding.contains("portage-ima"),
        "{finding}"
    );
    assert!(fix
        .as_deref()
        .unwrap()
        .starts_with("portage-ima sign --files "));
}

/// Whether this kernel shows IMA in securityfs (as mounted for this process).
fn kernel_has_ima() -> bool {
    Path::new("/sys/kernel/security/ima").is_dir()
        || Path::new("/sys/kernel/security/integrity/ima").is_dir()
}

#[test]
fn kernel_checks_follow_whether_this_kernel_has_ima() {
    let s = Setup::new();
    let d = s.doctor(&[]);
    if kernel_has_ima() {
        // A Gentoo machine with IMA: securityfs and IMA are found.
        d.expect(CheckId::Securityfs, "ok");
        d.expect(CheckId::Ima, "ok");
        return;
    }
    // Without IMA (or without securityfs mounted) the kernel checks must
    // explain, not fail.
    assert_eq!(d.code, 0, "{}", d.text);
    d.expect(CheckId::Ima, "warn");
    d.expect(CheckId::Appraise, "skip");
    d.expect(CheckId::Policy, "skip");
    d.expect(CheckId::Signer, "warn");
}

#[test]
fn world_readable_key_fails() {
    let s = Setup::new();
    fs::set_permissions(s.path("key.pem"), fs::Permissions::from_mode(0o644)).unwrap();
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    d.expect(CheckId::Key, "ok");
    let (f, fix) = d.expect(CheckId::KeyAccess, "FAIL");
    assert!(
        f.contains("0644") && f.contains("readable by group or others"),
        "{f}"
    );
    assert!(f.contains("refuses to sign"), "{f}");
    let fix = fix.unwrap();
    assert!(fix.contains("chmod 0400"), "{fix}");
    assert!(fix.contains("allow_insecure_key = true"), "{fix}");
    // Only that check fails.
    let failed: Vec<_> = d
        .checks
        .iter()
        .filter(|(_, c)| c.0 == "FAIL")
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(failed, [CheckId::KeyAccess], "{}", d.text);
}

#[test]
fn insecure_key_allowed_by_the_settings_is_a_warning() {
    // allow_insecure_key = true makes the signer warn and sign anyway
    // (tests/cli_files.rs): doctor says the same, a warning, not a failure.
    let s = Setup::new();
    fs::set_permissions(s.path("key.pem"), fs::Permissions::from_mode(0o644)).unwrap();
    s.write_toml("allow_insecure_key = true\n");
    let d = s.doctor(&[]);
    assert_eq!(d.code, 0, "warnings only: {}", d.text);
    let (f, fix) = d.expect(CheckId::KeyAccess, "warn");
    assert!(
        f.contains("0644") && f.contains("allow_insecure_key"),
        "{f}"
    );
    assert!(fix.unwrap().contains("chmod 0400"), "{fix:?}");
}

#[test]
fn key_in_a_directory_others_can_write_fails() {
    // The key itself is private, but anyone can replace it: the signer
    // refuses it (settings::key_exposure), so doctor must not call it ok.
    let s = Setup::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, _) = d.expect(CheckId::KeyAccess, "FAIL");
    assert!(f.contains("writable by others"), "{f}");
    // The signer agrees: sign refuses the same key.
    let file = s.path("file");
    fs::write(&file, "data").unwrap();
    let out = common::cmd()
        .arg("--config")
        .arg(s.root().join("etc/portage/ima.toml"))
        .args(["sign", "--files"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("refusing the private key"),
        "{stderr}"
    );
}

#[test]
fn missing_key_fails_and_skips_what_needs_it() {
    let s = Setup::new();
    fs::remove_file(s.path("key.pem")).unwrap();
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, fix) = d.expect(CheckId::Key, "FAIL");
    assert!(f.contains("does not exist"), "{f}");
    // A key and the certificate the kernel needs for it, in one command.
    let fix = fix.unwrap();
    assert!(
        fix.contains("openssl req -x509") && fix.contains("-keyout") && fix.contains("-out "),
        "{fix}"
    );
    d.expect(CheckId::KeyAccess, "skip");
    d.expect(CheckId::Cert, "ok");
    d.expect(CheckId::CertKey, "skip");
}

#[test]
fn certificate_of_another_key_fails() {
    let s = Setup::new();
    s.make_key("other.pem");
    s.make_cert("other.pem", "cert.der", Cert::Good);
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    d.expect(CheckId::Key, "ok");
    d.expect(CheckId::Cert, "ok");
    let (f, _) = d.expect(CheckId::CertKey, "FAIL");
    assert!(f.contains("another key"), "{f}");
    d.expect(CheckId::CertSkid, "ok");
}

#[test]
fn certificate_without_skid_fails() {
    let s = Setup::new();
    s.make_cert("key.pem", "cert.der", Cert::NoSkid);
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    d.expect(CheckId::Cert, "ok");
    d.expect(CheckId::CertKey, "ok");
    let (f, fix) = d.expect(CheckId::CertSkid, "FAIL");
    assert!(f.contains("no Subject Key Identifier"), "{f}");
    assert!(
        fix.unwrap().contains("subjectKeyIdentifier=hash"),
        "{fix:?}"
    );
    d.expect(CheckId::CertUsage, "ok");
}

#[test]
fn ca_certificate_fails() {
    let s = Setup::new();
    s.make_cert("key.pem", "cert.der", Cert::Ca);
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    d.expect(CheckId::CertSkid, "ok");
    let (f, fix) = d.expect(CheckId::CertUsage, "FAIL");
    assert!(f.contains("CA") && f.contains("keyCertSign"), "{f}");
    assert!(fix.unwrap().contains("CA:FALSE"), "{fix:?}");
}

#[test]
fn x509_v1_certificate_has_no_skid() {
    // An x509 v1 certificate (signed from a CSR with no extensions) has no
    // extensions at all.
    let s = Setup::new();
    let (key, csr, cert) = (s.path("key.pem"), s.path("v1.csr"), s.path("cert.der"));
    openssl(
        [
            OsStr::new("req"),
            "-new".as_ref(),
            "-subj".as_ref(),
            "/CN=v1".as_ref(),
        ]
        .into_iter()
        .chain([
            OsStr::new("-key"),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
        ]),
    );
    openssl(
        [
            OsStr::new("x509"),
            "-req".as_ref(),
            "-days".as_ref(),
            "30".as_ref(),
        ]
        .into_iter()
        .chain([
            "-outform".as_ref(),
            "DER".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
        ])
        .chain([
            "-signkey".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]),
    );
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(s.path("cert.der")),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Version: 1 (0x0)"),
        "openssl made a v1 certificate: {text}"
    );
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    d.expect(CheckId::CertSkid, "FAIL");
    d.expect(CheckId::CertUsage, "warn");
}

#[test]
fn missing_snippet_line_fails() {
    let s = Setup::new();
    s.write_bashrc(&format!(
        "# portage-ima, disabled:\n# source {}\nsource /etc/portage/other.bashrc\n",
        snippet().display()
    ));
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, fix) = d.expect(CheckId::Bashrc, "FAIL");
    assert!(f.contains("does not source portage-ima.bashrc"), "{f}");
    // The README's guarded line, so that bashrc still works once
    // portage-ima is uninstalled.
    let installed = "/usr/share/portage-ima/portage-ima.bashrc";
    let fix = fix.unwrap();
    assert!(
        fix.contains(&format!("[[ -r {installed} ]] && source {installed}")),
        "{fix}"
    );
    // The fix runs as printed (here on a bashrc with nothing else) and
    // doctor then sees the line.
    s.write_bashrc("# Portage's bashrc\n");
    run_ok(Command::new("sh").arg("-c").arg(fix));
    let d = s.doctor(&[]);
    if Path::new(installed).is_file() {
        d.expect(CheckId::Bashrc, "ok");
    } else {
        let (f, _) = d.expect(CheckId::Bashrc, "FAIL");
        assert!(f.contains("which does not exist"), "{f}");
        // Not installed: Portage sourcing bashrc gets no error from it.
        let bashrc = s.root().join("etc/portage/bashrc");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("source '{}'", bashrc.display()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "sourcing bashrc");
    }

    fs::remove_file(s.root().join("etc/portage/bashrc")).unwrap();
    let d = s.doctor(&[]);
    d.expect(CheckId::Bashrc, "FAIL");

    s.write_bashrc("source /nonexistent/portage-ima.bashrc\n");
    let d = s.doctor(&[]);
    let (f, _) = d.expect(CheckId::Bashrc, "FAIL");
    assert!(f.contains("does not exist"), "{f}");
}

#[test]
fn default_xattr_exclude_on_another_filesystem_cannot_premerge() {
    let s = Setup::new();
    // /dev/shm is a tmpfs: another filesystem than the scratch root.
    let shm = Path::new("/dev/shm");
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
    if !common::require(
        shm.is_dir() && dev(shm) != dev(&s.root()),
        "/dev/shm on another filesystem than the test's root",
        "default_xattr_exclude_on_another_filesystem_cannot_premerge",
    ) {
        return;
    }
    // No PORTAGE_XATTR_EXCLUDE: Portage's default drops security.ima.
    s.write_make_conf("FEATURES=\"xattr\"\nPORTAGE_TMPDIR=\"/dev/shm\"\n");
    let d = s.doctor(&[]);
    assert_eq!(d.code, 0, "warnings only: {}", d.text);
    d.expect(CheckId::Tmpdir, "warn");
    let (f, _) = d.expect(CheckId::Xattr, "warn");
    assert!(f.contains("drops security.ima"), "{f}");
    let (f, fix) = d.expect(CheckId::Premerge, "warn");
    assert!(f.contains("cannot work"), "{f}");
    // Under enforce the hook's own upgrade is unsigned until postinst.
    assert!(f.contains("upgrade of portage-ima itself"), "{f}");
    assert!(fix.unwrap().contains("PORTAGE_XATTR_EXCLUDE"), "{fix:?}");

    // FEATURES=xattr with security.ima kept makes the copy keep it.
    s.write_make_conf(
        "FEATURES=\"xattr\"\nPORTAGE_XATTR_EXCLUDE=\"btrfs.* security.evm\"\nPORTAGE_TMPDIR=\"/dev/shm\"\n",
    );
    let d = s.doctor(&[]);
    d.expect(CheckId::Tmpdir, "warn");
    d.expect(CheckId::Xattr, "ok");
    let (f, _) = d.expect(CheckId::Premerge, "ok");
    assert!(f.contains("FEATURES=xattr keeps"), "{f}");

    // premerge = never in ima.toml: said, not warned about.
    s.write_make_conf("PORTAGE_TMPDIR=\"/dev/shm\"\n");
    s.write_toml("premerge = \"never\"\n");
    let d = s.doctor(&[]);
    d.expect(CheckId::Xattr, "warn");
    let (f, _) = d.expect(CheckId::Premerge, "ok");
    assert!(f.contains("postinst only"), "{f}");
}

#[test]
fn failsafe_says_whether_the_hook_will_stop_merges() {
    let s = Setup::new();
    let shm = Path::new("/dev/shm");
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
    if !common::require(
        shm.is_dir() && dev(shm) != dev(&s.root()),
        "/dev/shm on another filesystem than the test's root",
        "failsafe_says_whether_the_hook_will_stop_merges",
    ) {
        return;
    }
    s.write_make_conf("PORTAGE_TMPDIR=\"/dev/shm\"\n");
    s.write_toml("enforce = true\n");
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, fix) = d.expect(CheckId::Failsafe, "FAIL");
    assert!(f.starts_with("the hook will stop merges: "), "{f}");
    assert!(f.contains("(enforce = true in ima.toml)"), "{f}");
    let fix = fix.unwrap();
    assert!(fix.contains("FEATURES=\"${FEATURES} xattr\""), "{fix}");
    assert!(
        fix.contains("btrfs.* security.evm security.selinux system.nfs4_acl"),
        "{fix}"
    );

    s.write_toml("enforce = true\nallow_unsigned_window = true\n");
    let d = s.doctor(&[]);
    let (f, _) = d.expect(CheckId::Failsafe, "warn");
    assert!(f.contains("allow_unsigned_window = true"), "{f}");

    s.write_toml("enforce = false\n");
    let d = s.doctor(&[]);
    let (f, _) = d.expect(CheckId::Failsafe, "ok");
    assert!(f.contains("enforce = false in ima.toml"), "{f}");

    // premerge = "never" leaves every merge unsigned until postinst.
    s.write_make_conf(
        "FEATURES=\"xattr\"\nPORTAGE_XATTR_EXCLUDE=\"btrfs.*\"\nPORTAGE_TMPDIR=\"/dev/shm\"\n",
    );
    s.write_toml("enforce = true\n");
    let d = s.doctor(&[]);
    let (f, _) = d.expect(CheckId::Failsafe, "ok");
    assert!(f.contains("keeps the signatures"), "{f}");
    s.write_toml("enforce = true\npremerge = \"never\"\n");
    let d = s.doctor(&[]);
    let (_, fix) = d.expect(CheckId::Failsafe, "FAIL");
    assert!(fix.unwrap().contains("premerge = \"auto\""));
}

#[test]
fn separate_build_directory_is_what_counts() {
    // ${PORTAGE_TMPDIR}/portage on its own filesystem (here a symlink to the
    // /dev/shm tmpfs, as a tmpfs mount there would be) is where Portage builds.
    let s = Setup::new();
    let shm = Path::new("/dev/shm");
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
    if !common::require(
        shm.is_dir() && dev(shm) != dev(&s.root()),
        "/dev/shm on another filesystem than the test's root",
        "separate_build_directory_is_what_counts",
    ) {
        return;
    }
    s.write_make_conf(&format!("PORTAGE_TMPDIR=\"{}\"\n", s.path("tmp").display()));
    let d = s.doctor(&[]);
    d.expect(CheckId::Tmpdir, "ok");
    d.expect(CheckId::Premerge, "ok");
    std::os::unix::fs::symlink(shm, s.path("tmp/portage")).unwrap();
    let d = s.doctor(&[]);
    let (f, _) = d.expect(CheckId::Tmpdir, "warn");
    assert!(f.contains("tmp/portage (PORTAGE_TMPDIR="), "{f}");
    d.expect(CheckId::Xattr, "warn");
    d.expect(CheckId::Premerge, "warn");
}

#[test]
fn portageq_is_asked_when_there() {
    // The cached venv of the Portage playground tests holds the real portageq.
    let venv_bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/.cache/venv/bin");
    if !common::require(
        venv_bin.join("portageq").is_file(),
        "portageq in tests/.cache/venv (python3 tests/portage_playground/venv.py makes it)",
        "portageq_is_asked_when_there",
    ) {
        return;
    }
    let s = Setup::new();
    // Portage's own reading: FEATURES from make.globals plus ours, and
    // PORTAGE_XATTR_EXCLUDE as set.
    let d = Doctor::from(
        s.command(&[])
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", venv_bin.display()),
            )
            .output()
            .unwrap(),
    );
    let (f, _) = d.expect(CheckId::Xattr, "ok");
    assert!(f.contains("from portageq"), "{f}");
    // Without FEATURES=xattr Portage's default set lacks it.
    s.write_make_conf(&format!("PORTAGE_TMPDIR=\"{}\"\n", s.path("tmp").display()));
    let d = Doctor::from(
        s.command(&[])
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", venv_bin.display()),
            )
            .output()
            .unwrap(),
    );
    let (f, _) = d.expect(CheckId::Xattr, "ok");
    assert!(
        f.contains("lacks xattr") && f.contains("from portageq") && f.contains("not needed"),
        "{f}"
    );
}

#[test]
fn bad_settings_fail_the_config_check() {
    let s = Setup::new();
    s.write_toml("kye = \"typo\"\n");
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, _) = d.expect(CheckId::Config, "FAIL");
    assert!(f.contains("kye"), "{f}");
    d.expect(CheckId::Key, "skip");
    // Portage checks still run.
    d.expect(CheckId::Bashrc, "ok");
}

#[test]
fn flags_override_the_settings_file() {
    let s = Setup::new();
    s.make_key("other.pem");
    s.make_cert("other.pem", "other.der", Cert::Good);
    let (key, cert) = (s.path("other.pem"), s.path("other.der"));
    let d = s.doctor(&[
        "--key",
        key.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--hash",
        "sha512",
    ]);
    assert_eq!(d.code, 0, "{}", d.text);
    let keyid = skid_tail(&cert);
    let (f, _) = d.expect(CheckId::Key, "ok");
    assert!(f.contains("other.pem"), "{f}");
    let (f, _) = d.expect(CheckId::KeyId, "ok");
    assert!(f.contains(&keyid), "{f}");
    d.expect(CheckId::CertKey, "ok");
    let (f, _) = d.expect(CheckId::Hash, "ok");
    assert!(f.starts_with("sha512 is available"), "{f}");
}

#[test]
fn root_that_is_not_a_directory_is_a_usage_error() {
    let out = common::cmd()
        .args(["doctor", "--root", "/nonexistent/root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/root") && err.contains("not a directory"),
        "{err}"
    );
}

#[test]
fn portage_configroot_is_the_default_root() {
    let s = Setup::new();
    let out = common::cmd()
        .arg("doctor")
        .env("PORTAGE_CONFIGROOT", s.root())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let d = Doctor::from(out);
    let (f, _) = d.expect(CheckId::Config, "ok");
    assert!(
        f.starts_with(&format!("{}/etc/portage/ima.toml", s.root().display())),
        "{f}"
    );
    let (f, _) = d.expect(CheckId::Bashrc, "ok");
    assert!(
        f.starts_with(&format!("{}/etc/portage/bashrc", s.root().display())),
        "{f}"
    );
}

#[test]
fn configured_keyid_that_differs_from_the_certificate_fails() {
    let s = Setup::new();
    s.write_toml("keyid = \"0badc0de\"\n");
    let d = s.doctor(&[]);
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, _) = d.expect(CheckId::KeyId, "FAIL");
    assert!(f.contains("0badc0de"), "{f}");
}

#[test]
fn json_parses_and_matches_the_text() {
    for broken in [false, true] {
        let s = Setup::new();
        if broken {
            fs::set_permissions(s.path("key.pem"), fs::Permissions::from_mode(0o640)).unwrap();
        }
        let d = s.doctor(&[]);
        let out = s.command(&["--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(d.code));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "--json is JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(json["ok"], serde_json::Value::Bool(!broken));
        let checks = json["checks"].as_array().unwrap();
        assert_eq!(checks.len(), d.checks.len());
        let names: Vec<CheckId> = checks.iter().map(|c| check_id(&c["check"])).collect();
        assert_eq!(names, CheckId::ALL, "same checks, same order");
        for c in checks {
            let name = check_id(&c["check"]);
            let (label, finding, fix) = &d.checks[&name];
            let status = c["status"].as_str().unwrap();
            assert_eq!(
                status,
                if label == "FAIL" {
                    "fail"
                } else {
                    label.as_str()
                },
                "{name}"
            );
            // The self check names the binary that ran: the same one here.
            assert_eq!(c["finding"].as_str().unwrap(), finding, "{name}");
            match fix {
                Some(fix) => assert_eq!(c["fix"].as_str().unwrap(), fix, "{name}"),
                None => assert!(c["fix"].is_null(), "{name}"),
            }
        }
        if broken {
            let access = checks
                .iter()
                .find(|c| check_id(&c["check"]) == CheckId::KeyAccess)
                .unwrap();
            assert_eq!(access["status"], "fail");
            assert!(access["finding"].as_str().unwrap().contains("mode 0640"));
        }
    }
}

/// Runs `script` in a fresh keyring session (keyctl session), so keyrings
/// made there vanish with it.
fn in_session(script: &str, s: &Setup, extra: &[&str]) -> Doctor {
    let cmd = s.command(extra);
    let mut line = format!("{script}\nexec '{}'", bin());
    for a in cmd.get_args() {
        line.push_str(&format!(" '{}'", a.to_str().unwrap()));
    }
    let mut keyctl = Command::new("keyctl");
    keyctl
        .args(["session", "-", "sh", "-ec", &line])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let out = common::without_phase_variables(&mut keyctl)
        .output()
        .expect("keyctl runs");
    Doctor::from(out)
}

#[test]
fn keyring_with_the_certificate() {
    let s = Setup::new();
    let keyid = skid_tail(&s.path("cert.der"));
    // A userspace _ima keyring, as kernels without a trusted IMA keyring use.
    let d = in_session(
        &format!(
            "ring=$(keyctl newring _ima @s)\nkeyctl padd asymmetric '' $ring < '{}' >/dev/null",
            s.path("cert.der").display()
        ),
        &s,
        &[],
    );
    let (f, _) = d.expect(CheckId::Keyring, "ok");
    assert!(
        f.contains(&format!("key {keyid} is on the _ima keyring")),
        "{f}"
    );
    assert!(
        f.contains(&format!("X509.rsa {keyid}")),
        "the /proc/keys line: {f}"
    );
}

#[test]
fn keyring_without_the_certificate_fails() {
    let s = Setup::new();
    s.make_key("other.pem");
    s.make_cert("other.pem", "other.der", Cert::Good);
    // The _ima keyring holds another key; ours is elsewhere (the session
    // keyring itself), which the kernel would not search.
    let d = in_session(
        &format!(
            "ring=$(keyctl newring _ima @s)\nkeyctl padd asymmetric '' $ring < '{}' >/dev/null\n\
             keyctl padd asymmetric '' @s < '{}' >/dev/null",
            s.path("other.der").display(),
            s.path("cert.der").display()
        ),
        &s,
        &[],
    );
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, fix) = d.expect(CheckId::Keyring, "FAIL");
    assert!(f.contains("_ima has 1 keys, none with id"), "{f}");
    assert!(fix.unwrap().contains("keyctl padd asymmetric"), "{fix:?}");
}

#[test]
fn keyring_cannot_find_a_certificate_without_skid() {
    // The kernel lists such a key as `X509.rsa []`: no id to find it by.
    let s = Setup::new();
    s.make_cert("key.pem", "cert.der", Cert::NoSkid);
    let d = in_session(
        &format!(
            "ring=$(keyctl newring _ima @s)\nkeyctl padd asymmetric '' $ring < '{}' >/dev/null",
            s.path("cert.der").display()
        ),
        &s,
        &[],
    );
    d.expect(CheckId::CertSkid, "FAIL");
    let (f, _) = d.expect(CheckId::Keyring, "FAIL");
    assert!(f.contains("_ima has 1 keys, none with id"), "{f}");
}

#[test]
fn securityfs_mounted_in_a_private_namespace() {
    // securityfs mounted where doctor looks (in a private mount namespace:
    // the host's mounts are not touched): found, and IMA found in it exactly
    // when the kernel has it.
    let s = Setup::new();
    let cmd = s.command(&[]);
    let probe = s.path("ima-probe");
    let mut line = format!(
        "mount -t securityfs securityfs /sys/kernel/security || exit 99\n\
         if [ -d /sys/kernel/security/ima ] || [ -d /sys/kernel/security/integrity/ima ]; \
         then echo yes > '{0}'; else echo no > '{0}'; fi\n\
         exec '{1}'",
        probe.display(),
        bin()
    );
    for a in cmd.get_args() {
        line.push_str(&format!(" '{}'", a.to_str().unwrap()));
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec", &line])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let mounted = out.status.code() != Some(99);
    let why = format!(
        "unshare and a securityfs mount (root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !common::require(mounted, &why, "securityfs_mounted_in_a_private_namespace") {
        return;
    }
    let has_ima = fs::read_to_string(&probe).unwrap().trim() == "yes";
    let d = Doctor::from(out);
    let (f, _) = d.expect(CheckId::Securityfs, "ok");
    assert!(f.contains("/sys/kernel/security"), "{f}");
    if has_ima {
        d.expect(CheckId::Ima, "ok");
    } else {
        let (f, _) = d.expect(CheckId::Ima, "warn");
        assert!(f.contains("not in this kernel"), "{f}");
    }
}

#[test]
fn signed_binary_is_not_listed_by_the_self_check() {
    // A copy of the binary signed by evmctl (the oracle) with our key: the
    // self check must accept it and name only the unsigned libraries.
    let s = Setup::new();
    let copy = s.path("portage-ima");
    fs::copy(bin(), &copy).unwrap();
    run_ok(
        Command::new("evmctl")
            .args(["ima_sign", "--hashalgo", "sha256", "--key"])
            .arg(s.path("key.pem"))
            .arg(&copy),
    );
    let run_copy = || {
        let args: Vec<_> = s.command(&[]).get_args().map(|a| a.to_owned()).collect();
        Command::new(&copy)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap()
    };
    let out = run_copy();
    let d = Doctor::from(out);
    let (label, finding, fix) = &d.checks[&CheckId::Signer];
    let copy = copy.display().to_string();
    match label.as_str() {
        // Every library was signed too (a signed system).
        "ok" => assert!(finding.contains(&copy), "{finding}"),
        _ => {
            assert!(
                !finding.contains(&copy),
                "the signed binary is fine: {finding}"
            );
            assert!(
                finding.contains(".so"),
                "the libraries are listed: {finding}"
            );
            assert!(!fix.as_deref().unwrap().contains(&copy));
        }
    }

    // Verified with the key's public half when there is no certificate.
    if Path::new("/etc/keys/x509_ima.der").exists() {
        return;
    }
    fs::write(
        s.root().join("etc/portage/ima.toml"),
        format!("key = \"{}\"\n", s.path("key.pem").display()),
    )
    .unwrap();
    let d = Doctor::from(run_copy());
    d.expect(CheckId::Cert, "warn");
    let (label, finding, _) = &d.checks[&CheckId::Signer];
    if label != "ok" {
        assert!(finding.contains("the key's public half"), "{finding}");
        assert!(!finding.contains(&copy), "{finding}");
    }
}

/// Boots Debian's kernel under QEMU (tests/kernel/kernelvm.py) with
/// `ima_appraise=enforce`, a `_ima` keyring holding our certificate and an
/// appraise policy, puts the key, certificate, bashrc and snippet at their
/// default paths, and runs `portage-ima doctor` there as a user would: every
/// kernel check sees a real IMA. The unsigned binary is a FAIL under enforce;
/// running the fix doctor prints (`portage-ima sign --files ...`) makes it ok.
const VM_DRIVER: &str = r#"
import base64, json, shutil, sys
from pathlib import Path
kdir = Path(sys.argv[1])
sys.path.insert(0, str(kdir))
sys.path.insert(0, str(kdir.parent))  # kernelvm imports portage_playground.cachelock
import kernelvm
bin, key, cert, snippet, work = map(Path, sys.argv[2:7])
try:
    kernelvm.ensure_host_tools()
    kernel = kernelvm.prepare_kernel()
    keyctl = shutil.which("keyctl")
    if keyctl is None:
        raise kernelvm.Unavailable("keyctl not found")
except kernelvm.Unavailable as e:
    print(json.dumps({"unavailable": str(e)}))
    sys.exit(0)
cases = r'''
mkdir -p /var/tmp
doctor() {
    out=$(portage-ima doctor --json 2>&1); rc=$?
    say doctor "$1" rc=$rc out=$(printf '%s' "$out" | b64)
}
doctor before
fix=$(portage-ima doctor 2>/dev/null | sed -n 's/^      -> \(portage-ima sign --files .*\)$/\1/p')
out=$(eval "$fix" 2>&1); rc=$?
say fix - rc=$rc cmd=$(printf '%s' "$fix" | b64) out=$(printf '%s' "$out" | b64)
doctor after
'''
ir = kernelvm.Initramfs(work / "initramfs")
ir.add_file(kdir / "init.sh", "/init", 0o755)
ir.add_file(kernelvm.BUSYBOX, "/bin/busybox", 0o755)
ir.add_binary(Path(keyctl), "/usr/bin/keyctl")
ir.add_binary(bin, "/usr/bin/portage-ima")
ir.add_bytes(b"", "/modules.list")
ir.add_file(cert, "/ima/certs/ima.der", 0o644)
ir.add_file(cert, "/etc/keys/x509_ima.der", 0o644)
ir.add_file(key, "/etc/keys/IMA_signing_key.priv", 0o400)
ir.add_bytes(b"appraise func=BPRM_CHECK fowner=1000 appraise_type=imasig\n", "/ima/policy")
ir.add_file(snippet, "/usr/share/portage-ima/portage-ima.bashrc", 0o644)
ir.add_bytes(b"source /usr/share/portage-ima/portage-ima.bashrc\n", "/etc/portage/bashrc")
ir.add_bytes(cases.encode(), "/cases.sh", 0o755)
result = kernelvm.boot(kernel, ir.pack(work / "initramfs.cpio"), timeout=300)
out = {"kernel": kernel.release, "seconds": result.seconds, "completed": result.completed(),
       "tail": result.tail(60), "records": {}}
for r in result.records:
    f = dict(r.fields)
    for k in ("out", "cmd", "reason"):
        if k in f:
            f[k] = base64.b64decode(f[k]).decode(errors="replace")
    out["records"][f"{r.kind} {r.id}"] = f
print(json.dumps(out))
"#;

#[test]
fn doctor_under_a_real_ima_kernel() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kdir = repo.join("tests/kernel");
    let test = "doctor under a real IMA kernel";
    if !common::require(
        kdir.join("kernelvm.py").is_file(),
        "tests/kernel/kernelvm.py",
        test,
    ) {
        return;
    }
    let s = Setup::new();
    let work = s.path("vm");
    fs::create_dir_all(&work).unwrap();
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(VM_DRIVER)
            .arg(&kdir)
            .arg(bin())
            .arg(s.path("key.pem"))
            .arg(s.path("cert.der"))
            .arg(snippet())
            .arg(&work),
    );
    let vm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "driver output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    if let Some(why) = vm["unavailable"].as_str() {
        common::require(false, &format!("a VM (tests/kernel): {why}"), test);
        return;
    }
    let tail = vm["tail"].as_str().unwrap_or("");
    assert_eq!(vm["completed"], true, "the VM ran to the end:\n{tail}");
    eprintln!(
        "kernel {} booted and ran doctor in {:.1} s",
        vm["kernel"], vm["seconds"]
    );
    let report = |id: &str| -> (i64, BTreeMap<CheckId, (String, String)>) {
        let rec = &vm["records"][format!("doctor {id}")];
        let text = rec["out"]
            .as_str()
            .unwrap_or_else(|| panic!("no doctor {id}:\n{tail}"));
        let json: serde_json::Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("doctor {id} --json ({e}): {text}"));
        let checks = json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    check_id(&c["check"]),
                    (
                        c["status"].as_str().unwrap().to_string(),
                        c["finding"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        (rec["rc"].as_str().unwrap().parse().unwrap(), checks)
    };
    let keyid = skid_tail(&s.path("cert.der"));
    let (rc, before) = report("before");
    let status = |checks: &BTreeMap<CheckId, (String, String)>, name: CheckId| {
        checks
            .get(&name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {checks:?}"))
    };
    let show = format!("{before:#?}");
    for (name, (st, f)) in &before {
        eprintln!("before: {st:<4}  {name}: {f}");
    }
    assert_eq!(status(&before, CheckId::Securityfs).0, "ok", "{show}");
    assert_eq!(status(&before, CheckId::Ima).0, "ok", "{show}");
    let (st, f) = status(&before, CheckId::Appraise);
    assert!(st == "ok" && f.contains("ima_appraise=enforce"), "{show}");
    assert_eq!(status(&before, CheckId::Hash).0, "ok", "{show}");
    let (st, f) = status(&before, CheckId::Keyring);
    assert!(
        st == "ok" && f.contains(&format!("key {keyid} is on the _ima keyring")),
        "{show}"
    );
    // Debian builds without CONFIG_IMA_READ_POLICY: the policy is write-only.
    assert!(
        matches!(
            status(&before, CheckId::Policy).0.as_str(),
            "ok" | "warn" | "skip"
        ),
        "{show}"
    );
    assert_eq!(status(&before, CheckId::Key).0, "ok", "{show}");
    assert_eq!(status(&before, CheckId::CertKey).0, "ok", "{show}");
    assert_eq!(status(&before, CheckId::Bashrc).0, "ok", "{show}");
    assert_eq!(status(&before, CheckId::Premerge).0, "ok", "{show}");
    let (st, f) = status(&before, CheckId::Signer);
    assert!(
        st == "fail" && f.contains("/usr/bin/portage-ima (unsigned)"),
        "{show}"
    );
    assert_eq!(rc, 1, "{show}");

    let fix = &vm["records"]["fix -"];
    assert_eq!(fix["rc"], "0", "the fix doctor printed works: {fix}");
    assert!(fix["cmd"]
        .as_str()
        .unwrap()
        .starts_with("portage-ima sign --files /usr/bin/portage-ima "));

    let (rc, after) = report("after");
    let show = format!("{after:#?}");
    let (st, f) = status(&after, CheckId::Signer);
    assert!(
        st == "ok" && f.contains("/usr/bin/portage-ima and its"),
        "{show}"
    );
    assert_eq!(rc, 0, "{show}");
}

/// A client of a binary host: mode = "verify", only the host's certificate,
/// no key configured (and none readable: the key file is removed). Nothing
/// about a key fails; trusted-certs names the key id and whose it is.
#[test]
fn keyless_verify_client_names_its_trusted_certificates() {
    let s = Setup::new();
    fs::remove_file(s.path("key.pem")).unwrap();
    fs::write(
        s.root().join("etc/portage/ima.toml"),
        format!(
            "mode = \"verify\"\ntrusted_certs = [\"{}\"]\n",
            s.path("cert.der").display()
        ),
    )
    .unwrap();
    let d = s.doctor(&[]);
    let keyid = skid_tail(&s.path("cert.der"));
    let (f, _) = d.expect(CheckId::Key, "ok");
    assert!(f.contains("never opened"), "{f}");
    d.expect(CheckId::KeyAccess, "skip");
    d.expect(CheckId::KeyId, "skip");
    let (f, _) = d.expect(CheckId::TrustedCerts, "ok");
    assert!(
        f.contains(&format!("key id {keyid} = CN=doctor test")),
        "{f}"
    );
    let (f, _) = d.expect(CheckId::Binpkg, "ok");
    assert!(
        f.contains("IMA_SIGNATURES") && f.contains("mode = \"verify\""),
        "{f}"
    );
    for (check, (label, finding, _)) in &d.checks {
        assert!(
            !(label == "FAIL" && finding.contains("key")),
            "{check} fails about a key:\n{}",
            d.text
        );
    }

    // A trusted certificate that does not load fails, naming it.
    fs::write(
        s.root().join("etc/portage/ima.toml"),
        "mode = \"verify\"\ntrusted_certs = [\"/nonexistent/binhost.der\"]\n",
    )
    .unwrap();
    let d = s.doctor(&[]);
    let (f, _) = d.expect(CheckId::TrustedCerts, "FAIL");
    assert!(f.contains("/nonexistent/binhost.der"), "{f}");
}

#[test]
fn old_readme_policy_is_named_as_the_rule_that_breaks_builds() {
    let s = Setup::new();
    // The README's old advice: every execve appraised, by anyone.
    let old = "appraise func=BPRM_CHECK appraise_type=imasig\n";
    fs::write(s.path("old.policy"), old).unwrap();
    let policy = s.path("old.policy");
    let d = s.doctor(&["--policy", policy.to_str().unwrap()]);
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, _) = d.expect(CheckId::Policy, "ok");
    assert!(
        f.starts_with(&format!("{} (--policy)", policy.display())),
        "{f}"
    );
    let (f, fix) = d.expect(CheckId::PolicyBuilds, "FAIL");
    assert!(
        f.contains("line 1 `appraise func=BPRM_CHECK appraise_type=imasig` breaks source builds"),
        "{f}"
    );
    assert!(f.contains("as root (no FEATURES=userpriv)"), "{f}");
    assert!(fix.unwrap().contains("portage-ima policy"), "{fix:?}");
    // Builds on the root's filesystem cannot be exempted: the fix says so.
    assert!(fix.unwrap().contains("cannot be exempted"), "{fix:?}");
    // The merge renames (same filesystem): merged programs keep their signatures.
    d.expect(CheckId::PolicyMerges, "ok");
    d.expect(CheckId::PolicyConfig, "ok");

    // The same policy where the boot loads it, read when the kernel's
    // policy is not readable (no CONFIG_IMA_READ_POLICY, or no IMA here).
    fs::create_dir_all(s.root().join("etc/ima")).unwrap();
    fs::write(s.root().join("etc/ima/ima-policy"), old).unwrap();
    let d = s.doctor(&[]);
    let loaded_readable = fs::read_to_string("/sys/kernel/security/ima/policy").is_ok()
        || fs::read_to_string("/sys/kernel/security/integrity/ima/policy").is_ok();
    if !loaded_readable {
        let (f, _) = d.expect(CheckId::Policy, "ok");
        assert!(
            f.contains("etc/ima/ima-policy (the policy the boot loads;"),
            "{f}"
        );
        d.expect(CheckId::PolicyBuilds, "FAIL");
    }
}

#[test]
fn policy_without_a_policy_is_skipped_and_a_bad_one_names_its_line() {
    let s = Setup::new();
    let d = s.doctor(&[]);
    if !kernel_has_ima() {
        d.expect(CheckId::Policy, "skip");
        d.expect(CheckId::PolicyBuilds, "skip");
    }
    fs::write(
        s.path("bad.policy"),
        "# fine\nappraise func=BPRM_CHECK uid=0\nappraise func=EXEC_CHECK\n",
    )
    .unwrap();
    let d = s.doctor(&["--policy", s.path("bad.policy").to_str().unwrap()]);
    let (f, _) = d.expect(CheckId::Policy, "FAIL");
    assert!(f.contains("line 3: `func=EXEC_CHECK`: unknown func"), "{f}");
    d.expect(CheckId::PolicyBuilds, "skip");
    let d = s.doctor(&["--policy", s.path("missing.policy").to_str().unwrap()]);
    d.expect(CheckId::Policy, "FAIL");
}

#[test]
fn generated_policy_passes_and_tcb_policy_warns_about_config_files_and_merges() {
    let Some(shm) = common::tmpfs_dir(
        "generated_policy_passes_and_tcb_policy_warns_about_config_files_and_merges",
    ) else {
        return;
    };
    let s = Setup::new();
    s.write_make_conf(&format!(
        "FEATURES=\"userpriv\"\nPORTAGE_TMPDIR=\"{}\"\n",
        shm.path().display()
    ));
    let generated = s.path("generated.policy");
    // Every other tmpfs noexec, so that tmpfs can be exempted.
    let Some(mut isolated) = common::isolated_mounts(
        "",
        "generated_policy_passes_and_tcb_policy_warns_about_config_files_and_merges",
    ) else {
        return;
    };
    let out = isolated
        .args(["policy", "--appraise", "exec-mmap", "--root"])
        .arg(s.root())
        .arg("--output")
        .arg(&generated)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = s.doctor(&["--policy", generated.to_str().unwrap()]);
    let (f, _) = d.expect(CheckId::PolicyBuilds, "ok");
    assert!(f.contains("a tmpfs"), "{f}");
    // No FEATURES=xattr and a copying merge: the generator warned, so does doctor.
    let (f, _) = d.expect(CheckId::PolicyMerges, "warn");
    assert!(f.contains("pkg_postrm"), "{f}");
    d.expect(CheckId::PolicyConfig, "ok");

    // appraise_tcb's rule: every root-owned file, read or written.
    fs::write(
        s.path("tcb.policy"),
        "appraise fowner=0 appraise_type=imasig\n",
    )
    .unwrap();
    s.write_make_conf(&format!(
        "FEATURES=\"userpriv xattr\"\nPORTAGE_XATTR_EXCLUDE=\"btrfs.*\"\nPORTAGE_TMPDIR=\"{}\"\n",
        shm.path().display()
    ));
    let tcb = s.path("tcb.policy");
    // Signed config files (no longer the default) are what the rule locks.
    s.write_toml("config_files = \"sign\"\n");
    let d = s.doctor(&["--policy", tcb.to_str().unwrap()]);
    let (f, fix) = d.expect(CheckId::PolicyConfig, "warn");
    assert!(
        f.contains("line 1 `appraise fowner=0 appraise_type=imasig`"),
        "{f}"
    );
    assert!(f.contains("config_files = \"sign\""), "{f}");
    assert!(fix.unwrap().contains("config_files = \"executable\""));
    // Built files belong to portage: the tcb rule leaves builds alone.
    d.expect(CheckId::PolicyBuilds, "ok");
    d.expect(CheckId::PolicyMerges, "ok");
    s.write_toml("config_files = \"skip\"\n");
    let d = s.doctor(&["--policy", tcb.to_str().unwrap()]);
    d.expect(CheckId::PolicyConfig, "ok");
}

/// Installs package app-misc/signed-1 in the setup's root: `files` (name,
/// executable) under /usr/bin, with a CONTENTS listing each as `obj`.
fn install(s: &Setup, files: &[(&str, bool)]) -> Vec<PathBuf> {
    let root = s.root();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    let vdb = root.join("var/db/pkg/app-misc/signed-1");
    fs::create_dir_all(&vdb).unwrap();
    let mut contents = String::new();
    let mut paths = Vec::new();
    for &(name, executable) in files {
        let path = root.join("usr/bin").join(name);
        let data = format!("#!/bin/sh\necho {name}\n");
        fs::write(&path, &data).unwrap();
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        contents.push_str(&format!(
            "obj /usr/bin/{name} {} 1\n",
            common::md5_hex(data.as_bytes())
        ));
        paths.push(path);
    }
    fs::write(vdb.join("CONTENTS"), contents).unwrap();
    paths
}

/// `portage-ima sign --files` with the setup's settings and `key`/`cert`.
fn sign_with(s: &Setup, key: &str, cert: &str, files: &[PathBuf]) {
    run_ok(
        common::cmd()
            .arg("sign")
            .arg("--config")
            .arg(s.root().join("etc/portage/ima.toml"))
            .arg("--key")
            .arg(s.path(key))
            .arg("--cert")
            .arg(s.path(cert))
            .arg("--files")
            .args(files),
    );
}

/// Loads the setup's certificate on a fresh session's `_ima` keyring.
fn with_keyring_holding(cert: &Path) -> String {
    format!(
        "ring=$(keyctl newring _ima @s)\nkeyctl padd asymmetric '' $ring < '{}' >/dev/null",
        cert.display()
    )
}

#[test]
fn signature_keys_warns_while_files_of_another_key_remain() {
    if !common::require_root("signature_keys_warns_while_files_of_another_key_remain") {
        return;
    }
    let s = Setup::new();
    s.make_key("old.pem");
    s.make_cert("old.pem", "old.der", Cert::Good);
    let files = install(&s, &[("a", true), ("b", true), ("c", true), ("d", true)]);
    sign_with(&s, "key.pem", "cert.der", &files[..1]);
    sign_with(&s, "old.pem", "old.der", &files[1..]);
    let old_id = skid_tail(&s.path("old.der"));
    let new_id = skid_tail(&s.path("cert.der"));

    // The kernel's keyring holds only the configured certificate.
    let d = in_session(&with_keyring_holding(&s.path("cert.der")), &s, &[]);
    let (f, fix) = d.expect(CheckId::SignatureKeys, "warn");
    assert!(
        f.starts_with("3 installed files are signed by keys not on the _ima keyring"),
        "{f}"
    );
    assert!(
        f.contains(&format!(
            "key {old_id}: 3 files (e.g. /usr/bin/b, /usr/bin/c)"
        )),
        "{f}"
    );
    assert!(!f.contains(&new_id), "{f}");
    let fix = fix.unwrap();
    assert!(fix.contains("portage-ima sign --all --rotate"), "{fix}");
    assert!(fix.contains("keyctl padd asymmetric"), "{fix}");
    // A warning: the exit status does not change.
    assert_eq!(d.code, 0, "{}", d.text);

    // Both certificates loaded (the overlap of a rotation): nothing refused.
    let d = in_session(
        &format!(
            "{}\nkeyctl padd asymmetric '' $ring < '{}' >/dev/null",
            with_keyring_holding(&s.path("cert.der")),
            s.path("old.der").display()
        ),
        &s,
        &[],
    );
    let (f, _) = d.expect(CheckId::SignatureKeys, "ok");
    assert_eq!(
        f,
        "4 of 4 installed files are signed, all by keys on the _ima keyring"
    );

    // Rotated: every file carries the configured key.
    sign_with(&s, "key.pem", "cert.der", &files[1..]);
    let d = in_session(&with_keyring_holding(&s.path("cert.der")), &s, &[]);
    d.expect(CheckId::SignatureKeys, "ok");
}

#[test]
fn signature_keys_compares_with_the_certificate_without_a_keyring() {
    if !common::require_root("signature_keys_compares_with_the_certificate_without_a_keyring") {
        return;
    }
    let s = Setup::new();
    s.make_key("old.pem");
    s.make_cert("old.pem", "old.der", Cert::Good);
    let files = install(&s, &[("a", true), ("b", false)]);
    sign_with(&s, "old.pem", "old.der", &files[1..]);
    // A fresh session with no _ima keyring: the configured certificate counts.
    let d = in_session("true", &s, &[]);
    let (f, _) = d.expect(CheckId::SignatureKeys, "warn");
    assert!(
        f.starts_with("1 installed files are signed by keys not on the configured certificate"),
        "{f}"
    );
    assert!(
        f.contains("(no .ima or _ima keyring could be read here)"),
        "{f}"
    );
    assert!(
        f.contains(&format!(
            "key {}: 1 file (e.g. /usr/bin/b)",
            skid_tail(&s.path("old.der"))
        )),
        "{f}"
    );
}

#[test]
fn no_installed_packages_skips_the_signature_checks() {
    let s = Setup::new();
    let d = s.doctor(&[]);
    for check in [CheckId::SignatureKeys, CheckId::PolicyCoverage] {
        let (f, _) = d.expect(check, "skip");
        assert!(f.starts_with("no installed packages to look at"), "{f}");
    }
}

#[test]
fn policy_coverage_warns_about_covered_files_the_scope_skipped() {
    if !common::require_root("policy_coverage_warns_about_covered_files_the_scope_skipped") {
        return;
    }
    let s = Setup::new();
    s.write_toml("scope = \"policy\"\n");
    // An executable program, a second one, and a data file no rule covers.
    let files = install(&s, &[("prog", true), ("other", true), ("data", false)]);
    // Signed under a policy that covered only the first program (as
    // `scope = "policy"` does); then the loaded policy covers every program.
    sign_with(&s, "key.pem", "cert.der", &files[..1]);
    let policy = s.path("policy");
    fs::write(&policy, "appraise func=BPRM_CHECK appraise_type=imasig\n").unwrap();
    let policy_arg = policy.to_str().unwrap();
    let d = s.doctor(&["--policy", policy_arg]);
    let (f, fix) = d.expect(CheckId::PolicyCoverage, "warn");
    assert!(
        f.contains("covers 1 installed files that scope = \"policy\" skipped"),
        "{f}"
    );
    assert!(f.contains("e.g. /usr/bin/other)"), "{f}");
    assert!(!f.contains("/usr/bin/data"), "{f}");
    assert!(fix.unwrap().contains("portage-ima sign --all"), "{fix:?}");

    // With scope = "all", the same files are called unsigned.
    s.write_toml("");
    let d = s.doctor(&["--policy", policy_arg]);
    let (f, fix) = d.expect(CheckId::PolicyCoverage, "warn");
    assert!(
        f.contains("covers 1 installed files without a signature"),
        "{f}"
    );
    // The fix acts on the root doctor looked at.
    let fix_text = format!(
        "sign them: portage-ima sign --all --root {}",
        s.root().display()
    );
    assert_eq!(fix, Some(fix_text.as_str()));

    // Signed: ok.
    s.write_toml("scope = \"policy\"\n");
    sign_with(&s, "key.pem", "cert.der", &files[1..2]);
    let d = s.doctor(&["--policy", policy_arg]);
    let (f, _) = d.expect(CheckId::PolicyCoverage, "ok");
    assert!(f.contains("scope = \"policy\" skipped none of them"), "{f}");
}

/// The kernel's chain check against doctor's rules (`kernel::ima_trust`):
/// a keyring restricted with `key_or_keyring:<CA keyring>:chain` runs
/// restrict_link_by_signature, the check `.ima` runs, so doctor is pointed
/// at it as `.ima` (`--ima-keyring`) and at the CA keyring as the builtin
/// trusted keyring (`--trusted-keyring`), with a kernel config that has
/// CONFIG_INTEGRITY_TRUSTED_KEYRING. doctor runs first (what it predicts);
/// then the script prints KERNEL=accepted or KERNEL=refused:<keyctl's
/// words> for the configured certificate.
fn in_restricted_session(s: &Setup) -> (Doctor, String) {
    let config = s.path("kernel.config");
    fs::write(
        &config,
        "CONFIG_INTEGRITY_TRUSTED_KEYRING=y\nCONFIG_CRYPTO_ECDSA=y\n",
    )
    .unwrap();
    let mut line = format!(
        "ca=$(keyctl newring ca @s)\nkeyctl padd asymmetric '' \"$ca\" < '{ca}' > /dev/null\n\
         ima=$(keyctl newring ima @s)\n\
         keyctl restrict_keyring \"$ima\" asymmetric \"key_or_keyring:$ca:chain\"\n\
         '{bin}'",
        ca = s.path("ca.der").display(),
        bin = bin(),
    );
    let cmd = s.command(&["--kernel-config", config.to_str().unwrap()]);
    for a in cmd.get_args() {
        line.push_str(&format!(" '{}'", a.to_str().unwrap()));
    }
    line.push_str(" --ima-keyring \"$ima\" --trusted-keyring \"$ca\"");
    // doctor predicts first; then the kernel is asked (doctor's exit status kept).
    line.push_str(&format!(
        "\nrc=$?\nif out=$(keyctl padd asymmetric '' \"$ima\" < '{cert}' 2>&1); then \
         echo KERNEL=accepted; else echo \"KERNEL=refused:$out\"; fi\nexit $rc",
        cert = s.path("cert.der").display(),
    ));
    let mut keyctl = Command::new("keyctl");
    keyctl
        .args(["session", "-", "sh", "-c", &line])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let out = common::without_phase_variables(&mut keyctl)
        .output()
        .expect("keyctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let kernel = stdout
        .lines()
        .find_map(|l| l.strip_prefix("KERNEL="))
        .unwrap_or_else(|| {
            panic!(
                "no KERNEL= line: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    (Doctor::from(out), kernel)
}

/// A CA (ca.pem, ca.key, ca.der) beside the setup's key.
fn make_ca(s: &Setup) {
    let p = |n: &str| s.path(n);
    openssl([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3",
        "-subj",
        "/CN=doctor test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-keyout",
        p("ca.key").to_str().unwrap(),
        "-out",
        p("ca.pem").to_str().unwrap(),
    ]);
    openssl([
        "x509",
        "-in",
        p("ca.pem").to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        p("ca.der").to_str().unwrap(),
    ]);
}

/// Keyrings in a session, `keyctl restrict_keyring`: what the chain test needs.
fn keyrings_here(test: &str) -> bool {
    let ok = Command::new("keyctl")
        .args([
            "session",
            "-",
            "sh",
            "-c",
            "c=$(keyctl newring ca @s) && r=$(keyctl newring t @s) && \
             keyctl restrict_keyring \"$r\" asymmetric \"key_or_keyring:$c:chain\"",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    common::require(ok, "kernel keyrings with keyctl restrict_keyring", test)
}

#[test]
fn keyring_trust_a_ca_signed_certificate_goes_on_like_the_kernel_says() {
    if !keyrings_here("keyring_trust_a_ca_signed_certificate_goes_on_like_the_kernel_says") {
        return;
    }
    let s = Setup::new();
    make_ca(&s);
    // The configured key's certificate, signed by the CA as setup makes it.
    fs::write(
        s.path("ima.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let p = |n: &str| s.path(n).to_str().unwrap().to_string();
    openssl([
        "req",
        "-new",
        "-key",
        &p("key.pem"),
        "-subj",
        "/CN=doctor test",
        "-out",
        &p("ima.csr"),
    ]);
    openssl([
        "x509",
        "-req",
        "-in",
        &p("ima.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "3",
        "-extfile",
        &p("ima.ext"),
        "-outform",
        "DER",
        "-out",
        &p("cert.der"),
    ]);
    let (d, kernel) = in_restricted_session(&s);
    assert_eq!(kernel, "accepted");
    let (f, _) = d.expect(CheckId::KeyringTrust, "ok");
    assert!(
        f.contains(".ima takes it, signed by doctor test CA: ")
            && f.contains("on .builtin_trusted_keys"),
        "{f}"
    );
    // Asked before the kernel took it: not there yet, and the advice is .ima's.
    let (_, fix) = d.expect(CheckId::Keyring, "FAIL");
    let fix = fix.unwrap();
    assert!(
        fix.contains("%keyring:.ima") && !fix.contains("_ima"),
        "{fix}"
    );
}

#[test]
fn keyring_trust_the_readme_certificate_is_refused_like_the_kernel_does() {
    if !keyrings_here("keyring_trust_the_readme_certificate_is_refused_like_the_kernel_does") {
        return;
    }
    // Setup's cert.der is the README's: self-signed, CA:FALSE, digitalSignature.
    let s = Setup::new();
    make_ca(&s);
    let (d, kernel) = in_restricted_session(&s);
    assert_eq!(kernel, "refused:add_key: Required key not available");
    assert_eq!(d.code, 1, "{}", d.text);
    let (f, fix) = d.expect(CheckId::KeyringTrust, "FAIL");
    assert!(
        f.contains("the kernel refuses it on .ima: it is self-signed"),
        "{f}"
    );
    assert!(
        fix.unwrap().contains("CONFIG_SYSTEM_TRUSTED_KEYS"),
        "{fix:?}"
    );
    // Where .ima is the keyring, no advice names _ima.
    let (_, fix) = d.expect(CheckId::Keyring, "FAIL");
    let fix = fix.unwrap();
    assert!(
        fix.contains("%keyring:.ima") && !fix.contains("_ima"),
        "{fix}"
    );
}

#[test]
fn keyring_trust_without_a_trusted_keyring_takes_any_certificate() {
    let s = Setup::new();
    let config = s.path("kernel.config");
    fs::write(
        &config,
        "CONFIG_IMA=y\n# CONFIG_INTEGRITY_TRUSTED_KEYRING is not set\n",
    )
    .unwrap();
    // A fresh session: no .ima on this kernel, no _ima reachable.
    let d = in_session("true", &s, &["--kernel-config", config.to_str().unwrap()]);
    let (f, _) = d.expect(CheckId::KeyringTrust, "ok");
    assert!(f.contains("no .ima in this kernel"), "{f}");
}

#[test]
fn keyring_trust_a_certificate_already_on_ima_is_taken() {
    if !keyrings_here("keyring_trust_a_certificate_already_on_ima_is_taken") {
        return;
    }
    // The README's self-signed certificate, yet on .ima (as the kernel puts
    // its module signing certificate there itself with
    // CONFIG_IMA_APPRAISE_MODSIG): what is there counts.
    let s = Setup::new();
    let config = s.path("kernel.config");
    fs::write(&config, "CONFIG_INTEGRITY_TRUSTED_KEYRING=y\n").unwrap();
    let mut line = format!(
        "ima=$(keyctl newring ima @s)\nkeyctl padd asymmetric '' \"$ima\" < '{}' > /dev/null\n'{}'",
        s.path("cert.der").display(),
        bin()
    );
    for a in s
        .command(&["--kernel-config", config.to_str().unwrap()])
        .get_args()
    {
        line.push_str(&format!(" '{}'", a.to_str().unwrap()));
    }
    line.push_str(" --ima-keyring \"$ima\"");
    let mut keyctl = Command::new("keyctl");
    keyctl
        .args(["session", "-", "sh", "-c", &line])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let d = Doctor::from(
        common::without_phase_variables(&mut keyctl)
            .output()
            .expect("keyctl runs"),
    );
    let (f, _) = d.expect(CheckId::KeyringTrust, "ok");
    assert!(f.contains("cert.der: already on .ima"), "{f}");
}
