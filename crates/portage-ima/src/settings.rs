//! Settings: /etc/portage/ima.toml, overridden by command-line flags.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::{CryptoProvider, HashAlgo, KeyId};
use serde::Deserialize;

use crate::cli::{KeyArgs, ProgressMode};
use crate::gentoo::atom::Atom;
use crate::gentoo::cpv::Cpv;
use crate::plan::ConfigFiles;

/// Where the private key is looked for when nothing says otherwise.
pub const DEFAULT_KEY: &str = "/etc/keys/IMA_signing_key.priv";
/// The certificate used when it exists and nothing says otherwise.
pub const DEFAULT_CERT: &str = "/etc/keys/x509_ima.der";
/// The settings file, relative to PORTAGE_CONFIGROOT.
pub const CONFIG_FILE: &str = "etc/portage/ima.toml";

/// When the hook signs files under `${D}`, before the merge.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Premerge {
    /// Only when the merge will keep the xattr.
    #[default]
    Auto,
    /// Always (the user knows the xattr survives).
    Always,
    /// Never: sign in postinst only.
    Never,
}

/// Whether the hook acts as if the kernel enforced IMA appraisal of what
/// root executes (`enforce` in ima.toml): `"auto"` (detect it,
/// `policy/enforcement.rs`), `true` or `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enforce {
    #[default]
    Auto,
    Yes,
    No,
}

impl<'de> Deserialize<'de> for Enforce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Enforce::Yes),
            Raw::Bool(false) => Ok(Enforce::No),
            Raw::Text(t) if t == "auto" => Ok(Enforce::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "enforce = \"{t}\": expected \"auto\", true or false"
            ))),
        }
    }
}

/// What the hook does with signatures: make them, or only accept those a
/// binary host made (see `binpkg/`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Sign every file with our key (a build host, or a machine on its own).
    #[default]
    Sign,
    /// No private key: keep the signatures a trusted certificate verifies
    /// (carried by the binary package) and report every file without one.
    Verify,
    /// Like `verify`, and sign with our key what has no trusted signature.
    SignMissing,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sign => "sign",
            Mode::Verify => "verify",
            Mode::SignMissing => "sign-missing",
        }
    }
}

/// Which files `sign` and the hook's postinst sign (`scope`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SigningScope {
    /// Every file: safe under any policy.
    #[default]
    All,
    /// Only the files the IMA policy's appraise rules can cover (see
    /// `Coverage` in `policy/check.rs`); everything when no policy can be read.
    Policy,
}

/// How a long run shows its progress on stderr (`--progress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// A bar on a terminal, periodic lines otherwise.
    #[default]
    Auto,
    Bar,
    Lines,
    None,
}

impl From<ProgressMode> for ProgressDisplay {
    fn from(mode: ProgressMode) -> Self {
        match mode {
            ProgressMode::Auto => ProgressDisplay::Auto,
            ProgressMode::Bar => ProgressDisplay::Bar,
            ProgressMode::Lines => ProgressDisplay::Lines,
            ProgressMode::None => ProgressDisplay::None,
        }
    }
}

/// The contents of ima.toml. Unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub keyid: Option<String>,
    pub hash: Option<String>,
    pub jobs: Option<usize>,
    pub backend: Option<String>,
    pub premerge: Option<Premerge>,
    pub strict: Option<bool>,
    pub enforce: Option<Enforce>,
    pub allow_unsigned_window: Option<bool>,
    pub config_files: Option<ConfigFiles>,
    pub allow_insecure_key: Option<bool>,
    pub scope: Option<SigningScope>,
    pub mode: Option<Mode>,
    pub trusted_certs: Option<Vec<PathBuf>>,
    pub skip: Option<Vec<String>>,
    pub hardware: Option<HardwareConfig>,
    pub keylime: Option<KeylimeConfig>,
}

