//! The arguments of the subcommands that sign and check files: `sign`,
//! `verify`, `audit` and `hook`.

use std::path::PathBuf;

use clap::Args;

use super::{KeyArgs, PackageArgs, ProgressMode};

/// The arguments of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Files or directories to sign instead of packages.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// The packages to sign.
    #[command(flatten)]
    pub packages: PackageArgs,

    /// The key to sign with.
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

/// The arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files or directories to verify instead of packages.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// The packages to verify.
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

/// The arguments of `audit`.
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

    /// The key `--fix` signs with.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// The arguments of `hook`.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// Phase to act as, instead of EBUILD_PHASE.
    #[arg(long, value_name = "PHASE")]
    pub phase: Option<String>,
}
