//! The Gentoo system's own choices around boot, read from a ROOT: the init
//! system, the initramfs generator, the kernel package and its USE flags,
//! the module signing key Portage builds it with, and the boot loader files
//! that hold the kernel command line. `setup` plans from these; nothing here
//! prints or changes a file.
//!
//! Gentoo's facts this rests on:
//!
//! - OpenRC installs `/sbin/openrc-run` (and `/sbin/openrc`); systemd
//!   installs `/usr/lib/systemd/systemd`, and a systemd machine's
//!   `/sbin/init` links to it. A running systemd has `/run/systemd/system`
//!   (`sd_booted(3)`).
//! - The dist-kernels (sys-kernel/gentoo-kernel, vanilla-kernel; built by
//!   kernel-build.eclass) merge `/etc/kernel/config.d/*.config` into their
//!   configuration and, with `USE=modules-sign`, sign modules with
//!   `MODULES_SIGN_KEY` (make.conf), whose certificate the kernel then
//!   holds on its builtin trusted keyring. Without `MODULES_SIGN_KEY` the
//!   build generates a key and installs it as
//!   `/usr/src/linux-*/certs/signing_key.pem` for out-of-tree modules.
//!   sys-kernel/gentoo-kernel-bin is built elsewhere: no config.d, and its
//!   signing key was thrown away.
//! - installkernel reads the command line of a UKI or a systemd-boot
//!   entry from `/etc/kernel/cmdline`; GRUB from `GRUB_CMDLINE_LINUX` in
//!   `/etc/default/grub` (through `grub-mkconfig`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::gentoo::make_conf::RootConf;
use crate::gentoo::vdb::{InstalledPackage, Vdb};

/// The init system that boots ROOT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// systemd: it loads `/etc/ima/ima-policy` itself, early.
    Systemd,
    /// OpenRC (sysvinit's or openrc-init's `/sbin/init`).
    Openrc,
}

/// Which init boots ROOT; `Err` says what was looked at.
pub(crate) fn init(root: &Path) -> Result<Init, String> {
    if root == Path::new("/") && Path::new("/run/systemd/system").is_dir() {
        return Ok(Init::Systemd);
    }
    for init in ["sbin/init", "usr/sbin/init", "usr/bin/init"] {
        if let Ok(target) = fs::read_link(root.join(init)) {
            if target.to_string_lossy().contains("systemd") {
                return Ok(Init::Systemd);
            }
        }
    }
    let any = |paths: &[&str]| paths.iter().any(|p| root.join(p).exists());
    if any(&[
        "sbin/openrc-run",
        "usr/sbin/openrc-run",
        "usr/bin/openrc-run",
        "sbin/openrc",
        "usr/bin/openrc",
    ]) {
        return Ok(Init::Openrc);
    }
    if any(&["usr/lib/systemd/systemd", "lib/systemd/systemd"]) {
        return Ok(Init::Systemd);
    }
    Err(format!(
        "{}: neither OpenRC (sbin/openrc-run) nor systemd (usr/lib/systemd/systemd) is \
         installed, and sbin/init does not link to systemd; setup knows how to load keys \
         and a policy at boot only with those two",
        root.display()
    ))
}

/// The initramfs generator installed in ROOT.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Initramfs {
    /// None: the kernel boots the root filesystem directly.
    None,
    /// sys-kernel/dracut, whose `integrity` module loads IMA keys.
    Dracut,
    /// Another one (genkernel, ugrd, booster) setup does not configure.
    Unsupported(String),
}

/// Installed packages of `category/name` under ROOT, newest last.
fn installed(root: &Path, category: &str, name: &str) -> Vec<InstalledPackage> {
    let Ok(vdb) = Vdb::open(root) else {
        return Vec::new();
    };
    vdb.packages()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.cpv().category().as_str() == category && p.cpv().package().as_str() == name)
        .collect()
}

/// The initramfs generator: the package in the vdb, else its program.
pub(crate) fn initramfs(root: &Path) -> Initramfs {
    let has = |name: &str| {
        !installed(root, "sys-kernel", name).is_empty()
            || ["usr/bin", "usr/sbin", "bin", "sbin"]
                .iter()
                .any(|d| root.join(d).join(name).exists())
    };
    if has("dracut") {
        return Initramfs::Dracut;
    }
    for other in ["genkernel", "ugrd", "booster"] {
        if has(other) {
            return Initramfs::Unsupported(other.to_string());
        }
    }
    Initramfs::None
}

/// How the kernel is built.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum KernelPackage {
    /// A dist-kernel built here (gentoo-kernel, vanilla-kernel): config.d works.
    DistSource {
        /// `sys-kernel/gentoo-kernel-6.12.5`
        cpv: String,
        /// Built with `USE=modules-sign`.
        modules_sign: bool,
    },
    /// sys-kernel/gentoo-kernel-bin: built elsewhere.
    DistBinary {
        /// `sys-kernel/gentoo-kernel-bin-6.12.5`
        cpv: String,
    },
    /// No dist-kernel: one the admin builds (or another distribution's).
    Other,
}

/// The dist-kernel package in ROOT's vdb, if any, with its USE.
pub(crate) fn kernel_package(root: &Path) -> KernelPackage {
    for name in ["gentoo-kernel", "vanilla-kernel"] {
        if let Some(p) = installed(root, "sys-kernel", name).pop() {
            let use_flags = fs::read_to_string(p.dir().join("USE")).unwrap_or_default();
            return KernelPackage::DistSource {
                cpv: p.cpv().to_string(),
                modules_sign: use_flags.split_whitespace().any(|f| f == "modules-sign"),
            };
        }
    }
    if let Some(p) = installed(root, "sys-kernel", "gentoo-kernel-bin").pop() {
        return KernelPackage::DistBinary {
            cpv: p.cpv().to_string(),
        };
    }
    KernelPackage::Other
}

