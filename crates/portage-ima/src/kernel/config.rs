//! The running kernel's build configuration, read as a whole: where the
//! kernel publishes it (`/proc/config.gz`, with `CONFIG_IKCONFIG_PROC`),
//! else the file the kernel's `make install` and installkernel leave
//! beside it (`/boot/config-$(uname -r)`). `setup` decides from it which
//! key type the kernel verifies (`CONFIG_CRYPTO_ECDSA`), which keyring IMA
//! uses (`CONFIG_INTEGRITY_TRUSTED_KEYRING`, `CONFIG_INTEGRITY_MACHINE_KEYRING`)
//! and which appraisal options are missing.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// A kernel `.config`, with where it was read.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    text: String,
    /// The file it came from.
    pub source: PathBuf,
}

impl KernelConfig {
    /// The text of a `.config` (for tests and for files already read).
    pub fn from_text(text: &str, source: &Path) -> KernelConfig {
        KernelConfig {
            text: text.to_string(),
            source: source.to_path_buf(),
        }
    }

    /// Reads `path`: a plain `.config`, or gzip-compressed (`config.gz`),
    /// told apart by the gzip magic bytes.
    pub fn read(path: &Path) -> Result<KernelConfig> {
        let mut bytes = Vec::new();
        fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("cannot read the kernel configuration {}", path.display()))?;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            gunzip(path)?
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        if !text.lines().any(|l| l.starts_with("CONFIG_")) {
            bail!(
                "{}: not a kernel configuration (no CONFIG_ line)",
                path.display()
            );
        }
        Ok(KernelConfig::from_text(&text, path))
    }

    /// The running kernel's: `/proc/config.gz`, else
    /// `ROOT/boot/config-RELEASE` with RELEASE from `/proc/sys/kernel/osrelease`.
    pub fn running(root: &Path) -> Result<KernelConfig> {
        let proc_config = Path::new("/proc/config.gz");
        if proc_config.exists() {
            return KernelConfig::read(proc_config);
        }
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("cannot read /proc/sys/kernel/osrelease")?;
        let boot = root.join(format!("boot/config-{}", release.trim()));
        KernelConfig::read(&boot).with_context(|| {
            format!(
                "the running kernel's configuration is neither in /proc/config.gz \
                 (CONFIG_IKCONFIG_PROC) nor in {}; give it with --kernel-config FILE",
                boot.display()
            )
        })
    }

    /// The value `option` is set to (`y`, `m`, `"text"`, a number), or
    /// `None` when it is unset (`# ... is not set` or absent).
    pub fn value(&self, option: &str) -> Option<&str> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix(option)?.strip_prefix('='))
            .next_back()
    }

    /// Whether `option` is `y` or `m`.
    pub fn set(&self, option: &str) -> bool {
        matches!(self.value(option), Some("y" | "m"))
    }

    /// Whether `option` is built in (`y`): what must hold for anything the
    /// kernel needs before modules can load (the first appraisal).
    pub fn builtin(&self, option: &str) -> bool {
        self.value(option) == Some("y")
    }

    /// A string option's value without its quotes (`CONFIG_SYSTEM_TRUSTED_KEYS`).
    pub fn string(&self, option: &str) -> Option<&str> {
        let v = self.value(option)?;
        let v = v.strip_prefix('"')?.strip_suffix('"')?;
        (!v.is_empty()).then_some(v)
    }
}

/// `gzip -dc` (every system has it; no compression crate for one file).
fn gunzip(path: &Path) -> Result<String> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run gzip to read {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{}: gzip: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let c = KernelConfig::from_text(
            "CONFIG_IMA=y\nCONFIG_CRYPTO_ECDSA=m\n# CONFIG_IMA_APPRAISE is not set\n\
             CONFIG_SYSTEM_TRUSTED_KEYS=\"certs/ca.pem\"\nCONFIG_MODULE_SIG_KEY=\"\"\n",
            Path::new("x"),
        );
        assert!(c.builtin("CONFIG_IMA"));
        assert!(c.set("CONFIG_CRYPTO_ECDSA") && !c.builtin("CONFIG_CRYPTO_ECDSA"));
        assert!(!c.set("CONFIG_IMA_APPRAISE"));
        assert!(!c.set("CONFIG_IM"));
        assert_eq!(c.string("CONFIG_SYSTEM_TRUSTED_KEYS"), Some("certs/ca.pem"));
        assert_eq!(c.string("CONFIG_MODULE_SIG_KEY"), None);
    }

    #[test]
    fn gzip_and_plain_files_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("config");
        fs::write(&plain, "CONFIG_IMA=y\n").unwrap();
        assert!(KernelConfig::read(&plain).unwrap().builtin("CONFIG_IMA"));
        let status = Command::new("gzip").arg("-k").arg(&plain).status().unwrap();
        assert!(status.success());
        let gz = dir.path().join("config.gz");
        assert!(KernelConfig::read(&gz).unwrap().builtin("CONFIG_IMA"));
        fs::write(&plain, "hello\n").unwrap();
        assert!(KernelConfig::read(&plain).is_err());
    }
}
