//! The hook's premerge list in `${T}`, a directory the unprivileged
//! `portage` user owns: root must not write through (or read from) a
//! symlink planted there. Needs root (`security.ima`, and the hook's
//! real situation).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::require_root;

const LIST: &str = "portage-ima-premerge.list";

struct Build {
    _tmp: tempfile::TempDir,
    conf: PathBuf,
    tmpdir: PathBuf,
    d: PathBuf,
    t: PathBuf,
    victim: PathBuf,
}

/// PORTAGE_TMPDIR with an image `${D}` holding one file, an empty `${T}`,
/// and a root-owned file outside that must never change.
fn build() -> Build {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let conf = common::settings(d, "premerge = \"always\"\n");
    let tmpdir = d.join("tmpdir");
    let build = tmpdir.join("portage/app-misc/foo-1");
    let image = build.join("image");
    let t = build.join("temp");
    std::fs::create_dir_all(image.join("usr/bin")).unwrap();
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(image.join("usr/bin/foo"), b"foo").unwrap();
    let victim = d.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    Build {
        _tmp: tmp,
        conf,
        tmpdir,
        d: image,
        t,
        victim,
    }
}

fn hook(b: &Build, phase: &str, t: &Path) -> Output {
    common::hook(
        &b.conf,
        &[
            ("EBUILD_PHASE", OsStr::new(phase)),
            ("CATEGORY", OsStr::new("app-misc")),
            ("PF", OsStr::new("foo-1")),
            ("ROOT", OsStr::new("/")),
            ("D", b.d.as_os_str()),
            ("T", t.as_os_str()),
            ("PORTAGE_TMPDIR", b.tmpdir.as_os_str()),
        ],
    )
}

#[test]
fn a_symlink_planted_at_the_list_name_is_replaced_not_followed() {
    if !require_root(module_path!()) {
        return;
    }
    let b = build();
    std::os::unix::fs::symlink(&b.victim, b.t.join(LIST)).unwrap();
    let out = hook(&b, "preinst", &b.t);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signed 1 file before the merge"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&b.victim).unwrap(), b"precious\n");
    let list = b.t.join(LIST);
    assert!(std::fs::symlink_metadata(&list).unwrap().is_file());
    assert_eq!(std::fs::read(&list).unwrap(), b"/usr/bin/foo\n");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&b.t).unwrap().count(), 1);
}

#[test]
fn a_symlinked_build_directory_is_not_followed() {
    if !require_root(module_path!()) {
        return;
    }
    let b = build();
    // `temp` swapped for a symlink to a directory of root's.
    let elsewhere = b.victim.with_file_name("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let t = b.t.with_file_name("temp-link");
    std::os::unix::fs::symlink(&elsewhere, &t).unwrap();
    let out = hook(&b, "preinst", &t);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}