/// The key (and certificate) a dist-kernel signs its modules with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModulesSignKey {
    /// `MODULES_SIGN_KEY`, or the generated key the build installed (a
    /// path under ROOT as the system sees it), or a `pkcs11:` URI.
    pub key: String,
    /// The file holding its certificate: `MODULES_SIGN_CERT`, else the key
    /// file itself (the kernel wants both in one PEM).
    pub cert: String,
    /// Where it was found.
    pub source: String,
}

/// `MODULES_SIGN_KEY`/`MODULES_SIGN_CERT` from make.conf, else the
/// generated `usr/src/linux/certs/signing_key.pem`.
pub(crate) fn modules_sign_key(root: &Path) -> Option<ModulesSignKey> {
    let conf = RootConf::read(root);
    if let Some(key) = conf.conf.get("MODULES_SIGN_KEY").filter(|k| !k.is_empty()) {
        let cert = conf
            .conf
            .get("MODULES_SIGN_CERT")
            .filter(|c| !c.is_empty())
            .unwrap_or(key);
        return Some(ModulesSignKey {
            key: key.to_string(),
            cert: cert.to_string(),
            source: format!("MODULES_SIGN_KEY in {}", conf.make_conf.display()),
        });
    }
    let generated = "/usr/src/linux/certs/signing_key.pem";
    root.join(&generated[1..])
        .is_file()
        .then(|| ModulesSignKey {
            key: generated.to_string(),
            cert: generated.to_string(),
            source: "the key the kernel build generated (no MODULES_SIGN_KEY set)".into(),
        })
}

/// A boot loader file holding the kernel command line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CmdlineFile {
    /// The file, as the system sees it (`/etc/default/grub`).
    pub path: PathBuf,
    /// The variable in it, when it is one (`GRUB_CMDLINE_LINUX`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// The command line it holds now.
    pub current: String,
    /// What makes the change reach the boot (`grub-mkconfig -o ...`).
    pub then: String,
}

/// The boot loader files under ROOT that hold a command line: GRUB's
/// `GRUB_CMDLINE_LINUX` and installkernel's `/etc/kernel/cmdline`.
pub(crate) fn cmdline_files(root: &Path) -> Vec<CmdlineFile> {
    let mut files = Vec::new();
    if let Ok(text) = fs::read_to_string(root.join("etc/default/grub")) {
        let conf = {
            let mut c = crate::gentoo::make_conf::MakeConf::default();
            c.apply(&text);
            c
        };
        files.push(CmdlineFile {
            path: "/etc/default/grub".into(),
            variable: Some("GRUB_CMDLINE_LINUX".into()),
            current: conf.get("GRUB_CMDLINE_LINUX").unwrap_or("").to_string(),
            then: "grub-mkconfig -o /boot/grub/grub.cfg".into(),
        });
    }
    if let Ok(text) = fs::read_to_string(root.join("etc/kernel/cmdline")) {
        files.push(CmdlineFile {
            path: "/etc/kernel/cmdline".into(),
            variable: None,
            current: text.split_whitespace().collect::<Vec<_>>().join(" "),
            then: "reinstall the kernel so installkernel writes it again \
                   (emerge --config sys-kernel/gentoo-kernel, or make install)"
                .into(),
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(root: &Path, cpv: &str, use_flags: &str) {
        let dir = root.join("var/db/pkg").join(cpv);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("USE"), use_flags).unwrap();
    }

    #[test]
    fn init_systems() {
        let root = tempfile::tempdir().unwrap();
        assert!(init(root.path()).unwrap_err().contains("neither OpenRC"));
        fs::create_dir_all(root.path().join("usr/lib/systemd")).unwrap();
        fs::write(root.path().join("usr/lib/systemd/systemd"), "").unwrap();
        assert_eq!(init(root.path()), Ok(Init::Systemd));
        fs::create_dir_all(root.path().join("sbin")).unwrap();
        fs::write(root.path().join("sbin/openrc-run"), "").unwrap();
        assert_eq!(init(root.path()), Ok(Init::Openrc));
        std::os::unix::fs::symlink("../usr/lib/systemd/systemd", root.path().join("sbin/init"))
            .unwrap();
        assert_eq!(init(root.path()), Ok(Init::Systemd));
    }

    #[test]
    fn kernel_and_initramfs_from_the_vdb() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(kernel_package(root.path()), KernelPackage::Other);
        assert_eq!(initramfs(root.path()), Initramfs::None);
        package(root.path(), "sys-kernel/genkernel-4.3.10", "");
        assert_eq!(
            initramfs(root.path()),
            Initramfs::Unsupported("genkernel".into())
        );
        package(root.path(), "sys-kernel/dracut-105", "");
        assert_eq!(initramfs(root.path()), Initramfs::Dracut);
        package(root.path(), "sys-kernel/gentoo-kernel-bin-6.12.5", "");
        assert!(matches!(
            kernel_package(root.path()),
            KernelPackage::DistBinary { .. }
        ));
        package(
            root.path(),
            "sys-kernel/gentoo-kernel-6.12.5",
            "initramfs modules-sign strip",
        );
        assert_eq!(
            kernel_package(root.path()),
            KernelPackage::DistSource {
                cpv: "sys-kernel/gentoo-kernel-6.12.5".into(),
                modules_sign: true
            }
        );
    }

    #[test]
    fn boot_loader_files() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/default")).unwrap();
        fs::write(
            root.path().join("etc/default/grub"),
            "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"quiet rootfstype=ext4\"\n",
        )
        .unwrap();
        let files = cmdline_files(root.path());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].current, "quiet rootfstype=ext4");
    }
}
