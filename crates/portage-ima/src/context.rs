//! The run's context: the process environment, read once at the edge
//! (`main`), with the flags that say where to act (`--root`, `--config`),
//! and handed to every command. No other module reads the environment
//! (the one exception: a `[hardware] pin_env` PIN, read when the key is
//! opened, so that the secret is held no longer than needed).
//!
//! What ROOT means, the same in every command:
//!
//! - `--root DIR` wins; else `ROOT` (and `EROOT`) from the environment;
//!   else `/`. The installed-package database is `${ROOT}${EPREFIX}/var/db/pkg`
//!   (EROOT when given), and CONTENTS paths are opened inside ROOT.
//! - `EPREFIX` (a Gentoo Prefix) is honoured in and outside an ebuild
//!   phase, as `startprefix` exports it: CONTENTS names files with it and
//!   the vdb is under it.
//! - `PORTAGE_CONFIGROOT` says where `etc/portage/ima.toml` is (and, for
//!   `doctor`, the `etc/portage` it checks); `--root` moves that too for
//!   `doctor`, as it checks that root's setup.
//!
//! Paths are shown as CONTENTS has them, inside the root; a summary names
//! the root once when it is not `/`, and every command suggested carries
//! `--root DIR` when the run had a root other than `/`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::cli::Cli;
use crate::gentoo::vars::Vars;
use crate::plan::Location;
use crate::settings::ConfigPath;

/// The environment and the flags a run acts on, read once.
#[derive(Clone, Debug)]
pub struct Context {
    vars: Vars,
    root_flag: Option<PathBuf>,
    config: ConfigPath,
}

impl Context {
    /// The context of this process: its environment and `cli`'s flags.
    pub fn from_process(cli: &Cli) -> Context {
        Context::new(cli.config.as_deref(), cli.root(), Vars::of_process())
    }

    /// A context from the flags and the variables given.
    pub fn new(config_flag: Option<&Path>, root_flag: Option<&Path>, vars: Vars) -> Context {
        let config_root = vars
            .nonempty("PORTAGE_CONFIGROOT")
            .map_or_else(|| PathBuf::from("/"), PathBuf::from);
        Context {
            config: ConfigPath::new(config_flag, &config_root),
            vars,
            root_flag: root_flag.map(Path::to_path_buf),
        }
    }

    /// The environment.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// A variable of the environment, when set and UTF-8.
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name)
    }

    /// A variable of the environment as the process got it.
    pub fn var_os(&self, name: &str) -> Option<&OsStr> {
        self.vars.get_os(name)
    }

    /// A lookup function over the environment.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        self.vars.lookup()
    }

    /// `--root DIR`, when given.
    pub fn root_flag(&self) -> Option<&Path> {
        self.root_flag.as_deref()
    }

    /// Where the installed system is: `--root`, else ROOT/EROOT, with EPREFIX.
    pub fn location(&self) -> Location {
        Location::resolve(self.root_flag(), self.lookup())
    }

    /// The settings file this run reads.
    pub fn config(&self) -> &ConfigPath {
        &self.config
    }

    /// `EBUILD_PHASE`, when this runs inside one.
    pub fn ebuild_phase(&self) -> Option<String> {
        self.vars.nonempty("EBUILD_PHASE")
    }

    /// What a suggested command adds to name this run's root:
    /// ` --root DIR` when the root is not `/`, else nothing.
    pub fn root_option(&self) -> String {
        crate::report::root_option(&self.location().root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(root: Option<&str>, vars: &[(&str, &str)]) -> Context {
        Context::new(None, root.map(Path::new), vars.iter().copied().collect())
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        let c = ctx(Some("/mnt/a"), &[("ROOT", "/mnt/b"), ("EPREFIX", "/p")]);
        assert_eq!(c.location().root, Path::new("/mnt/a"));
        assert_eq!(c.location().eroot, Path::new("/mnt/a/p"));
        assert_eq!(c.root_option(), " --root /mnt/a");
        let c = ctx(None, &[("ROOT", "/mnt/b")]);
        assert_eq!(c.location().root, Path::new("/mnt/b"));
        assert_eq!(c.root_option(), " --root /mnt/b");
        assert_eq!(ctx(None, &[]).root_option(), "");
        assert_eq!(ctx(None, &[("ROOT", "/")]).root_option(), "");
    }

    #[test]
    fn the_settings_file_follows_portage_configroot() {
        let c = ctx(None, &[("PORTAGE_CONFIGROOT", "/cfg/")]);
        assert_eq!(
            c.config(),
            &ConfigPath::Default("/cfg/etc/portage/ima.toml".into())
        );
        let c = Context::new(Some(Path::new("/x.toml")), None, Vars::default());
        assert_eq!(c.config(), &ConfigPath::Explicit("/x.toml".into()));
        assert_eq!(
            ctx(None, &[("PORTAGE_CONFIGROOT", "")]).config().path(),
            Path::new("/etc/portage/ima.toml")
        );
    }
}
