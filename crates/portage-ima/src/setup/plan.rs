//! The plan: numbered steps, each with the files it writes (their exact
//! content), the commands it runs, what is left for the admin and why;
//! then the boots still to do, each with its exact command line and where
//! it goes. A plan is computed against the files as they are, so a step
//! already done plans no change: that is what makes `--apply` idempotent.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::gentoo::system::{Init, Initramfs, KernelPackage};
use crate::kernel::secure_boot::SecureBoot;
use crate::policy::generate::Scope;
use crate::settings::{DEFAULT_CERT, DEFAULT_KEY};

use super::keyring::{self, Choice, KeyringPath};
use super::{Algorithm, Choices, Machine};

/// The local CA's private key, beside the IMA key (paths 3 and 4).
pub const CA_KEY: &str = "/etc/keys/IMA_ca.priv";
/// The local CA's certificate (PEM, what `CONFIG_SYSTEM_TRUSTED_KEYS` reads).
pub const CA_CERT: &str = "/etc/keys/IMA_ca.pem";
/// The local CA's certificate in DER (what `mokutil --import` reads).
pub const CA_CERT_DER: &str = "/etc/keys/IMA_ca.der";
/// The openssl request file for the IMA certificate (kept for renewals).
pub const CERT_CONF: &str = "/etc/keys/x509_ima.cnf";
/// The openssl request file for the CA.
pub const CA_CONF: &str = "/etc/keys/IMA_ca.cnf";
/// Where the bashrc line points (the ebuild installs it).
pub const SNIPPET: &str = "/usr/share/portage-ima/portage-ima.bashrc";
/// The bashrc line: guarded, so that Portage stays quiet should the
/// package be removed.
pub const BASHRC_LINE: &str = "[[ -r /usr/share/portage-ima/portage-ima.bashrc ]] && source /usr/share/portage-ima/portage-ima.bashrc";
/// The policy the boot loads: systemd itself, the OpenRC service, dracut.
pub const POLICY: &str = "/etc/ima/ima-policy";
/// The policy portage-ima.service loads on systemd without an initramfs
/// (systemd would load /etc/ima/ima-policy before the unit's certificates).
pub const SYSTEMD_UNIT_POLICY: &str = "/etc/ima/portage-ima.policy";
/// What the enforcing policy's file is called under Secure Boot, beside the
/// observe policy the first boot loads: the policy's name with this added.
pub const ENFORCE_SUFFIX: &str = ".enforce";
/// The make.conf block's first and last lines.
pub const BLOCK_BEGIN: &str = "# BEGIN portage-ima setup";
/// See [`BLOCK_BEGIN`].
pub const BLOCK_END: &str = "# END portage-ima setup";
/// The file of its own when make.conf is a directory (read last: Portage
/// reads the directory's files in name order).
pub const MAKE_CONF_FILE: &str = "/etc/portage/make.conf/zz-portage-ima.conf";
/// The kernel configuration fragment for a dist-kernel.
pub const KERNEL_FRAGMENT: &str = "/etc/kernel/config.d/portage-ima.config";
/// The options appraisal needs, as shipped (boot/kernel/portage-ima.config).
const SHIPPED_KERNEL_OPTIONS: &str = include_str!("../../../../boot/kernel/portage-ima.config");
/// dracut's configuration as shipped (boot/dracut/portage-ima.conf).
const SHIPPED_DRACUT_CONF: &str = include_str!("../../../../boot/dracut/portage-ima.conf");
/// The OpenRC service the ebuild installs.
pub const OPENRC_SERVICE: &str = "/etc/init.d/portage-ima";
/// Its link in the boot runlevel (`rc-update add portage-ima boot`).
pub const OPENRC_LINK: &str = "/etc/runlevels/boot/portage-ima";
/// The systemd unit the ebuild installs.
pub const SYSTEMD_UNIT: &str = "/usr/lib/systemd/system/portage-ima.service";
/// Its link (`systemctl enable portage-ima.service`).
pub const SYSTEMD_LINK: &str = "/etc/systemd/system/sysinit.target.wants/portage-ima.service";
/// Where dracut's `integrity` module loads IMA keys from (`IMAKEYSDIR`).
pub const DRACUT_KEYS_DIR: &str = "/etc/keys/ima";
/// The dracut configuration that adds the `integrity` module.
pub const DRACUT_CONF: &str = "/etc/dracut.conf.d/portage-ima.conf";

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

