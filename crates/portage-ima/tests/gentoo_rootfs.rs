//! RootDir against real directory trees with symlink tricks, for both the
//! `openat2` resolver and the fallback walk, plus `Auto` under a seccomp
//! filter that makes `openat2` answer `ENOSYS` like an old kernel (or
//! `EPERM` like some container profiles).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use portage_ima::fs::rootfs::{cfg_siblings, Resolver, RootDir};

const RESOLVERS: [Resolver; 3] = [Resolver::Openat2, Resolver::Walk, Resolver::Auto];

/// A tempdir with `root/` (the ROOT) and `outside/` (the host, which must
/// stay unreachable), populated like a small Gentoo tree.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("var/lib")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(root.join("usr/lib/libfoo.so"), "inside lib").unwrap();
    fs::write(root.join("usr/bin/foo"), "inside foo").unwrap();
    fs::write(root.join("secret"), "inside secret").unwrap();
    fs::write(outside.join("secret"), "HOST SECRET").unwrap();
    fs::write(outside.join("libfoo.so"), "HOST LIB").unwrap();
    // The usual merged-usr link, absolute as on a real system.
    symlink("/usr/lib", root.join("lib")).unwrap();
    Tree {
        _tmp: tmp,
        root,
        outside,
    }
}

fn read(rd: &RootDir, p: &str) -> io::Result<String> {
    let mut s = String::new();
    rd.open_file(Path::new(p))?.read_to_string(&mut s)?;
    Ok(s)
}

fn errno(r: io::Result<impl std::fmt::Debug>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an OS error: {e}")),
    }
}

#[test]
fn plain_file_and_absolute_symlink_in_directory_component() {
    let t = tree();
    for res in RESOLVERS {
        let rd = RootDir::open_with(&t.root, res).unwrap();
        assert_eq!(read(&rd, "/usr/bin/foo").unwrap(), "inside foo", "{res:?}");
        // /lib -> /usr/lib resolves to ROOT/usr/lib, not the host's /usr/lib.
        assert_eq!(
            read(&rd, "/lib/libfoo.so").unwrap(),
            "inside lib",
            "{res:?}"
        );
    }
}

#[test]
fn absolute_symlink_to_a_host_path_stays_inside() {
    let t = tree();
    // ROOT/esc -> /abs/path/of/outside: on the host that holds the secret.
    symlink(&t.outside, t.root.join("esc")).unwrap();
    assert_eq!(
        fs::read_to_string(t.root.join("esc/secret")).unwrap(),
        "HOST SECRET"
    );
    for res in RESOLVERS {
        let rd = RootDir::open_with(&t.root, res).unwrap();
        assert_eq!(errno(read(&rd, "/esc/secret")), libc::ENOENT, "{res:?}");
    }
}

#[test]
fn dotdot_cannot_climb_above_root() {
    let t = tree();
    symlink("../../../../../..", t.root.join("usr/up")).unwrap();
    symlink("../outside/secret", t.root.join("usr/bin/rel")).unwrap();
    fs::create_dir(t.root.join("usr/bin/d")).unwrap();
    symlink("../../../../outside", t.root.join("usr/bin/d/out")).unwrap();
    for res in RESOLVERS {
        let rd = RootDir::open_with(&t.root, res).unwrap();
        // `..` at the root stays at the root: this is ROOT/secret.
        assert_eq!(read(&rd, "/../secret").unwrap(), "inside secret", "{res:?}");
        assert_eq!(
            read(&rd, "/usr/../../../secret").unwrap(),
            "inside secret",
            "{res:?}"
        );
        assert_eq!(read(&rd, "/usr/up/secret").unwrap(), "inside secret");
        // ../outside from inside the root is ROOT/outside: absent.
        assert_eq!(errno(read(&rd, "/usr/up/outside/secret")), libc::ENOENT);
        assert_eq!(
            errno(read(&rd, "/usr/bin/d/out/secret")),
            libc::ENOENT,
            "{res:?}"
        );
        // A final-component symlink is never followed, whatever it points at.
        assert_eq!(errno(read(&rd, "/usr/bin/rel")), libc::ELOOP, "{res:?}");
    }
}

