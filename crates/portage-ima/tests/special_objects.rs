//! Device nodes and fifos listed as `obj` in CONTENTS.
//!
//! CONTENTS is written by Portage, but the files are on disk, where a
//! character device (`/dev/zero`) or a fifo can stand at a listed path. They
//! must be refused by type, never read: `/dev/zero` used to make `sign --all`
//! read forever. Each run here has a deadline and is killed past it, so a
//! hang fails the test instead of blocking it. Needs root (mknod, and
//! `security.ima`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::{FileType, Mode, CWD};

use common::{is_signed, md5_hex, text};

/// Far more than the few milliseconds these runs take.
const DEADLINE: Duration = Duration::from_secs(10);

/// A ROOT with one package whose CONTENTS lists a regular file, a character
/// device (the real /dev/zero's numbers, 1:5) and a fifo, all as `obj`.
struct Root {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
    cert: PathBuf,
    t: PathBuf,
}

fn setup() -> Root {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (conf, cert) = common::settings_with_cert(d, "");

    let root = d.join("root");
    for dir in ["usr/bin", "dev", "run", "var/db/pkg/app-misc/specials-1"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("usr/bin/good"), b"good\n").unwrap();
    let mode = Mode::from_raw_mode(0o666);
    rustix::fs::mknodat(
        CWD,
        root.join("dev/zero"),
        FileType::CharacterDevice,
        mode,
        rustix::fs::makedev(1, 5),
    )
    .unwrap();
    rustix::fs::mknodat(CWD, root.join("run/fifo"), FileType::Fifo, mode, 0).unwrap();
    let empty = md5_hex(b"");
    std::fs::write(
        root.join("var/db/pkg/app-misc/specials-1/CONTENTS"),
        format!(
            "dir /usr\ndir /usr/bin\nobj /usr/bin/good {} 1700000000\n\
             obj /dev/zero {empty} 1700000000\nobj /run/fifo {empty} 1700000000\n",
            md5_hex(b"good\n")
        ),
    )
    .unwrap();
    std::fs::write(root.join("var/db/pkg/app-misc/specials-1/SLOT"), "0\n").unwrap();
    let t = d.join("temp");
    std::fs::create_dir(&t).unwrap();
    Root {
        _tmp: tmp,
        root,
        conf,
        cert,
        t,
    }
}

/// Runs `cmd`, killing it past [`DEADLINE`] (then the test fails).
fn run_with_deadline(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {DEADLINE:?} (reading a device?): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_specials_reported(what: &str, out: &str) {
    assert!(
        out.contains("dev/zero") && out.contains("character device"),
        "{what}: {out}"
    );
    assert!(
        out.contains("run/fifo") && out.contains("fifo"),
        "{what}: {out}"
    );
}

macro_rules! require_root {
    () => {
        if !common::require_root(module_path!()) {
            return;
        }
    };
}

#[test]
fn sign_and_verify_all_refuse_devices_and_fifos_listed_as_obj() {
    require_root!();
    let r = setup();
    let sign = run_with_deadline(
        common::cmd()
            .arg("--config")
            .arg(&r.conf)
            .args(["sign", "--all", "--root"])
            .arg(&r.root),
    );
    let out = text(&sign);
    assert_eq!(sign.status.code(), Some(1), "{out}");
    assert_specials_reported("sign --all", &out);
    assert!(is_signed(&r.root.join("usr/bin/good")), "{out}");

    let verify = run_with_deadline(
        common::cmd()
            .arg("--config")
            .arg(&r.conf)
            .args(["verify", "--all", "--cert"])
            .arg(&r.cert)
            .arg("--root")
            .arg(&r.root),
    );
    let out = text(&verify);
    assert_eq!(verify.status.code(), Some(1), "{out}");
    assert_specials_reported("verify --all", &out);
}

#[test]
fn postinst_refuses_devices_and_fifos_listed_as_obj() {
    require_root!();
    let r = setup();
    let hook = run_with_deadline(
        common::cmd()
            .arg("--config")
            .arg(&r.conf)
            .arg("hook")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("EBUILD_PHASE", "postinst")
            .env("CATEGORY", "app-misc")
            .env("PF", "specials-1")
            .env("ROOT", &r.root)
            .env("T", &r.t),
    );
    let out = text(&hook);
    assert_specials_reported("postinst", &out);
    assert!(out.contains("1 now") && out.contains("2 failed"), "{out}");
    assert!(is_signed(&r.root.join("usr/bin/good")), "{out}");
}

/// Whether process `pid` has `path` open.
fn has_open(pid: u32, path: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
        })
        .unwrap_or(false)
}

/// A read that takes very long (here a 1 TiB sparse file; on a real system
/// a stalled FUSE or NFS mount) is not waited for after a second signal: the
/// run reports what was done and what was in flight and exits 130 at once.
#[test]
fn a_second_signal_stops_a_long_read_at_once_with_a_report() {
    require_root!();
    let r = setup();
    let dir = r.t.join("files");
    std::fs::create_dir(&dir).unwrap();
    let huge = dir.join("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    std::fs::write(dir.join("small"), b"small").unwrap();
    let mut child = common::cmd()
        .arg("--config")
        .arg(&r.conf)
        .args(["sign", "--jobs", "1", "--files"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let sigint = || assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let start = Instant::now();
    while !has_open(pid, &huge) {
        assert!(child.try_wait().unwrap().is_none(), "ended early");
        assert!(
            start.elapsed() < DEADLINE,
            "never opened {}",
            huge.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    sigint();
    // The first signal waits for the file in flight, which takes minutes.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "stopped on the first signal"
    );
    sigint();
    let stopping = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if stopping.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("still reading {DEADLINE:?} after a second SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(
        text.contains("stopped at once on a second signal")
            && text.contains("0 of 2 files done, 1 in flight")
            && text.contains("1 not started"),
        "{text}"
    );
    assert!(
        !is_signed(&huge) && !is_signed(&dir.join("small")),
        "{text}"
    );
}
