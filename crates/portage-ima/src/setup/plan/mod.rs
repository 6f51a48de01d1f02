//! The plan: numbered steps, each with the files it writes (their exact
//! content), the commands it runs, what is left for the admin and why;
//! then the boots still to do, each with its exact command line and where
//! it goes. A plan is computed against the files as they are, so a step
//! already done plans no change: that is what makes `--apply` idempotent.
//!
//! This file holds the plan's types and the order of the steps ([`plan`]);
//! one module per kind of step, in that order: `key`, `portage` (ima.toml,
//! bashrc, make.conf), `policy`, `keyring_path`, `kernel`, `boot`; then
//! `next_boots`, the boots still to do.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::gentoo::system::{Init, Initramfs, KernelPackage};
use crate::kernel::secure_boot::SecureBoot;
use crate::settings::{DEFAULT_CERT, DEFAULT_KEY};

use super::keyring::{self, Choice};
use super::{Algorithm, Choices, Machine};

mod boot;
mod kernel;
mod key;
mod keyring_path;
mod next_boots;
mod policy;
mod portage;

pub use boot::{
    DRACUT_CONF, DRACUT_KEYS_DIR, OPENRC_LINK, OPENRC_SERVICE, SYSTEMD_LINK, SYSTEMD_UNIT,
};
pub use kernel::KERNEL_FRAGMENT;
pub use key::{CA_CERT, CA_CERT_DER, CA_CONF, CA_KEY, CERT_CONF};
pub use policy::{policy_path, ENFORCE_SUFFIX, POLICY, SYSTEMD_UNIT_POLICY};
pub use portage::{BASHRC_LINE, BLOCK_BEGIN, BLOCK_END, MAKE_CONF_FILE, SNIPPET};

use boot::boot_step;
use kernel::kernel_step;
use key::key_step;
use keyring_path::keyring_step;
use next_boots::boots;
use policy::policy_step;
use portage::{hook_step, make_conf_step, settings_step};

/// One argument of a command: text, or a path on the system (run under ROOT).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Arg {
    /// Plain text.
    Text(String),
    /// A path as the system sees it.
    Path(PathBuf),
}

/// A command a step runs, skipped when what it makes is already there.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Run {
    /// The command line.
    pub argv: Vec<Arg>,
    /// What it makes; it runs only when one of them is missing.
    pub creates: Vec<PathBuf>,
    /// Files made private (mode 0400) after it ran.
    pub private: Vec<PathBuf>,
}

impl Run {
    /// The command as a shell line.
    pub fn shell(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                let s = match a {
                    Arg::Text(t) => t.clone(),
                    Arg::Path(p) => p.display().to_string(),
                };
                if s.chars().any(|c| " \"'$;&|<>()*?[]".contains(c)) {
                    format!("'{}'", s.replace('\'', "'\\''"))
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One thing a step does, in order.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// The file gets exactly `content`.
    Write {
        /// The file, as the system sees it.
        path: PathBuf,
        /// Its whole new content.
        content: String,
        /// What the step adds or replaces, for the text plan.
        #[serde(skip)]
        shown: String,
        /// Its mode when created.
        mode: u32,
    },
    /// A symlink `path -> target`.
    Symlink {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// `to` gets the bytes of `from` (made by an earlier step).
    Copy {
        /// The source, as the system sees it.
        from: PathBuf,
        /// The copy.
        to: PathBuf,
    },
    /// A command.
    Run(Run),
}

/// What a step is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// The signing key and its certificate (and a CA).
    Key,
    /// ima.toml.
    Settings,
    /// The bashrc line.
    Hook,
    /// The make.conf lines for a copying merge.
    MakeConf,
    /// /etc/ima/ima-policy.
    Policy,
    /// The keyring path.
    Keyring,
    /// Kernel options the running kernel lacks.
    Kernel,
    /// Boot integration (service, unit, dracut).
    Boot,
    /// `sign --all`, then `policy --check`.
    Sign,
}

/// One numbered step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// What it is about.
    pub kind: StepKind,
    /// One line.
    pub title: String,
    /// Why.
    pub reason: String,
    /// What setup does, in order.
    pub actions: Vec<Action>,
    /// What is left for the admin (setup prints it, never runs it).
    pub manual: Vec<String>,
    /// Why the step cannot be done here, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

impl Step {
    fn new(kind: StepKind, title: impl Into<String>, reason: impl Into<String>) -> Step {
        Step {
            kind,
            title: title.into(),
            reason: reason.into(),
            actions: Vec::new(),
            manual: Vec::new(),
            blocked: None,
        }
    }
}

/// Where a command-line change goes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CmdlinePlace {
    /// The file (`/etc/default/grub`), or the boot loader in words.
    pub file: String,
    /// The line to put there.
    pub line: String,
    /// What to run afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
}

/// A boot still to do.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Boot {
    /// One line.
    pub title: String,
    /// What to do before it.
    pub before: Vec<String>,
    /// The command-line parameter it needs (`ima_appraise=log`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// Where the command line goes.
    pub places: Vec<CmdlinePlace>,
    /// What to do after it.
    pub after: Vec<String>,
}

/// What setup read, for the plan's header and `--json`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Facts {
    /// ROOT.
    pub root: PathBuf,
    /// systemd or openrc.
    pub init: Init,
    /// The initramfs generator.
    pub initramfs: Initramfs,
    /// The kernel package.
    pub kernel_package: KernelPackage,
    /// Where the kernel configuration was read.
    pub kernel_config: PathBuf,
    /// The keyrings seen in /proc/keys.
    pub keyrings: Vec<String>,
    /// Secure Boot, in words.
    pub secure_boot: String,
    /// Whether Secure Boot is enforced (`ima_appraise=` ignored).
    pub secure_boot_enabled: bool,
    /// Portage's merge.
    pub portage: super::PortageFacts,
}

