//! `portage-ima sign --files` and `verify --files` as a user runs them: exit
//! statuses, per-file errors, and the result checked by evmctl.
//!
//! These write `security.ima`, which needs root (CAP_SYS_ADMIN); as another
//! user they print why and pass without checking, except under CI (`CI`
//! set), where that is a failure (tests/common).

mod common;

use common::run_ok;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !common::require_root(module_path!()) || !common::require_tool("evmctl", "cli_files") {
            return;
        }
    };
}

/// An RSA-2048 key (PKCS#1) and its self-signed certificate (DER), made once.
struct Keys {
    _dir: tempfile::TempDir,
    key: PathBuf,
    cert: PathBuf,
    other_cert: PathBuf,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["k", "other"] {
            run_ok(
                Command::new("openssl")
                    .args(["genrsa", "-traditional", "-out"])
                    .arg(d.join(format!("{name}.pem")))
                    .arg("2048"),
            );
            run_ok(
                Command::new("openssl")
                    .args([
                        "req", "-x509", "-new", "-days", "30", "-subj", "/CN=test", "-outform",
                        "DER",
                    ])
                    .args(["-addext", "keyUsage=digitalSignature", "-key"])
                    .arg(d.join(format!("{name}.pem")))
                    .arg("-out")
                    .arg(d.join(format!("{name}.der"))),
            );
        }
        std::fs::set_permissions(
            d.join("k.pem"),
            std::os::unix::fs::PermissionsExt::from_mode(0o400),
        )
        .unwrap();
        Keys {
            key: d.join("k.pem"),
            cert: d.join("k.der"),
            other_cert: d.join("other.der"),
            _dir: dir,
        }
    })
}

/// Runs portage-ima with an empty settings file so the machine's own is not read.
fn portage_ima(args: &[&str], extra: &[&Path]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ima.toml");
    std::fs::write(&conf, "").unwrap();
    common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

fn sign(files: &[&Path], more: &[&str]) -> Output {
    let k = keys();
    let mut args = vec![
        "sign",
        "--key",
        k.key.to_str().unwrap(),
        "--cert",
        k.cert.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    args.push("--files");
    portage_ima(&args, files)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn evmctl_verifies(path: &Path) -> bool {
    Command::new("evmctl")
        .args(["ima_verify", "--key"])
        .arg(&keys().cert)
        .arg(path)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn has_ima(path: &Path) -> bool {
    let f = std::fs::File::open(path).unwrap();
    ima_core::read_ima_xattr(&f).unwrap().is_some()
}

#[test]
fn signs_a_tree_and_evmctl_accepts_every_file() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("a/b")).unwrap();
    let names = ["one", "a/two with space", "a/b/three", "empty"];
    for (i, n) in names.iter().enumerate() {
        std::fs::write(d.join(n), vec![b'x'; i * 5000]).unwrap();
    }
    let out = sign(&[d], &["--hash", "sha512", "--jobs", "2"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("signed 4"), "{stdout}");
    for n in names {
        assert!(evmctl_verifies(&d.join(n)), "evmctl rejects {n}");
    }
    // A second run keeps the valid signatures.
    let out = sign(&[d], &["--hash", "sha512"]);
    assert!(
        text(&out).0.contains("signed 0, 4 already valid"),
        "{:?}",
        text(&out)
    );

    // verify --files, text and JSON.
    let cert = keys().cert.to_str().unwrap().to_string();
    let out = portage_ima(&["verify", "--cert", &cert, "--files"], &[d]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = portage_ima(
        &["verify", "--json", "--cert", &cert, "--files"],
        &[&d.join("one")],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["files"][0]["status"], "ok");
    assert_eq!(doc["files"][0]["algo"], "sha512");
    assert_eq!(doc["summary"]["ok"], 1);
}

#[test]
fn dry_run_writes_nothing() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"data").unwrap();
    let out = sign(&[&f], &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("would sign 1"), "{:?}", text(&out));
    assert!(!has_ima(&f));
}

#[test]
fn special_files_fail_alone_and_the_rest_is_signed() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = d.join("good");
    std::fs::write(&good, b"good").unwrap();
    std::os::unix::fs::symlink(&good, d.join("link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        d.join("fifo"),
        rustix::fs::FileType::Fifo,
        0o600.into(),
        0,
    )
    .unwrap();
    let out = sign(
        &[
            &d.join("link"),
            &d.join("fifo"),
            Path::new("/dev/null"),
            &d.join("vanished"),
            &good,
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("link: is a symbolic link"), "{stderr}");
    assert!(stderr.contains("fifo: is a fifo"), "{stderr}");
    assert!(
        stderr.contains("/dev/null: is a character device"),
        "{stderr}"
    );
    assert!(stderr.contains("vanished: no such file"), "{stderr}");
    assert!(
        stdout.contains("signed 1") && stdout.contains("4 failed"),
        "{stdout}"
    );
    assert!(evmctl_verifies(&good));
    // The symlink's target was signed only because it was named itself.
    assert!(!has_ima(Path::new("/dev/null")));
}

#[test]
fn key_problems_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = d.join("f");
    std::fs::write(&f, b"x").unwrap();
    let not_a_key = d.join("not-a-key");
    std::fs::write(&not_a_key, b"hello\n").unwrap();
    let encrypted = d.join("enc.pem");
    run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-aes256",
                "-pass",
                "pass:x",
                "-out",
            ])
            .arg(&encrypted),
    );
    let k = keys();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--key".into(), d.join("missing").display().to_string()],
            "missing",
        ),
        (
            vec!["--key".into(), not_a_key.display().to_string()],
            "not-a-key",
        ),
        (
            vec!["--key".into(), encrypted.display().to_string()],
            "encrypted",
        ),
        (
            vec![
                "--key".into(),
                k.key.display().to_string(),
                "--cert".into(),
                k.other_cert.display().to_string(),
            ],
            "does not belong",
        ),
        (
            vec![
                "--key".into(),
                k.key.display().to_string(),
                "--hash".into(),
                "sha3".into(),
            ],
            "sha3",
        ),
        (
            vec![
                "--key".into(),
                k.key.display().to_string(),
                "--backend".into(),
                "gnutls".into(),
            ],
            "gnutls",
        ),
    ];
    for (args, needle) in cases {
        let mut all: Vec<&str> = vec!["sign"];
        all.extend(args.iter().map(String::as_str));
        all.push("--files");
        let out = portage_ima(&all, &[&f]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{args:?}: expected {needle:?} in: {stderr}"
        );
    }
}

