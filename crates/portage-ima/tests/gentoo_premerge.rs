//! `PortageEnv::premerge_xattr` against what real Portage does.
//!
//! Real, unmodified `emerge` (PyPI Portage, driven by the project's
//! `tests/portage_playground`) merges a test package into a throwaway ROOT.
//! Its bashrc runs this test binary in `pre_pkg_preinst`: the child reads the
//! genuine ebuild environment with `PortageEnv::from_env`, prints its
//! prediction, and sets a `security.ima` digest on every file in `${D}`.
//! After the merge the live files must carry `security.ima` exactly when the
//! prediction was `Kept`. Three setups: `PORTAGE_TMPDIR` on the ROOT's
//! filesystem (rename), on tmpfs `/dev/shm` (copy, xattr dropped), and on
//! tmpfs with `FEATURES=xattr` and `security.ima` taken out of
//! `PORTAGE_XATTR_EXCLUDE` (copy, xattr kept); plus a prefix install. The
//! child also prints `vdb_entry()`, which must be where Portage wrote the
//! package's CONTENTS.
//!
//! Skipped (with a message) when the playground or its venv is missing;
//! under CI (`CI` set; or `PORTAGE_IMA_REQUIRE_PORTAGE=1`) that is a failure.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use portage_ima::gentoo::contents::Contents;
use portage_ima::gentoo::env::{PortageEnv, PremergeXattr};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn playground_python() -> Option<PathBuf> {
    let py = repo_root().join("tests/.cache/venv/bin/python");
    let harness = repo_root().join("tests/portage_playground/playground.py");
    if py.is_file() && harness.is_file() && Path::new("/dev/shm").is_dir() {
        return Some(py);
    }
    if std::env::var_os("PORTAGE_IMA_REQUIRE_PORTAGE").is_some() {
        panic!("no Portage playground (tests/.cache/venv, tests/portage_playground)");
    }
    common::require(
        false,
        "the Portage playground venv (python3 tests/portage_playground/venv.py)",
        "real emerge",
    );
    None
}