/// `openssl genpkey` for `algorithm` into `key`.
fn genkey(algorithm: Algorithm, key: &str) -> Run {
    let mut argv = vec![text("openssl"), text("genpkey"), text("-algorithm")];
    match algorithm {
        Algorithm::Rsa => {
            argv.extend([text("RSA"), text("-pkeyopt"), text("rsa_keygen_bits:4096")])
        }
        Algorithm::P256 => argv.extend([
            text("EC"),
            text("-pkeyopt"),
            text("ec_paramgen_curve:P-256"),
            text("-pkeyopt"),
            text("ec_param_enc:named_curve"),
        ]),
    }
    argv.extend([text("-out"), path(key)]);
    Run {
        argv,
        creates: vec![key.into()],
        private: vec![key.into()],
    }
}

/// The openssl request file for a certificate: subject and extensions.
fn request_conf(common_name: &str, section: &str, extensions: &str, why: &str) -> String {
    format!(
        "# portage-ima setup: {why}\n\
         # (openssl req -config; kept to renew the certificate the same way)\n\
         [req]\n\
         distinguished_name = subject\n\
         prompt = no\n\
         x509_extensions = {section}\n\
         \n\
         [subject]\n\
         CN = {common_name}\n\
         \n\
         [{section}]\n\
         {extensions}"
    )
}

fn write(p: &str, content: String, mode: u32) -> Action {
    Action::Write {
        path: p.into(),
        shown: content.clone(),
        content,
        mode,
    }
}