/// What a kept Keylime runtime policy holds (`[keylime] mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeylimeMode {
    /// The digest of every installed file, no keys: only what is installed
    /// now is accepted, so an older signed file copied back is caught.
    #[default]
    Digests,
    /// Only the certificates' keys: any file signed by them is accepted,
    /// an older version too.
    Keys,
    /// Both: a valid signature or a listed digest is enough.
    Both,
}

impl KeylimeMode {
    pub fn name(self) -> &'static str {
        match self {
            KeylimeMode::Digests => "digests",
            KeylimeMode::Keys => "keys",
            KeylimeMode::Both => "both",
        }
    }
}

/// `[keylime]` in ima.toml: a Keylime runtime policy the hook keeps current
/// (see docs/keylime.md), and the verifier it is pushed to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylimeConfig {
    /// The policy file, inside EROOT like the vdb
    /// [default: /var/lib/portage-ima/keylime-policy.json].
    pub policy: Option<PathBuf>,
    #[serde(default)]
    pub mode: KeylimeMode,
    /// Python regular expressions of paths Keylime does not check.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The verifier's base URL (`https://verifier:8881`); no push without it.
    pub verifier: Option<String>,
    /// The tenant's client certificate and key (PEM) for the verifier's mTLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The CA that signed the verifier's server certificate (PEM).
    pub ca: Option<PathBuf>,
    /// The runtime policy's name on the verifier [default: the host name].
    pub policy_name: Option<String>,
    /// The verifier's REST API version [default: 2.5].
    pub api_version: Option<String>,
}

/// The default policy file, inside EROOT.
pub const DEFAULT_KEYLIME_POLICY: &str = "/var/lib/portage-ima/keylime-policy.json";

impl KeylimeConfig {
    /// The policy file for the system at `eroot` (empty or `/` for the host).
    pub fn policy_path(&self, eroot: &Path) -> PathBuf {
        let policy = self
            .policy
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_KEYLIME_POLICY));
        let rel = policy.strip_prefix("/").unwrap_or(policy);
        if eroot.as_os_str().is_empty() {
            Path::new("/").join(rel)
        } else {
            eroot.join(rel)
        }
    }

    /// The name the policy has on the verifier.
    pub fn name(&self) -> String {
        self.policy_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "gentoo".into())
        })
    }
}

/// `[hardware]` in ima.toml: how to reach a key held by a TPM or a PKCS#11
/// token (`key = "pkcs11:..."`, `"handle:0x81000001"` or a TSS2 key file).
/// The PIN comes from a file or the environment, never from the command line.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// OpenSSL 3 provider (default for TPM keys: `tpm2`).
    pub provider: Option<String>,
    /// OpenSSL engine (default for `pkcs11:` URIs: `pkcs11`).
    pub engine: Option<String>,
    /// The PKCS#11 module the engine loads.
    pub module: Option<PathBuf>,
    /// A file (mode 0400) whose first line is the PIN.
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the PIN, for interactive commands
    /// only: refused inside an ebuild phase ([`HardwareConfig::options`]).
    pub pin_env: Option<String>,
}

/// The variable the README once suggested for the PIN; the snippet keeps it
/// out of every package's saved environment whatever `pin_env` says.
pub const DEFAULT_PIN_ENV: &str = "IMA_TOKEN_PIN";

