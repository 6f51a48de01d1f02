//! Issue 22, rows 5 and 6: what a generated policy exempts beyond the
//! build directory, and what `policy --check` calls safe.
//!
//! - A tmpfs build directory is exempted by `fsmagic` only when every other
//!   tmpfs is mounted `noexec` (the machine's real mounts, arranged in a
//!   mount namespace of the test's own), and by label when SELinux runs
//!   Gentoo's policy (tests/kernel/test_policy_load.py loads those rules
//!   into a real kernel with SELinux).
//! - `policy --check` walks tmpfs mounts under /dev and /run, models
//!   `appraise_algos`, and answers "cannot tell" for options it does not model.
//!
//! Row 9 (the audit parser) is tested in src/kernel/audit_record.rs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portage_ima::policy::generate::{BuildFs, OtherTmpfs};
use portage_ima::policy::{generate, parse_policy, Request, Scope, Setup};
use serde_json::Value;

use common::text;

fn setup(build_fs: BuildFs, userpriv: bool, other_tmpfs: &[(&str, bool)]) -> Setup {
    Setup {
        tmpdir: "/var/tmp".into(),
        build_dir: PathBuf::from("/var/tmp/portage"),
        build_fs,
        userpriv,
        xattr: true,
        source: "test".into(),
        other_tmpfs: other_tmpfs
            .iter()
            .map(|(path, noexec)| OtherTmpfs {
                mount_point: path.into(),
                noexec: *noexec,
            })
            .collect(),
        selinux_portage: false,
    }
}

fn request(scope: Scope) -> Request {
    Request {
        scope,
        measure: false,
        require_signed_policy: false,
        observe: false,
    }
}

fn rules(g: &portage_ima::policy::Generated) -> Vec<String> {
    g.policy.rules().map(ToString::to_string).collect()
}

const FSMAGIC_TMPFS: &str = "dont_appraise fsmagic=0x1021994";

#[test]
fn tmpfs_exemption_needs_every_other_tmpfs_noexec() {
    let exec_shm = [
        ("/dev", true),
        ("/dev/shm", false),
        ("/run/user/1000", false),
    ];
    for scope in [Scope::Exec, Scope::ExecMmap] {
        let e = generate(&setup(BuildFs::Tmpfs, true, &exec_shm), &request(scope)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("among them /dev/shm, /run/user/1000"), "{msg}");
        assert!(msg.contains("not mounted noexec"), "{msg}");
        assert!(
            msg.contains("mount /dev/shm, /run/user/1000 noexec"),
            "{msg}"
        );
        assert!(msg.contains("exempted by its fsuuid"), "{msg}");
    }
    // root-exec without userpriv: root runs the builds, so the same.
    assert!(generate(
        &setup(BuildFs::Tmpfs, false, &exec_shm),
        &request(Scope::RootExec)
    )
    .is_err());
    // root-exec with userpriv: no exemption, and the warning says why.
    let g = generate(
        &setup(BuildFs::Tmpfs, true, &exec_shm),
        &request(Scope::RootExec),
    )
    .unwrap();
    assert!(
        !rules(&g).iter().any(|r| r == FSMAGIC_TMPFS),
        "{:?}",
        rules(&g)
    );
    assert!(g.wider.is_empty());
    assert!(
        g.warnings
            .iter()
            .any(|w| w.contains("/dev/shm, /run/user/1000")),
        "{:?}",
        g.warnings
    );

    // Every other one noexec: exempted, and said to be wider.
    let noexec = [("/dev", true), ("/dev/shm", true)];
    let g = generate(&setup(BuildFs::Tmpfs, true, &noexec), &request(Scope::Exec)).unwrap();
    assert!(rules(&g).iter().any(|r| r == FSMAGIC_TMPFS));
    assert_eq!(g.wider.len(), 1, "{:?}", g.wider);
    assert!(
        g.wider[0].contains("the others (/dev, /dev/shm)"),
        "{:?}",
        g.wider
    );
}

