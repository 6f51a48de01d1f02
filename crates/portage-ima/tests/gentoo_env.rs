//! `PortageEnv::premerge_xattr` on real filesystems (`/dev/shm` tmpfs
//! against the disk, and a tmpfs mounted over `ROOT/usr/local` in a private
//! mount namespace), and the `PORTAGE_XATTR_EXCLUDE` glob against Python's
//! own `fnmatch`, which is what Portage uses.

mod common;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use portage_ima::gentoo::env::{PortageEnv, PremergeXattr};
use portage_ima::gentoo::fnmatch::fnmatch;

fn env(root: &Path, d: &Path, extra: &[(&str, &str)]) -> PortageEnv {
    let mut vars: HashMap<String, String> = [
        ("EBUILD_PHASE", "preinst"),
        ("CATEGORY", "app-misc"),
        ("PF", "foo-1"),
        ("ROOT", root.to_str().unwrap()),
        ("EPREFIX", ""),
        ("D", d.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    PortageEnv::from_vars(|k| vars.get(k).cloned()).unwrap()
}

fn image(d: &Path, files: &[&str]) {
    for f in files {
        let p = d.join(f.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, f).unwrap();
    }
}

fn kept(p: &PremergeXattr) -> bool {
    matches!(p, PremergeXattr::Kept { .. })
}

#[test]
fn same_filesystem_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, d) = (tmp.path().join("root"), tmp.path().join("image"));
    fs::create_dir_all(root.join("usr")).unwrap();
    image(
        &d,
        &[
            "/usr/bin/foo",
            "/usr/share/foo/new/deep/file",
            "/etc/foo.conf",
        ],
    );
    let p = env(&root, &d, &[]).premerge_xattr();
    assert!(kept(&p), "{p:?}");
    // An empty image has nothing to lose.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(kept(&env(&root, &empty, &[]).premerge_xattr()));
}

#[test]
fn tmpfs_image_needs_features_xattr() {
    let shm = Path::new("/dev/shm");
    let tmp = tempfile::tempdir().unwrap();
    if !shm.is_dir() || fs::metadata(shm).unwrap().dev() == fs::metadata(tmp.path()).unwrap().dev()
    {
        common::require(false, "/dev/shm on a separate filesystem", "tmpfs image");
        return;
    }
    let shm_tmp = tempfile::tempdir_in(shm).unwrap();
    let d = shm_tmp.path().join("image");
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    image(&d, &["/usr/bin/foo"]);

    let p = env(&root, &d, &[("FEATURES", "sandbox")]).premerge_xattr();
    let PremergeXattr::Lost { reason, hint } = &p else {
        panic!("{p:?}")
    };
    assert!(
        reason.contains("usr/bin/foo is on another filesystem than"),
        "{reason}"
    );
    assert!(
        reason.contains("FEATURES lacks xattr and PORTAGE_XATTR_EXCLUDE has 'security.ima'"),
        "{reason}"
    );
    assert!(!reason.contains('\n'));
    assert!(hint.contains("add xattr to FEATURES"), "{hint}");
    assert!(
        hint.contains("remove 'security.ima' from PORTAGE_XATTR_EXCLUDE"),
        "{hint}"
    );
    assert!(hint.contains("PORTAGE_TMPDIR"), "{hint}");

    // FEATURES=xattr alone is not enough: the default exclude list has it.
    let p = env(&root, &d, &[("FEATURES", "xattr")]).premerge_xattr();
    assert!(!kept(&p), "{p:?}");
    let p = env(
        &root,
        &d,
        &[
            ("FEATURES", "xattr"),
            ("PORTAGE_XATTR_EXCLUDE", "btrfs.* security.*"),
        ],
    )
    .premerge_xattr();
    let PremergeXattr::Lost { reason, hint } = &p else {
        panic!("{p:?}")
    };
    assert!(reason.contains("'security.*'"), "{reason}");
    assert!(hint.contains("remove 'security.*'"), "{hint}");
    assert!(!hint.contains("FEATURES"), "{hint}");

    // With xattr and security.ima removed from the list, the copy keeps it.
    let p = env(
        &root,
        &d,
        &[
            ("FEATURES", "xattr"),
            (
                "PORTAGE_XATTR_EXCLUDE",
                "btrfs.* security.evm security.selinux",
            ),
        ],
    )
    .premerge_xattr();
    assert!(kept(&p), "{p:?}");
    // ...unless a later -xattr cancels the feature.
    let p = env(
        &root,
        &d,
        &[("FEATURES", "xattr -xattr"), ("PORTAGE_XATTR_EXCLUDE", "")],
    )
    .premerge_xattr();
    let PremergeXattr::Lost { reason, hint } = &p else {
        panic!("{p:?}")
    };
    assert!(reason.ends_with("(FEATURES lacks xattr)"), "{reason}");
    assert!(
        hint.starts_with("In make.conf, add xattr to FEATURES, or"),
        "{hint}"
    );
}