fn key_step(
    machine: &Machine,
    keyring: &Choice,
    algorithm: Algorithm,
    key: &str,
    cert: &Path,
    exists: bool,
) -> Step {
    if exists {
        let mut step = Step::new(
            StepKind::Key,
            format!(
                "Use the signing key {key} and its certificate {}",
                cert.display()
            ),
            "they are already there (setup keeps a key it finds)",
        );
        if keyring.path != KeyringPath::UserKeyring {
            step.reason.push_str(
                "; on this kernel the certificate must be signed by the key the keyring \
                 step names, else .ima refuses it (portage-ima doctor says whether it does)",
            );
        }
        return step;
    }
    let cert_s = cert.display().to_string();
    let mut step = Step::new(
        StepKind::Key,
        format!(
            "Make a {} signing key {key} and its certificate {cert_s}",
            match algorithm {
                Algorithm::Rsa => "RSA-4096",
                Algorithm::P256 => "NIST P-256",
            }
        ),
        match algorithm {
            Algorithm::P256 => {
                "the kernel has CONFIG_CRYPTO_ECDSA=y (built in, so it verifies \
                                from the first appraisal): P-256 signs fast and its signatures \
                                are small"
            }
            Algorithm::Rsa => {
                "RSA-4096, which every kernel with IMA signatures verifies \
                               (P-256 needs CONFIG_CRYPTO_ECDSA=y)"
            }
        }
        .to_string()
            + "; the certificate carries what .ima wants: not a CA, keyUsage digitalSignature, \
               its Subject Key Identifier (the key id in every signature)",
    );
    let host = &machine.hostname;
    // The issuer's key id; a MODULES_SIGN_KEY certificate made without a
    // SKID is named by issuer and serial instead (the kernel matches either).
    let akid = if keyring.path == KeyringPath::ModulesSignKey {
        "keyid,issuer"
    } else {
        "keyid:always"
    };
    let ima_ext = format!(
        "basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = {akid}\n"
    );
    let issuer: Option<(String, String)> = match keyring.path {
        KeyringPath::BuiltinCa | KeyringPath::MachineKeyring => {
            step.actions.push(write(
                CA_CONF,
                request_conf(
                    &format!("{host} IMA CA"),
                    "ima_ca",
                    "basicConstraints = critical,CA:TRUE\n\
                     keyUsage = critical,keyCertSign\n\
                     subjectKeyIdentifier = hash\n\
                     authorityKeyIdentifier = keyid:always\n",
                    "the local CA that signs the IMA certificate (no digitalSignature: \
                     the machine keyring takes only a pure CA)",
                ),
                0o644,
            ));
            step.actions.push(Action::Run(genkey(algorithm, CA_KEY)));
            step.actions.push(Action::Run(Run {
                argv: vec![
                    text("openssl"),
                    text("req"),
                    text("-new"),
                    text("-x509"),
                    text("-config"),
                    path(CA_CONF),
                    text("-key"),
                    path(CA_KEY),
                    text("-days"),
                    text("3650"),
                    text("-sha256"),
                    text("-out"),
                    path(CA_CERT),
                ],
                creates: vec![CA_CERT.into()],
                private: vec![],
            }));
            if keyring.path == KeyringPath::MachineKeyring {
                step.actions.push(Action::Run(Run {
                    argv: vec![
                        text("openssl"),
                        text("x509"),
                        text("-in"),
                        path(CA_CERT),
                        text("-outform"),
                        text("DER"),
                        text("-out"),
                        path(CA_CERT_DER),
                    ],
                    creates: vec![CA_CERT_DER.into()],
                    private: vec![],
                }));
            }
            step.reason.push_str(&format!(
                "; a local CA ({CA_KEY}, private, and {CA_CERT}) signs it"
            ));
            Some((CA_CERT.to_string(), CA_KEY.to_string()))
        }
        KeyringPath::ModulesSignKey => {
            let m = machine.modules_sign_key.as_ref().expect("path 2 has a key");
            if m.key.starts_with("pkcs11:") {
                step.blocked = Some(format!(
                    "MODULES_SIGN_KEY is a PKCS#11 URI ({}): sign the certificate request \
                     with it yourself (openssl req -x509 -CA ... -CAkey '{}' -provider pkcs11)",
                    m.key, m.key
                ));
            }
            step.reason.push_str(&format!(
                "; the kernel's module signing key ({}) signs it",
                m.key
            ));
            Some((m.cert.clone(), m.key.clone()))
        }
        KeyringPath::UserKeyring | KeyringPath::Blocked => None,
    };
    step.actions.push(write(
        CERT_CONF,
        request_conf(
            &format!("{host} IMA signing key"),
            "ima_signing",
            &ima_ext,
            "the IMA signing certificate (what .ima wants: not a CA, digitalSignature)",
        ),
        0o644,
    ));
    step.actions.push(Action::Run(genkey(algorithm, key)));
    let mut argv = vec![
        text("openssl"),
        text("req"),
        text("-new"),
        text("-x509"),
        text("-config"),
        path(CERT_CONF),
        text("-key"),
        path(key),
    ];
    if let Some((ca_cert, ca_key)) = &issuer {
        argv.extend([text("-CA"), path(ca_cert), text("-CAkey"), path(ca_key)]);
    }
    argv.extend([
        text("-days"),
        text("3650"),
        text("-sha256"),
        text("-outform"),
        text("DER"),
        text("-out"),
        Arg::Path(cert.to_path_buf()),
    ]);
    step.actions.push(Action::Run(Run {
        argv,
        creates: vec![cert.to_path_buf()],
        private: vec![],
    }));
    step
}

fn settings_step(machine: &Machine, key: &str, cert: &Path) -> Step {
    let file = crate::settings::CONFIG_FILE;
    let mut step = Step::new(
        StepKind::Settings,
        format!("Name the key and certificate in /{file}"),
        "the hook and every command read them from there",
    );
    let c = &machine.configured;
    let mut lines = String::new();
    if c.key.is_none() {
        lines += &format!("key = {}\n", toml::Value::String(key.to_string()));
    }
    if c.cert.is_none() {
        lines += &format!(
            "cert = {}\n",
            toml::Value::String(cert.display().to_string())
        );
    }
    if lines.is_empty() {
        step.reason = "it already names both".into();
        return step;
    }
    let header =
        "# portage-ima setup: the signing key and its certificate (every setting: ima.toml(5))\n";
    let old = current(machine, &format!("/{file}")).unwrap_or_default();
    // Top-level keys go before any [table].
    let content = if old.is_empty() {
        format!("{header}{lines}")
    } else {
        format!("{header}{lines}\n{old}")
    };
    step.actions.push(Action::Write {
        path: format!("/{file}").into(),
        content,
        shown: lines,
        mode: 0o644,
    });
    step
}

