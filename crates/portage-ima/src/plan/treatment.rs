//! What happens to one file: the one place the per-file decision is made.
//!
//! Two facts decide it when the job is planned: whether CONFIG_PROTECT
//! covers the file (and then the `config_files` mode, [`ConfigFiles`]),
//! and, with `scope = "policy"`, whether an appraise rule covers it. They
//! give a [`Decision`]. One fact is only known on the open descriptor:
//! whether the file is executable (`fstat`), which a config file's mode
//! may depend on. [`Decision::on`] turns the decision into what is written,
//! a [`Treatment`]. The engine applies it; verify judges a file by it; the
//! report prints its [`SkipReason`]s.

use std::fmt;
use std::fs::File;

use serde::Deserialize;

/// What to do with config-protected files (CONFIG_PROTECT minus
/// CONFIG_PROTECT_MASK, `/etc` by default): the `config_files` setting.
///
/// Under an appraise rule the kernel refuses opening a file for writing when
/// its `security.ima` is a signature, so a signed config file cannot be
/// edited; a digest-only value is accepted and the kernel updates it on
/// write. An executable config file (an init script) is run, and a rule
/// with `appraise_type=imasig` accepts only a signature for it: so every
/// mode but `skip` signs executables.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConfigFiles {
    /// Sign the executable ones, leave the others untouched (what
    /// rpm-plugin-ima does); for policies that appraise what is run.
    #[default]
    Executable,
    /// Sign the executable ones, write a digest-only `security.ima` (as
    /// `evmctl ima_hash`) on the others; for policies that appraise what
    /// root opens (`appraise func=FILE_CHECK fowner=0`, the tcb policy).
    Hash,
    /// Sign them all, like every other file (the default before 0.2):
    /// the signed ones cannot be edited under a FILE_CHECK appraise rule.
    Sign,
    /// Leave them all untouched, executables too.
    Skip,
}

impl ConfigFiles {
    /// The value as written in ima.toml.
    pub fn name(self) -> &'static str {
        match self {
            ConfigFiles::Executable => "executable",
            ConfigFiles::Hash => "hash",
            ConfigFiles::Sign => "sign",
            ConfigFiles::Skip => "skip",
        }
    }
}

/// Why a file is deliberately not signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// CONFIG_PROTECT covers it and the `config_files` mode leaves it:
    /// `skip`, or `executable` and it is not executable.
    ConfigProtected(ConfigFiles),
    /// `scope = "policy"` and no appraise rule of the IMA policy covers it.
    OutsidePolicy,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::ConfigProtected(ConfigFiles::Skip) => {
                f.write_str("config-protected (config_files = \"skip\")")
            }
            SkipReason::ConfigProtected(mode) => write!(
                f,
                "config-protected, not executable (config_files = \"{}\")",
                mode.name()
            ),
            SkipReason::OutsidePolicy => {
                f.write_str("no appraise rule of the IMA policy covers it (scope = \"policy\")")
            }
        }
    }
}

/// What the plan decided for one file, before it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not config-protected: signed.
    Sign,
    /// Config-protected, under this `config_files` mode (not `skip`): what
    /// is written depends on whether the open file is executable.
    Config(ConfigFiles),
    /// Left alone whatever the file is, for this reason.
    Leave(SkipReason),
}

impl Decision {
    /// For a file with the `config_files` mode `config` (None: not
    /// config-protected).
    pub fn new(config: Option<ConfigFiles>) -> Decision {
        match config {
            None => Decision::Sign,
            Some(mode @ ConfigFiles::Skip) => Decision::Leave(SkipReason::ConfigProtected(mode)),
            Some(mode) => Decision::Config(mode),
        }
    }

    /// The same file when no appraise rule of the policy covers it
    /// (`scope = "policy"`): left alone, unless a config mode already
    /// leaves it (that reason is kept).
    pub fn outside_policy(self) -> Decision {
        match self {
            Decision::Leave(reason) => Decision::Leave(reason),
            _ => Decision::Leave(SkipReason::OutsidePolicy),
        }
    }

    /// The `config_files` mode of a config-protected file (None: not one,
    /// or not known to be one).
    pub fn config(self) -> Option<ConfigFiles> {
        match self {
            Decision::Config(mode) | Decision::Leave(SkipReason::ConfigProtected(mode)) => {
                Some(mode)
            }
            Decision::Sign | Decision::Leave(SkipReason::OutsidePolicy) => None,
        }
    }

    /// Left alone without being opened: the reason.
    pub fn unopened(self) -> Option<SkipReason> {
        match self {
            Decision::Leave(reason) => Some(reason),
            _ => None,
        }
    }

    /// What is written on the open `file` ([`Decision::for_executable`],
    /// asked of the descriptor only when it matters).
    pub fn on(self, file: &File) -> Treatment {
        match self {
            Decision::Config(_) => self.for_executable(is_executable(file)),
            _ => self.for_executable(true),
        }
    }

    /// What is written on a file with an execute bit or not. Executables
    /// are signed in every mode but `skip`: the kernel runs them, and an
    /// `appraise_type=imasig` rule accepts nothing else.
    pub fn for_executable(self, executable: bool) -> Treatment {
        match self {
            Decision::Sign | Decision::Config(ConfigFiles::Sign) => Treatment::Sign,
            Decision::Leave(reason) => Treatment::Leave(reason),
            Decision::Config(ConfigFiles::Skip) => {
                Treatment::Leave(SkipReason::ConfigProtected(ConfigFiles::Skip))
            }
            Decision::Config(_) if executable => Treatment::Sign,
            Decision::Config(ConfigFiles::Hash) => Treatment::Hash,
            Decision::Config(mode @ ConfigFiles::Executable) => {
                Treatment::Leave(SkipReason::ConfigProtected(mode))
            }
        }
    }
}

/// What is written on one file, decided on its open descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// A signature (every file that is not config-protected).
    Sign,
    /// A digest-only `security.ima` (`config_files = "hash"`).
    Hash,
    /// Nothing: left as it is, for this reason.
    Leave(SkipReason),
}

/// Whether the open file has an execute bit (`fstat` of the descriptor);
/// one that cannot be stat'ed counts as executable, so it is signed.
pub fn is_executable(file: &File) -> bool {
    file.metadata().map_or(true, |m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_signed_in_every_mode_but_skip() {
        use ConfigFiles::*;
        let of = |config, exec| Decision::new(config).for_executable(exec);
        let leave = |mode| Treatment::Leave(SkipReason::ConfigProtected(mode));
        for exec in [false, true] {
            assert_eq!(of(None, exec), Treatment::Sign);
            assert_eq!(of(Some(Sign), exec), Treatment::Sign);
            assert_eq!(of(Some(Skip), exec), leave(Skip));
        }
        assert_eq!(of(Some(Executable), true), Treatment::Sign);
        assert_eq!(of(Some(Executable), false), leave(Executable));
        assert_eq!(of(Some(Hash), true), Treatment::Sign);
        assert_eq!(of(Some(Hash), false), Treatment::Hash);
    }

    #[test]
    fn outside_the_policy_keeps_a_config_reason() {
        let skip = Decision::new(Some(ConfigFiles::Skip));
        assert_eq!(skip.outside_policy(), skip);
        for config in [None, Some(ConfigFiles::Hash), Some(ConfigFiles::Sign)] {
            assert_eq!(
                Decision::new(config).outside_policy(),
                Decision::Leave(SkipReason::OutsidePolicy)
            );
        }
        assert_eq!(skip.config(), Some(ConfigFiles::Skip));
        assert_eq!(Decision::new(None).config(), None);
    }
}
