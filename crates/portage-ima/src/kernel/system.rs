//! Plain readings of the running kernel that several rooms need: its
//! command line, its build configuration, where securityfs is mounted.
//! Each reader takes text (or reads one file) and never prints.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The value of `name=` on a kernel command line (the last one wins;
/// what follows ` -- ` goes to init).
pub(crate) fn cmdline_value<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    let before_init = cmdline.split(" -- ").next().unwrap_or(cmdline);
    before_init
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .next_back()
}

/// Whether the running kernel's configuration sets `option` (`=y` or `=m`),
/// and where that was read: /boot/config-RELEASE, else /proc/config.gz
/// (through gzip, which every system has).
pub(crate) fn kernel_config_option(option: &str) -> Option<(bool, String)> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let boot = format!("/boot/config-{}", release.trim());
    let (text, from) = match fs::read_to_string(&boot) {
        Ok(text) => (text, boot),
        Err(_) => {
            let out = Command::new("gzip")
                .args(["-dc", "/proc/config.gz"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                "/proc/config.gz".to_string(),
            )
        }
    };
    Some((config_sets(&text, option), from))
}

/// Whether kernel .config text sets `option` to y or m.
pub(crate) fn config_sets(text: &str, option: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(option)
            .and_then(|rest| rest.strip_prefix('='))
            .is_some_and(|v| v == "y" || v == "m")
    })
}

/// The mount point of securityfs, from /proc/mounts text.
pub(crate) fn securityfs_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "securityfs").then(|| PathBuf::from(unescape_mount(dir)))
    })
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
pub(crate) fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_cmdline() {
        let mounts = "proc /proc proc rw 0 0\nsecurityfs /sys/kernel/security securityfs rw 0 0\n";
        assert_eq!(
            securityfs_mount(mounts),
            Some(PathBuf::from("/sys/kernel/security"))
        );
        assert_eq!(securityfs_mount("proc /proc proc rw 0 0\n"), None);
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        let cmdline =
            "root=/dev/sda ima_appraise=fix ima_appraise=enforce quiet -- ima_appraise=off";
        assert_eq!(cmdline_value(cmdline, "ima_appraise"), Some("enforce"));
        assert_eq!(cmdline_value(cmdline, "ima_policy"), None);
    }

    #[test]
    fn kernel_config_lines() {
        let text = "# CONFIG_INTEGRITY is not set\nCONFIG_IMA_APPRAISE=y\nCONFIG_IMA=y\n";
        assert!(config_sets(text, "CONFIG_IMA"));
        assert!(!config_sets(text, "CONFIG_INTEGRITY"));
        assert!(!config_sets("CONFIG_IMA_APPRAISE=y\n", "CONFIG_IMA"));
    }
}