fn hook_step(machine: &Machine) -> Step {
    let mut step = Step::new(
        StepKind::Hook,
        "Run the hook from /etc/portage/bashrc",
        "Portage sources it in every phase; the snippet runs `portage-ima hook` in preinst and \
         postinst (guarded: Portage stays quiet should the package be removed)",
    );
    let old = current(machine, "/etc/portage/bashrc").unwrap_or_default();
    if old.contains("portage-ima.bashrc") {
        step.reason = "it already sources portage-ima.bashrc".into();
        return step;
    }
    let mut content = old.clone();
    if !content.is_empty() && !content.ends_with('\n') {
        content.push('\n');
    }
    content += BASHRC_LINE;
    content.push('\n');
    step.actions.push(Action::Write {
        path: "/etc/portage/bashrc".into(),
        content,
        shown: format!("{BASHRC_LINE}\n"),
        mode: 0o644,
    });
    step
}

fn make_conf_step(machine: &Machine) -> Option<Step> {
    let p = &machine.portage;
    if !p.merge_copies || p.xattr_kept {
        return None;
    }
    let block = format!(
        "{BLOCK_BEGIN}\n\
         # PORTAGE_TMPDIR ({}) is on another filesystem, so the merge copies: keep\n\
         # security.ima (Portage's exclude list in effect, without it)\n\
         {}\n{}\n{BLOCK_END}\n",
        p.tmpdir,
        crate::failsafe::FEATURES_LINE,
        crate::failsafe::xattr_exclude_line(&p.xattr_exclude)
    );
    let mut step = Step::new(
        StepKind::MakeConf,
        "Keep signatures through the merge: FEATURES=xattr and PORTAGE_XATTR_EXCLUDE",
        format!(
            "the build directory is {}; Portage then copies security.ima only with \
             FEATURES=xattr and security.ima out of PORTAGE_XATTR_EXCLUDE (in its default list)",
            p.build_fs
        ),
    );
    if p.make_conf_is_dir {
        step.actions.push(write(MAKE_CONF_FILE, block, 0o644));
        step.reason += "; make.conf is a directory: a file of its own, named to be read last";
        return Some(step);
    }
    let old = current(machine, "/etc/portage/make.conf").unwrap_or_default();
    let content = match (old.find(BLOCK_BEGIN), old.find(BLOCK_END)) {
        (Some(begin), Some(end)) if end > begin => {
            let after = old[end..].find('\n').map_or(old.len(), |n| end + n + 1);
            format!("{}{block}{}", &old[..begin], &old[after..])
        }
        _ => {
            let mut c = old.clone();
            if !c.is_empty() && !c.ends_with('\n') {
                c.push('\n');
            }
            c + &block
        }
    };
    step.actions.push(Action::Write {
        path: "/etc/portage/make.conf".into(),
        content,
        shown: block,
        mode: 0o644,
    });
    Some(step)
}

/// Where the boot route setup installs loads the policy from.
pub fn policy_path(machine: &Machine) -> &'static str {
    if machine.init == Init::Systemd && machine.initramfs != Initramfs::Dracut {
        SYSTEMD_UNIT_POLICY
    } else {
        POLICY
    }
}

