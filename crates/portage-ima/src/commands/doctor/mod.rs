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
//! - this file: [`run`] and the order of the checks ([`diagnose`]); the
//!   [`Report`] and [`CheckId`] (every check, listed once) are
//!   `crate::report::doctor`'s, with their printing;
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

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cli::DoctorArgs;
use crate::context::Context;
use crate::gentoo::vars::Vars;
use crate::plan::Location;
pub use crate::report::doctor::{Check, CheckId, Level, Report, ReportJson};
use crate::report::status::Status;
use crate::settings::{self, ConfigPath, Mode, Settings};

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
    diagnose(ctx.config(), args, &place).print(args.json)
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
    let mut r = Report::new(&place.installed.root);
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
