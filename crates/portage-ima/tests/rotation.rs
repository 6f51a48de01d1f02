//! Key rotation over an installed root (issue 12): files signed with an old
//! RSA key, the configuration switched to a new ECDSA P-256 key, then
//! `verify --cert NEW --cert OLD` tells `other-key` from `unknown-key`, and
//! `sign --all --rotate` re-signs what still matches CONTENTS, says whose
//! signature it replaced, leaves a file changed since the merge alone, and
//! a rerun finds everything already valid (how an interrupted run resumes).
//!
//! These write `security.ima`, which needs root (CAP_SYS_ADMIN); as another
//! user they print why and pass without checking, except under CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Root {
    dir: tempfile::TempDir,
    old_cert: PathBuf,
    new_cert: PathBuf,
}

/// `dir/ec.pem` (P-256, SEC1 as `openssl ecparam -genkey` writes it).
fn new_ecdsa_key(dir: &Path) -> PathBuf {
    let key = dir.join("ec.pem");
    common::run_ok(
        Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&key),
    );
    key
}

fn write_conf(path: &Path, key: &Path, cert: &Path) {
    let text = format!(
        "key = \"{}\"\ncert = \"{}\"\njobs = 2\n",
        key.display(),
        cert.display()
    );
    std::fs::write(path, text).unwrap();
}

impl Root {
    /// Packages test-ima/clean-1 (three files) and test-ima/edited-1 (one
    /// file, changed after it was signed), signed with the old RSA key; the
    /// configuration is then switched to the new ECDSA key.
    fn signed_with_old_key() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["old", "new"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let old_key = common::new_key(&d.join("old"));
        let old_cert = common::new_cert(&d.join("old"), &old_key);
        let new_key = new_ecdsa_key(&d.join("new"));
        let new_cert = common::new_cert(&d.join("new"), &new_key);
        let root = d.join("root");
        for (pf, files) in [("clean-1", &["a", "b", "c"][..]), ("edited-1", &["e"][..])] {
            let share = root.join("usr/share").join(pf);
            std::fs::create_dir_all(&share).unwrap();
            let mut contents = format!("dir /usr/share/{pf}\n");
            for name in files {
                let data = format!("{pf} {name}\n");
                std::fs::write(share.join(name), &data).unwrap();
                let md5 = common::md5_hex(data.as_bytes());
                contents.push_str(&format!("obj /usr/share/{pf}/{name} {md5} 1795842074\n"));
            }
            let vdb = root.join("var/db/pkg/test-ima").join(pf);
            std::fs::create_dir_all(&vdb).unwrap();
            std::fs::write(vdb.join("CONTENTS"), contents).unwrap();
        }
        let fixture = Root {
            dir,
            old_cert,
            new_cert,
        };
        write_conf(&fixture.conf(), &old_key, &fixture.old_cert);
        let out = fixture.run(&["sign", "--all"]);
        assert!(out.status.success(), "{}", common::text(&out));
        std::fs::write(fixture.edited(), "changed by the admin\n").unwrap();
        write_conf(&fixture.conf(), &new_key, &fixture.new_cert);
        fixture
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("ima.toml")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn edited(&self) -> PathBuf {
        self.root().join("usr/share/edited-1/e")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], certs: &[&Path]) -> Output {
        let mut cmd = common::cmd();
        cmd.arg("--config").arg(self.conf()).args(args);
        for cert in certs {
            cmd.arg("--cert").arg(cert);
        }
        cmd.arg("--root")
            .arg(self.root())
            .env_remove("CONFIG_PROTECT")
            .output()
            .unwrap()
    }

    /// `verify ARGS --json` with `certs`: (exit code, path → status).
    fn verify(&self, args: &[&str], certs: &[&Path]) -> (i32, Vec<(String, String)>) {
        let mut all = vec!["verify", "--json"];
        all.extend_from_slice(args);
        let out = self.run_with(&all, certs);
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
        let files = doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let path = f["path"].as_str().unwrap();
                let name = path.rsplit('/').next().unwrap().to_string();
                (name, f["status"].as_str().unwrap().to_string())
            })
            .collect();
        (out.status.code().unwrap(), files)
    }

    /// `sign ARGS --json`: (exit code, path tail → (outcome, detail)).
    fn sign(&self, args: &[&str]) -> (i32, Vec<(String, String, String)>) {
        let mut all = vec!["sign", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
        let mut files: Vec<_> = doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let path = f["path"].as_str().unwrap();
                (
                    path.rsplit('/').next().unwrap().to_string(),
                    f["outcome"].as_str().unwrap().to_string(),
                    f["detail"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        files.sort();
        (out.status.code().unwrap(), files)
    }
}

fn statuses(files: &[(String, String)], name: &str) -> Vec<String> {
    files
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, s)| s.clone())
        .collect()
}

fn xattr(path: &Path) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    ima_core::read_ima_xattr(&f).unwrap().unwrap()
}

/// The key id a certificate gives signatures, as reports print it.
fn key_id(cert: &Path) -> String {
    ima_core::Certificate::load(cert)
        .unwrap()
        .key_id()
        .to_string()
}

