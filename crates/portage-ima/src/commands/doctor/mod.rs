//! `portage-ima doctor`: checks that a setup can work, end to end.
//!
//! Signing is only useful when every link holds: a private key only root can
//! read, a certificate the kernel accepts on its IMA keyring and that names
//! the key id the signatures carry, a kernel that appraises with that
//! keyring, a Portage that runs the hook (and keeps `security.ima` when it
//! merges), and a signer that itself may run under enforce. Each check prints
//! one line, `ok|warn|FAIL|skip  <check>: <finding>`, and, when something is
//! not right, an indented line saying what to do. Nothing is changed.
//!
//! Everything read from the kernel (`/proc/mounts`, `/proc/cmdline`,
//! `/proc/crypto`, `/proc/keys`, securityfs) is parsed by small functions that
//! take the text, so they are tested on captured samples as well as on the
//! machine the tests run on.
//!
//! Where each check lives:
//! - this file: [`CheckId`] (every check, listed once), the [`Report`] and [`run`];
//! - `keys.rs`: config's key, its access, the certificate, the key id;
//! - `kernel.rs`: securityfs, IMA, the appraise mode, the hash, the policy;
//! - `secure_boot.rs`: UEFI Secure Boot (efivarfs, the kernel log) and
//!   whether an `init=/bin/sh` recovery is possible;
//! - `keyring.rs`: the certificate on the `.ima` or `_ima` keyring, and
//!   whether the kernel takes each configured certificate there
//!   (`crate::kernel::ima_trust`);
//! - `binpkg.rs`: a client's trusted certificates, and what binary packages
//!   carry of the signatures;
//! - `portage.rs`: bashrc, PORTAGE_TMPDIR, xattr, premerge, decided with the
//!   hook's own rules (`gentoo::env::renames_between`, `XattrCopy`) and
//!   the crate's one make.conf reader (`gentoo::make_conf`);
//! - `failsafe.rs`: whether the hook will stop merges (enforcement and
//!   the premerge decision, `crate::failsafe`);
//! - `policy.rs`: the IMA policy (read by `kernel.rs`: `--policy`, the
//!   loaded one, or /etc/ima/ima-policy) against builds, merges and config
//!   files, by `crate::policy::review`;
//! - `signatures.rs`: the installed files' `security.ima` (vdb `obj`s): keys
//!   not on the keyring, files the policy covers but nothing signed;
//! - `self_check.rs`: the signer's own binary and libraries;
//! - `keylime.rs`: the Keylime runtime policy against the vdb, and the
//!   verifier that should hold it.

mod binpkg;
mod failsafe;
mod kernel;
mod keylime;
mod keyring;
mod keys;
mod pin;
mod policy;
mod portage;
mod secure_boot;
mod self_check;
mod signatures;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::cli::DoctorArgs;
use crate::context::Context;
use crate::gentoo::vars::Vars;
use crate::plan::Location;
use crate::report::colour::{self, Tone};
use crate::report::status::Status;
use crate::settings::{self, ConfigPath, Mode, Settings};

