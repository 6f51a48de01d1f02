//! The arguments of the Keylime subcommands: `export keylime` (a runtime
//! policy written once) and `keylime` (the policy the hook keeps current).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The formats `export` writes.
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

/// The arguments of `export keylime`.
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

/// The subcommands of `keylime`.
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