impl HardwareConfig {
    /// The options for [`ima_core::HardwareKey::open`], with the PIN read.
    ///
    /// Inside an ebuild phase (`EBUILD_PHASE` set: the hook, or a command an
    /// ebuild runs) `pin_env` is refused: a variable exported where emerge
    /// runs is part of the ebuild environment, which Portage saves at the end
    /// of each phase into `${T}/environment`, and from there into every
    /// package's world-readable `/var/db/pkg/CAT/PF/environment.bz2` and into
    /// binary packages.
    pub fn options(&self) -> Result<ima_core::HardwareOptions> {
        if let (Some(var), Some(phase)) = (&self.pin_env, ebuild_phase()) {
            bail!(
                "[hardware]: pin_env = \"{var}\" is refused inside an emerge (ebuild phase \
                 {phase}): Portage saves the ebuild environment, and so the PIN, into every \
                 package's /var/db/pkg/CAT/PF/environment.bz2 (readable by all) and into \
                 binary packages. Write the PIN to a file readable by root only and set \
                 pin_file = \"/etc/portage/ima-token.pin\" instead of pin_env, remove {var} \
                 from emerge's environment, then run `portage-ima doctor` to find the packages \
                 that already carry it"
            );
        }
        let pin = match (&self.pin_file, &self.pin_env) {
            (Some(_), Some(_)) => {
                bail!("[hardware]: set pin_file or pin_env, not both")
            }
            (Some(file), None) => Some(ima_core::read_pin_file(file)?),
            (None, Some(var)) => Some(ima_core::Pin::new(std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "[hardware]: pin_env names the environment variable {var}, which is not \
                     set (or not UTF-8); export it where portage-ima runs, or use pin_file"
                )
            })?)),
            (None, None) => None,
        };
        Ok(ima_core::HardwareOptions {
            provider: self.provider.clone(),
            engine: self.engine.clone(),
            module: self.module.clone(),
            pin,
        })
    }
}

/// The ebuild phase this runs in, if any (`EBUILD_PHASE`, set by Portage).
fn ebuild_phase() -> Option<String> {
    std::env::var("EBUILD_PHASE").ok().filter(|p| !p.is_empty())
}

/// Settings after the file and the flags are merged.
#[derive(Debug)]
pub struct Settings {
    /// The file the settings came from, if any.
    pub source: Option<PathBuf>,
    pub key: PathBuf,
    /// An explicit certificate (flag or file); [`Settings::cert`] adds the default.
    explicit_cert: Option<PathBuf>,
    pub keyid: Option<KeyId>,
    pub hash: HashAlgo,
    pub jobs: usize,
    pub backend: &'static dyn CryptoProvider,
    pub premerge: Premerge,
    pub strict: bool,
    /// Whether to act as if the kernel enforced appraisal (fail-safe merges).
    pub enforce: Enforce,
    /// Under enforcement, merge with a window of unsigned live files
    /// (warned) instead of stopping the merge.
    pub allow_unsigned_window: bool,
    pub config_files: ConfigFiles,
    /// Sign with a key file others could read or replace (warned, not refused).
    pub allow_insecure_key: bool,
    pub scope: SigningScope,
    pub mode: Mode,
    /// Certificates whose signatures the client keeps (`mode = "verify"`
    /// or `"sign-missing"`; `verify` checks against them too).
    pub trusted_certs: Vec<PathBuf>,
    /// How to reach a key held by hardware.
    pub hardware: HardwareConfig,
    /// Packages the hook leaves alone (`skip`): `category/name` atoms,
    /// with a version or not.
    pub skip: Vec<Atom>,
    /// The Keylime runtime policy the hook keeps, when configured.
    pub keylime: Option<KeylimeConfig>,
}

impl Settings {
    /// Reads the settings file `config` names and applies `flags`.
    /// A missing default file is fine; a missing explicit one is an error.
    pub fn load(config: &ConfigPath, flags: &KeyArgs, jobs: Option<usize>) -> Result<Settings> {
        let (source, file) = match config {
            ConfigPath::Explicit(path) => (Some(path.to_path_buf()), read_config(path)?),
            ConfigPath::Default(path) => {
                let path = path.clone();
                if path.exists() {
                    let file = read_config(&path)?;
                    (Some(path), file)
                } else {
                    (None, FileConfig::default())
                }
            }
        };
        Settings::merge(source, file, flags, jobs)
    }

    /// Settings from the defaults and `flags` alone, reading no file.
    pub fn defaults(flags: &KeyArgs, jobs: Option<usize>) -> Result<Settings> {
        Settings::merge(None, FileConfig::default(), flags, jobs)
    }

