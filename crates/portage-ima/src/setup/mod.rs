//! `portage-ima setup` as a library: from an unsigned Gentoo machine to one
//! that boots into IMA appraisal with every merged file signed.
//!
//! - [`Machine`]: what setup reads of ROOT and of the running kernel, each
//!   fact through its own reader (`gentoo/`, `kernel/`, `policy/setup`);
//! - [`keyring`]: which way the certificate reaches the keyring IMA checks
//!   signatures with, chosen from the kernel's configuration;
//! - [`plan`]: the numbered steps as data (each file with its exact content
//!   and the reason), and the boots still to do;
//! - [`text`]: the plan and the outcome in words, for the report;
//! - [`apply`]: carrying the file steps out, idempotently, with a backup of
//!   each file it changes. It never edits a boot loader file.
//!
//! Signing what is installed and checking the policy are the `sign` and
//! `policy --check` commands, which the command runs after `apply`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::gentoo::system::{self, CmdlineFile, Init, Initramfs, KernelPackage, ModulesSignKey};
use crate::gentoo::vars::Vars;
use crate::kernel::config::KernelConfig;
use crate::kernel::secure_boot::SecureBoot;
use crate::policy::generate::{BuildFs, Scope};

pub mod apply;
pub mod keyring;
pub mod plan;
pub mod text;

/// The key type setup makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// RSA-4096: every kernel with IMA signatures verifies it.
    Rsa,
    /// NIST P-256 ECDSA: 5.13+ with `CONFIG_CRYPTO_ECDSA`.
    P256,
}

/// What the admin chose where setup has a choice (the command's flags).
#[derive(Clone, Debug, Default)]
pub struct Choices {
    /// An existing private key (a path on the system).
    pub key: Option<PathBuf>,
    /// Its certificate.
    pub cert: Option<PathBuf>,
    /// A key held by hardware: its `pkcs11:` URI or TPM key file.
    pub hardware: Option<String>,
    /// What the policy appraises.
    pub appraise: Option<Scope>,
    /// The key type to make.
    pub algorithm: Option<Algorithm>,
}

/// Where the running kernel's facts come from: the real places, or files
/// a test gives instead.
#[derive(Clone, Debug, Default)]
pub struct KernelSources {
    /// A kernel `.config` (plain or gzip) instead of the running kernel's.
    pub config: Option<PathBuf>,
    /// An efivarfs directory instead of `/sys/firmware/efi/efivars`.
    pub efivars: Option<PathBuf>,
    /// A /proc/keys text instead of the real one.
    pub proc_keys: Option<PathBuf>,
}

/// Portage's side of the merge: where builds happen and whether the merge
/// copies (and so drops `security.ima` unless told otherwise).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PortageFacts {
    /// PORTAGE_TMPDIR as Portage resolves it.
    pub tmpdir: String,
    /// Where it was read (portageq or make.conf).
    pub source: String,
    /// The build directory's filesystem, in words.
    pub build_fs: String,
    /// Whether the merge copies files (another filesystem) instead of renaming.
    pub merge_copies: bool,
    /// Whether a copying merge keeps security.ima now (FEATURES=xattr and
    /// security.ima out of PORTAGE_XATTR_EXCLUDE).
    pub xattr_kept: bool,
    /// PORTAGE_XATTR_EXCLUDE's patterns in effect.
    pub xattr_exclude: Vec<String>,
    /// Whether etc/portage/make.conf is a directory.
    pub make_conf_is_dir: bool,
}

/// Everything setup reads before it plans.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The system's root (`/`, or a mounted root being prepared).
    pub root: PathBuf,
    /// Its init system.
    pub init: Init,
    /// Its initramfs generator.
    pub initramfs: Initramfs,
    /// How its kernel is built.
    pub kernel_package: KernelPackage,
    /// The dist-kernel's module signing key, when it has one.
    pub modules_sign_key: Option<ModulesSignKey>,
    /// The running kernel's configuration.
    pub kernel_config: KernelConfig,
    /// Names of the keyrings in /proc/keys (`.ima`, `.builtin_trusted_keys`, ...).
    pub keyrings: Vec<String>,
    /// Secure Boot, from efivarfs.
    pub secure_boot: SecureBoot,
    /// Whether shim's MOK list is there (MokListRT).
    pub mok: bool,
    /// The boot loader files that hold the kernel command line.
    pub cmdline_files: Vec<CmdlineFile>,
    /// Portage's merge.
    pub portage: PortageFacts,
    /// The policy setup derives from Portage's setup (what `policy` writes).
    pub policy_setup: crate::policy::Setup,
    /// key and cert already named in ima.toml.
    pub configured: Configured,
    /// The host name, for the certificates' subjects.
    pub hostname: String,
}