fn policy_step(machine: &Machine, portage: &crate::policy::Setup, choices: &Choices) -> Step {
    let policy = policy_path(machine);
    let enforce_path = format!("{policy}{ENFORCE_SUFFIX}");
    let scope = choices.appraise.unwrap_or(Scope::RootExec);
    let request = |observe| crate::policy::Request {
        scope,
        measure: false,
        require_signed_policy: false,
        observe,
    };
    let secure_boot = machine.secure_boot == SecureBoot::Enabled;
    let mut step = Step::new(
        StepKind::Policy,
        format!("Write the IMA policy {policy}"),
        "fitted to this machine's Portage setup (what `portage-ima policy` prints): it \
         appraises what --appraise asks and exempts what builds run; the boot loads it",
    );
    let enforcing = match crate::policy::generate(portage, &request(false)) {
        Ok(g) => g,
        Err(e) => {
            step.blocked = Some(e.to_string());
            return step;
        }
    };
    for w in &enforcing.warnings {
        step.reason += &format!("; note: {w}");
    }
    let enforcing = enforcing.policy.to_string();
    if policy == SYSTEMD_UNIT_POLICY {
        step.reason += "; systemd without an initramfs: portage-ima.service loads it after the \
                        certificates (systemd itself would load /etc/ima/ima-policy before them)";
        if machine.path(Path::new(POLICY)).exists() {
            step.manual.push(format!(
                "remove {POLICY}: systemd loads it before portage-ima.service has put the \
                 certificate on the keyring, and everything appraised would then be refused"
            ));
        }
    }
    if !secure_boot {
        step.actions.push(write(policy, enforcing, 0o644));
        return step;
    }
    step.reason += "; Secure Boot is on, so the kernel ignores ima_appraise=log: the first boot \
                    loads an observe policy (measure and audit rules where the appraise rules \
                    will be: nothing refused), and the enforcing one waits beside it";
    let observe = match crate::policy::generate(portage, &request(true)) {
        Ok(g) => g.policy.to_string(),
        Err(e) => {
            step.blocked = Some(e.to_string());
            return step;
        }
    };
    // Once the admin put the enforcing policy in place, it stays.
    if current(machine, policy).as_deref() != Some(enforcing.as_str()) {
        step.actions.push(write(policy, observe, 0o644));
    }
    step.actions.push(write(&enforce_path, enforcing, 0o644));
    step
}

fn keyring_step(machine: &Machine, choice: &Choice) -> Step {
    let mut step = Step::new(
        StepKind::Keyring,
        format!(
            "Keyring path {}: {}",
            choice.number,
            match choice.path {
                KeyringPath::UserKeyring => "the certificate goes on _ima at boot",
                KeyringPath::ModulesSignKey =>
                    "the IMA certificate is signed with MODULES_SIGN_KEY",
                KeyringPath::BuiltinCa =>
                    "a local CA built into the kernel signs the IMA certificate",
                KeyringPath::MachineKeyring =>
                    "a local CA enrolled in the MOK list signs the IMA certificate",
                KeyringPath::Blocked => "none fits this kernel",
            }
        ),
        choice.why.clone(),
    );
    match choice.path {
        KeyringPath::MachineKeyring => step.manual.push(format!(
            "mokutil --import {CA_CERT_DER}   (asks for a one-time password; at the next boot \
             shim's MokManager asks for it to enroll the CA)"
        )),
        KeyringPath::BuiltinCa
            if machine.kernel_config.string("CONFIG_SYSTEM_TRUSTED_KEYS") != Some(CA_CERT) =>
        {
            step.reason += &format!(
                "; the kernel must be built with CONFIG_SYSTEM_TRUSTED_KEYS=\"{CA_CERT}\" \
                 (the kernel options step)"
            );
        }
        KeyringPath::Blocked => step.blocked = Some(choice.why.clone()),
        _ => {}
    }
    step
}

/// The options of the shipped fragment (`NAME=y` lines), but for the
/// signature algorithm not used: ECDSA for RSA keys, RSA for P-256 ones.
fn appraisal_options(algorithm: Algorithm) -> impl Iterator<Item = &'static str> {
    SHIPPED_KERNEL_OPTIONS
        .lines()
        .filter_map(|l| l.strip_suffix("=y"))
        .filter(|o| o.starts_with("CONFIG_"))
        .filter(move |o| match algorithm {
            Algorithm::Rsa => *o != "CONFIG_CRYPTO_ECDSA",
            Algorithm::P256 => *o != "CONFIG_CRYPTO_RSA",
        })
}