#[test]
fn selinux_with_gentoos_policy_exempts_by_label() {
    let rootfs = BuildFs::Shared {
        with: "/".into(),
        fstype: "ext4".into(),
    };
    for build_fs in [BuildFs::Tmpfs, rootfs] {
        let mut s = setup(build_fs, true, &[("/dev/shm", false)]);
        s.selinux_portage = true;
        let g = generate(&s, &request(Scope::ExecMmap)).unwrap();
        let rules = rules(&g);
        let at = |rule: &str| rules.iter().position(|r| r == rule);
        let obj = at("dont_appraise obj_type=portage_tmp_t").expect("obj_type rule");
        let subj = at("dont_appraise subj_type=portage_sandbox_t").expect("subj_type rule");
        let appraise = at("appraise func=BPRM_CHECK appraise_type=imasig").unwrap();
        assert!(obj < appraise && subj < appraise, "{rules:?}");
        assert!(at(FSMAGIC_TMPFS).is_none(), "{rules:?}");
        // The subject rule covers more than the build directory: said.
        assert!(
            g.wider
                .iter()
                .any(|w| w.contains("subj_type=portage_sandbox_t")),
            "{:?}",
            g.wider
        );
        assert_eq!(parse_policy(&g.policy.to_string()).unwrap(), g.policy);
    }
    // A filesystem of its own keeps its exact fsuuid rule.
    let mut s = setup(
        BuildFs::Own {
            fstype: "ext4".into(),
            uuid: [7; 16],
        },
        true,
        &[],
    );
    s.selinux_portage = true;
    let g = generate(&s, &request(Scope::Exec)).unwrap();
    assert!(rules(&g)
        .iter()
        .any(|r| r == "dont_appraise fsuuid=07070707-0707-0707-0707-070707070707"));
    assert!(g.wider.is_empty());
}

/// A scratch root with a make.conf whose PORTAGE_TMPDIR is `var/tmp` in it.
fn scratch_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc/portage")).unwrap();
    fs::create_dir_all(dir.path().join("var/tmp")).unwrap();
    fs::create_dir_all(dir.path().join("mnt/shm")).unwrap();
    fs::write(
        dir.path().join("etc/portage/make.conf"),
        format!(
            "FEATURES=\"userpriv xattr\"\nPORTAGE_TMPDIR=\"{}\"\n",
            dir.path().join("var/tmp").display()
        ),
    )
    .unwrap();
    dir
}

fn policy_command(mut cmd: Command, root: &Path, args: &[&str]) -> Output {
    cmd.arg("policy")
        .arg("--root")
        .arg(root)
        .args(args)
        .env("PATH", "/nonexistent")
        .env_remove("PORTAGE_CONFIGROOT")
        .output()
        .unwrap()
}

#[test]
fn policy_command_reads_the_machines_tmpfs_mounts() {
    let test = "policy_command_reads_the_machines_tmpfs_mounts";
    let root = scratch_root();
    let r = root.path().display();
    // The build directory and another tmpfs, where anyone may execute.
    let exec_other = format!("mount -t tmpfs tmpfs {r}/var/tmp\nmount -t tmpfs tmpfs {r}/mnt/shm");
    let Some(cmd) = common::isolated_mounts(&exec_other, test) else {
        return;
    };
    let out = policy_command(cmd, root.path(), &["--appraise", "exec"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("among them {r}/mnt/shm")), "{err}");
    assert!(err.contains(&format!("mount {r}/mnt/shm noexec")), "{err}");
    assert!(err.contains("exempted by its fsuuid"), "{err}");

    // The same tmpfs mounted noexec: exempted, and stderr says how widely.
    let noexec_other =
        format!("mount -t tmpfs tmpfs {r}/var/tmp\nmount -t tmpfs -o noexec tmpfs {r}/mnt/shm");
    let cmd = common::isolated_mounts(&noexec_other, test).unwrap();
    let out = policy_command(cmd, root.path(), &["--appraise", "exec-mmap"]);
    assert!(out.status.success(), "{}", text(&out));
    let policy = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(policy.lines().any(|l| l == FSMAGIC_TMPFS), "{policy}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exemption wider than the build directory"),
        "{err}"
    );
    assert!(err.contains(&format!("{r}/mnt/shm")), "{err}");
}

/// `policy --check --json` with the key and certificate of `conf`.
fn check(conf: &Path, root: &Path, policy: &str, ns_setup: Option<&str>) -> (Output, Value) {
    let policy_file = root.with_extension("policy");
    fs::write(&policy_file, policy).unwrap();
    let mut cmd = match ns_setup {
        Some(s) => common::isolated_mounts(s, "check").unwrap(),
        None => common::cmd(),
    };
    let out = cmd
        .arg("--config")
        .arg(conf)
        .args(["policy", "--check", "--json"])
        .arg(&policy_file)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out, doc)
}

