//! Secure Boot and setuid programs (issue 20): `doctor` on faked efivars
//! and kernel logs, the observe first-boot policy, `audit` of what such a
//! boot records (type 1805 records, `ima-sig` measurements), and the
//! setuid rule in the default policy and in `policy --check`. The real
//! kernel's side is in tests/kernel/test_setuid_observe.py.

mod common;

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use portage_ima::policy::eval::{appraisal, Appraisal, FileAccess, FileSystem};
use portage_ima::policy::generate::{BuildFs, OtherTmpfs};
use portage_ima::policy::rule::{Access, Action, Func};
use portage_ima::policy::{generate, parse_policy, Request, Scope, Setup};
use serde_json::Value;

const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
const LOADER: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The line Debian's 6.12 kernel printed in a Secure Boot VM.
const IGNORING: &str =
    "[    0.912345] ima: Secure boot enabled: ignoring ima_appraise=log option\n";

fn efivar(dir: &Path, name: &str, guid: &str, value: u8) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}-{guid}")), [6, 0, 0, 0, value]).unwrap();
}

/// `doctor --json` on a scratch root, with the given efivars and kernel
/// log; the (status, finding, fix) of the two Secure Boot checks.
fn doctor(dir: &Path, efivars: &Path, log: &str) -> [(String, String, String); 2] {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc/portage")).unwrap();
    let log_file = dir.join("kmsg");
    std::fs::write(&log_file, log).unwrap();
    let out = common::cmd()
        .args(["doctor", "--json", "--root"])
        .arg(&root)
        .arg("--efivars")
        .arg(efivars)
        .arg("--kernel-log")
        .arg(&log_file)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    let get = |id: &str| {
        let c = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == id)
            .unwrap_or_else(|| panic!("no {id} check: {doc}"));
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        (s("status"), s("finding"), s("fix"))
    };
    [get("secure-boot"), get("recovery")]
}

#[test]
fn doctor_reports_secure_boot_and_how_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let efivars = dir.path().join("efivars");
    efivar(&efivars, "SecureBoot", GLOBAL, 1);
    efivar(&efivars, "SetupMode", GLOBAL, 0);

    // Secure Boot on, and the kernel said it ignored ima_appraise=log.
    let [sb, recovery] = doctor(dir.path(), &efivars, IGNORING);
    assert_eq!(sb.0, "warn", "{sb:?}");
    assert!(sb.1.contains("ignores ima_appraise="), "{sb:?}");
    assert!(
        sb.1.contains("ignoring ima_appraise=log option\""),
        "{sb:?}"
    );
    assert!(sb.2.contains("portage-ima policy --observe"), "{sb:?}");
    assert!(sb.2.contains("init=/bin/sh"), "{sb:?}");
    // No UKI: the command line can be edited at the boot loader.
    assert_eq!(recovery.0, "ok", "{recovery:?}");
    assert!(recovery.1.contains("init=/bin/sh"), "{recovery:?}");
    assert!(recovery.1.contains("no systemd-stub UKI"), "{recovery:?}");

    // Booted from a UKI: systemd-stub ignores command-line edits.
    efivar(&efivars, "StubInfo", LOADER, b's');
    let [sb, recovery] = doctor(dir.path(), &efivars, "");
    assert_eq!(sb.0, "warn", "{sb:?}");
    assert!(sb.1.contains("no line about ignoring"), "{sb:?}");
    assert_eq!(recovery.0, "warn", "{recovery:?}");
    assert!(recovery.1.contains("StubInfo-"), "{recovery:?}");
    assert!(recovery.2.contains("rescue boot entry"), "{recovery:?}");

    // Setup mode: Secure Boot is not enforced, ima_appraise= is honoured.
    efivar(&efivars, "SetupMode", GLOBAL, 1);
    let [sb, recovery] = doctor(dir.path(), &efivars, "");
    assert_eq!(sb.0, "ok", "{sb:?}");
    assert!(
        sb.1.contains("setup mode") && sb.1.contains("honoured"),
        "{sb:?}"
    );
    assert!(recovery.1.contains("ima_appraise=log"), "{recovery:?}");

    // No efivarfs: not UEFI. But the kernel's own line wins.
    let none = dir.path().join("absent");
    let [sb, _] = doctor(dir.path(), &none, "");
    assert_eq!(sb.0, "ok", "{sb:?}");
    assert!(sb.1.contains("not booted through UEFI"), "{sb:?}");
    let [sb, _] = doctor(dir.path(), &none, IGNORING);
    assert_eq!(sb.0, "warn", "{sb:?}");
}

