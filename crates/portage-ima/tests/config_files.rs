//! `config_files` through the commands: `sign` and `verify` of installed
//! packages under each mode (tallies, statuses, exit codes), and
//! `sign --digest-only --files` against `evmctl ima_hash`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ima_kind as kind, md5_hex, require_root, require_tool, text};

/// A root with test-ima/cfg-1 installed: a config file (0644), an init
/// script (0755), a program outside /etc; and ima.toml with `extra`.
struct Root {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

const FILES: [(&str, &[u8], u32); 3] = [
    ("etc/app.conf", b"setting = 1\n", 0o644),
    ("etc/init.d/app", b"#!/sbin/openrc-run\n", 0o755),
    ("usr/bin/prog", b"#!/bin/sh\necho prog\n", 0o755),
];

impl Root {
    fn new(extra: &str) -> Root {
        let dir = tempfile::tempdir().unwrap();
        let conf = common::settings(dir.path(), &format!("jobs = 2\n{extra}"));
        let root = dir.path().join("root");
        let mut contents = String::new();
        for (rel, content, perm) in FILES {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(perm)).unwrap();
            contents.push_str(&format!("obj /{rel} {} 1700000000\n", md5_hex(content)));
        }
        let vdb = root.join("var/db/pkg/test-ima/cfg-1");
        fs::create_dir_all(&vdb).unwrap();
        fs::write(vdb.join("CONTENTS"), contents).unwrap();
        Root { dir, conf }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn run(&self, args: &[&str]) -> Output {
        common::cmd()
            .arg("--config")
            .arg(&self.conf)
            .args(args)
            .args(["--root"])
            .arg(self.root())
            .env("CONFIG_PROTECT", "/etc")
            .env("CONFIG_PROTECT_MASK", "")
            .env_remove("PORTAGE_IMA_LOG")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let out = self.run(args);
        let doc =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        (out.status.code(), doc)
    }
}

/// Per mode (the default first): the sign tallies, what each file carries,
/// and what verify says of each, with no failure; verify's text output
/// lists none of these files without -v.
#[test]
fn sign_and_verify_packages_in_each_mode() {
    if !require_root(module_path!()) {
        return;
    }
    // (signed, hashed, skipped), kinds and verify statuses of FILES.
    let cases = [
        (
            "",
            (2, 0, 1),
            ["none", "signature", "signature"],
            ["config-unsigned", "ok", "ok"],
        ),
        (
            "executable",
            (2, 0, 1),
            ["none", "signature", "signature"],
            ["config-unsigned", "ok", "ok"],
        ),
        (
            "hash",
            (2, 1, 0),
            ["digest", "signature", "signature"],
            ["hashed", "ok", "ok"],
        ),
        ("sign", (3, 0, 0), ["signature"; 3], ["ok"; 3]),
        (
            "skip",
            (1, 0, 2),
            ["none", "none", "signature"],
            ["config-unsigned", "config-unsigned", "ok"],
        ),
    ];
    for (mode, (signed, hashed, skipped), kinds, statuses) in cases {
        let extra = match mode {
            "" => String::new(),
            m => format!("config_files = \"{m}\"\n"),
        };
        let r = Root::new(&extra);
        let (code, doc) = r.json(&["sign", "test-ima/cfg", "--json", "--progress", "none"]);
        assert_eq!(code, Some(0), "{mode}: {doc}");
        let tally = &doc["summary"];
        assert_eq!(
            (
                &tally["signed"],
                &tally["hashed"],
                &tally["skipped"],
                &tally["failed"]
            ),
            (&signed.into(), &hashed.into(), &skipped.into(), &0.into()),
            "{mode}: {doc}"
        );
        for ((rel, _, _), want) in FILES.iter().zip(kinds) {
            assert_eq!(kind(&r.root().join(rel)), want, "{mode}: {rel}");
        }
        let (code, doc) = r.json(&["verify", "test-ima/cfg", "--json"]);
        assert_eq!(code, Some(0), "{mode}: {doc}");
        for ((rel, _, _), want) in FILES.iter().zip(statuses) {
            let path = r.root().join(rel);
            let file = doc["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"] == path.to_str().unwrap())
                .unwrap_or_else(|| panic!("{mode}: {rel} not in {doc}"));
            assert_eq!(file["status"], want, "{mode}: {file}");
        }
        let out = r.run(&["verify", "test-ima/cfg"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("/etc/"), "{mode}: {stdout}");
        assert!(
            stdout.starts_with("ok   test-ima/cfg-1: "),
            "{mode}: {stdout}"
        );
        // A second run writes nothing new.
        let (_, doc) = r.json(&["sign", "test-ima/cfg", "--json", "--progress", "none"]);
        assert_eq!(
            doc["summary"]["already-valid"],
            signed + hashed,
            "{mode}: {doc}"
        );
    }
}

/// Switching from the old default: files signed by `sign` stay signed
/// under `executable` (left untouched, verify: ok), and `hash` replaces the
/// config file's signature with a digest, so it becomes editable.
#[test]
fn hash_mode_turns_signed_config_files_into_hashed_ones() {
    if !require_root(module_path!()) {
        return;
    }
    let r = Root::new("config_files = \"sign\"\n");
    let sign = ["sign", "test-ima/cfg", "--json", "--progress", "none"];
    assert_eq!(r.json(&sign).0, Some(0));
    let conf = r.root().join("etc/app.conf");
    assert_eq!(kind(&conf), "signature");
    let settings = fs::read_to_string(&r.conf).unwrap();
    fs::write(&r.conf, settings.replace("\"sign\"", "\"executable\"")).unwrap();
    let (_, doc) = r.json(&sign);
    assert_eq!(doc["summary"]["skipped"], 1, "{doc}");
    assert_eq!(kind(&conf), "signature");
    let settings = fs::read_to_string(&r.conf).unwrap();
    fs::write(&r.conf, settings.replace("\"executable\"", "\"hash\"")).unwrap();
    let (_, doc) = r.json(&sign);
    assert_eq!(doc["summary"]["hashed"], 1, "{doc}");
    assert_eq!(kind(&conf), "digest");
}

/// `sign --digest-only --files`: byte for byte what `evmctl ima_hash`
/// writes (sha1's `0x01` form and the `0x04` one), with no key at all;
/// refused for packages, with a pointer to `config_files = "hash"`.
#[test]
fn digest_only_files_match_evmctl_ima_hash() {
    let test = "sign --digest-only";
    if !require_root(test) || !require_tool("evmctl", test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ima.toml");
    fs::write(&conf, "key = \"/nonexistent/key.pem\"\n").unwrap();
    for hash in ["sha1", "sha256", "sha512"] {
        let ours = dir.path().join(format!("ours-{hash}"));
        let theirs = dir.path().join(format!("theirs-{hash}"));
        for p in [&ours, &theirs] {
            fs::write(p, b"a config file\n").unwrap();
        }
        let out = common::cmd()
            .arg("--config")
            .arg(&conf)
            .args([
                "sign",
                "--digest-only",
                "--hash",
                hash,
                "--progress",
                "none",
                "--files",
            ])
            .arg(&ours)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("hashed 1"),
            "{}",
            text(&out)
        );
        common::run_ok(
            Command::new("evmctl")
                .args(["ima_hash", "--hashalgo", hash])
                .arg(&theirs),
        );
        let read = |p: &Path| ima_core::read_ima_xattr(&fs::File::open(p).unwrap()).unwrap();
        assert_eq!(read(&ours), read(&theirs), "{hash}");
    }
    let out = common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(["sign", "--all", "--digest-only"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("config_files = \"hash\""),
        "{}",
        text(&out)
    );
}