/// Runs `mount_child` in a fresh process, where it may unshare the mount
/// namespace without touching anyone else's view of the filesystem.
#[test]
fn nested_mount_under_root_is_noticed() {
    let out = Command::new("/proc/self/exe")
        .args([
            "--exact",
            "mount_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PORTAGE_IMA_TEST_MOUNT_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.contains("MOUNT-CHILD-SKIP") {
        common::require(
            false,
            "mounts in a private namespace (root)",
            "nested mount",
        );
        return;
    }
    assert!(
        out.status.success() && stdout.contains("MOUNT-CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "helper process of nested_mount_under_root_is_noticed"]
fn mount_child() {
    assert!(std::env::var_os("PORTAGE_IMA_TEST_MOUNT_CHILD").is_some());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let local = root.join("usr/local");
    fs::create_dir_all(&local).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    symlink("/usr/local", root.join("opt")).unwrap();
    symlink("/usr", root.join("srv")).unwrap();
    // SAFETY: plain syscalls on valid C strings; this process is a throwaway.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            println!("MOUNT-CHILD-SKIP");
            return;
        }
        let cs = |s: &str| CString::new(s).unwrap();
        let (none, slash, tmpfs) = (cs("none"), cs("/"), cs("tmpfs"));
        assert_eq!(
            libc::mount(
                none.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0
        );
        let target = cs(local.to_str().unwrap());
        let rc = libc::mount(
            none.as_ptr(),
            target.as_ptr(),
            tmpfs.as_ptr(),
            0,
            std::ptr::null(),
        );
        if rc != 0 {
            println!("MOUNT-CHILD-SKIP");
            return;
        }
    }
    assert_ne!(
        fs::metadata(&local).unwrap().dev(),
        fs::metadata(&root).unwrap().dev()
    );
    let case = |name: &str, files: &[&str]| -> PremergeXattr {
        let d = tmp.path().join(name);
        image(&d, files);
        env(&root, &d, &[]).premerge_xattr()
    };
    // Files under /usr/bin stay on the disk: rename.
    assert!(kept(&case("a", &["/usr/bin/foo"])));
    // A symlink to a directory on the same filesystem: still rename.
    assert!(kept(&case("b", &["/srv/bin/foo"])));
    // /usr/local is a separate mount: a top-level-only check would miss it.
    let p = case("c", &["/usr/bin/foo", "/usr/local/bin/foo"]);
    let PremergeXattr::Lost { reason, .. } = &p else {
        panic!("{p:?}")
    };
    assert!(
        reason.contains("c/usr/local/bin/foo is on another filesystem"),
        "{reason}"
    );
    // A directory that does not exist yet: its nearest ancestor counts.
    assert!(!kept(&case("d", &["/usr/local/share/new/dir/file"])));
    // Merging through ROOT/opt -> /usr/local lands on the tmpfs too.
    assert!(!kept(&case("e", &["/opt/tool"])));
    println!("MOUNT-CHILD-OK");
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn string(&mut self, alphabet: &[char], max: u64) -> String {
        (0..self.next() % (max + 1))
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
            .collect()
    }
}

#[test]
fn fnmatch_agrees_with_python() {
    let python = ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import fnmatch"])
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = python else {
        common::require(false, "python3 to compare fnmatch with", "fnmatch");
        return;
    };
    let mut r = Rng(0x1234_5678_9abc_def1);
    let pat_chars = ['a', 'b', '.', '*', '?', '[', ']', '!', '-', 'z'];
    let name_chars = ['a', 'b', '.', '[', ']', '!', '-', 'z'];
    let mut pairs: Vec<(String, String)> = (0..20000)
        .map(|_| (r.string(&pat_chars, 7), r.string(&name_chars, 6)))
        .collect();
    for p in [
        "security.*",
        "security.ima",
        "user.*",
        "*",
        "[!s]*",
        "s?curity.i[a-m]a",
    ] {
        pairs.push((p.to_string(), "security.ima".to_string()));
    }
    let script = r#"
import sys, fnmatch
for line in sys.stdin:
    p, n = line.rstrip("\n").split("\t")
    print(int(fnmatch.fnmatchcase(n, p)))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = pairs.iter().map(|(p, n)| format!("{p}\t{n}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    let w = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    assert!(out.status.success());
    let want: Vec<bool> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l == "1")
        .collect();
    assert_eq!(want.len(), pairs.len());
    let mut matched = 0;
    for ((p, n), want) in pairs.iter().zip(want) {
        assert_eq!(fnmatch(p, n), want, "fnmatch({p:?}, {n:?})");
        matched += want as usize;
    }
    assert!(
        matched > 500,
        "only {matched} matches: the generator is too sparse"
    );
}

/// `from_env` on a real process environment: the test binary runs itself
/// with a controlled environment (changing this process's environment
/// would race with the other tests).
fn from_env_in_child(vars: &[(&str, &std::ffi::OsStr)]) -> String {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(["--exact", "from_env_child", "--ignored", "--nocapture"])
        .env_clear()
        .env("PORTAGE_IMA_TEST_FROM_ENV", "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("FROM-ENV: "))
        .unwrap_or_else(|| panic!("no result in {stdout}"))
        .to_string()
}

#[test]
fn from_env_reads_the_process_environment() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let base: Vec<(&str, &OsStr)> = vec![
        ("EBUILD_PHASE", OsStr::new("postinst")),
        ("CATEGORY", OsStr::new("app-misc")),
        ("PF", OsStr::new("foo-1")),
        ("ROOT", OsStr::new("")),
        ("EPREFIX", OsStr::new("/gentoo")),
    ];
    assert_eq!(
        from_env_in_child(&base),
        "ok /gentoo/var/db/pkg/app-misc/foo-1"
    );
    assert_eq!(
        from_env_in_child(&[]),
        "err EBUILD_PHASE, CATEGORY, PF, ROOT are not set: this must run from \
         Portage's bashrc (/etc/portage/bashrc, during an emerge), which sets them"
    );
    let mut bad = base.clone();
    bad.push(("D", OsStr::from_bytes(b"/var/tmp/caf\xe9")));
    assert_eq!(
        from_env_in_child(&bad),
        "err D='/var/tmp/caf\u{fffd}' is not valid UTF-8"
    );
}

#[test]
#[ignore = "helper process of from_env_reads_the_process_environment"]
fn from_env_child() {
    assert!(std::env::var_os("PORTAGE_IMA_TEST_FROM_ENV").is_some());
    match PortageEnv::from_environment(&portage_ima::gentoo::vars::Vars::of_process()) {
        Ok(env) => println!("FROM-ENV: ok {}", env.vdb_entry().display()),
        Err(e) => println!("FROM-ENV: err {e}"),
    }
}