    fn merge(
        source: Option<PathBuf>,
        file: FileConfig,
        flags: &KeyArgs,
        jobs: Option<usize>,
    ) -> Result<Settings> {
        let origin = Origin(source.as_deref());
        let hash = match flags.hash.as_deref().or(file.hash.as_deref()) {
            Some(name) => name
                .parse::<HashAlgo>()
                .with_context(|| format!("hash setting ({origin})"))?,
            None => HashAlgo::Sha256,
        };
        let keyid = match flags.keyid.as_deref().or(file.keyid.as_deref()) {
            Some(hex) => Some(
                hex.parse::<KeyId>()
                    .with_context(|| format!("keyid setting ({origin})"))?,
            ),
            None => None,
        };
        let backend = match flags.backend.as_deref().or(file.backend.as_deref()) {
            Some(name) => ima_core::provider_by_name(name)
                .with_context(|| format!("backend setting ({origin})"))?,
            None => ima_core::default_provider(),
        };
        let jobs = match jobs.or(file.jobs) {
            Some(0) => bail!("jobs setting ({origin}): must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let skip = file
            .skip
            .unwrap_or_default()
            .iter()
            .map(|text| skip_atom(text).with_context(|| format!("skip setting ({origin})")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Settings {
            skip,
            key: flags
                .key
                .clone()
                .or(file.key)
                .unwrap_or_else(|| DEFAULT_KEY.into()),
            explicit_cert: flags.cert.clone().or(file.cert),
            keyid,
            hash,
            jobs,
            backend,
            premerge: file.premerge.unwrap_or_default(),
            strict: file.strict.unwrap_or(false),
            enforce: file.enforce.unwrap_or_default(),
            allow_unsigned_window: file.allow_unsigned_window.unwrap_or(false),
            config_files: file.config_files.unwrap_or_default(),
            allow_insecure_key: file.allow_insecure_key.unwrap_or(false),
            scope: file.scope.unwrap_or_default(),
            mode: file.mode.unwrap_or_default(),
            trusted_certs: file.trusted_certs.unwrap_or_default(),
            hardware: file.hardware.unwrap_or_default(),
            keylime: file.keylime,
            source,
        })
    }

    /// The `skip` entry that names `category/pf`, if any.
    pub fn skipped(&self, category: &str, pf: &str) -> Option<&Atom> {
        let cpv = Cpv::new(category, pf).ok()?;
        self.skip.iter().find(|atom| atom.matches_cpv(&cpv))
    }

    /// The `key` setting for messages: a `pkcs11:` URI with any PIN in it
    /// hidden (such a URI is refused, but its error and doctor show it).
    pub fn key_shown(&self) -> String {
        ima_core::redacted_uri(&self.key.to_string_lossy())
    }

    /// The certificate to use: the configured one, else the default when it exists.
    pub fn cert(&self) -> Option<PathBuf> {
        self.explicit_cert.clone().or_else(|| {
            let default = Path::new(DEFAULT_CERT);
            default.exists().then(|| default.to_path_buf())
        })
    }

    /// Loads the private key (and its certificate) and builds the signer.
    /// Refuses a key file others could read or replace ([`key_exposure`]),
    /// unless `allow_insecure_key = true`, which turns that into a warning.
    pub fn signer(&self) -> Result<ima_core::ImaSigner> {
        let problems = key_exposure(&self.key);
        if !problems.is_empty() {
            if !self.allow_insecure_key {
                bail!(
                    "refusing the private key {}: {}; (to sign with it anyway, set \
                     allow_insecure_key = true in {})",
                    self.key_shown(),
                    problems.join("; "),
                    self.source
                        .as_deref()
                        .map_or_else(|| CONFIG_FILE.to_string(), |p| p.display().to_string())
                );
            }
            for problem in problems {
                log::warn!("warning: {}: {problem}", self.key_shown());
            }
        }
        let cert = self.cert();
        let source = ima_core::KeySource::classify(&self.key)?;
        if source.is_hardware() {
            return self.hardware_signer(&source, cert.as_deref());
        }
        let key = ima_core::KeyMaterial::load(&self.key, cert.as_deref())?;
        Ok(ima_core::ImaSigner::new(
            self.backend,
            &key,
            self.hash,
            self.keyid,
        )?)
    }
}

impl Settings {
    /// The keys whose signatures a client keeps: every `trusted_certs`
    /// entry, and the configured certificate. Never opens the private key.
    pub fn trusted_keys(&self) -> Result<ima_core::KeySet> {
        let mut keys = ima_core::KeySet::new(self.backend);
        let certs: Vec<PathBuf> = self
            .trusted_certs
            .iter()
            .cloned()
            .chain(self.cert())
            .collect();
        for path in &certs {
            let cert = ima_core::Certificate::load(path)
                .with_context(|| format!("trusted certificate {}", path.display()))?;
            keys.add_certificate(&cert)?;
        }
        if keys.is_empty() {
            bail!(
                "mode = \"{}\" needs the certificates of the binary host: set \
                 trusted_certs = [\"/etc/keys/binhost.der\"] in {}",
                self.mode.as_str(),
                self.source
                    .as_deref()
                    .map_or_else(|| CONFIG_FILE.to_string(), |p| p.display().to_string())
            );
        }
        Ok(keys)
    }

    /// Opens a key held by hardware and builds a signer that sends the
    /// device one request at a time.
    #[cfg(feature = "openssl")]
    fn hardware_signer(
        &self,
        source: &ima_core::KeySource,
        cert: Option<&Path>,
    ) -> Result<ima_core::ImaSigner> {
        let cert = cert.map(ima_core::Certificate::load).transpose()?;
        let options = self.hardware.options()?;
        let key = ima_core::HardwareKey::open(source, &options, cert);
        // Our copy of the PIN is wiped now (Pin zeroizes on drop); the
        // device keeps its own.
        drop(options);
        let key = key?;
        Ok(ima_core::ImaSigner::with_hardware_key(
            self.backend,
            key,
            self.hash,
            self.keyid,
        )?)
    }

    /// Without OpenSSL there is no way to reach the device.
    #[cfg(not(feature = "openssl"))]
    fn hardware_signer(
        &self,
        source: &ima_core::KeySource,
        _cert: Option<&Path>,
    ) -> Result<ima_core::ImaSigner> {
        Err(ima_core::Error::HardwareNeedsOpenssl {
            key: source.to_string(),
            kind: source.kind(),
        }
        .into())
    }
}

/// Names where a setting came from, for error messages.
/// One `skip` entry: an atom with its category (a bare name could match a
/// package of another category) and without slot or repository (the hook
/// knows neither for certain).
fn skip_atom(text: &str) -> Result<Atom> {
    let atom: Atom = text.parse()?;
    if atom.category().is_none() {
        bail!("'{text}': write the category too (e.g. app-misc/{text})");
    }
    if atom.slot().is_some() || atom.repo().is_some() {
        bail!("'{text}': no :SLOT or ::REPO here, only category/name with an optional version");
    }
    Ok(atom)
}

struct Origin<'a>(Option<&'a Path>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "from {} or the command line", path.display()),
            None => f.write_str("from the command line"),
        }
    }
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