/// Declares [`CheckId`] and [`CheckId::ALL`] from one list, so that the
/// report's order and the names cannot drift apart.
macro_rules! check_ids {
    ($($(#[$meta:meta])* $id:ident,)*) => {
        /// A check's stable name, as printed in the text report and in
        /// `--json`'s "check" fields (serde's kebab-case of the variant).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum CheckId {
            $($(#[$meta])* $id,)*
        }

        impl CheckId {
            /// Every check, in the order a report lists them.
            pub const ALL: &'static [CheckId] = &[$(CheckId::$id,)*];
        }
    };
}

check_ids! {
    /// The settings file loads.
    Config,
    /// The private key.
    Key,
    /// Who can read the private key.
    KeyAccess,
    /// The hardware token's PIN file is a private, plain file.
    PinFile,
    /// The certificate parses.
    Cert,
    /// The certificate belongs to the key.
    CertKey,
    /// The certificate has a subject key identifier (the kernel's key id).
    CertSkid,
    /// The certificate's key usage suits the IMA keyring.
    CertUsage,
    /// The certificate's validity.
    CertExpiry,
    /// The key id signatures carry.
    #[serde(rename = "keyid")]
    KeyId,
    /// The binary host's certificates a client trusts.
    TrustedCerts,
    /// securityfs is mounted.
    Securityfs,
    /// The kernel has IMA.
    Ima,
    /// The appraise mode.
    Appraise,
    /// UEFI Secure Boot: whether ima_appraise= is honoured.
    SecureBoot,
    /// Whether init=/bin/sh can be given at boot to recover.
    Recovery,
    /// The kernel computes the configured hash.
    Hash,
    /// The certificate is on the IMA keyring.
    Keyring,
    /// The kernel accepts each configured certificate on its IMA keyring.
    KeyringTrust,
    /// The IMA policy appraises signatures.
    Policy,
    /// /etc/portage/bashrc runs the hook.
    Bashrc,
    /// PORTAGE_TMPDIR and ROOT: renamed or copied?
    Tmpdir,
    /// FEATURES=xattr and PORTAGE_XATTR_EXCLUDE keep security.ima.
    Xattr,
    /// Signing before the merge works.
    Premerge,
    /// Fail-safe merges: the hook stops merges that would leave programs
    /// live and unsigned on an enforcing kernel.
    Failsafe,
    /// What binary packages carry of the signatures.
    Binpkg,
    /// No package's saved environment holds the token PIN.
    PinSaved,
    /// No rule of the IMA policy blocks source builds.
    PolicyBuilds,
    /// Merged programs are signed before a rule appraises them.
    PolicyMerges,
    /// Signed config files stay writable under the policy.
    PolicyConfig,
    /// Installed files are signed by keys on the IMA keyring.
    SignatureKeys,
    /// Installed files the policy covers carry a signature (`scope`).
    PolicyCoverage,
    /// The signer's own binary and libraries verify.
    #[serde(rename = "self")]
    Signer,
    /// The Keylime runtime policy covers what the vdb holds.
    KeylimePolicy,
    /// The Keylime verifier answers and holds the current policy.
    KeylimeVerifier,
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde name: listed once, in the enum.
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => write!(f, "{self:?}"),
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something is worth knowing or fixing.
    Warn,
    /// Signing, or appraisal of what is signed, will not work.
    Fail,
    /// Could not be checked here; the finding says why.
    Skip,
}

impl Level {
    /// The label printed at the start of the line.
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Which check.
    pub check: CheckId,
    /// How it came out.
    pub status: Level,
    /// What was found.
    pub finding: String,
    /// What to do about it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, in the order they ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The checks' lines, in the order they ran.
    pub checks: Vec<Check>,
    /// No check failed (warnings allowed).
    pub ok: bool,
    /// ` --root DIR` for the commands the fixes suggest (empty for `/`).
    #[serde(skip)]
    root_option: String,
}

/// `doctor --json` (docs/json.md).
#[derive(Serialize)]
pub struct ReportJson<'a> {
    version: u32,
    ok: bool,
    checks: &'a [Check],
    /// How many checks ended with each status.
    summary: BTreeMap<Level, usize>,
}

impl Report {
    /// `portage-ima COMMAND`, with `--root` when the installed system
    /// checked is not `/`: a fix acts on the system doctor looked at.
    fn command(&self, command: &str) -> String {
        format!("portage-ima {command}{}", self.root_option)
    }

    /// The JSON document: the checks, and how many have each status.
    pub fn to_json(&self) -> ReportJson<'_> {
        let mut summary: BTreeMap<Level, usize> =
            [Level::Ok, Level::Warn, Level::Fail, Level::Skip]
                .into_iter()
                .map(|l| (l, 0))
                .collect();
        for c in &self.checks {
            *summary.entry(c.status).or_default() += 1;
        }
        ReportJson {
            version: crate::report::JSON_VERSION,
            ok: self.ok,
            checks: &self.checks,
            summary,
        }
    }

    fn push(&mut self, check: CheckId, status: Level, finding: String, fix: Option<String>) {
        self.checks.push(Check {
            check,
            status,
            finding: one_line(&finding),
            fix: fix.as_deref().map(one_line),
        });
        self.ok = self.checks.iter().all(|c| c.status != Level::Fail);
    }

    fn ok(&mut self, check: CheckId, finding: impl Into<String>) {
        self.push(check, Level::Ok, finding.into(), None);
    }

    fn warn(&mut self, check: CheckId, finding: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Warn, finding.into(), Some(fix.into()));
    }

    fn fail(&mut self, check: CheckId, finding: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Fail, finding.into(), Some(fix.into()));
    }

    fn skip(&mut self, check: CheckId, finding: impl Into<String>) {
        self.push(check, Level::Skip, finding.into(), None);
    }

    /// The text report: one line per check, the fix indented below it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tone = match c.status {
                Level::Ok => Tone::Good,
                Level::Warn => Tone::Warn,
                Level::Fail => Tone::Bad,
                Level::Skip => Tone::Plain,
            };
            out.push_str(&format!(
                "{}  {}: {}\n",
                colour::out(tone, &format!("{:<4}", c.status.label())),
                c.check,
                c.finding
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("      -> {fix}\n"));
            }
        }
        let count = |l| self.checks.iter().filter(|c| c.status == l).count();
        out.push_str(&format!(
            "portage-ima doctor: {} ok, {} warnings, {} failed, {} skipped\n",
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail),
            count(Level::Skip)
        ));
        out
    }
}