/// The whole plan.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    /// What setup read.
    pub facts: Facts,
    /// The key type (of a key it makes).
    pub algorithm: Algorithm,
    /// The signing key (a path on the system, or a hardware URI).
    pub key: String,
    /// Its certificate.
    pub cert: PathBuf,
    /// The keyring path and why.
    pub keyring: Choice,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The boots still to do.
    pub boots: Vec<Boot>,
    /// Counts, for a glance.
    pub summary: Summary,
}

/// The plan's counts.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Steps.
    pub steps: usize,
    /// Actions setup would take (each may turn out already done).
    pub actions: usize,
    /// Steps that cannot be done here.
    pub blocked: usize,
    /// Things left for the admin.
    pub manual: usize,
}

fn text(s: &str) -> Arg {
    Arg::Text(s.into())
}

fn path(p: &str) -> Arg {
    Arg::Path(p.into())
}

/// Reads `path` (a system path) under ROOT, `None` when absent.
fn current(machine: &Machine, p: &str) -> Option<String> {
    fs::read_to_string(machine.path(Path::new(p))).ok()
}

/// The plan for `machine` with `choices`. A key without its certificate
/// is an error (nothing is planned).
pub fn plan(machine: &Machine, choices: &Choices) -> Result<Plan> {
    let config = &machine.kernel_config;
    let algorithm = choices
        .algorithm
        .unwrap_or(if config.builtin("CONFIG_CRYPTO_ECDSA") {
            Algorithm::P256
        } else {
            Algorithm::Rsa
        });
    let keyring = keyring::choose(machine);
    let key = choices
        .hardware
        .clone()
        .or_else(|| choices.key.as_ref().map(|k| k.display().to_string()))
        .or_else(|| machine.configured.key.clone())
        .unwrap_or_else(|| DEFAULT_KEY.to_string());
    let cert = choices
        .cert
        .clone()
        .or_else(|| machine.configured.cert.clone().map(PathBuf::from))
        .unwrap_or_else(|| DEFAULT_CERT.into());
    let hardware = choices.hardware.is_some();
    let key_exists = !hardware && machine.path(Path::new(&key)).exists();
    let cert_exists = machine.path(&cert).exists();
    if (key_exists || hardware) && !cert_exists {
        bail!(
            "the key {key} has no certificate at {}: give it with --cert (or name it as cert \
             in ima.toml), or move the key away to have setup make a new pair",
            cert.display()
        );
    }
    if cert_exists && !key_exists && !hardware {
        bail!(
            "the certificate {} exists but its key {key} does not: give the key with --key, \
             or move the certificate away to have setup make a new pair",
            cert.display()
        );
    }

    let mut steps = vec![key_step(
        machine,
        &keyring,
        algorithm,
        &key,
        &cert,
        key_exists || hardware,
    )];
    steps.push(settings_step(machine, &key, &cert));
    steps.push(hook_step(machine));
    // The policy is derived from Portage's setup as it will be after the
    // make.conf step (FEATURES=xattr), so a second run derives the same.
    let mut portage_after = machine.policy_setup.clone();
    if let Some(step) = make_conf_step(machine) {
        portage_after.xattr = true;
        steps.push(step);
    }
    steps.push(policy_step(machine, &portage_after, choices));
    steps.push(keyring_step(machine, &keyring));
    let mut rebuild = None;
    if let Some((step, r)) = kernel_step(machine, &keyring, algorithm) {
        rebuild = r;
        steps.push(step);
    }
    steps.push(boot_step(machine, &cert));
    let sign = Step::new(
        StepKind::Sign,
        "Sign every installed file, then check the policy against the disk",
        "what is installed was merged before the hook: `portage-ima sign --all` signs each file \
         whose content matches its package's CONTENTS; `portage-ima policy --check` then lists \
         what the policy would still refuse",
    );
    steps.push(sign);
    let boots = boots(machine, &keyring, rebuild);
    let summary = Summary {
        steps: steps.len(),
        actions: steps.iter().map(|s| s.actions.len()).sum(),
        blocked: steps.iter().filter(|s| s.blocked.is_some()).count(),
        manual: steps.iter().map(|s| s.manual.len()).sum(),
    };
    Ok(Plan {
        facts: Facts {
            root: machine.root.clone(),
            init: machine.init,
            initramfs: machine.initramfs.clone(),
            kernel_package: machine.kernel_package.clone(),
            kernel_config: config.source.clone(),
            keyrings: machine.keyrings.clone(),
            secure_boot: secure_boot_words(&machine.secure_boot),
            secure_boot_enabled: machine.secure_boot == SecureBoot::Enabled,
            portage: machine.portage.clone(),
        },
        algorithm,
        key,
        cert,
        keyring,
        steps,
        boots,
        summary,
    })
}

fn secure_boot_words(sb: &SecureBoot) -> String {
    match sb {
        SecureBoot::Enabled => "enabled: the kernel ignores ima_appraise=".into(),
        SecureBoot::Disabled(why) => format!("disabled: {why}"),
        SecureBoot::NotUefi => "no efivarfs: not booted through UEFI".into(),
        SecureBoot::Unknown(why) => format!("unknown: {why}"),
    }
}

fn write(p: &str, content: String, mode: u32) -> Action {
    Action::Write {
        path: p.into(),
        shown: content.clone(),
        content,
        mode,
    }
}
