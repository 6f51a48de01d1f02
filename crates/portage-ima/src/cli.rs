//! The command line, as clap definitions. The man page and the shell
//! completions are generated from these same definitions (`portage-ima generate`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sign every file Portage merges with a Linux IMA signature.
///
/// portage-ima writes the `security.ima` extended attribute, byte for byte what
/// `evmctl ima_sign` writes, so that a machine running IMA appraisal in
/// enforce mode keeps working across every emerge. It runs from
/// /etc/portage/bashrc (`portage-ima hook`), signs and verifies what is
/// already installed, and checks a setup (`portage-ima doctor`).
///
/// Settings come from /etc/portage/ima.toml (under PORTAGE_CONFIGROOT when
/// that is set); command-line flags override them.
#[derive(Debug, Parser)]
#[command(name = "portage-ima", version, max_term_width = 100)]
pub struct Cli {
    /// Settings file to read instead of /etc/portage/ima.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More output: every file with its outcome (`sign`) or status
    /// (`verify`), and debug lines in the log (why files are skipped, ...);
    /// twice, trace lines. PORTAGE_IMA_LOG (off, error, warn, info, debug,
    /// trace) sets the level -v starts from.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less output: no progress lines; twice, no warnings.
    #[arg(long, short = 'q', global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Colour the statuses: auto (on a terminal, unless NO_COLOR or
    /// Portage's NOCOLOR is set), always or never.
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign files, or the files of installed packages.
    ///
    /// With --files, signs each file given; a directory is walked
    /// recursively (regular files only, symlinks never followed). With
    /// package atoms or --all, signs what the installed-package database says
    /// each package installed, checking every file's MD5 against CONTENTS
    /// first. Valid signatures by the same key are kept.
    ///
    /// Exit status: 0 when every file was signed, 1 when some were not (the
    /// others are still signed), 2 for a usage, key or configuration error.
    Sign(SignArgs),

    /// Check the security.ima signatures of files or installed packages.
    ///
    /// One status per file: ok, unsigned, digest-only, bad-hash,
    /// bad-signature, unknown-key, error; for packages also modified
    /// (content differs from CONTENTS), missing, config-changed (a config
    /// file you changed that the kernel would still run or that is not
    /// executable: reported, not a failure), and by the config_files
    /// setting hashed and config-unsigned (as meant). Exit status 0 only
    /// when every file is ok, other-key, config-changed, hashed or
    /// config-unsigned.
    Verify(VerifyArgs),

    /// Run from Portage's bashrc: sign the package being merged.
    ///
    /// Reads Portage's environment. In preinst it signs the files under ${D}
    /// before they go live (when the merge keeps the xattr); in postinst it
    /// signs every file CONTENTS lists whose MD5 matches. Other phases do
    /// nothing. Exit status: 0 fine, 1 some files not signed, 2 configuration
    /// problem, 3 strict mode and something failed (the caller fails the merge).
    Hook(HookArgs),

    /// Check the key, the certificate, the kernel and Portage's settings.
    Doctor(DoctorArgs),

    /// The files the kernel's IMA refused (or measured), with their package
    /// and what they are now.
    ///
    /// Reads the integrity audit records (`audit: type=1800 ... op=appraise_data
    /// ... res=0`) of the kernel log (/dev/kmsg) and of
    /// /var/log/audit/audit.log, or of --log. Each file gets its owning
    /// package and one class: unsigned-pristine (content exactly as
    /// installed: safe to sign), modified, foreign-key (signed by a key the
    /// kernel does not have), not-owned, gone, valid (signed since), error.
    /// Read-only unless --fix. Exit status: 0 when every file is valid (or
    /// none was denied), 1 when some need attention, 2 for an error.
    Audit(AuditArgs),

    /// Write what the package database knows in another tool's format.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },

    /// The Keylime runtime policy the hook keeps current ([keylime] in
    /// ima.toml; see docs/keylime.md).
    Keylime {
        #[command(subcommand)]
        what: KeylimeCommand,
    },

    /// Print an IMA policy fitted to this machine's Portage setup.
    ///
    /// Reads PORTAGE_TMPDIR and FEATURES (userpriv, xattr) as Portage sees
    /// them, and the filesystems of the build directory and the system, and
    /// writes rules (the kernel's ima_policy syntax, with # comments) that
    /// appraise what --appraise asks and exempt what builds run from their
    /// work directory. When no policy can do both (e.g. builds on the root
    /// filesystem and every executable appraised), it says why and what to
    /// change, and exits 2. Load the policy at boot from /etc/ima/ima-policy.
    Policy(PolicyArgs),

