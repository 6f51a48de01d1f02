//! The per-object rules shared by the hook and `sign`/`verify` of packages,
//! on a scratch root: MD5 against CONTENTS, `._cfg` siblings, symlinks.

mod common;

use std::path::Path;
use std::process::Command;

use ima_core::{default_provider, HashAlgo, ImaSigner, KeyMaterial, KeySet};
use portage_ima::engine::Outcome;
use portage_ima::objects::{sign_object, verify_object};
use portage_ima::rootfs::RootDir;

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

struct Fixture {
    dir: tempfile::TempDir,
    signer: ImaSigner,
    keys: KeySet,
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
        false,
    );
    assert_eq!(report.outcome, Outcome::Signed);
    let status = verify_object(&f.keys, &root, Path::new("/usr/bin/tool"), &md5(b"merged"));
    assert_eq!(status.status, "ok");

    // Changed after the merge: never signed, both MD5s named.
    f.write("usr/bin/tool", b"changed");
    let report = sign_object(
        &f.signer,
        &root,
        Path::new("/usr/bin/tool"),
        &md5(b"merged"),
        false,
    );
    let Outcome::Failed(reason) = report.outcome else {
        panic!("{report:?}")
    };
    assert!(reason.contains(&hex::encode(md5(b"merged"))), "{reason}");
    assert!(reason.contains(&hex::encode(md5(b"changed"))), "{reason}");
    let status = verify_object(&f.keys, &root, Path::new("/usr/bin/tool"), &md5(b"merged"));
    assert_eq!(status.status, "modified");

    // Missing.
    let status = verify_object(&f.keys, &root, Path::new("/usr/bin/gone"), &md5(b""));
    assert_eq!(status.status, "missing");
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
    let report = sign_object(&f.signer, &root, Path::new("/etc/app.conf"), &want, false);
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
    let status = verify_object(&f.keys, &root, Path::new("/etc/app.conf"), &want);
    assert_eq!(status.status, "ok");
    assert!(status.path.ends_with("._cfg0001_app.conf"));
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
        false,
    );
    let Outcome::Failed(reason) = report.outcome else {
        panic!("{report:?}")
    };
    assert!(reason.contains("symbolic link"), "{reason}");
    let file = std::fs::File::open(&outside).unwrap();
    assert!(ima_core::read_ima_xattr(&file).unwrap().is_none());
}