#[test]
fn final_symlink_is_refused() {
    let t = tree();
    symlink("foo", t.root.join("usr/bin/foo-link")).unwrap();
    symlink("/usr/lib", t.root.join("usr/lib64")).unwrap();
    for res in RESOLVERS {
        let rd = RootDir::open_with(&t.root, res).unwrap();
        assert_eq!(
            errno(rd.open_file(Path::new("/usr/bin/foo-link"))),
            libc::ELOOP
        );
        // Through a symlinked directory the file itself opens...
        assert_eq!(read(&rd, "/usr/lib64/libfoo.so").unwrap(), "inside lib");
        // ...but the directory symlink itself, as the final component, does
        // not: O_DIRECTORY|O_NOFOLLOW on a symlink is ENOTDIR (kernel rule).
        assert_eq!(errno(rd.open_dir(Path::new("/usr/lib64"))), libc::ENOTDIR);
        assert_eq!(errno(rd.open_dir(Path::new("/lib"))), libc::ENOTDIR);
        assert_eq!(errno(rd.open_file(Path::new("/lib"))), libc::ELOOP);
    }
}

#[test]
fn fifo_opens_without_blocking() {
    let t = tree();
    let fifo = t.root.join("var/lib/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for res in RESOLVERS {
        let root = t.root.clone();
        let (tx, rx) = mpsc::channel();
        // Without O_NONBLOCK this open would wait for a writer forever.
        std::thread::spawn(move || {
            let rd = RootDir::open_with(&root, res).unwrap();
            let f = rd.open_file(Path::new("/var/lib/fifo"));
            tx.send(f.map(|f| f.metadata().unwrap().file_type().is_fifo()))
                .unwrap();
        });
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{res:?}: opening a FIFO blocked"));
        assert!(got.unwrap(), "{res:?}");
    }
}

#[test]
fn symlink_loops_and_long_chains() {
    let t = tree();
    symlink("b", t.root.join("a")).unwrap();
    symlink("a", t.root.join("b")).unwrap();
    // A chain of 30 directory symlinks is fine, 50 is too many (limit 40).
    for (name, n) in [("short", 30), ("long", 50)] {
        let d = t.root.join(name);
        fs::create_dir(&d).unwrap();
        fs::write(d.join("end"), name).unwrap();
        for i in 0..n {
            let target = if i == 0 {
                format!("/{name}")
            } else {
                format!("{name}{}", i - 1)
            };
            symlink(target, t.root.join(format!("{name}{i}"))).unwrap();
        }
    }
    for res in RESOLVERS {
        let rd = RootDir::open_with(&t.root, res).unwrap();
        assert_eq!(errno(read(&rd, "/a/x")), libc::ELOOP, "{res:?}");
        assert_eq!(read(&rd, "/short29/end").unwrap(), "short", "{res:?}");
        assert_eq!(errno(read(&rd, "/long49/end")), libc::ELOOP, "{res:?}");
    }
}

#[test]
fn types_are_checked() {
    let t = tree();
    for res in RESOLVERS {
        let rd = RootDir::open_with(&t.root, res).unwrap();
        assert_eq!(errno(rd.open_dir(Path::new("/usr/bin/foo"))), libc::ENOTDIR);
        assert_eq!(errno(read(&rd, "/usr/bin/foo/x")), libc::ENOTDIR);
        assert_eq!(errno(read(&rd, "/usr/bin/missing")), libc::ENOENT);
        assert!(rd.open_dir(Path::new("/usr/lib")).is_ok());
        assert!(rd.open_dir(Path::new("/")).is_ok());
        // A trailing slash names a directory.
        assert_eq!(
            errno(rd.open_file(Path::new("/usr/bin/foo/"))),
            libc::ENOTDIR
        );
        assert_eq!(
            errno(rd.open_file(Path::new("/usr/bin/foo/."))),
            libc::ENOTDIR
        );
        assert!(rd.open_file(Path::new("/usr/bin/")).is_ok(), "{res:?}");
        // `/usr/..` is the root directory itself.
        let d = rd.open_dir(Path::new("/usr/..")).unwrap();
        let (a, b) = (d.metadata().unwrap(), fs::metadata(&t.root).unwrap());
        use std::os::unix::fs::MetadataExt;
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{res:?}");
    }
}

#[test]
fn magic_links_are_refused() {
    // With the host as ROOT, /proc/self/root is a magic link.
    for res in RESOLVERS {
        let rd = RootDir::open_with(Path::new("/"), res).unwrap();
        assert_eq!(
            errno(rd.open_file(Path::new("/proc/self/root/etc/passwd"))),
            libc::ELOOP,
            "{res:?}"
        );
    }
}

#[test]
fn host_root_and_non_utf8_names() {
    let t = tree();
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9 with space");
    fs::write(t.root.join("etc").join(name), "latin1").unwrap();
    let host_path = t.root.join("etc").join(name);
    for res in RESOLVERS {
        let host = RootDir::open_with(Path::new(""), res).unwrap();
        let mut s = String::new();
        host.open_file(&host_path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "latin1");
        let rd = RootDir::open_with(&t.root, res).unwrap();
        assert!(rd.open_file(&Path::new("/etc").join(name)).is_ok());
    }
}