fn tmpfs_setup() -> Setup {
    Setup {
        tmpdir: "/var/tmp".into(),
        build_dir: "/var/tmp/portage".into(),
        build_fs: BuildFs::Tmpfs,
        userpriv: true,
        xattr: true,
        source: "test".into(),
        // The tmpfs exemption needs every other tmpfs noexec.
        other_tmpfs: vec![OtherTmpfs {
            mount_point: "/dev/shm".into(),
            noexec: true,
        }],
        selinux_portage: false,
    }
}

fn request(observe: bool) -> Request {
    Request {
        scope: Scope::RootExec,
        measure: false,
        require_signed_policy: false,
        observe,
    }
}

#[test]
fn observe_policy_measures_and_audits_what_enforce_would_appraise() {
    let enforce = generate(&tmpfs_setup(), &request(false)).unwrap().policy;
    let observe = generate(&tmpfs_setup(), &request(true)).unwrap().policy;
    let text = observe.to_string();
    // It parses as the kernel would take it, and appraises nothing.
    let parsed = parse_policy(&text).unwrap();
    assert!(
        !parsed.rules().any(|r| r.action == Action::Appraise),
        "{text}"
    );
    let targets = |p: &portage_ima::policy::Policy, action: Action| -> Vec<String> {
        p.rules()
            .filter(|r| r.action == action)
            .map(|r| {
                r.conditions
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    // Each appraise rule's conditions become one measure (ima-sig) and one audit rule.
    let appraised = targets(&enforce, Action::Appraise);
    assert_eq!(appraised.len(), 2);
    assert_eq!(targets(&observe, Action::Audit), appraised);
    assert_eq!(targets(&observe, Action::Measure), appraised);
    for r in text.lines().filter(|l| l.starts_with("measure ")) {
        assert!(r.ends_with(" template=ima-sig"), "{r}");
    }
    // The same exemptions, before them.
    assert!(text.contains("dont_measure fsmagic=0x1021994"));
    let first_observe = text.find("\nmeasure func=BPRM_CHECK").unwrap();
    assert!(text.find("dont_measure fsmagic=0x1021994").unwrap() < first_observe);
    assert!(text.contains("FIRST BOOT (observe)"));
}

fn exec_by(uid: u32, fowner: u32, func: Func) -> FileAccess {
    FileAccess {
        func,
        mask: vec![Access::Exec],
        uid,
        euid: uid,
        gid: uid,
        egid: uid,
        fowner,
        fgroup: fowner,
        fs: FileSystem {
            magic: 0xef53,
            uuid: None,
            name: None,
        },
    }
}

#[test]
fn default_policy_appraises_a_setuid_root_program_run_by_a_user() {
    let policy = generate(&tmpfs_setup(), &request(false)).unwrap().policy;
    // uid 250 runs a root-owned (setuid) program: BPRM_CHECK sees uid 250.
    match appraisal(&policy, &exec_by(250, 0, Func::BprmCheck)) {
        Appraisal::Appraised { rule, .. } => {
            assert_eq!(
                rule.to_string(),
                "appraise func=BPRM_CHECK fowner=0 appraise_type=imasig"
            )
        }
        other => panic!("not appraised: {other:?}"),
    }
    // The user's own program stays the user's business.
    assert_eq!(
        appraisal(&policy, &exec_by(250, 250, Func::BprmCheck)),
        Appraisal::NotCovered
    );
}

struct CheckFixture {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl CheckFixture {
    fn new() -> CheckFixture {
        let dir = tempfile::tempdir().unwrap();
        let (conf, _) = common::settings_with_cert(dir.path(), "");
        let bin = dir.path().join("root/usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        for (name, owner) in [("setuid-root", 0), ("users", 1000)] {
            let p = bin.join(name);
            std::fs::write(&p, b"#!/bin/sh\n").unwrap();
            chown(&p, Some(owner), Some(owner)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
        }
        CheckFixture { dir, conf }
    }

    fn check(&self, policy: &str) -> (Output, Vec<(String, String)>) {
        let file = self.dir.path().join("policy");
        std::fs::write(&file, policy).unwrap();
        let out = common::cmd()
            .arg("--config")
            .arg(&self.conf)
            .args(["policy", "--check", "--json"])
            .arg(&file)
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
        let denied = doc["denied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["path"].as_str().unwrap().to_string(),
                    d["access"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (out, denied)
    }
}

#[test]
fn policy_check_models_the_setuid_rule_and_creds_check() {
    let test = "policy_check_models_the_setuid_rule_and_creds_check";
    if !common::require_root(test) {
        return;
    }
    let fx = CheckFixture::new();
    // fowner=0: the root-owned program, whoever runs it; not the user's.
    let (out, denied) = fx.check("appraise func=BPRM_CHECK fowner=0 appraise_type=imasig\n");
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert_eq!(
        denied,
        vec![(
            "/usr/bin/setuid-root".to_string(),
            "BPRM_CHECK by uid 0".to_string()
        )]
    );
    // CREDS_CHECK is a hook of its own, matched with the caller's ids: euid=0
    // covers what root runs (both programs), as the kernel does.
    let (out, denied) = fx.check("appraise func=CREDS_CHECK euid=0 appraise_type=imasig\n");
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    let mut paths: Vec<_> = denied.iter().map(|(p, a)| format!("{p} {a}")).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/usr/bin/setuid-root CREDS_CHECK by uid 0",
            "/usr/bin/users CREDS_CHECK by uid 0"
        ]
    );
    // Signed, nothing is refused.
    let sign = common::cmd()
        .arg("--config")
        .arg(&fx.conf)
        .args(["sign", "--files"])
        .arg(fx.dir.path().join("root/usr/bin/setuid-root"))
        .output()
        .unwrap();
    assert!(sign.status.success(), "{}", common::text(&sign));
    let (out, denied) = fx.check("appraise func=BPRM_CHECK fowner=0 appraise_type=imasig\n");
    assert_eq!(out.status.code(), Some(0), "{denied:?}");
}

/// A root with an empty package database and four programs: signed with
/// the configured key, unsigned, signed with another key, and gone.
struct AuditFixture {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl AuditFixture {
    fn new() -> AuditFixture {
        let dir = tempfile::tempdir().unwrap();
        let (conf, _) = common::settings_with_cert(dir.path(), "");
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let (other_conf, _) = common::settings_with_cert(&other, "");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("var/db/pkg")).unwrap();
        for name in ["signed", "unsigned", "foreign"] {
            std::fs::write(root.join("usr/bin").join(name), b"#!/bin/sh\n").unwrap();
        }
        let fx = AuditFixture { dir, conf };
        fx.sign(&fx.conf, "signed");
        fx.sign(&other_conf, "foreign");
        fx
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn sign(&self, conf: &Path, name: &str) {
        let out = common::cmd()
            .arg("--config")
            .arg(conf)
            .args(["sign", "--files"])
            .arg(self.root().join("usr/bin").join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
    }

    fn audit(&self, log: &str, measurements: &str, json: bool) -> Output {
        let (l, m) = (self.dir.path().join("log"), self.dir.path().join("meas"));
        std::fs::write(&l, log).unwrap();
        std::fs::write(&m, measurements).unwrap();
        common::cmd()
            .arg("--config")
            .arg(&self.conf)
            .arg("audit")
            .arg("--log")
            .arg(&l)
            .arg("--measurements")
            .arg(&m)
            .arg("--root")
            .arg(self.root())
            .args(json.then_some("--json"))
            .output()
            .unwrap()
    }
}

/// What an observe boot records: type 1805 lines (kmsg and auditd
/// spellings) and an ima-sig measurement list.
fn observe_boot_logs() -> (String, String) {
    let rule = |serial: u32, path: &str| {
        format!(
            "[   15.9] audit: type=1805 audit(1796576297.576:{serial}): file=\"{path}\" \
             hash=\"sha256:3d9f\" ppid=1 pid=181 auid=4294967295 uid=0 gid=0 euid=0 suid=0 \
             fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"sh\" \
             exe=\"/bin/busybox\" subj=unconfined\n"
        )
    };
    let mut log = rule(45, "/usr/bin/signed") + &rule(46, "/usr/bin/unsigned");
    log += &rule(47, "/usr/bin/gone");
    // The same event again, in auditd's spelling: counted once.
    log += "type=INTEGRITY_RULE msg=audit(1796576297.576:46): file=\"/usr/bin/unsigned\" hash=\"sha256:3d9f\" comm=\"sh\"\n";
    let zeros = "0".repeat(40);
    let digest = "ab".repeat(32);
    let meas = format!(
        "10 {zeros}1 ima-sig sha256:{digest} boot_aggregate \n\
         10 {zeros}2 ima-sig sha256:{digest} /usr/bin/foreign 030204aabbccdd\n"
    )
    .replace(&format!("{zeros}1"), &"1".repeat(40))
    .replace(&format!("{zeros}2"), &"2".repeat(40));
    (log, meas)
}

#[test]
fn audit_lists_what_enforce_would_refuse_after_an_observe_boot() {
    let test = "audit_lists_what_enforce_would_refuse_after_an_observe_boot";
    if !common::require_root(test) {
        return;
    }
    let fx = AuditFixture::new();
    let (log, meas) = observe_boot_logs();

    let out = fx.audit(&log, &meas, true);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    assert_eq!(
        doc["enforce_would_refuse"],
        serde_json::json!(["/usr/bin/foreign", "/usr/bin/unsigned"]),
        "{doc}"
    );
    let unsigned = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/usr/bin/unsigned")
        .unwrap();
    assert_eq!(unsigned["audited"], 1, "{unsigned}");

    let out = fx.audit(&log, &meas, false);
    let text = common::text(&out);
    assert!(
        text.contains("enforcing would refuse 2 of the 4 files"),
        "{text}"
    );
    assert!(
        text.contains("  would refuse /usr/bin/unsigned: no package installed it; not signed"),
        "{text}"
    );
    assert!(text.contains("  would refuse /usr/bin/foreign: "), "{text}");
    assert!(!text.contains("would refuse /usr/bin/signed"), "{text}");
    assert!(!text.contains("would refuse /usr/bin/gone"), "{text}");

    // Signed with the configured key: nothing left, and it says so.
    fx.sign(&fx.conf, "unsigned");
    fx.sign(&fx.conf, "foreign");
    let text = common::text(&fx.audit(&log, &meas, false));
    assert!(
        text.contains("enforcing would refuse none of the 4 files"),
        "{text}"
    );

    // A log of denials only (no observe boot): no such verdict.
    let denial = "audit: type=1800 audit(1.5:9): pid=1 uid=0 op=appraise_data \
                  cause=IMA-signature-required comm=\"sh\" name=\"/usr/bin/signed\" res=0\n";
    let out = fx.audit(denial, "", true);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc.get("enforce_would_refuse").is_none(), "{doc}");
}