    /// Plan, and with --apply carry out, everything from an unsigned machine
    /// to IMA appraisal: key and certificate, ima.toml, the bashrc hook, the
    /// make.conf lines, /etc/ima/ima-policy, the keyring path that fits the
    /// kernel, boot integration, signing what is installed; then the boots
    /// still to do, each with its command line.
    ///
    /// Without --apply it prints the numbered plan (each file with its exact
    /// content and the reason) and changes nothing. --apply asks nothing, keeps
    /// a backup of every file it changes (under
    /// /var/lib/portage-ima/setup-backup), never edits the boot loader, and
    /// a second run changes nothing. Exit status: 0 done (or planned), 1 a
    /// step could not be done here (it says why) or signing left files
    /// unsigned, 2 an error (nothing changed).
    Setup(SetupArgs),

    /// Write the man page or shell completions (used by the ebuild).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: GenerateWhat,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenerateWhat {
    /// Write portage-ima.8, one page per subcommand and ima.toml.5 into DIR.
    Man { dir: PathBuf },
    /// Print the completion script for SHELL.
    Completions { shell: clap_complete::Shell },
    /// Print the README's settings table (Markdown), from the same list as ima.toml(5).
    SettingsTable,
}

/// Which key signs, and how.
#[derive(Debug, Clone, Args, Default)]
pub struct KeyArgs {
    /// Private key (PEM, PKCS#1 or PKCS#8) [default: /etc/keys/IMA_signing_key.priv].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Certificate of the key (DER or PEM); its Subject Key Identifier gives
    /// the key id [default: /etc/keys/x509_ima.der when it exists].
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Key id to write (8 hex digits), overriding the certificate's.
    #[arg(long, value_name = "HEX")]
    pub keyid: Option<String>,

    /// Hash algorithm: sha1, sha224, sha256, sha384, sha512 [default: sha256].
    #[arg(long = "hash", alias = "hashalgo", value_name = "ALGO")]
    pub hash: Option<String>,

    /// Signer backend: openssl or rustcrypto (those compiled in).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
}

/// Which installed packages, and under which root.
#[derive(Debug, Clone, Args, Default)]
pub struct PackageArgs {
    /// Installed packages: cat/pkg, cat/pkg-1.2.3, =cat/pkg-1.2.3-r1, or pkg.
    #[arg(value_name = "ATOM", conflicts_with = "files")]
    pub atoms: Vec<String>,

    /// Every installed package.
    #[arg(long, conflicts_with_all = ["atoms", "files"])]
    pub all: bool,

    /// Root whose package database to read [default: ROOT or EROOT from the environment, else /].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Files or directories to sign instead of packages.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub packages: PackageArgs,

    #[command(flatten)]
    pub key: KeyArgs,

    /// Parallel signing jobs [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Write nothing: list each file with what the real run would do to it
    /// (would-sign, already-valid, skipped, ...: the words of the real run,
    /// which lists them too with -v).
    #[arg(long, short = 'p', visible_alias = "pretend")]
    pub dry_run: bool,

    /// With --files: write a digest-only security.ima (what `evmctl
    /// ima_hash` writes) instead of a signature; needs no key. For files
    /// that must stay writable under an appraise rule (a signed file cannot
    /// be opened for writing there); the kernel refuses a digest where a
    /// rule asks for a signature (appraise_type=imasig).
    #[arg(long)]
    pub digest_only: bool,

    /// Key rotation: a file whose signature by another key id (the old key,
    /// or any other) is replaced by one of the configured key is reported
    /// "rotated", with that key id. What is signed is as without it: only
    /// content that matches CONTENTS; a rerun resumes an interrupted run.
    #[arg(long)]
    pub rotate: bool,

    /// Print one JSON document with every file's outcome and the tallies.
    #[arg(long)]
    pub json: bool,

    /// Progress display: auto (a bar on a terminal, periodic lines otherwise), bar, lines or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files or directories to verify instead of packages.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub packages: PackageArgs,

    /// Certificate to verify with (DER or PEM); may be given several times
    /// [default: the configured certificate]. A valid signature by one that
    /// is not the configured key is `other-key` (e.g. the old key during a
    /// rotation): reported, not a failure.
    #[arg(long, value_name = "FILE")]
    pub cert: Vec<PathBuf>,

    /// Signer backend used to check the signatures.
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,

    /// Print one JSON document with every file's status.
    #[arg(long)]
    pub json: bool,

    /// Parallel jobs [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A log to read instead of the kernel's: `dmesg` output (with or
    /// without times), /dev/kmsg, `journalctl -k`, or auditd's audit.log;
    /// `-` is stdin. May be given several times.
    #[arg(long, value_name = "FILE")]
    pub log: Vec<PathBuf>,

