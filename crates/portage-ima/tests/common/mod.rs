//! What the hook and file-handling tests share: a throwaway key and settings
//! file, running the binary, reading its output. (Each test file uses a part.)
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portage-ima")
}

/// Root, else says why the test checks nothing here.
pub fn require_root() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root (security.ima, mknod, mounts)");
    }
    root
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