/// What ROOT's ima.toml already says about the key.
#[derive(Clone, Debug, Default)]
pub struct Configured {
    /// Whether etc/portage/ima.toml exists.
    pub exists: bool,
    /// Its `key`.
    pub key: Option<String>,
    /// Its `cert`.
    pub cert: Option<String>,
}

impl Machine {
    /// Reads the machine under `root` (Portage's settings through portageq,
    /// found as `env` says); a ROOT that is not a Gentoo root,
    /// an unknown init or an unreadable kernel configuration is an error.
    pub fn read(root: &Path, sources: &KernelSources, env: &Vars) -> Result<Machine> {
        if !root.join("etc/portage").is_dir() || !root.join("var/db/pkg").is_dir() {
            bail!(
                "{}: not a Gentoo root (it needs etc/portage and var/db/pkg); give the root \
                 of the Gentoo system with --root",
                root.display()
            );
        }
        let init = system::init(root).map_err(anyhow::Error::msg)?;
        let kernel_config = match &sources.config {
            Some(file) => KernelConfig::read(file)?,
            None => KernelConfig::running(root)?,
        };
        let efivars = sources
            .efivars
            .clone()
            .unwrap_or_else(|| crate::kernel::secure_boot::EFIVARS.into());
        let proc_keys = sources
            .proc_keys
            .clone()
            .unwrap_or_else(|| "/proc/keys".into());
        let keys_text = fs::read_to_string(&proc_keys).unwrap_or_default();
        let mut keyrings: Vec<String> = crate::kernel::keyring::parse_proc_keys(&keys_text)
            .iter()
            .filter_map(|k| k.keyring_name().map(str::to_string))
            .filter(|n| n.starts_with('.') || n == "_ima")
            .collect();
        keyrings.sort();
        keyrings.dedup();
        let vars = crate::gentoo::portage_vars::portage_vars(root, env);
        let xattr_exclude = vars.xattr_exclude_patterns();
        let tmpdir = vars.tmpdir.clone();
        let source = vars.source.clone();
        let policy_setup = crate::policy::setup::from_vars(vars, root)?;
        let merge_copies = !matches!(policy_setup.build_fs, BuildFs::Shared { .. });
        let build_fs = match &policy_setup.build_fs {
            BuildFs::Shared { with, fstype } => {
                format!(
                    "{fstype}, shared with {}: the merge renames",
                    with.display()
                )
            }
            BuildFs::Tmpfs => "tmpfs: the merge copies".into(),
            BuildFs::Own { fstype, .. } | BuildFs::OwnWithoutUuid { fstype } => {
                format!("{fstype} of its own: the merge copies")
            }
        };
        let portage = PortageFacts {
            tmpdir,
            source,
            build_fs,
            merge_copies,
            xattr_kept: policy_setup.xattr,
            xattr_exclude,
            make_conf_is_dir: root.join("etc/portage/make.conf").is_dir(),
        };
        Ok(Machine {
            root: root.to_path_buf(),
            init,
            initramfs: system::initramfs(root),
            kernel_package: system::kernel_package(root),
            modules_sign_key: system::modules_sign_key(root),
            kernel_config,
            keyrings,
            secure_boot: SecureBoot::read(&efivars),
            mok: crate::kernel::secure_boot::mok_list_present(&efivars),
            cmdline_files: system::cmdline_files(root),
            portage,
            policy_setup,
            configured: configured(root)?,
            hostname: hostname(root),
        })
    }

    /// `path` (as the system sees it) under ROOT.
    pub fn path(&self, path: &Path) -> PathBuf {
        under(&self.root, path)
    }
}

/// A system path under `root`.
pub(crate) fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// ROOT's ima.toml: whether it is there and the key it names.
fn configured(root: &Path) -> Result<Configured> {
    let path = root.join(crate::settings::CONFIG_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Configured::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not valid TOML; fix it first", path.display()))?;
    let get = |k: &str| table.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Ok(Configured {
        exists: true,
        key: get("key"),
        cert: get("cert"),
    })
}

/// ROOT's host name (etc/hostname, OpenRC's etc/conf.d/hostname), else the running one's.
fn hostname(root: &Path) -> String {
    let from_file = fs::read_to_string(root.join("etc/hostname"))
        .ok()
        .map(|t| t.trim().to_string())
        .or_else(|| {
            let text = fs::read_to_string(root.join("etc/conf.d/hostname")).ok()?;
            let mut conf = crate::gentoo::make_conf::MakeConf::default();
            conf.apply(&text);
            conf.get("hostname").map(str::to_string)
        });
    from_file
        .filter(|h| !h.is_empty())
        .or_else(|| {
            fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into())
}
