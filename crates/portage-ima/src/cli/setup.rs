//! The arguments of the subcommands that set a machine up and check it:
//! `doctor`, `setup` and `policy`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{KeyArgs, ProgressMode};

/// The arguments of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,

    /// The key whose setup to check.
    #[command(flatten)]
    pub key: KeyArgs,

    /// Root to check (its /etc/portage) [default: PORTAGE_CONFIGROOT, else /].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// IMA policy file to review [default: the loaded policy when
    /// /sys/kernel/security/ima/policy is readable, else the one the boot
    /// loads, /etc/ima/ima-policy].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// efivarfs directory to read Secure Boot from (tests).
    #[arg(long, value_name = "DIR", hide = true)]
    pub efivars: Option<PathBuf>,

    /// Kernel log to read instead of /dev/kmsg (tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub kernel_log: Option<PathBuf>,

    /// Kernel build configuration to read instead of the running kernel's
    /// (tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub kernel_config: Option<PathBuf>,

    /// Keyring (serial) to take as the kernel's `.ima` (tests: a keyring
    /// restricted with keyctl, as `.ima` is).
    #[arg(long, value_name = "SERIAL", hide = true)]
    pub ima_keyring: Option<i32>,

    /// Keyring (serial) to take as the builtin trusted keyring (tests).
    #[arg(long, value_name = "SERIAL", hide = true)]
    pub trusted_keyring: Vec<i32>,
}

/// The arguments of `setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Carry the plan out (no questions asked), then sign what is installed
    /// and check the policy.
    #[arg(long)]
    pub apply: bool,

    /// Print the plan as JSON instead (docs/json/setup.schema.json).
    #[arg(long, conflicts_with = "apply")]
    pub json: bool,

    /// Root of the Gentoo system to set up [default: ROOT, else /].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// An existing private key to use instead of making one.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// The certificate of --key (or of --hardware).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// A key held by hardware: a pkcs11: URI or a TPM key file; needs --cert.
    #[arg(long, value_name = "URI", conflicts_with = "key")]
    pub hardware: Option<String>,

    /// What the policy appraises.
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = AppraiseScope::RootExec)]
    pub appraise: AppraiseScope,

    /// The key type to make [default: p256 when the kernel has
    /// CONFIG_CRYPTO_ECDSA=y, else rsa (RSA-4096)].
    #[arg(long, value_enum)]
    pub algorithm: Option<KeyAlgorithm>,

    /// Progress display of the signing: auto, bar, lines or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// A kernel .config (plain or gzip) instead of the running kernel's (tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub kernel_config: Option<PathBuf>,

    /// efivarfs directory to read Secure Boot and MOK from (tests).
    #[arg(long, value_name = "DIR", hide = true)]
    pub efivars: Option<PathBuf>,

    /// A /proc/keys text to read the keyrings from (tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub proc_keys: Option<PathBuf>,
}

/// The key type `setup --algorithm` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithm {
    /// RSA-4096.
    Rsa,
    /// NIST P-256 ECDSA (the kernel needs CONFIG_CRYPTO_ECDSA).
    P256,
}

/// The arguments of `policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Instead of writing a policy, check one against the root filesystem:
    /// list every file its appraise rules cover that lacks a signature the
    /// configured certificate (--cert) verifies, i.e. what the kernel would
    /// refuse with ima_appraise=enforce. Exit status 0 when nothing would be
    /// refused (safe to boot), 1 when something would.
    #[arg(long)]
    pub check: bool,

    /// The policy to check [default: the loaded policy when
    /// /sys/kernel/security/ima/policy is readable, else ROOT/etc/ima/ima-policy].
    #[arg(value_name = "POLICY", requires = "check")]
    pub policy_file: Option<PathBuf>,

    /// With --check: print the result as JSON.
    #[arg(long, requires = "check")]
    pub json: bool,

    /// What must carry a valid signature.
    #[arg(long, value_enum, default_value_t = AppraiseScope::RootExec)]
    pub appraise: AppraiseScope,

    /// Also measure what is appraised into the IMA log (boot with
    /// ima_template=ima-sig to log the signatures).
    #[arg(long)]
    pub measure: bool,

    /// A first-boot policy for machines where `ima_appraise=log` is ignored
    /// (Secure Boot): `measure` (ima-sig) and `audit` rules where the
    /// appraise rules would be, so nothing is refused; after that boot,
    /// `portage-ima audit --measurements` lists what enforcing would refuse.
    #[arg(long, conflicts_with = "check")]
    pub observe: bool,

    /// Appraise POLICY_CHECK: once loaded, a further policy is accepted only
    /// when written by path and signed (see --sign).
    #[arg(long)]
    pub require_signed_policy: bool,

    /// Write the policy to FILE (atomically) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Sign the --output file with the configured key (its security.ima), as
    /// a kernel that appraises POLICY_CHECK loads only a signed policy.
    #[arg(long, requires = "output")]
    pub sign: bool,

    /// The key `--sign` signs with, and whose certificate `--check` verifies with.
    #[command(flatten)]
    pub key: KeyArgs,

    /// Root of the system (its etc/portage, its filesystems) [default: ROOT, else /].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// What `policy --appraise` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AppraiseScope {
    /// Programs executed by root (BPRM_CHECK uid=0), the usual Gentoo setup.
    #[default]
    RootExec,
    /// Every program executed, by any user.
    Exec,
    /// Every program executed, and every file mapped executable (shared libraries).
    ExecMmap,
}