fn strict_in_text(text: &str) -> bool {
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

/// What makes the private key file unsafe to sign with, each with the
/// command that fixes it: whoever can read the key can sign anything the
/// kernel will then run, and whoever can replace it (or write its directory)
/// chooses what gets signed. Refused:
/// - any group or other permission bit on the key (`chmod 0400`);
/// - a key owned by someone else than root or the user running this;
/// - its directory writable by others (sticky or not), or by a group other
///   than root's (gid 0), or owned by someone else than root or this user.
///
/// A key that cannot be stat'ed gives no problem here: loading it reports why.
pub fn key_exposure(path: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    // A directory is not a key: loading it says so.
    let meta = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => meta,
        _ => return Vec::new(),
    };
    let me = rustix::process::geteuid().as_raw();
    let mut problems = Vec::new();
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        problems.push(format!(
            "the private key is readable by group or others (mode {mode:04o}); run: chmod 0400 {}",
            path.display()
        ));
    }
    if meta.uid() != 0 && meta.uid() != me {
        problems.push(format!(
            "the private key is owned by uid {}, not root; run: chown root:root {}",
            meta.uid(),
            path.display()
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::metadata(dir) {
        let dmode = d.mode() & 0o7777;
        if dmode & 0o002 != 0 {
            problems.push(format!(
                "its directory {} is writable by others (mode {dmode:04o}): anyone can replace \
                 the key; move it, or run: chmod o-w {}",
                dir.display(),
                dir.display()
            ));
        }
        if dmode & 0o020 != 0 && d.gid() != 0 {
            problems.push(format!(
                "its directory {} is writable by group {} (mode {dmode:04o}); run: chmod g-w {}",
                dir.display(),
                d.gid(),
                dir.display()
            ));
        }
        if d.uid() != 0 && d.uid() != me {
            problems.push(format!(
                "its directory {} is owned by uid {}, who can replace the key; run: chown root:root {}",
                dir.display(),
                d.uid(),
                dir.display()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_setting() {
        let c = parse_config(
            r#"
            key = "/k"
            cert = "/c"
            keyid = "0a0b0c0d"
            hash = "sha512"
            jobs = 3
            backend = "openssl"
            premerge = "never"
            strict = true
            config_files = "skip"
            allow_insecure_key = true
            "#,
        )
        .unwrap();
        assert_eq!(c.key.as_deref(), Some(Path::new("/k")));
        assert_eq!(c.premerge, Some(Premerge::Never));
        assert_eq!(c.config_files, Some(ConfigFiles::Skip));
        assert_eq!(c.strict, Some(true));
        assert_eq!(c.jobs, Some(3));
        assert_eq!(c.allow_insecure_key, Some(true));
    }

    #[test]
    fn enforce_takes_auto_or_a_bool() {
        assert_eq!(parse_config("").unwrap().enforce, None);
        for (text, want) in [
            ("enforce = \"auto\"", Enforce::Auto),
            ("enforce = true", Enforce::Yes),
            ("enforce = false", Enforce::No),
        ] {
            assert_eq!(parse_config(text).unwrap().enforce, Some(want), "{text}");
        }
        let e = parse_config("enforce = \"yes\"").unwrap_err();
        assert!(
            e.to_string().contains("expected \"auto\", true or false"),
            "{e}"
        );
        assert_eq!(
            parse_config("allow_unsigned_window = true")
                .unwrap()
                .allow_unsigned_window,
            Some(true)
        );
    }

    #[test]
    fn client_modes_and_trusted_certs() {
        let c = parse_config("mode = \"sign-missing\"\ntrusted_certs = [\"/a.der\", \"/b.pem\"]\n")
            .unwrap();
        assert_eq!(c.mode, Some(Mode::SignMissing));
        assert_eq!(c.trusted_certs.unwrap().len(), 2);
        assert_eq!(
            parse_config("mode = \"verify\"").unwrap().mode,
            Some(Mode::Verify)
        );
        assert_eq!(parse_config("").unwrap().mode, None);
        let e = parse_config("mode = \"verify-only\"").unwrap_err();
        assert!(e.to_string().contains("sign-missing"), "{e}");
    }

    #[test]
    fn verify_mode_without_any_certificate_says_what_to_set() {
        let file = parse_config("mode = \"verify\"\ncert = \"/nonexistent/x.der\"").unwrap();
        let s = Settings::merge(None, file, &KeyArgs::default(), None).unwrap();
        let e = s.trusted_keys().unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/x.der"), "{e:#}");
        let s = Settings::merge(
            None,
            FileConfig {
                mode: Some(Mode::Verify),
                ..Default::default()
            },
            &KeyArgs::default(),
            None,
        )
        .unwrap();
        if s.cert().is_none() {
            let e = s.trusted_keys().unwrap_err();
            assert!(e.to_string().contains("trusted_certs = ["), "{e}");
        }
    }

    #[test]
    fn strict_is_found_in_files_that_are_otherwise_rejected() {
        for (text, strict) in [
            ("", false),
            ("strict = false\n", false),
            ("strict = true\n", true),
            ("strict = true\nkye = 1\n", true),
            ("strict = \"yes\"\n", true),
            ("strict = true # comment\n[[[ not toml", true),
            ("strict=true\n= garbage", true),
            ("# strict = true\n[[[ not toml", false),
            ("strictly = true\n[[[", false),
            ("strict = truest\n[[[", false),
        ] {
            assert_eq!(strict_in_text(text), strict, "{text:?}");
        }
    }

    #[test]
    fn skip_takes_category_atoms_and_matches_the_merged_package() {
        let file = parse_config("skip = [\"app-misc/foo\", \"<dev-libs/bar-2\"]\n").unwrap();
        let s = Settings::merge(None, file, &KeyArgs::default(), Some(1)).unwrap();
        assert_eq!(
            s.skipped("app-misc", "foo-1.2-r1").unwrap().as_str(),
            "app-misc/foo"
        );
        assert!(s.skipped("dev-libs", "bar-1.9").is_some());
        assert!(s.skipped("dev-libs", "bar-2").is_none());
        assert!(s.skipped("app-misc", "foobar-1").is_none());
        for (bad, says) in [
            ("foo", "write the category too"),
            ("app-misc/foo:0", "no :SLOT or ::REPO"),
            ("app-misc/", "invalid atom"),
        ] {
            let file = parse_config(&format!("skip = [\"{bad}\"]\n")).unwrap();
            let e = Settings::merge(None, file, &KeyArgs::default(), Some(1)).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{bad}: {e:#}");
            assert!(format!("{e:#}").contains("skip setting"), "{e:#}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse_config("kye = \"/k\"\n").unwrap_err().to_string();
        assert!(err.contains("kye"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_explained() {
        let err = parse_config("premerge = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sometimes") && err.contains("auto"), "{err}");
        let err = parse_config("config_files = \"digest\"\n")
            .unwrap_err()
            .to_string();
        for mode in ["executable", "hash", "sign", "skip"] {
            assert!(err.contains(mode), "{err}");
            let line = format!("config_files = \"{mode}\"\n");
            let parsed = parse_config(&line).unwrap().config_files.unwrap();
            assert_eq!(parsed.name(), mode);
        }
    }

    #[test]
    fn flags_override_file() {
        let file = parse_config("hash = \"sha512\"\nkey = \"/file-key\"\n").unwrap();
        let flags = KeyArgs {
            hash: Some("sha384".into()),
            ..KeyArgs::default()
        };
        let s = Settings::merge(None, file, &flags, Some(2)).unwrap();
        assert_eq!(s.hash, HashAlgo::Sha384);
        assert_eq!(s.key, Path::new("/file-key"));
        assert_eq!(s.jobs, 2);
    }

    #[test]
    fn unknown_hash_is_an_error() {
        let flags = KeyArgs {
            hash: Some("sha3".into()),
            ..KeyArgs::default()
        };
        let err = Settings::merge(None, FileConfig::default(), &flags, None).unwrap_err();
        assert!(format!("{err:#}").contains("sha3"), "{err:#}");
    }

    #[test]
    fn zero_jobs_is_an_error() {
        let err =
            Settings::merge(None, FileConfig::default(), &KeyArgs::default(), Some(0)).unwrap_err();
        assert!(err.to_string().contains("at least 1"));
    }

    #[test]
    fn defaults() {
        let s = Settings::merge(None, FileConfig::default(), &KeyArgs::default(), None).unwrap();
        assert_eq!(s.key, Path::new(DEFAULT_KEY));
        assert_eq!(s.hash, HashAlgo::Sha256);
        assert_eq!(s.premerge, Premerge::Auto);
        assert_eq!(s.config_files, ConfigFiles::Executable);
        assert!(!s.strict);
    }
}