#[test]
fn dir_names_and_cfg_siblings() {
    let t = tree();
    for n in [
        "foo.conf",
        "._cfg0000_foo.conf",
        "._cfg0001_foo.conf",
        "._cfg0000_other",
    ] {
        fs::write(t.root.join("etc").join(n), n).unwrap();
    }
    symlink("/usr/lib", t.root.join("etc/lnk")).unwrap();
    for res in RESOLVERS {
        let rd = RootDir::open_with(&t.root, res).unwrap();
        let mut names = rd.read_dir_names(Path::new("/etc")).unwrap();
        names.sort();
        let want: Vec<OsString> = [
            "._cfg0000_foo.conf",
            "._cfg0000_other",
            "._cfg0001_foo.conf",
            "foo.conf",
            "lnk",
        ]
        .map(OsString::from)
        .into();
        assert_eq!(names, want);
        assert_eq!(
            cfg_siblings(&names, "foo.conf".as_ref()),
            ["._cfg0000_foo.conf", "._cfg0001_foo.conf"].map(OsString::from)
        );
        // The final component is not followed; `lib/.` goes through the link.
        let lib = rd.read_dir_names(Path::new("/lib")).unwrap_err();
        assert_eq!(lib.raw_os_error(), Some(libc::ENOTDIR));
        for through in ["/lib/.", "/lib/", "/./lib/./"] {
            let libs = rd.read_dir_names(Path::new(through)).unwrap();
            assert_eq!(libs, vec![OsString::from("libfoo.so")], "{res:?} {through}");
        }
    }
}

/// Re-runs this test binary with only `denied_child` selected and a
/// seccomp filter installed that makes openat2 fail with `errno`.
fn run_denied_child(errno_name: &str) {
    let t = tree();
    symlink(&t.outside, t.root.join("esc")).unwrap();
    let out = std::process::Command::new("/proc/self/exe")
        .args(["--exact", "denied_child", "--ignored", "--nocapture"])
        .env("PORTAGE_IMA_TEST_DENIED_ROOT", &t.root)
        .env("PORTAGE_IMA_TEST_DENIED_ERRNO", errno_name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("DENIED-CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A kernel older than 5.6: `Resolver::Auto` must fall back to the walk.
#[test]
fn auto_falls_back_when_openat2_is_missing() {
    run_denied_child("ENOSYS");
}

/// A container whose seccomp profile answers unknown syscalls with EPERM.
#[test]
fn auto_falls_back_when_seccomp_denies_openat2() {
    run_denied_child("EPERM");
}

#[test]
#[ignore = "helper process of auto_falls_back_when_*"]
fn denied_child() {
    let root = std::env::var_os("PORTAGE_IMA_TEST_DENIED_ROOT").expect("run by auto_falls_back_*");
    let code = match std::env::var("PORTAGE_IMA_TEST_DENIED_ERRNO").as_deref() {
        Ok("ENOSYS") => libc::ENOSYS,
        Ok("EPERM") => libc::EPERM,
        other => panic!("unexpected errno {other:?}"),
    };
    deny_openat2_with(code);
    let root = PathBuf::from(root);
    // The filter works: openat2 itself now fails that way.
    let only = RootDir::open_with(&root, Resolver::Openat2).unwrap();
    assert_eq!(errno(only.open_file(Path::new("/secret"))), code);
    let rd = RootDir::open_with(&root, Resolver::Auto).unwrap();
    assert_eq!(read(&rd, "/lib/libfoo.so").unwrap(), "inside lib");
    assert_eq!(read(&rd, "/../secret").unwrap(), "inside secret");
    assert_eq!(errno(read(&rd, "/esc/secret")), libc::ENOENT);
    symlink("foo", root.join("usr/bin/l")).unwrap();
    assert_eq!(errno(read(&rd, "/usr/bin/l")), libc::ELOOP);
    println!("DENIED-CHILD-OK");
}

/// Installs a classic-BPF seccomp filter: openat2 -> `code`, all else allowed.
fn deny_openat2_with(code: i32) {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        insn(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        insn(JEQ_K, 1, 0, AUDIT_ARCH),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        insn(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        insn(JEQ_K, 0, 1, libc::SYS_openat2 as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | code as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: plain syscalls with a valid, live filter program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", io::Error::last_os_error());
    }
}
