//! Whether `security.ima` set in `${D}` survives the merge, when
//! PORTAGE_TMPDIR is a bind mount of ROOT's own filesystem: same `st_dev`,
//! yet `rename()` between the two mounts fails with `EXDEV`, Portage copies
//! and drops the xattr. The hook (`PortageEnv::premerge_xattr`) and `doctor`
//! must both see it, by mount and not by device. The mounts are made in a
//! private mount namespace of a child process (needs root).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use portage_ima::gentoo::env::{PortageEnv, PremergeXattr};

#[test]
fn a_bind_mounted_tmpdir_is_another_mount_for_hook_and_doctor() {
    let out = Command::new("/proc/self/exe")
        .args(["--exact", "bind_mount_child", "--ignored", "--nocapture"])
        .env("PORTAGE_IMA_TEST_MOUNT_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.contains("MOUNT-CHILD-SKIP") {
        eprintln!("SKIPPED: cannot mount in a private namespace here (needs root)");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("MOUNT-CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// `mount --bind from to` (flags = MS_BIND) or another mount(2) call.
fn mount(from: &str, to: &str, flags: libc::c_ulong) -> bool {
    let (from, to) = (cs(from), cs(to));
    // SAFETY: plain syscall on valid C strings; this process is a throwaway.
    unsafe {
        libc::mount(
            from.as_ptr(),
            to.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) == 0
    }
}

#[test]
#[ignore = "helper process of a_bind_mounted_tmpdir_is_another_mount_for_hook_and_doctor"]
fn bind_mount_child() {
    assert!(std::env::var_os("PORTAGE_IMA_TEST_MOUNT_CHILD").is_some());
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let root = base.join("root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc/portage")).unwrap();
    let real_tmpdir = base.join("real-tmpdir");
    let tmpdir = base.join("tmpdir");
    let d = real_tmpdir.join("portage/app-misc/foo-1/image");
    fs::create_dir_all(d.join("usr/bin")).unwrap();
    fs::write(d.join("usr/bin/foo"), b"foo").unwrap();
    fs::create_dir(&tmpdir).unwrap();
    // SAFETY: unshare in a throwaway, single-purpose process.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        println!("MOUNT-CHILD-SKIP");
        return;
    }
    assert!(mount("none", "/", libc::MS_REC | libc::MS_PRIVATE));
    if !mount(
        real_tmpdir.to_str().unwrap(),
        tmpdir.to_str().unwrap(),
        libc::MS_BIND,
    ) {
        println!("MOUNT-CHILD-SKIP");
        return;
    }
    let d = tmpdir.join("portage/app-misc/foo-1/image");
    // The trap: one device on both sides.
    assert_eq!(
        fs::metadata(d.join("usr/bin/foo")).unwrap().dev(),
        fs::metadata(&root).unwrap().dev()
    );
    // And rename() really fails across it.
    let err = fs::rename(d.join("usr/bin/foo"), root.join("usr/bin/foo")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));

    let vars: HashMap<&str, String> = [
        ("EBUILD_PHASE", "preinst".to_string()),
        ("CATEGORY", "app-misc".into()),
        ("PF", "foo-1".into()),
        ("ROOT", root.display().to_string()),
        ("D", d.display().to_string()),
    ]
    .into_iter()
    .collect();
    let env = PortageEnv::from_vars(|k| vars.get(k).cloned()).unwrap();
    match env.premerge_xattr() {
        PremergeXattr::Lost { reason, .. } => assert!(
            reason.contains("usr/bin/foo is on another mount of the same filesystem"),
            "{reason}"
        ),
        kept => panic!("the hook would sign in preinst and lose it all: {kept:?}"),
    }
    // Without the bind mount in the way, it is kept.
    let direct: HashMap<&str, String> = vars
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .chain([(
            "D",
            real_tmpdir
                .join("portage/app-misc/foo-1/image")
                .display()
                .to_string(),
        )])
        .collect();
    let env = PortageEnv::from_vars(|k| direct.get(k).cloned()).unwrap();
    assert!(
        matches!(env.premerge_xattr(), PremergeXattr::Kept { .. }),
        "{:?}",
        env.premerge_xattr()
    );

    // doctor answers the same question the same way.
    let doctor = |tmpdir: &Path| {
        fs::write(
            root.join("etc/portage/make.conf"),
            format!("PORTAGE_TMPDIR=\"{}\"\n", tmpdir.display()),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_portage-ima"))
            .args(["doctor", "--json", "--root"])
            .arg(&root)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "tmpdir")
            .cloned()
            .unwrap()
    };
    let check = doctor(&tmpdir);
    assert_eq!(check["status"], "warn", "{check}");
    assert!(
        check["finding"]
            .as_str()
            .unwrap()
            .contains("another mount of the same filesystem"),
        "{check}"
    );
    assert_eq!(doctor(&real_tmpdir)["status"], "ok");
    println!("MOUNT-CHILD-OK");
}