/// Folds a multi-line message (a TOML error with its source excerpt) into
/// one line, dropping the excerpt's `N | text` and `  | ^^^` gutter lines.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            let gutter = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs every check and prints the report (text, or JSON with `--json`).
/// Success when no check failed; warnings do not count.
pub fn run(ctx: &Context, args: &DoctorArgs) -> Result<Status> {
    let place = Place::of(ctx, args);
    if !place.config_root.is_dir() {
        bail!(
            "{}: not a directory; give the root whose etc/portage to check with --root",
            place.config_root.display()
        );
    }
    if !place.installed.root.is_dir() {
        bail!(
            "ROOT={}: not a directory; is ROOT right? (or give the root to check with --root)",
            place.installed.root.display()
        );
    }
    let report = diagnose(ctx.config(), args, &place);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.ok {
        Status::Success
    } else {
        Status::SomeFailed
    })
}

/// What doctor checks: a setup (its etc/portage) and an installed system.
pub struct Place {
    /// Whose etc/portage: `--root`, else PORTAGE_CONFIGROOT, else `/`.
    pub config_root: PathBuf,
    /// The installed files and their vdb: `--root` (with EPREFIX), else
    /// ROOT/EROOT as every command reads them.
    pub installed: Location,
    /// The environment (portageq is found by it).
    pub vars: Vars,
}

impl Place {
    /// From the run's context and `--root`.
    pub fn of(ctx: &Context, args: &DoctorArgs) -> Place {
        match &args.root {
            Some(root) => Place {
                config_root: root.clone(),
                installed: signatures::installed_location(root, ctx.lookup()),
                vars: ctx.vars().clone(),
            },
            None => Place {
                config_root: ctx
                    .var("PORTAGE_CONFIGROOT")
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| PathBuf::from("/"), PathBuf::from),
                installed: ctx.location(),
                vars: ctx.vars().clone(),
            },
        }
    }
}

