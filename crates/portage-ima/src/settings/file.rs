//! ima.toml itself: its tables as read ([`FileConfig`], unknown keys an
//! error), which file a run reads ([`ConfigPath`]), and the early, lenient
//! look for `strict = true` that the hook makes before anything can fail.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::plan::ConfigFiles;

use super::{Enforce, HardwareConfig, KeylimeConfig, Mode, Premerge, SigningScope, CONFIG_FILE};

/// The contents of ima.toml. Unknown keys are an error. Each field is the
/// key of the same name, `None` when the file leaves it out (the default
/// then applies, see [`super::Settings`] and ima.toml(5)).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The private key: a file, or a key held by hardware (`pkcs11:` URI,
    /// TPM handle or TSS2 key file).
    pub key: Option<PathBuf>,
    /// The certificate whose key id the signatures carry.
    pub cert: Option<PathBuf>,
    /// A key id (8 hex digits) to write instead of the certificate's.
    pub keyid: Option<String>,
    /// The hash algorithm's name (`sha256`).
    pub hash: Option<String>,
    /// Threads that hash and sign in parallel (at least 1).
    pub jobs: Option<usize>,
    /// The crypto backend's name (`openssl`, `rustcrypto`).
    pub backend: Option<String>,
    /// Whether the hook signs in `${D}` before the merge.
    pub premerge: Option<Premerge>,
    /// Whether the emerge fails when a package is not fully signed.
    pub strict: Option<bool>,
    /// Whether the hook acts as if the kernel enforced appraisal.
    pub enforce: Option<Enforce>,
    /// Under enforcement, merge with unsigned live files for a while
    /// instead of stopping the merge.
    pub allow_unsigned_window: Option<bool>,
    /// What is done with config-protected files.
    pub config_files: Option<ConfigFiles>,
    /// Sign with a key file others could read or replace (warned).
    pub allow_insecure_key: Option<bool>,
    /// Every file, or only those the IMA policy can appraise.
    pub scope: Option<SigningScope>,
    /// Sign, or keep the signatures a binary host made.
    pub mode: Option<Mode>,
    /// The binary hosts' certificates a client trusts.
    pub trusted_certs: Option<Vec<PathBuf>>,
    /// Packages the hook leaves alone, as atoms (checked on load).
    pub skip: Option<Vec<String>>,
    /// The `[hardware]` table.
    pub hardware: Option<HardwareConfig>,
    /// The `[keylime]` table.
    pub keylime: Option<KeylimeConfig>,
}

/// Which settings file a run reads, decided once (in [`crate::context`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigPath {
    /// `--config FILE`: it must exist.
    Explicit(PathBuf),
    /// `${PORTAGE_CONFIGROOT%/}/etc/portage/ima.toml` (`/` when unset):
    /// when missing, the defaults.
    Default(PathBuf),
}

impl ConfigPath {
    /// `--config` when given, else ima.toml under `config_root`.
    pub fn new(explicit: Option<&Path>, config_root: &Path) -> ConfigPath {
        match explicit {
            Some(path) => ConfigPath::Explicit(path.to_path_buf()),
            None => ConfigPath::Default(config_root.join(CONFIG_FILE)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        match self {
            ConfigPath::Explicit(p) | ConfigPath::Default(p) => p,
        }
    }

    /// The path `--config` gave, if any.
    pub fn explicit(&self) -> Option<&Path> {
        match self {
            ConfigPath::Explicit(p) => Some(p),
            ConfigPath::Default(_) => None,
        }
    }
}

/// Parses one ima.toml; errors name the file, the line and the offending key.
pub fn read_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read settings file {}", path.display()))?;
    parse_config(&text).with_context(|| format!("in settings file {}", path.display()))
}

/// Parses ima.toml text.
pub fn parse_config(text: &str) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| {
        anyhow::Error::new(crate::escape::MultiLine(
            e.to_string().trim_end().to_owned(),
        ))
    })
}

/// Whether the settings ask for strict mode, decided before anything else
/// and as leniently as possible, so that a settings file the hook then
/// rejects (a typo'd key, a bad value) still fails the merge when it says
/// `strict = true`:
/// - no file (the default path missing): not strict;
/// - a file that cannot be read (or an explicit `--config` that is missing):
///   strict, since it may say so;
/// - a file that is TOML: its top-level `strict`; any value but `false`
///   (`strict = "yes"`) counts as strict;
/// - a file that is not TOML at all: strict if a line reads `strict = true`
///   (the rule the bashrc snippet applies itself).
pub fn strict_requested(config: &ConfigPath) -> bool {
    match std::fs::read(config.path()) {
        Ok(bytes) => strict_in_text(&String::from_utf8_lossy(&bytes)),
        Err(e) => config.explicit().is_some() || e.kind() != std::io::ErrorKind::NotFound,
    }
}

pub(super) fn strict_in_text(text: &str) -> bool {
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => table
            .get("strict")
            .is_some_and(|v| v.as_bool() != Some(false)),
        Err(_) => text.lines().any(line_says_strict),
    }
}

/// `strict = true` on a line of its own, spaces and a trailing comment allowed.
fn line_says_strict(line: &str) -> bool {
    let rest = line
        .trim_start()
        .strip_prefix("strict")
        .map(str::trim_start);
    let rest = rest.and_then(|r| r.strip_prefix('=')).map(str::trim_start);
    rest.and_then(|r| r.strip_prefix("true"))
        .is_some_and(|r| r.is_empty() || r.starts_with(|c: char| c.is_whitespace() || c == '#'))
}