#[test]
fn unknown_setting_in_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ima.toml");
    std::fs::write(&conf, "hash = \"sha256\"\nsigning_key = \"/k\"\n").unwrap();
    let out = common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(["sign", "--files", "/nonexistent"])
        .output()
        .unwrap();
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("signing_key") && stderr.contains("ima.toml"),
        "{stderr}"
    );
}

#[test]
fn immutable_and_read_only_files_fail_with_their_reason() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let immutable = d.join("immutable");
    let fine = d.join("fine");
    std::fs::write(&immutable, b"i").unwrap();
    std::fs::write(&fine, b"f").unwrap();
    let chattr = Command::new("chattr").arg("+i").arg(&immutable).status();
    if !common::require(
        matches!(chattr, Ok(s) if s.success()),
        "chattr +i working on this filesystem",
        "immutable files",
    ) {
        return;
    }
    let out = sign(&[&immutable, &fine], &[]);
    let _ = Command::new("chattr").arg("-i").arg(&immutable).status();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("immutable"), "{stderr}");
    assert!(evmctl_verifies(&fine));

    // A read-only bind mount.
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("file"), b"r").unwrap();
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(&ro)
        .arg(&ro)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(&ro)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !common::require(mounted, "a read-only bind mount", "read-only files") {
        return;
    }
    let out = sign(&[&ro.join("file")], &[]);
    let _ = Command::new("umount").arg(&ro).status();
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("read-only"), "{stderr}");
}

#[test]
fn a_bind_mount_loop_is_reported_not_walked_forever() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("file"), b"f").unwrap();
    std::fs::create_dir_all(d.join("sub/loop")).unwrap();
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(d)
        .arg(d.join("sub/loop"))
        .status();
    if !common::require(
        matches!(mounted, Ok(s) if s.success()),
        "a bind mount",
        "bind-mount loop",
    ) {
        return;
    }
    let out = sign(&[d], &[]);
    let _ = Command::new("umount").arg(d.join("sub/loop")).status();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("sub/loop: directory reached twice"),
        "{stderr}"
    );
    assert!(stdout.contains("signed 1,"), "{stdout}");
    assert!(evmctl_verifies(&d.join("file")));
}

