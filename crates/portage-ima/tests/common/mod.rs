//! What the integration tests share: the one rule for tests that need
//! something of the machine (root, a tool, a mount). Without it a test says
//! why and passes without checking; under CI (`CI` set, as `.ci/run` and
//! tests/run-all have it) that is a failure, so a green CI run means every
//! test really ran (the same rule as tests/kernel and tests/packaging).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether `what` holds; when not, prints why the test is skipped, or
/// panics under CI. `test` names the test in the message.
pub fn require(available: bool, what: &str, test: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs {what}, and CI is set: every test must run under CI");
    }
    eprintln!("SKIPPED {test}: needs {what}");
    false
}

/// Root (CAP_SYS_ADMIN writes security.* xattrs; mounts, chattr).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    require(
        unsafe { libc::geteuid() } == 0,
        "root (writing security.ima)",
        test,
    )
}

/// `tool` on PATH.
pub fn require_tool(tool: &str, test: &str) -> bool {
    require(on_path(tool), &format!("{tool} on PATH"), test)
}

pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portage-ima")
}

/// What an ebuild phase exports that the binary reads. cargo.eclass's
/// `src_test` runs these tests inside a phase, with EPREFIX, ROOT,
/// PORTAGE_CONFIGROOT and EBUILD_PHASE set; the binary honours them, as it
/// must in the hook. Each test states its own instead: a command made by
/// [`cmd`] starts without them.
pub const PHASE_VARIABLES: &[&str] = &[
    "EPREFIX",
    "EROOT",
    "ROOT",
    "SYSROOT",
    "ESYSROOT",
    "BROOT",
    "PORTAGE_CONFIGROOT",
    "EBUILD_PHASE",
    "EBUILD_PHASE_FUNC",
    "EMERGE_FROM",
    "CATEGORY",
    "PF",
    "P",
    "PN",
    "PV",
    "PR",
    "PVR",
    "D",
    "ED",
    "T",
    "PORTAGE_BUILDDIR",
    "PORTAGE_TMPDIR",
    "PORTAGE_BIN_PATH",
    "PORTAGE_PYM_PATH",
    "FEATURES",
    "PORTAGE_XATTR_EXCLUDE",
    "PORTAGE_IMA",
    "PORTAGE_IMA_SKIP",
    "PORTAGE_IMA_LOG",
];

/// Removes [`PHASE_VARIABLES`] from what `cmd` inherits.
pub fn without_phase_variables(cmd: &mut Command) -> &mut Command {
    for v in PHASE_VARIABLES {
        cmd.env_remove(v);
    }
    cmd
}

/// `portage-ima`, started without the ebuild phase's variables.
pub fn cmd() -> Command {
    let mut c = Command::new(bin());
    without_phase_variables(&mut c);
    c
}

/// A fresh RSA-2048 key `dir/key.pem` (mode 0400), made by openssl.
pub fn new_key(dir: &Path) -> PathBuf {
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{out:?}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    key
}

/// A self-signed DER certificate `dir/cert.der` for `key`.
pub fn new_cert(dir: &Path, key: &Path) -> PathBuf {
    let cert = dir.join("cert.der");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-new", "-days", "30", "-subj", "/CN=t"])
        .args(["-outform", "DER", "-key"])
        .arg(key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{out:?}");
    cert
}

/// `dir/ima.toml` with a new key in `dir` and the `extra` settings lines.
pub fn settings(dir: &Path, extra: &str) -> PathBuf {
    let key = new_key(dir);
    let conf = dir.join("ima.toml");
    std::fs::write(&conf, format!("key = \"{}\"\n{extra}", key.display())).unwrap();
    conf
}

/// `dir/ima.toml` naming a new key and its certificate (both in `dir`),
/// with the `extra` settings lines; returns it and the certificate.
pub fn settings_with_cert(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let key = new_key(dir);
    let cert = new_cert(dir, &key);
    let conf = dir.join("ima.toml");
    let text = format!(
        "key = \"{}\"\ncert = \"{}\"\n{extra}",
        key.display(),
        cert.display()
    );
    std::fs::write(&conf, text).unwrap();
    (conf, cert)
}

/// `portage-ima --config CONF hook` with only Portage's variables `vars`
/// (and a plain PATH unless `vars` sets one).
pub fn hook(conf: &Path, vars: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(conf)
        .arg("hook")
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn md5_hex(data: &[u8]) -> String {
    let d = ima_core::digest_bytes(ima_core::default_provider(), data, ima_core::HashAlgo::Md5)
        .unwrap();
    hex::encode(d)
}

/// stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn is_signed(path: &Path) -> bool {
    let f = std::fs::File::open(path).unwrap();
    ima_core::read_ima_xattr(&f).unwrap().is_some()
}

/// The kind of `security.ima` at `path`: "none", "digest" (digest-only,
/// `evmctl ima_hash`) or "signature".
pub fn ima_kind(path: &Path) -> &'static str {
    let file = std::fs::File::open(path).unwrap();
    match ima_core::read_ima_xattr(&file).unwrap() {
        None => "none",
        Some(v) => match ima_core::ImaXattr::decode(&v).unwrap() {
            ima_core::ImaXattr::Digest { .. } => "digest",
            ima_core::ImaXattr::Signature { .. } => "signature",
        },
    }
}

/// A fresh directory on a tmpfs (/dev/shm, which every Linux has); None,
/// after saying why, when there is none (a failure under CI).
pub fn tmpfs_dir(test: &str) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir_in("/dev/shm").ok();
    let on_tmpfs = dir.as_ref().is_some_and(|d| {
        rustix::fs::statfs(d.path())
            .is_ok_and(|s| s.f_type as u64 == portage_ima::policy::generate::TMPFS_MAGIC)
    });
    require(on_tmpfs, "a tmpfs on /dev/shm", test).then(|| dir.unwrap())
}

/// Remounts every visible tmpfs and devtmpfs `noexec` (in the calling
/// mount namespace).
const REMOUNT_TMPFS_NOEXEC: &str = r#"
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") {
         if ($(i + 1) == "tmpfs" || $(i + 1) == "devtmpfs") print $5; break } }' \
    /proc/self/mountinfo | sort -u | while read -r m; do
    mount -o remount,bind,noexec "$(printf '%b' "$m")"
done
"#;

/// A command that runs portage-ima (its arguments to be added) in a mount
/// namespace of its own where every tmpfs and devtmpfs is remounted
/// `noexec`, then the shell `setup` ran: the machine's mounts as a test
/// needs them, undone when it exits. None (skipped) without root or unshare.
pub fn isolated_mounts(setup: &str, test: &str) -> Option<Command> {
    if !require_root(test) || !require_tool("unshare", test) {
        return None;
    }
    // Absolute paths: the command's own PATH may be anything.
    let unshare = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let mut cmd = Command::new(unshare);
    cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-ec"])
        .arg(format!(
            "path=$PATH; PATH=/usr/sbin:/usr/bin:/sbin:/bin\n{REMOUNT_TMPFS_NOEXEC}\n{setup}\n\
             PATH=$path exec \"$@\""
        ))
        .args(["sh", bin()]);
    without_phase_variables(&mut cmd);
    Some(cmd)
}

/// Every `.rs` file under `dir`, recursively, appended to `out`.
pub fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