/// Runs every check against `place` and this machine's kernel.
pub fn diagnose(config: &ConfigPath, args: &DoctorArgs, place: &Place) -> Report {
    let root = place.config_root.as_path();
    let mut r = Report {
        ok: true,
        root_option: crate::report::root_option(&place.installed.root),
        ..Report::default()
    };
    let settings = load_settings(&mut r, config, args, root);
    if settings.is_none() {
        // Keep the list of checks the same whatever happens.
        for &c in keys::CHECKS {
            r.skip(c, "settings did not load");
        }
    }
    // A verify-only client has no key, and its doctor never opens one.
    let keyless = settings.as_ref().filter(|s| s.mode == Mode::Verify);
    let signing = settings.as_ref().filter(|s| s.mode != Mode::Verify);
    let key = signing.and_then(|s| keys::check_key(&mut r, s));
    pin::check_pin_file(&mut r, settings.as_ref());
    let cert = match (keyless, signing) {
        (Some(s), _) => keys::check_keyless(&mut r, s, |r| keys::check_cert(r, s, None)),
        (None, Some(s)) => keys::check_cert(&mut r, s, key.as_ref()),
        (None, None) => None,
    };
    let keyid = signing.and_then(|s| keys::check_keyid(&mut r, s, key.as_ref(), cert.as_ref()));
    let trusted = match settings.as_ref() {
        Some(s) => binpkg::check_trusted_certs(&mut r, s),
        None => {
            r.skip(CheckId::TrustedCerts, "settings did not load");
            Vec::new()
        }
    };
    // The kernel must know the key the files here are signed with.
    let keyid = keyid.or_else(|| {
        cert.as_ref()
            .map(|c| c.key_id())
            .filter(|_| keyless.is_some())
    });
    let keyid = keyid.or_else(|| trusted.first().copied().filter(|_| keyless.is_some()));
    let kernel = kernel::check_kernel(
        &mut r,
        settings.as_ref(),
        keyid,
        args.policy.as_deref(),
        root,
        &kernel::KernelSources {
            efivars: args
                .efivars
                .clone()
                .unwrap_or_else(|| crate::kernel::secure_boot::EFIVARS.into()),
            kernel_log: args.kernel_log.clone(),
            keyrings: keyring::KeyringSources {
                kernel_config: args.kernel_config.clone(),
                ima_keyring: args.ima_keyring,
                trusted_keyrings: args.trusted_keyring.clone(),
            },
        },
    );
    let vars = portage::check_portage(&mut r, settings.as_ref(), root, &place.vars);
    pin::check_saved_pin(&mut r, settings.as_ref(), &place.installed);
    policy::check_policy(&mut r, settings.as_ref(), root, &kernel, vars);
    signatures::check_signatures(&mut r, settings.as_ref(), &place.installed, &kernel);
    self_check::check_self(
        &mut r,
        settings.as_ref(),
        key.as_ref(),
        cert.as_ref(),
        &kernel,
    );
    keylime::check_keylime(&mut r, settings.as_ref(), &place.installed.eroot);
    r
}

/// The settings file: `--config`, else `${root}/etc/portage/ima.toml`.
fn load_settings(
    r: &mut Report,
    config: &ConfigPath,
    args: &DoctorArgs,
    root: &Path,
) -> Option<Settings> {
    // --config wins; with --root, that root's ima.toml; else the usual
    // lookup (PORTAGE_CONFIGROOT, then /etc/portage/ima.toml).
    let in_root = root.join(settings::CONFIG_FILE);
    let with_root = config.explicit().is_none() && args.root.is_some();
    // A root without ima.toml means defaults, not the host's file.
    let missing_in_root = with_root && !in_root.exists();
    let loaded = match config.explicit() {
        Some(_) => Settings::load(config, &args.key, None),
        None if missing_in_root => Settings::defaults(&args.key, None),
        None if with_root => {
            Settings::load(&ConfigPath::Explicit(in_root.clone()), &args.key, None)
        }
        None => Settings::load(config, &args.key, None),
    };
    match loaded {
        Ok(settings) => {
            let shown = if missing_in_root {
                format!("{} does not exist: defaults and flags", in_root.display())
            } else {
                match &settings.source {
                    Some(p) => format!("{}", p.display()),
                    None => "no ima.toml: defaults and flags".to_string(),
                }
            };
            r.ok(
                CheckId::Config,
                format!(
                    "{shown}; key {}, hash {}, backend {}, config_files {}",
                    settings.key_shown(),
                    settings.hash,
                    settings.backend.name(),
                    settings.config_files.name()
                ),
            );
            Some(settings)
        }
        Err(e) => {
            r.fail(
                CheckId::Config,
                crate::report::status::error_line(&e),
                "fix the settings file (for an unknown key, the message lists the known ones) or the flags",
            );
            None
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}
