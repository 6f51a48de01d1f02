//! `portage-ima audit`: kernel denials (dmesg and audit.log spellings)
//! joined to a vdb, each file classified, `--fix` signing only the files
//! whose content is what the package installed. The foreign key's
//! signature is written by the real evmctl.
//!
//! These write `security.ima`, which needs root; as another user they say
//! why and pass without checking, except under CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Fixture {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

const PRISTINE: &[u8] = b"#!/bin/sh\necho pristine\n";
const MODIFIED_AS_INSTALLED: &[u8] = b"#!/bin/sh\necho original\n";

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (conf, _) = common::settings_with_cert(d, "jobs = 2\n");
        let root = d.join("root");
        let bin = root.join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        // Merged /usr: CONTENTS says /bin/..., the kernel /usr/bin/...
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        let files: &[(&str, &[u8], &[u8])] = &[
            ("/usr/bin/pristine", PRISTINE, PRISTINE),
            ("/usr/bin/with space", PRISTINE, PRISTINE),
            ("/bin/merged", PRISTINE, PRISTINE),
            (
                "/usr/bin/modified",
                MODIFIED_AS_INSTALLED,
                b"#!/bin/sh\necho mine\n",
            ),
            ("/usr/bin/foreign", PRISTINE, PRISTINE),
            ("/usr/bin/valid", PRISTINE, PRISTINE),
            ("/usr/bin/gone", PRISTINE, b""),
        ];
        let mut contents = String::from("dir /usr/bin\n");
        for (path, installed, now) in files {
            contents.push_str(&format!(
                "obj {path} {} 1795842074\n",
                common::md5_hex(installed)
            ));
            if !path.ends_with("gone") {
                std::fs::write(root.join(&path[1..]), now).unwrap();
            }
        }
        std::fs::write(root.join("usr/local/bin/local.sh"), b"#!/bin/sh\n").unwrap();
        let vdb = root.join("var/db/pkg/app-misc/tools-1.0");
        std::fs::create_dir_all(&vdb).unwrap();
        std::fs::write(vdb.join("CONTENTS"), contents).unwrap();
        Fixture { dir, conf }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A kernel log denying every file once, in dmesg and audit.log
    /// spellings, with one event in both logs and one unreadable line.
    fn write_logs(&self) -> (PathBuf, PathBuf) {
        let record = |serial: u32, cause: &str, name: &str| {
            format!(
                "audit({}.100:{serial}): pid=1 uid=0 auid=4294967295 ses=4294967295 \
                 subj=unconfined op=appraise_data cause={cause} comm=\"sh\" name={name} \
                 dev=\"vda\" ino=5 res=0 errno=0",
                1795976846 + serial
            )
        };
        let quoted = |p: &str| format!("\"{p}\"");
        let dmesg = [
            format!("[   14.9] audit: type=1800 {}", record(1, "IMA-signature-required", &quoted("/usr/bin/pristine"))),
            format!("[   15.0] audit: type=1800 {}", record(2, "IMA-signature-required", &hex::encode_upper("/usr/bin/with space"))),
            format!("[   15.1] audit: type=1800 {}", record(3, "IMA-signature-required", &quoted("/usr/bin/merged"))),
            format!("[   15.2] audit: type=1800 {}", record(4, "invalid-signature", &quoted("/usr/bin/modified"))),
            "[   15.3] integrity: Request for unknown key 'id:66a5d866' in '_ima' keyring. err -11".into(),
            format!("[   15.3] audit: type=1800 {}", record(5, "invalid-signature", &quoted("/usr/bin/foreign"))),
            format!("[   15.4] audit: type=1800 {}", record(6, "IMA-signature-required", &quoted("/usr/bin/gone"))),
            format!("[   15.5] audit: type=1800 {}", record(7, "IMA-signature-required", &quoted("/usr/local/bin/local.sh"))),
            format!("[   15.6] audit: type=1800 {}", record(8, "IMA-signature-required", &quoted("/usr/bin/pristine"))),
            "[   15.7] audit: type=1800 audit(1795976855.1:9): op=appraise_data cause=x name=\"/usr/bi".into(),
        ];
        let audit_log = [
            // The same event as dmesg's serial 8: counted once.
            format!(
                "type=INTEGRITY_DATA msg={}\x1dAUID=\"unset\"",
                record(8, "IMA-signature-required", &quoted("/usr/bin/pristine"))
            ),
            format!(
                "type=INTEGRITY_DATA msg={}",
                record(10, "IMA-signature-required", &quoted("/usr/bin/valid"))
            ),
        ];
        let dmesg_path = self.dir.path().join("dmesg.txt");
        let audit_path = self.dir.path().join("audit.log");
        std::fs::write(&dmesg_path, dmesg.join("\n") + "\n").unwrap();
        std::fs::write(&audit_path, audit_log.join("\n") + "\n").unwrap();
        (dmesg_path, audit_path)
    }

    fn audit(&self, extra: &[&str]) -> Output {
        let (dmesg, audit_log) = self.write_logs();
        common::cmd()
            .arg("--config")
            .arg(&self.conf)
            .arg("audit")
            .arg("--log")
            .arg(dmesg)
            .arg("--log")
            .arg(audit_log)
            .arg("--root")
            .arg(self.root())
            .args(extra)
            .output()
            .unwrap()
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(out)))
}

