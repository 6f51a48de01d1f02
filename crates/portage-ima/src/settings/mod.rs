//! Settings: /etc/portage/ima.toml, overridden by command-line flags.
//!
//! [`Settings::load`] reads the file ([`file`]: its tables, the path a run
//! reads, the early strict check) and merges the flags over it. The
//! choices it holds are plain enums ([`choices`]); the `[keylime]` and
//! `[hardware]` tables have their own files ([`keylime`], [`hardware`]),
//! and [`key_exposure`] judges the private key file's permissions.

mod choices;
mod file;
mod hardware;
mod key_exposure;
mod keylime;

pub use choices::{Enforce, Mode, Premerge, ProgressDisplay, SigningScope};
pub use file::{parse_config, read_config, strict_requested, ConfigPath, FileConfig};
pub use hardware::{HardwareConfig, DEFAULT_PIN_ENV};
pub use key_exposure::key_exposure;
pub use keylime::{KeylimeConfig, KeylimeMode, DEFAULT_KEYLIME_POLICY};

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::{CryptoProvider, HashAlgo, KeyId};

use crate::cli::KeyArgs;
use crate::gentoo::atom::Atom;
use crate::gentoo::cpv::Cpv;
use crate::plan::ConfigFiles;

/// Where the private key is looked for when nothing says otherwise.
pub const DEFAULT_KEY: &str = "/etc/keys/IMA_signing_key.priv";
/// The certificate used when it exists and nothing says otherwise.
pub const DEFAULT_CERT: &str = "/etc/keys/x509_ima.der";
/// The settings file, relative to PORTAGE_CONFIGROOT.
pub const CONFIG_FILE: &str = "etc/portage/ima.toml";

/// The ebuild phase this runs in, if any (`EBUILD_PHASE`, set by Portage).
fn ebuild_phase() -> Option<String> {
    std::env::var("EBUILD_PHASE").ok().filter(|p| !p.is_empty())
}

/// Settings after the file and the flags are merged.
#[derive(Debug)]
pub struct Settings {
    /// The file the settings came from, if any.
    pub source: Option<PathBuf>,
    /// The private key: a file, or how to reach a key held by hardware.
    pub key: PathBuf,
    /// An explicit certificate (flag or file); [`Settings::cert`] adds the default.
    explicit_cert: Option<PathBuf>,
    /// A key id the signatures carry instead of the certificate's.
    pub keyid: Option<KeyId>,
    /// The hash algorithm signatures are made over (sha256 by default).
    pub hash: HashAlgo,
    /// Threads that hash and sign in parallel.
    pub jobs: usize,
    /// The crypto backend that signs and verifies.
    pub backend: &'static dyn CryptoProvider,
    /// Whether the hook signs in `${D}` before the merge.
    pub premerge: Premerge,
    /// Whether the emerge fails when a package is not fully signed.
    pub strict: bool,
    /// Whether to act as if the kernel enforced appraisal (fail-safe merges).
    pub enforce: Enforce,
    /// Under enforcement, merge with a window of unsigned live files
    /// (warned) instead of stopping the merge.
    pub allow_unsigned_window: bool,
    /// What is done with config-protected files.
    pub config_files: ConfigFiles,
    /// Sign with a key file others could read or replace (warned, not refused).
    pub allow_insecure_key: bool,
    /// Every file, or only those the IMA policy can appraise.
    pub scope: SigningScope,
    /// Sign, or keep the signatures a binary host made.
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
        Err(anyhow::Error::new(ima_core::Error::HardwareNeedsOpenssl {
            key: source.to_string(),
            kind: source.kind(),
        })
        .context("this portage-ima was built without USE=openssl"))
    }
}

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

/// Names where a setting came from, for error messages.
struct Origin<'a>(Option<&'a Path>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "from {} or the command line", path.display()),
            None => f.write_str("from the command line"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::file::strict_in_text;
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