/// Runs one emerge; returns the child's prediction line and the ROOT.
fn emerge(
    base: &Path,
    layout: &str,
    tmpdir: &Path,
    extra_env: &[(&str, &str)],
) -> (String, PathBuf, PathBuf) {
    let py = playground_python().unwrap();
    let out_file = base.join("prediction.txt");
    // A private copy: others building in the same target directory may
    // replace the test binary while Portage is about to run it.
    let exe = base.join("premerge-child");
    fs::copy("/proc/self/exe", &exe).unwrap();
    let bashrc = format!(
        "pre_pkg_preinst() {{\n  PORTAGE_IMA_TEST_PREMERGE=1 '{}' --exact premerge_child \
         --ignored --nocapture --test-threads=1 >> '{}' 2>&1\n}}\n",
        exe.display(),
        out_file.display()
    );
    let mut env = format!("{{'PORTAGE_TMPDIR': '{}'", tmpdir.display());
    for (k, v) in extra_env {
        env.push_str(&format!(", '{k}': '{v}'"));
    }
    env.push('}');
    let script = format!(
        r#"
import sys
sys.path.insert(0, {tests:?})
from portage_playground import Playground
pg = Playground({base:?}, layout={layout:?})
pg.write_bashrc(snippet=False, extra={bashrc:?})
atom = pg.add_ebuild("xat", "1")
r = pg.emerge(atom, env={env})
open({log:?}, "w").write(r.output + "\n" + r.log_text)
if r.returncode != 0:
    print(r.output[-4000:])
    sys.exit(1)
print(pg.eroot)
print(pg.root)
"#,
        tests = repo_root().join("tests").display().to_string(),
        base = base.join("pg").display().to_string(),
        log = base.join("emerge.log").display().to_string(),
    );
    fs::create_dir_all(tmpdir).unwrap();
    let out = Command::new(py).args(["-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "emerge failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut last = stdout.lines().rev();
    let root = PathBuf::from(last.next().unwrap().trim());
    let eroot = PathBuf::from(last.next().unwrap().trim());
    let child = fs::read_to_string(&out_file).unwrap_or_default();
    let log = fs::read_to_string(base.join("emerge.log")).unwrap_or_default();
    let start = (log.len().saturating_sub(3000)..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    let log_tail = &log[start..];
    let prediction = child
        .lines()
        .find_map(|l| l.find("PREDICT ").map(|i| &l[i..]))
        .unwrap_or_else(|| {
            panic!("the preinst child printed no prediction:\n{child}\nemerge:\n{log_tail}")
        })
        .to_string();
    assert!(child.contains("SIGNED-D "), "{child}");
    // The child's idea of the vdb entry is where Portage put it.
    let vdb = child
        .lines()
        .find_map(|l| l.find("VDB ").map(|i| &l[i + 4..]))
        .unwrap_or_else(|| panic!("no VDB line:\n{child}"));
    assert_eq!(Path::new(vdb), eroot.join("var/db/pkg/test-ima/xat-1"));
    assert!(Path::new(vdb).join("CONTENTS").is_file(), "{vdb}");
    (prediction, root, eroot)
}

/// Does every regular file the package installed carry security.ima?
fn live_xattrs(root: &Path, eroot: &Path) -> Vec<(PathBuf, bool)> {
    let contents = Contents::read(&eroot.join("var/db/pkg/test-ima/xat-1/CONTENTS")).unwrap();
    contents
        .objects()
        .map(|(p, _)| {
            let live = root.join(p.strip_prefix("/").unwrap());
            let mut buf = [0u8; 64];
            let has = rustix::fs::lgetxattr(&live, "security.ima", &mut buf[..]).is_ok();
            (p.to_path_buf(), has)
        })
        .collect()
}

fn check(
    name: &str,
    layout: &str,
    tmpdir_on_shm: bool,
    extra_env: &[(&str, &str)],
    want_kept: bool,
) {
    if playground_python().is_none() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let tmpdir = if tmpdir_on_shm {
        shm.path().join("portage-tmp")
    } else {
        base.path().join("portage-tmp")
    };
    let (prediction, root, eroot) = emerge(base.path(), layout, &tmpdir, extra_env);
    let on_shm = fs::metadata(shm.path()).unwrap().dev() != fs::metadata(&root).unwrap().dev();
    if tmpdir_on_shm && !common::require(on_shm, "/dev/shm apart from the ROOT's filesystem", name)
    {
        return;
    }
    let predicted_kept = prediction.starts_with("PREDICT Kept");
    let live = live_xattrs(&root, &eroot);
    assert!(!live.is_empty());
    for (path, has) in &live {
        assert_eq!(
            *has,
            predicted_kept,
            "{name}: {} {} security.ima after the merge, but the prediction was: {prediction}",
            path.display(),
            if *has { "has" } else { "lacks" }
        );
    }
    assert_eq!(predicted_kept, want_kept, "{name}: {prediction}");
}

#[test]
fn same_filesystem_rename_keeps_security_ima() {
    check("same fs", "root", false, &[], true);
}

#[test]
fn tmpfs_copy_drops_security_ima() {
    check("tmpfs", "root", true, &[], false);
}

#[test]
fn tmpfs_with_features_xattr_keeps_security_ima() {
    check(
        "tmpfs+xattr",
        "root",
        true,
        &[
            ("FEATURES", "xattr"),
            (
                "PORTAGE_XATTR_EXCLUDE",
                "btrfs.* security.evm security.selinux",
            ),
        ],
        true,
    );
}

/// Prefix layout: ROOT empty, EROOT = EPREFIX, D's paths carry the prefix.
#[test]
fn prefix_install_same_filesystem_keeps_security_ima() {
    check("prefix", "prefix", false, &[], true);
}

/// Runs inside Portage's preinst phase (see the module docs).
#[test]
#[ignore = "helper process run by Portage from the test bashrc"]
fn premerge_child() {
    assert!(std::env::var_os("PORTAGE_IMA_TEST_PREMERGE").is_some());
    let env = PortageEnv::from_environment(&portage_ima::gentoo::vars::Vars::of_process())
        .expect("Portage's environment");
    assert_eq!(env.phase, "preinst");
    println!("VDB {}", env.vdb_entry().display());
    match env.premerge_xattr() {
        PremergeXattr::Kept { reason } => println!("PREDICT Kept: {reason}"),
        PremergeXattr::Lost { reason, hint } => println!("PREDICT Lost: {reason}; {hint}"),
    }
    // An ima-ng sha256 digest value: 0x04, algo 4, 32 bytes.
    let mut value = vec![0x04, 0x04];
    value.extend([0xab; 32]);
    let d = env.d.expect("D in preinst");
    let mut n = 0;
    let mut todo = vec![d];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                rustix::fs::setxattr(
                    e.path(),
                    "security.ima",
                    &value,
                    rustix::fs::XattrFlags::empty(),
                )
                .unwrap_or_else(|err| panic!("setxattr {}: {err}", e.path().display()));
                n += 1;
            }
        }
    }
    println!("SIGNED-D {n}");
}