    /// Also the files of IMA's measurement list (templates ima, ima-ng,
    /// ima-sig) [FILE default: /sys/kernel/security/ima/ascii_runtime_measurements].
    #[arg(long, value_name = "FILE", num_args = 0..=1,
          default_missing_value = "/sys/kernel/security/ima/ascii_runtime_measurements")]
    pub measurements: Option<PathBuf>,

    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,

    /// Sign the unsigned-pristine files (content as installed), by the same
    /// rules as `sign`; the others are left alone.
    #[arg(long)]
    pub fix: bool,

    /// Root whose package database and files to look at [default: ROOT or EROOT from the environment, else /].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExportWhat {
    /// A Keylime runtime policy: the digest of every installed file whose
    /// content is still what its package installed, and the certificates'
    /// keys to check IMA signatures with.
    ///
    /// A file modified since install, or gone, is left out and reported.
    /// Exit status: 0 when the policy was written (files left out or not),
    /// 2 for an error.
    Keylime(KeylimeArgs),
}

#[derive(Debug, Args)]
pub struct KeylimeArgs {
    /// Write the policy to FILE (replaced atomically) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// A path Keylime is not to check: a Python regular expression matched
    /// at the start of the path (`^/var/tmp/`, `/home/.*`). May be given
    /// several times.
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,

    /// Certificate whose key Keylime checks ima-sig signatures with; may
    /// be given several times [default: the configured certificate].
    #[arg(long, value_name = "FILE")]
    pub cert: Vec<PathBuf>,

    /// Digest algorithm: the kernel's, as in the measurement list
    /// (sha1, sha256, sha384, sha512) [default: the configured hash, sha256].
    #[arg(long = "hash", value_name = "ALGO")]
    pub hash: Option<String>,

    /// Root whose package database and files to read [default: ROOT or EROOT from the environment, else /].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Parallel jobs [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum KeylimeCommand {
    /// Rebuild the policy from the vdb: every installed package digested
    /// again (a first run, or after a crash or a damaged state file).
    Sync {
        /// Root whose package database and files to read [default: ROOT or EROOT from the environment, else /].
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Also push it to the verifier, if one is configured.
        #[arg(long)]
        push: bool,
    },
    /// Update the policy for one package, as the hook does in postinst
    /// (`--refresh`) or postrm (`--remove`); every other change since the
    /// last update (packages merged or gone) is caught up too.
    Update {
        /// CATEGORY/PF to digest again.
        #[arg(long, value_name = "CATEGORY/PF")]
        refresh: Option<String>,
        /// CATEGORY/PF to take out.
        #[arg(long, value_name = "CATEGORY/PF")]
        remove: Option<String>,
        /// Root whose package database and files to read [default: ROOT or EROOT from the environment, else /].
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Judge a measurement list against the policy with Keylime's rules and
    /// name each file that fails, with its package.
    ///
    /// Exit status: 0 when every file passes, 1 when some fail, 2 for an error.
    Check {
        /// The measurement list (ascii_runtime_measurements format)
        /// [default: the kernel's, /sys/kernel/security/ima/ascii_runtime_measurements].
        #[arg(long, value_name = "FILE")]
        measurements: Option<PathBuf>,
        /// The policy [default: the one [keylime] keeps].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Root whose package database names the owners [default: ROOT or EROOT from the environment, else /].
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Send the policy to the verifier ([keylime] verifier), unless it
    /// already holds it.
    Push {
        /// Send it even if the verifier should already hold it.
        #[arg(long)]
        force: bool,
        /// Root whose policy to send [default: ROOT or EROOT from the environment, else /].
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Wait until process PID (the emerge) has ended first; what the
        /// hook starts.
        #[arg(long, value_name = "PID", hide = true)]
        after_pid: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Phase to act as, instead of EBUILD_PHASE.
    #[arg(long, value_name = "PHASE")]
    pub phase: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,

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

/// When `--color` colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorWhen {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressMode {
    #[default]
    Auto,
    Bar,
    Lines,
    None,
}

impl Cli {
    /// The `--root DIR` the subcommand was given, if it takes one.
    pub fn root(&self) -> Option<&std::path::Path> {
        let root = match &self.command {
            Command::Sign(a) => &a.packages.root,
            Command::Verify(a) => &a.packages.root,
            Command::Audit(a) => &a.root,
            Command::Export {
                what: ExportWhat::Keylime(a),
            } => &a.root,
            Command::Keylime { what } => match what {
                KeylimeCommand::Sync { root, .. }
                | KeylimeCommand::Update { root, .. }
                | KeylimeCommand::Check { root, .. }
                | KeylimeCommand::Push { root, .. } => root,
            },
            Command::Doctor(a) => &a.root,
            Command::Policy(a) => &a.root,
            Command::Setup(a) => &a.root,
            Command::Hook(_) | Command::Generate { .. } => return None,
        };
        root.as_deref()
    }
}
