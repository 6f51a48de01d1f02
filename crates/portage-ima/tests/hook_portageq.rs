//! The postinst hook asks `portageq` for CONFIG_PROTECT (Portage does not
//! pass it to the ebuild environment). It runs as root, with a `PATH` the
//! build may have extended, so a `portageq` found first in `PATH` must never
//! run: only `${PORTAGE_PYTHON} ${PORTAGE_BIN_PATH}/portageq`, as Portage's
//! own portageq-wrapper does. Needs root (`security.ima`).

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{md5_hex, require_root, text};

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Setup {
    tmp: tempfile::TempDir,
    conf: PathBuf,
    root: PathBuf,
    /// A directory holding the planted `portageq`.
    planted: PathBuf,
    /// Created by the planted `portageq` when it runs.
    marker: PathBuf,
    /// A stand-in for Portage's bin directory, whose `portageq` answers
    /// that /opt/prot is config-protected.
    portage_bin: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let conf = common::settings(d, "config_files = \"skip\"\n");
    let root = d.join("root");
    let vdb = root.join("var/db/pkg/app-misc/foo-1");
    for dir in [root.join("usr/bin"), root.join("opt/prot"), vdb.clone()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(root.join("usr/bin/foo"), b"foo").unwrap();
    std::fs::write(root.join("opt/prot/conf"), b"conf").unwrap();
    std::fs::write(
        vdb.join("CONTENTS"),
        format!(
            "obj /usr/bin/foo {} 1700000000\nobj /opt/prot/conf {} 1700000000\n",
            md5_hex(b"foo"),
            md5_hex(b"conf")
        ),
    )
    .unwrap();
    let planted = d.join("planted");
    let marker = d.join("planted-ran");
    std::fs::create_dir(&planted).unwrap();
    executable(
        &planted.join("portageq"),
        &format!("#!/bin/sh\ntouch '{}'\necho /usr\necho\n", marker.display()),
    );
    let portage_bin = d.join("portage-bin");
    std::fs::create_dir(&portage_bin).unwrap();
    // Run by PORTAGE_PYTHON, so it need not be executable.
    std::fs::write(
        portage_bin.join("portageq"),
        "print('/opt/prot')\nprint('')\n",
    )
    .unwrap();
    Setup {
        tmp,
        conf,
        root,
        planted,
        marker,
        portage_bin,
    }
}

fn postinst(s: &Setup, portage: &[(&str, &Path)]) -> String {
    let path = format!("{}:/usr/bin:/bin", s.planted.display());
    let mut vars = vec![
        ("PATH", OsStr::new(&path)),
        ("EBUILD_PHASE", OsStr::new("postinst")),
        ("CATEGORY", OsStr::new("app-misc")),
        ("PF", OsStr::new("foo-1")),
        ("ROOT", s.root.as_os_str()),
        ("T", s.tmp.path().as_os_str()),
    ];
    vars.extend(portage.iter().map(|(k, v)| (*k, v.as_os_str())));
    let out = common::hook(&s.conf, &vars);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn postinst_runs_portageq_from_portage_bin_path_never_from_path() {
    if !require_root(module_path!()) {
        return;
    }
    let s = setup();
    let out = postinst(
        &s,
        &[
            ("PORTAGE_BIN_PATH", &s.portage_bin),
            ("PORTAGE_PYTHON", Path::new("/usr/bin/python3")),
        ],
    );
    assert!(!s.marker.exists(), "the portageq in PATH ran: {out}");
    // Portage's portageq answered: /opt/prot is protected, so skipped.
    assert!(out.contains("1 now") && out.contains("1 skipped"), "{out}");
}

#[test]
fn postinst_without_portage_bin_path_does_without_portageq() {
    if !require_root(module_path!()) {
        return;
    }
    let s = setup();
    let out = postinst(&s, &[]);
    assert!(!s.marker.exists(), "the portageq in PATH ran: {out}");
    // Only the default /etc is protected then.
    assert!(out.contains("2 now") && out.contains("0 skipped"), "{out}");
}