fn denied_paths(doc: &Value) -> Vec<(String, String)> {
    doc["denied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn policy_check_walks_tmpfs_mounts_under_dev_and_run() {
    let test = "policy_check_walks_tmpfs_mounts_under_dev_and_run";
    if !common::require_root(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (conf, _) = common::settings_with_cert(dir.path(), "");
    let root = dir.path().join("root");
    for d in ["dev/shm", "run/user/1000", "usr/bin"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let r = root.display();
    let setup = format!(
        "mount -t tmpfs tmpfs {r}/dev/shm\nmount -t tmpfs tmpfs {r}/run/user/1000\n\
         cp /bin/true {r}/dev/shm/payload\ncp /bin/true {r}/run/user/1000/payload\n"
    );
    let Some(_) = common::isolated_mounts("", test) else {
        return;
    };
    let (out, doc) = check(
        &conf,
        &root,
        "appraise func=BPRM_CHECK appraise_type=imasig\n",
        Some(&setup),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        denied_paths(&doc),
        [
            ("/dev/shm/payload".to_string(), "unsigned".to_string()),
            ("/run/user/1000/payload".to_string(), "unsigned".to_string()),
        ]
    );
    assert_eq!(doc["verdict"], "not-safe");
}

#[test]
fn policy_check_cannot_tell_for_options_it_does_not_model() {
    let test = "policy_check_cannot_tell_for_options_it_does_not_model";
    if !common::require_root(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (conf, _) = common::settings_with_cert(dir.path(), "");
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    let program = root.join("usr/bin/signed");
    fs::write(&program, b"#!/bin/sh\necho signed\n").unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    let sign = common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(["sign", "--files"])
        .arg(&program)
        .output()
        .unwrap();
    assert!(sign.status.success(), "{}", text(&sign));

    // Signed (sha256) and covered: safe.
    let (out, doc) = check(
        &conf,
        &root,
        "appraise func=BPRM_CHECK appraise_type=imasig\n",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(doc["verdict"], "safe");

    for (rule, options) in [
        (
            "appraise func=BPRM_CHECK appraise_type=imasig appraise_flag=check_blacklist",
            &["appraise_flag=check_blacklist"][..],
        ),
        (
            "appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3",
            &["appraise_type=sigv3", "digest_type=verity"][..],
        ),
    ] {
        let (out, doc) = check(&conf, &root, &format!("{rule}\n"), None);
        assert_eq!(out.status.code(), Some(1), "{rule}: {}", text(&out));
        assert_eq!(doc["verdict"], "cannot-tell", "{rule}");
        assert_eq!(doc["safe"], false, "{rule}");
        let named: Vec<&str> = doc["unmodelled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["option"].as_str().unwrap())
            .collect();
        let mut named = named;
        named.sort_unstable();
        assert_eq!(named, options, "{rule}");
    }
    // The text report names the option and does not say safe.
    let policy_file = dir.path().join("blacklist.policy");
    fs::write(
        &policy_file,
        "appraise func=BPRM_CHECK appraise_type=imasig appraise_flag=check_blacklist\n",
    )
    .unwrap();
    let out = common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(["policy", "--check"])
        .arg(&policy_file)
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("CANNOT TELL"), "{all}");
    assert!(
        all.contains("appraise_flag=check_blacklist (line 1)"),
        "{all}"
    );
    assert!(!all.contains(": safe to boot"), "{all}");

    // appraise_algos is modelled: a sha256 signature is refused unless listed.
    let (out, doc) = check(
        &conf,
        &root,
        "appraise func=BPRM_CHECK appraise_type=imasig appraise_algos=sha512\n",
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        denied_paths(&doc),
        [(
            "/usr/bin/signed".to_string(),
            "denied-hash-algorithm".to_string()
        )]
    );
    assert!(
        doc["denied"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("uses sha256, and appraise_algos allows only sha512"),
        "{doc}"
    );
    let (out, doc) = check(
        &conf,
        &root,
        "appraise func=BPRM_CHECK appraise_type=imasig appraise_algos=sha256,sha512\n",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(doc["verdict"], "safe");
    // A later rule for another access of the same file counts too (the
    // script is read by FILE_CHECK as well as executed).
    let (out, doc) = check(
        &conf,
        &root,
        "appraise func=BPRM_CHECK appraise_type=imasig\n\
         appraise func=FILE_CHECK appraise_algos=sha384\n",
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(denied_paths(&doc)[0].1, "denied-hash-algorithm");
}