/// The options the running kernel lacks, and the step that adds them;
/// with the rebuild the admin must do before the first boot.
fn kernel_step(
    machine: &Machine,
    choice: &Choice,
    algorithm: Algorithm,
) -> Option<(Step, Option<String>)> {
    let config = &machine.kernel_config;
    let mut lines: Vec<String> = appraisal_options(algorithm)
        .filter(|o| !config.builtin(o))
        .map(|o| format!("{o}=y"))
        .collect();
    if choice.path == KeyringPath::BuiltinCa
        && config.string("CONFIG_SYSTEM_TRUSTED_KEYS") != Some(CA_CERT)
    {
        if !config.builtin("CONFIG_SYSTEM_TRUSTED_KEYRING") {
            lines.push("CONFIG_SYSTEM_TRUSTED_KEYRING=y".into());
        }
        lines.push(format!("CONFIG_SYSTEM_TRUSTED_KEYS=\"{CA_CERT}\""));
    }
    if lines.is_empty() {
        return None;
    }
    let mut step = Step::new(
        StepKind::Kernel,
        "Kernel options the running kernel lacks",
        format!(
            "{} does not set them, and appraisal (or the chosen keyring path) needs them built in",
            config.source.display()
        ),
    );
    let fragment = format!(
        "# portage-ima setup: what IMA appraisal needs that the running kernel lacks\n{}\n",
        lines.join("\n")
    );
    let rebuild = match &machine.kernel_package {
        KernelPackage::DistSource { cpv, .. } => {
            step.actions.push(write(KERNEL_FRAGMENT, fragment, 0o644));
            step.reason += "; the dist-kernel merges /etc/kernel/config.d at its build";
            let name = cpv
                .split_once('/')
                .and_then(|(c, pf)| crate::gentoo::cpv::Cpv::new(c, pf).ok())
                .map_or_else(|| cpv.clone(), |c| c.cpn());
            let r =
                format!("emerge --oneshot {name}   (rebuilds the kernel with {KERNEL_FRAGMENT})");
            step.manual.push(r.clone());
            Some(r)
        }
        KernelPackage::DistBinary { cpv } => {
            step.blocked = Some(format!(
                "{cpv} is built elsewhere and cannot take options: switch to \
                 sys-kernel/gentoo-kernel, which merges /etc/kernel/config.d"
            ));
            None
        }
        KernelPackage::Other => {
            step.manual
                .push(format!("set in your kernel's .config: {}", lines.join(" ")));
            let r = "rebuild and install the kernel with these options (make olddefconfig, make, \
                     make modules_install install)"
                .to_string();
            step.manual.push(r.clone());
            Some(r)
        }
    };
    Some((step, rebuild))
}

fn boot_step(machine: &Machine, cert: &Path) -> Step {
    let mut step = Step::new(
        StepKind::Boot,
        "Load the certificate and the policy at boot",
        "",
    );
    match machine.init {
        Init::Openrc => {
            step.reason = "OpenRC: the portage-ima service in the boot runlevel puts the \
                           certificate on the IMA keyring, then loads /etc/ima/ima-policy, and \
                           fails loudly (the equivalent of rc-update add portage-ima boot)"
                .into();
            step.actions.push(Action::Symlink {
                path: OPENRC_LINK.into(),
                target: OPENRC_SERVICE.into(),
            });
            if !machine.path(Path::new(OPENRC_SERVICE)).exists() {
                step.manual.push(format!(
                    "{OPENRC_SERVICE} is missing: reinstall app-portage/portage-ima (it ships it)"
                ));
            }
        }
        Init::Systemd if machine.initramfs == Initramfs::Dracut => {
            step.reason = "systemd loads /etc/ima/ima-policy itself, before any unit; dracut's \
                           integrity module puts the certificate on the keyring before that, in \
                           the initramfs, so portage-ima.service is not needed"
                .into();
        }
        Init::Systemd => {
            step.reason = format!(
                "systemd without an initramfs: portage-ima.service puts the certificate on the \
                 IMA keyring, then loads {SYSTEMD_UNIT_POLICY} (the equivalent of systemctl \
                 enable portage-ima.service)"
            );
            step.actions.push(Action::Symlink {
                path: SYSTEMD_LINK.into(),
                target: SYSTEMD_UNIT.into(),
            });
            if !machine.path(Path::new(SYSTEMD_UNIT)).exists() {
                step.manual.push(format!(
                    "{SYSTEMD_UNIT} is missing: reinstall app-portage/portage-ima (it ships it)"
                ));
            }
        }
    }
    match &machine.initramfs {
        Initramfs::Dracut => {
            step.reason += "; dracut: its integrity module loads /etc/keys/ima/* in the \
                            initramfs, so the certificate goes there too, and a dracut.conf.d \
                            file adds the module";
            let name = cert
                .file_name()
                .map_or("x509_ima.der".into(), |n| n.to_string_lossy().into_owned());
            step.actions.push(Action::Copy {
                from: cert.to_path_buf(),
                to: Path::new(DRACUT_KEYS_DIR).join(name),
            });
            // A copy of the shipped file (the ebuild puts it under
            // /usr/share/portage-ima/dracut/), unless one adds the module already.
            let has_module = current(machine, DRACUT_CONF).is_some_and(|c| c.contains("integrity"));
            if !has_module {
                step.actions
                    .push(write(DRACUT_CONF, SHIPPED_DRACUT_CONF.into(), 0o644));
            }
            step.manual.push(
                "dracut --force --kver \"$(uname -r)\"   (rebuilds the initramfs with the \
                 integrity module and the certificate)"
                    .into(),
            );
        }
        Initramfs::Unsupported(name) => {
            step.reason += &format!("; {name} is not configured by setup");
            step.manual.push(format!(
                "{name}: setup does not configure it. The boot service loads the keys after the \
                 initramfs; if your initramfs runs programs after loading a policy, put \
                 {} on the IMA keyring in it yourself (keyctl padd asymmetric '' %keyring:.ima, \
                 or %keyring:_ima on a kernel without a trusted keyring)",
                cert.display()
            ));
        }
        Initramfs::None => {}
    }
    step
}

