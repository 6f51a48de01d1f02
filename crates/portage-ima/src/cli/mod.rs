//! The command line, as clap definitions. The man page and the shell
//! completions are generated from these same definitions (`portage-ima generate`).
//!
//! This file holds the top level ([`Cli`], [`Command`]), the argument groups
//! several subcommands share ([`KeyArgs`], [`PackageArgs`]) and the value
//! enums more than one flag takes; each group of subcommands has its own
//! file, re-exported here: `signing.rs` (sign, verify, audit, hook),
//! `keylime.rs` (export keylime, keylime) and `setup.rs` (doctor, setup,
//! policy).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod keylime;
mod setup;
mod signing;

pub use keylime::{ExportWhat, KeylimeArgs, KeylimeCommand};
pub use setup::{AppraiseScope, DoctorArgs, KeyAlgorithm, PolicyArgs, SetupArgs};
pub use signing::{AuditArgs, HookArgs, SignArgs, VerifyArgs};

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

    /// The subcommand and its arguments.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each variant's doc comment is its help text.
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
        /// Which format.
        #[command(subcommand)]
        what: ExportWhat,
    },

    /// The Keylime runtime policy the hook keeps current ([keylime] in
    /// ima.toml; see docs/keylime.md).
    Keylime {
        /// What to do with the policy.
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
        /// What to write.
        #[command(subcommand)]
        what: GenerateWhat,
    },
}

/// What `generate` writes.
#[derive(Debug, Subcommand)]
pub enum GenerateWhat {
    /// Write portage-ima.8, one page per subcommand and ima.toml.5 into DIR.
    Man {
        /// Directory to write the pages into.
        dir: PathBuf,
    },
    /// Print the completion script for SHELL.
    Completions {
        /// Shell whose completion script to print.
        shell: clap_complete::Shell,
    },
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

// The values of `--color` and `--progress` carry no help of their own
// (`help = None`): their flags' help text already lists and explains them.

/// When `--color` colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR or Portage's NOCOLOR is set.
    #[default]
    #[value(help = None::<&str>)]
    Auto,
    /// Always.
    #[value(help = None::<&str>)]
    Always,
    /// Never.
    #[value(help = None::<&str>)]
    Never,
}

/// How `sign` and `setup` show their progress (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, periodic lines otherwise.
    #[default]
    #[value(help = None::<&str>)]
    Auto,
    /// A bar redrawn in place.
    #[value(help = None::<&str>)]
    Bar,
    /// A progress line now and then.
    #[value(help = None::<&str>)]
    Lines,
    /// No progress display.
    #[value(help = None::<&str>)]
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