fn class_of<'a>(report: &'a Value, path: &str) -> (&'a str, &'a Value) {
    let file = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {report:#}"));
    (file["class"].as_str().unwrap(), file)
}

fn evmctl_sign(key: &Path, file: &Path) {
    common::run_ok(
        Command::new("evmctl")
            .args(["ima_sign", "-a", "sha256", "--key"])
            .arg(key)
            .arg(file),
    );
}

#[test]
fn audit_classifies_each_denial_and_fix_signs_only_pristine_files() {
    let test = "audit_classifies_each_denial_and_fix_signs_only_pristine_files";
    if !common::require_root(test) || !common::require_tool("evmctl", test) {
        return;
    }
    let fx = Fixture::new();
    let rogue_dir = fx.dir.path().join("rogue");
    std::fs::create_dir(&rogue_dir).unwrap();
    let rogue = common::new_key(&rogue_dir);
    evmctl_sign(&rogue, &fx.root().join("usr/bin/foreign"));
    let sign = common::cmd()
        .arg("--config")
        .arg(&fx.conf)
        .args(["sign", "--files"])
        .arg(fx.root().join("usr/bin/valid"))
        .output()
        .unwrap();
    assert!(sign.status.success(), "{}", common::text(&sign));

    let out = fx.audit(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    let report = json(&out);
    let expected = [
        ("/usr/bin/pristine", "unsigned-pristine"),
        ("/usr/bin/with space", "unsigned-pristine"),
        ("/usr/bin/merged", "unsigned-pristine"),
        ("/usr/bin/modified", "modified"),
        ("/usr/bin/foreign", "foreign-key"),
        ("/usr/bin/gone", "gone"),
        ("/usr/local/bin/local.sh", "not-owned"),
        ("/usr/bin/valid", "valid"),
    ];
    for (path, class) in expected {
        assert_eq!(class_of(&report, path).0, class, "{path}: {report:#}");
    }
    assert_eq!(report["files"].as_array().unwrap().len(), expected.len());
    let (_, pristine) = class_of(&report, "/usr/bin/pristine");
    assert_eq!(pristine["package"], "app-misc/tools-1.0");
    assert_eq!(pristine["denials"], 2, "the event in both logs counts once");
    let (_, merged) = class_of(&report, "/usr/bin/merged");
    assert_eq!(merged["contents_path"], "/bin/merged");
    let (_, foreign) = class_of(&report, "/usr/bin/foreign");
    assert!(foreign["keyid"].is_string(), "{foreign}");
    assert_eq!(
        class_of(&report, "/usr/local/bin/local.sh").1["package"],
        Value::Null
    );
    let bad = report["unreadable_lines"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["line"], 10);

    // The text report groups by package and says what to run.
    let text = fx.audit(&[]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("app-misc/tools-1.0:\n"), "{stdout}");
    assert!(stdout.contains("not owned by any package:\n"), "{stdout}");
    assert!(
        stdout.contains("portage-ima sign =app-misc/tools-1.0"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&text.stderr).contains("line 10"),
        "{}",
        common::text(&text)
    );

    // Read-only so far.
    assert!(!common::is_signed(&fx.root().join("usr/bin/pristine")));

    let fixed = fx.audit(&["--fix", "--json"]);
    let report = json(&fixed);
    for path in [
        "/usr/bin/pristine",
        "/usr/bin/with space",
        "/usr/bin/merged",
    ] {
        let (class, file) = class_of(&report, path);
        assert_eq!(
            (class, &file["fixed"]),
            ("valid", &Value::from("signed")),
            "{path}"
        );
        assert!(common::is_signed(&fx.root().join(&path[1..])), "{path}");
    }
    assert!(!common::is_signed(&fx.root().join("usr/bin/modified")));
    assert!(!common::is_signed(
        &fx.root().join("usr/local/bin/local.sh")
    ));
    let verify = common::cmd()
        .arg("--config")
        .arg(&fx.conf)
        .args(["verify", "--files"])
        .arg(fx.root().join("usr/bin/foreign"))
        .output()
        .unwrap();
    assert!(
        common::text(&verify).contains("unknown-key"),
        "the foreign signature is left as it was: {}",
        common::text(&verify)
    );

    // The next run sees them signed; the others still need attention.
    let again = json(&fx.audit(&["--json"]));
    assert_eq!(class_of(&again, "/usr/bin/pristine").0, "valid");
    assert_eq!(class_of(&again, "/usr/bin/modified").0, "modified");
    assert_eq!(again["summary"]["valid"], 4);
}

#[test]
fn audit_of_a_log_without_denials_succeeds() {
    let fx = Fixture::new();
    let log = fx.dir.path().join("quiet.txt");
    std::fs::write(&log, "[    0.0] Linux version 6.12\n").unwrap();
    let out = common::cmd()
        .arg("--config")
        .arg(&fx.conf)
        .args(["audit", "--log"])
        .arg(&log)
        .arg("--root")
        .arg(fx.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(common::text(&out).contains("no file denied"));
}