/// Where a command-line parameter goes, for each boot loader file found.
fn places(machine: &Machine, parameter: &str) -> Vec<CmdlinePlace> {
    let with = |current: &str| {
        let mut words: Vec<&str> = current
            .split_whitespace()
            .filter(|w| !w.starts_with("ima_appraise="))
            .collect();
        words.push(parameter);
        words.join(" ")
    };
    if machine.cmdline_files.is_empty() {
        return vec![CmdlinePlace {
            file: "your boot loader's kernel command line".into(),
            line: parameter.to_string(),
            then: None,
        }];
    }
    machine
        .cmdline_files
        .iter()
        .map(|f| CmdlinePlace {
            file: f.path.display().to_string(),
            line: match &f.variable {
                Some(v) => format!("{v}=\"{}\"", with(&f.current)),
                None => with(&f.current),
            },
            then: Some(f.then.clone()),
        })
        .collect()
}

fn boots(machine: &Machine, choice: &Choice, rebuild: Option<String>) -> Vec<Boot> {
    let policy = policy_path(machine);
    let mut before = Vec::new();
    if let Some(r) = rebuild {
        before.push(r);
    }
    if choice.path == KeyringPath::MachineKeyring {
        before.push(format!(
            "mokutil --import {CA_CERT_DER}, then enroll it in MokManager at this boot"
        ));
    }
    if machine.initramfs == Initramfs::Dracut {
        before.push("dracut --force --kver \"$(uname -r)\"".into());
    }
    before.push("portage-ima verify --all   (everything installed verifies)".into());
    if machine.secure_boot == SecureBoot::Enabled {
        vec![
            Boot {
                title: "Observe: the observe policy, nothing refused (Secure Boot ignores \
                        ima_appraise=, so no command-line change)"
                    .into(),
                before,
                parameter: None,
                places: Vec::new(),
                after: vec![
                    "use the machine a while, then: portage-ima audit --measurements".into(),
                    "sign what it lists (portage-ima audit --fix), until it lists nothing".into(),
                    format!("cp {policy}{ENFORCE_SUFFIX} {policy}"),
                ],
            },
            Boot {
                title: "Enforce: the enforcing policy (Secure Boot: always enforce mode)".into(),
                before: Vec::new(),
                parameter: None,
                places: Vec::new(),
                after: vec!["portage-ima doctor".into()],
            },
        ]
    } else {
        vec![
            Boot {
                title: "Log mode: the policy is loaded, refusals are only logged".into(),
                before,
                parameter: Some("ima_appraise=log".into()),
                places: places(machine, "ima_appraise=log"),
                after: vec![
                    "use the machine a while, then: portage-ima audit".into(),
                    "sign what it lists (portage-ima audit --fix), until it lists nothing".into(),
                ],
            },
            Boot {
                title: "Enforce mode".into(),
                before: Vec::new(),
                parameter: Some("ima_appraise=enforce".into()),
                places: places(machine, "ima_appraise=enforce"),
                after: vec!["portage-ima doctor".into()],
            },
        ]
    }
}