/// A private key others could read, or replace through its directory, is
/// refused with the command that fixes it, unless ima.toml allows it.
#[test]
fn insecure_key_files_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let keydir = dir.path().join("keys");
    std::fs::create_dir(&keydir).unwrap();
    let key = keydir.join("k.pem");
    std::fs::copy(&keys().key, &key).unwrap();
    let sign_with = |settings: &str| -> (Option<i32>, String) {
        let conf = dir.path().join("ima.toml");
        std::fs::write(&conf, format!("key = {key:?}\n{settings}")).unwrap();
        let out = common::cmd()
            .arg("--config")
            .arg(&conf)
            .args(["sign", "--dry-run", "--files"])
            .arg(&file)
            .output()
            .unwrap();
        (out.status.code(), text(&out).1)
    };
    let key_s = key.display().to_string();
    let dir_s = keydir.display().to_string();
    // (key mode, dir mode, group of the dir not root, what the error says)
    let cases: [(u32, u32, &str); 4] = [
        (0o644, 0o700, "chmod 0400 KEY"),
        (0o440, 0o700, "chmod 0400 KEY"),
        (0o400, 0o777, "chmod o-w DIR"),
        (0o400, 0o1777, "chmod o-w DIR"),
    ];
    for (kmode, dmode, fix) in cases {
        mode(&key, kmode);
        mode(&keydir, dmode);
        let fix = fix.replace("KEY", &key_s).replace("DIR", &dir_s);
        let what = format!("key {kmode:04o} in a {dmode:04o} directory");
        let (code, stderr) = sign_with("");
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("refusing the private key") && stderr.contains(&fix),
            "{what}: {stderr}"
        );
        assert!(stderr.contains("allow_insecure_key = true"), "{stderr}");
        let (code, stderr) = sign_with("allow_insecure_key = true\n");
        assert_eq!(code, Some(0), "{what}, allowed: {stderr}");
        assert!(
            stderr.contains("warning") && stderr.contains(&fix),
            "{what}: {stderr}"
        );
    }
    // A group-writable directory: fine when the group is root's, refused otherwise.
    mode(&key, 0o400);
    mode(&keydir, 0o770);
    let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&keydir).unwrap());
    let (code, stderr) = sign_with("");
    if gid == 0 {
        assert_eq!(code, Some(0), "{stderr}");
    } else {
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(&format!("chmod g-w {dir_s}")), "{stderr}");
    }
    if is_root() {
        std::os::unix::fs::chown(&keydir, None, Some(if gid == 0 { 4242 } else { 0 })).unwrap();
        let (code, stderr) = sign_with("");
        assert_eq!(code, Some(if gid == 0 { 2 } else { 0 }), "{stderr}");
    }
    // Private again: accepted without a word.
    mode(&keydir, 0o700);
    let (code, stderr) = sign_with("");
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
}

#[test]
fn sign_json_is_one_document_and_says_what_failed() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = d.join("good");
    std::fs::write(&good, b"good").unwrap();
    std::os::unix::fs::symlink(&good, d.join("link")).unwrap();
    let out = sign(&[&good, &d.join("link")], &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    // stdout is the document alone; failures are in it, not on stderr.
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.stderr.is_empty(), "{:?}", text(&out));
    let link = d.join("link").to_str().unwrap().to_string();
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{doc}");
    let failed = files.iter().find(|f| f["path"] == link.as_str()).unwrap();
    assert_eq!(failed["outcome"], "failed");
    assert!(failed["detail"].as_str().unwrap().contains("symbolic link"));
    assert_eq!(failed.get("package"), None);
    let signed = files
        .iter()
        .find(|f| f["path"] == good.to_str().unwrap())
        .unwrap();
    assert_eq!(signed["outcome"], "signed");
    assert_eq!(signed.get("detail"), None);
    assert_eq!(doc["summary"]["signed"], 1);
    assert_eq!(doc["summary"]["failed"], 1);
    assert_eq!(doc["summary"]["not-started"], 0);
    assert_eq!(doc.get("packages"), None);
    assert!(evmctl_verifies(&good));
    let out = sign(&[&good], &["--json", "--dry-run"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["files"][0]["outcome"], "already-valid", "{doc}");
}

#[test]
fn log_level_from_flags_and_variable() {
    // An insecure key (world-readable) allowed by the settings: a warning.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::copy(&keys().key, &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let conf = dir.path().join("ima.toml");
    std::fs::write(
        &conf,
        format!(
            "key = {:?}\nallow_insecure_key = true\n",
            key.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = |flags: &[&str], log: Option<&str>| {
        let mut cmd = common::cmd();
        cmd.arg("--config").arg(&conf).args(flags);
        cmd.args(["sign", "--dry-run", "--files"])
            .arg(dir.path().join("ima.toml"));
        cmd.env_remove("PORTAGE_IMA_LOG");
        if let Some(level) = log {
            cmd.env("PORTAGE_IMA_LOG", level);
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stderr).into_owned()
    };
    let warned = |stderr: &str| stderr.contains("portage-ima: warning: ");
    assert!(warned(&run(&[], None)), "the default level shows warnings");
    assert!(!warned(&run(&["-qq"], None)));
    assert!(!warned(&run(&[], Some("error"))));
    assert!(
        warned(&run(&["-v"], Some("error"))),
        "-v raises the variable's level"
    );
}
