//! `portage-ima policy --check`: a policy's appraise rules evaluated over a
//! root filesystem, listing the covered files no certificate's signature
//! verifies. Signatures are written by `sign`, so this needs root (writing
//! security.ima); as another user it says why and passes, except under CI.

mod common;

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

struct Fixture {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (conf, _) = common::settings_with_cert(dir.path(), "");
        let root = dir.path().join("root");
        for d in [
            "usr/bin",
            "usr/lib",
            "usr/share/doc",
            "lib/modules/6.12/kernel",
            "lib/firmware",
            "proc",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let exec = |path: &str, data: &[u8]| {
            let p = root.join(path);
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let elf = std::fs::read("/bin/true").unwrap();
        exec("usr/bin/signed", b"#!/bin/sh\necho signed\n");
        exec("usr/bin/unsigned", b"#!/bin/sh\necho unsigned\n");
        exec("usr/bin/by-portage", b"#!/bin/sh\necho exempt\n");
        chown(root.join("usr/bin/by-portage"), Some(250), Some(250)).unwrap();
        // An ELF shared object without the execute bit: MMAP_CHECK only.
        std::fs::write(root.join("usr/lib/libfoo.so.1"), &elf).unwrap();
        std::fs::write(root.join("usr/share/doc/README"), b"not covered\n").unwrap();
        std::fs::write(root.join("lib/modules/6.12/kernel/foo.ko.xz"), b"module").unwrap();
        std::fs::write(root.join("lib/firmware/blob.bin"), b"firmware").unwrap();
        // /proc of the root is never walked.
        exec("proc/unsigned", b"#!/bin/sh\n");
        Fixture { dir, conf }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn run(&self, args: &[&str]) -> Output {
        common::cmd()
            .arg("--config")
            .arg(&self.conf)
            .args(args)
            .arg("--root")
            .arg(self.root())
            .output()
            .unwrap()
    }

    fn policy(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("policy");
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn denied(out: &Output) -> Vec<(String, String, bool)> {
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::text(out)));
    doc["denied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["access"].as_str().unwrap().to_string(),
                d["certain"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn check(fx: &Fixture, policy: &Path) -> Output {
    fx.run(&["policy", "--check", policy.to_str().unwrap(), "--json"])
}

#[test]
fn policy_check_lists_what_enforce_mode_would_refuse() {
    let test = "policy_check_lists_what_enforce_mode_would_refuse";
    if !common::require_root(test) {
        return;
    }
    let fx = Fixture::new();
    let sign = common::cmd()
        .arg("--config")
        .arg(&fx.conf)
        .args(["sign", "--files"])
        .arg(fx.root().join("usr/bin/signed"))
        .output()
        .unwrap();
    assert!(sign.status.success(), "{}", common::text(&sign));

    // Programs run by root, except the portage user's own files.
    let p = fx.policy(
        "dont_appraise fowner=250\n\
         appraise func=BPRM_CHECK uid=0 appraise_type=imasig\n",
    );
    let out = check(&fx, &p);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert_eq!(
        denied(&out),
        vec![(
            "/usr/bin/unsigned".into(),
            "BPRM_CHECK by uid 0".into(),
            true
        )]
    );

    // Executable mappings: the shared object too (and the programs, which
    // the ELF loader maps); modules and firmware.
    let p = fx.policy(
        "appraise func=MMAP_CHECK mask=MAY_EXEC appraise_type=imasig\n\
         appraise func=MODULE_CHECK appraise_type=imasig\n\
         appraise func=FIRMWARE_CHECK appraise_type=imasig\n",
    );
    let paths: Vec<String> = denied(&check(&fx, &p)).into_iter().map(|d| d.0).collect();
    assert_eq!(
        paths,
        [
            "/lib/firmware/blob.bin",
            "/lib/modules/6.12/kernel/foo.ko.xz",
            "/usr/lib/libfoo.so.1"
        ]
    );

    // An LSM condition cannot be evaluated here: possibly refused.
    let p = fx.policy("appraise func=BPRM_CHECK obj_type=bin_t appraise_type=imasig\n");
    let found = denied(&check(&fx, &p));
    assert!(found.iter().all(|d| !d.2), "{found:?}");
    assert_eq!(found.len(), 2, "{found:?}");

    // Everything signed that the policy covers: safe, exit 0, text summary.
    let p = fx
        .policy("dont_appraise fowner=250\nappraise func=BPRM_CHECK uid=0 appraise_type=imasig\n");
    let sign = common::cmd()
        .arg("--config")
        .arg(&fx.conf)
        .args(["sign", "--files"])
        .arg(fx.root().join("usr/bin/unsigned"))
        .output()
        .unwrap();
    assert!(sign.status.success(), "{}", common::text(&sign));
    let out = fx.run(&["policy", "--check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(common::text(&out).contains("safe to boot with ima_appraise=enforce"));
}

#[test]
fn policy_check_refuses_a_policy_the_kernel_would_refuse() {
    let fx = Fixture::new();
    let p = fx.policy("appraise func=NOT_A_HOOK\n");
    let out = check(&fx, &p);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("NOT_A_HOOK"),
        "{}",
        common::text(&out)
    );
}

#[test]
fn scope_policy_signs_only_what_the_policy_covers() {
    let test = "scope_policy_signs_only_what_the_policy_covers";
    if !common::require_root(test) {
        return;
    }
    let fx = Fixture::new();
    std::fs::write(
        &fx.conf,
        std::fs::read_to_string(&fx.conf).unwrap() + "scope = \"policy\"\n",
    )
    .unwrap();
    let root = fx.root();
    std::fs::create_dir_all(root.join("etc/ima")).unwrap();
    std::fs::write(
        root.join("etc/ima/ima-policy"),
        "dont_appraise fowner=250\nappraise func=BPRM_CHECK appraise_type=imasig\n",
    )
    .unwrap();
    let files = [
        "/usr/bin/signed",
        "/usr/bin/unsigned",
        "/usr/bin/by-portage",
        "/usr/share/doc/README",
    ];
    let mut contents = String::new();
    for f in files {
        let data = std::fs::read(root.join(&f[1..])).unwrap();
        contents.push_str(&format!("obj {f} {} 1\n", common::md5_hex(&data)));
    }
    let vdb = root.join("var/db/pkg/app-misc/scoped-1");
    std::fs::create_dir_all(&vdb).unwrap();
    std::fs::write(vdb.join("CONTENTS"), contents).unwrap();

    let out = fx.run(&["sign", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome = |path: &str| {
        doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(path))
            .map(|f| f["outcome"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{path} in {doc:#}"))
    };
    assert_eq!(outcome("/usr/bin/unsigned"), "signed");
    assert_eq!(outcome("/usr/bin/by-portage"), "skipped");
    assert_eq!(outcome("/usr/share/doc/README"), "skipped");
    assert!(common::is_signed(&root.join("usr/bin/unsigned")));
    assert!(!common::is_signed(&root.join("usr/share/doc/README")));
    // What the policy covers is signed: safe to boot (the boot policy is read).
    let check = fx.run(&["policy", "--check"]);
    assert_eq!(check.status.code(), Some(0), "{}", common::text(&check));
    assert!(
        !common::text(&check).contains("scope = \"policy\""),
        "{}",
        common::text(&check)
    );
    // A wider policy (every file read by root) covers what the scope skipped:
    // said as such, beside the list of refused files.
    let wider = fx.policy("appraise func=FILE_CHECK uid=0 appraise_type=imasig\n");
    let check = fx.run(&["policy", "--check", wider.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1), "{}", common::text(&check));
    let text = String::from_utf8(check.stdout.clone()).unwrap();
    assert!(
        text.contains("denied /usr/share/doc/README: unsigned"),
        "{text}"
    );
    assert!(
        text.contains("scope = \"policy\" is set and this policy covers "),
        "{text}"
    );
    let fix = format!(
        "portage-ima sign --all --root {} once this policy is loaded",
        root.display()
    );
    assert!(text.contains(&fix), "{text}");
    // Without scope = "policy" the note is not there.
    std::fs::write(
        &fx.conf,
        std::fs::read_to_string(&fx.conf)
            .unwrap()
            .replace("scope = \"policy\"\n", ""),
    )
    .unwrap();
    let check = fx.run(&["policy", "--check", wider.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1), "{}", common::text(&check));
    assert!(
        !common::text(&check).contains("scope = \"policy\" is set"),
        "{}",
        common::text(&check)
    );
}