#[test]
fn verify_tells_other_key_from_unknown_key() {
    if !common::require_root("verify_tells_other_key_from_unknown_key") {
        return;
    }
    let f = Root::signed_with_old_key();
    let (old, new) = (f.old_cert.as_path(), f.new_cert.as_path());
    // Only the new certificate: the old key's signatures are unknown.
    let (code, files) = f.verify(&["test-ima/clean"], &[new]);
    assert_eq!(code, 1, "{files:?}");
    for name in ["a", "b", "c"] {
        assert_eq!(statuses(&files, name), ["unknown-key"], "{files:?}");
    }
    // Both: valid signatures by a key that is not the configured one, which
    // the kernel accepts while both certificates are on its keyring.
    let (code, files) = f.verify(&["test-ima/clean"], &[new, old]);
    assert_eq!(code, 0, "other-key is reported, not a failure: {files:?}");
    for name in ["a", "b", "c"] {
        assert_eq!(statuses(&files, name), ["other-key"], "{files:?}");
    }
    // The text output names the status and the key.
    let out = f.run_with(&["verify", "test-ima/clean"], &[new, old]);
    let text = common::text(&out);
    assert!(text.contains("other-key"), "{text}");
    assert!(text.contains(&key_id(old)), "{text}");
    // The configured certificate is the expected key; no --cert: the same.
    let (code, files) = f.verify(&["test-ima/clean"], &[]);
    assert_eq!(code, 1, "{files:?}");
    assert_eq!(statuses(&files, "a"), ["unknown-key"], "{files:?}");
}

#[test]
fn sign_rotate_resigns_unchanged_files_and_resumes() {
    if !common::require_root("sign_rotate_resigns_unchanged_files_and_resumes") {
        return;
    }
    let f = Root::signed_with_old_key();
    let (old, new) = (f.old_cert.as_path(), f.new_cert.as_path());
    let edited_before = xattr(&f.edited());
    let old_id = key_id(old);
    // Interrupted after one package: what is rotated stays rotated.
    let (code, files) = f.sign(&["test-ima/clean", "--rotate"]);
    assert_eq!(code, 0, "{files:?}");
    let expected_detail = format!("was signed by key id {old_id}");
    assert_eq!(
        files,
        ["a", "b", "c"].map(|n| (
            n.to_string(),
            "rotated".to_string(),
            expected_detail.clone()
        )),
    );
    // The resumed run: the rotated files are already valid, the changed
    // file is not signed (its old signature stays as it was).
    let (code, files) = f.sign(&["--all", "--rotate"]);
    assert_eq!(code, 1, "the changed file fails the run: {files:?}");
    let outcomes: Vec<_> = files
        .iter()
        .map(|(n, o, _)| (n.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("a", "already-valid"),
            ("b", "already-valid"),
            ("c", "already-valid"),
            ("e", "failed")
        ]
    );
    assert!(files[3].2.contains("content differs"), "{files:?}");
    assert_eq!(xattr(&f.edited()), edited_before);
    // Afterwards the new certificate alone verifies every unchanged file.
    let (code, files) = f.verify(&["test-ima/clean"], &[new]);
    assert_eq!(code, 0, "{files:?}");
    assert!(files.iter().all(|(_, s)| s == "ok"), "{files:?}");
    // JSON tallies count the rotated files.
    let out = f.run(&["sign", "--json", "--all", "--rotate", "--dry-run"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["rotated"], 0, "{doc}");
    assert_eq!(doc["summary"]["already-valid"], 3, "{doc}");
}

#[test]
fn sign_without_rotate_writes_the_same_and_says_signed() {
    if !common::require_root("sign_without_rotate_writes_the_same_and_says_signed") {
        return;
    }
    let f = Root::signed_with_old_key();
    // Today's rule, unchanged: a signature that is not ours is replaced
    // when the content matches CONTENTS; without --rotate it is "signed".
    let (code, files) = f.sign(&["test-ima/clean"]);
    assert_eq!(code, 0, "{files:?}");
    assert!(
        files.iter().all(|(_, o, d)| o == "signed" && d.is_empty()),
        "{files:?}"
    );
    let out = f.run(&["sign", "test-ima/clean"]);
    let text = common::text(&out);
    assert!(text.contains("signed 0, 3 already valid"), "{text}");
    assert!(!text.contains("rotated"), "{text}");
}

/// `verify` takes the trusted certificates of ima.toml (a binary host's),
/// with no --cert: a keyless client (mode = "verify", no key configured)
/// finds the binary host's signatures ok; a host with its own key
/// (sign-missing) finds them other-key, naming the certificate they match.
#[test]
fn verify_uses_trusted_certs_from_the_settings() {
    if !common::require_root("verify_uses_trusted_certs_from_the_settings") {
        return;
    }
    let f = Root::signed_with_old_key();
    let old = f.old_cert.display().to_string();
    std::fs::write(
        f.conf(),
        format!("mode = \"verify\"\ntrusted_certs = [\"{old}\"]\n"),
    )
    .unwrap();
    let (code, files) = f.verify(&["test-ima/clean"], &[]);
    assert_eq!(code, 0, "{files:?}");
    for name in ["a", "b", "c"] {
        assert_eq!(statuses(&files, name), ["ok"], "{files:?}");
    }

    let conf = std::fs::read_to_string(f.conf()).unwrap();
    std::fs::write(
        f.conf(),
        format!(
            "mode = \"sign-missing\"\ntrusted_certs = [\"{old}\"]\ncert = \"{}\"\n{}",
            f.new_cert.display(),
            conf.lines()
                .filter(|l| l.starts_with("key"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    )
    .unwrap();
    let out = f.run(&["verify", "--json", "test-ima/clean"]);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    for file in doc["files"].as_array().unwrap() {
        assert_eq!(file["status"], "other-key", "{file}");
        assert_eq!(file["keyid"], key_id(&f.old_cert).as_str(), "{file}");
        let detail = file["detail"].as_str().unwrap();
        assert!(detail.contains("(CN="), "names the certificate: {detail}");
    }
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
}
