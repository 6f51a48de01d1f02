//! The second stage: what to do with each file, as a list of [`Job`]s.
//!
//! Every entry point builds its jobs here: the hook from `${D}` (preinst)
//! or the package's CONTENTS (postinst), `sign`/`verify` from the CONTENTS
//! of installed packages ([`select`], [`package_jobs`]) or from paths given
//! with `--files` ([`Job::found`]). Config protection is applied while a
//! job is built: a protected file carries the `config_files` mode, which
//! the engine applies once it has the file open and knows whether it is
//! executable ([`Treatment::of`]); verify reports an edited one as
//! `config-changed`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::fs::links::LinkCensus;
use crate::fs::rootfs::RootDir;
use crate::fs::walk::FoundFile;
use crate::gentoo::atom::{self, Atom};
use crate::gentoo::vars::Vars;
use crate::gentoo::vdb::{InstalledPackage, Vdb};
use crate::report::SkipReason;
use crate::settings::ConfigFiles;

/// One file to sign or verify.
#[derive(Debug)]
pub struct Job {
    pub file: JobFile,
    /// Bytes, to start large files first and for the progress display.
    pub size: u64,
    /// Its package, an index into [`Selection::packages`].
    pub package: Option<usize>,
    /// Covered by CONFIG_PROTECT: the `config_files` mode that applies
    /// to it (only known for CONTENTS objects and the hook's `${D}`).
    pub config: Option<ConfigFiles>,
    /// `scope = "policy"` and no appraise rule covers it: left alone.
    pub outside_policy: bool,
    /// `st_dev` and `st_ino` of a CONTENTS object when it was planned.
    pub inode: Option<(u64, u64)>,
    /// The names found for each inode of the package ([`with_link_census`]):
    /// a file with more links is not signed.
    pub census: Option<Arc<LinkCensus>>,
}

/// Counts the names of every inode among `jobs` (a package's CONTENTS
/// objects) and gives each job the count, so that a merged file with a
/// hard link outside the package is not signed ([`crate::fs::links`]).
pub fn with_link_census(jobs: &mut [Job]) {
    let mut census = LinkCensus::default();
    for (dev, ino) in jobs.iter().filter_map(|j| j.inode) {
        census.add(dev, ino);
    }
    let census = Arc::new(census);
    for job in jobs {
        job.census = Some(Arc::clone(&census));
    }
}

/// Where a job's file is, and what it must contain.
#[derive(Debug)]
pub enum JobFile {
    /// An `obj` of CONTENTS: a path inside ROOT and the MD5 Portage recorded.
    Object {
        path: PathBuf,
        expected_md5: [u8; 16],
    },
    /// A file found under `--files` or `${D}`, opened through its walk.
    Found(FoundFile),
}

/// How config protection applies to the jobs being built.
#[derive(Debug, Default)]
pub struct Protection {
    /// CONFIG_PROTECT, when it is to be known.
    pub protect: Option<ConfigProtect>,
    /// What to do with the files it covers.
    pub mode: ConfigFiles,
}

impl Protection {
    /// For signing: CONFIG_PROTECT is looked up only when `mode` treats
    /// config files differently from the others (not `sign`).
    pub fn for_signing(mode: ConfigFiles, eprefix: &Path, vars: &Vars) -> Protection {
        Protection {
            protect: (mode != ConfigFiles::Sign).then(|| ConfigProtect::discover(eprefix, vars)),
            mode,
        }
    }

    /// The mode for `path` (CONTENTS-style, EPREFIX included), when
    /// CONFIG_PROTECT covers it.
    pub fn config_of(&self, path: &Path) -> Option<ConfigFiles> {
        self.protect
            .as_ref()
            .is_some_and(|cp| cp.is_protected(path))
            .then_some(self.mode)
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

impl Treatment {
    /// For a file with the `config_files` mode `config` (None: not
    /// config-protected); `executable`: any execute bit set. Executables
    /// are signed in every mode but `skip`: the kernel runs them, and an
    /// `appraise_type=imasig` rule accepts nothing else.
    pub fn of(config: Option<ConfigFiles>, executable: bool) -> Treatment {
        match config {
            None | Some(ConfigFiles::Sign) => Treatment::Sign,
            Some(ConfigFiles::Skip) => {
                Treatment::Leave(SkipReason::ConfigProtected(ConfigFiles::Skip))
            }
            Some(_) if executable => Treatment::Sign,
            Some(ConfigFiles::Hash) => Treatment::Hash,
            Some(mode @ ConfigFiles::Executable) => {
                Treatment::Leave(SkipReason::ConfigProtected(mode))
            }
        }
    }
}

impl Job {
    /// A job for an `obj` of CONTENTS inside `root`.
    pub fn object(
        root: &RootDir,
        path: &Path,
        expected_md5: [u8; 16],
        package: Option<usize>,
        protection: &Protection,
    ) -> Job {
        // Sizes only order the work (largest first); a file that cannot be
        // stat'ed here is reported when it is opened.
        let meta = std::fs::symlink_metadata(root.display_path(path)).ok();
        Job {
            file: JobFile::Object {
                path: path.to_path_buf(),
                expected_md5,
            },
            size: meta.as_ref().map_or(0, |m| m.len()),
            package,
            config: protection.config_of(path),
            outside_policy: false,
            inode: meta.map(|m| (m.dev(), m.ino())),
            census: None,
        }
    }

    /// The CONTENTS path of an `obj` job.
    pub fn object_path(&self) -> Option<&Path> {
        match &self.file {
            JobFile::Object { path, .. } => Some(path),
            JobFile::Found(_) => None,
        }
    }

    /// A job for a file found on the command line or in `${D}`; `config`:
    /// its `config_files` mode when it is config-protected.
    pub fn found(file: FoundFile, config: Option<ConfigFiles>) -> Job {
        Job {
            size: file.size,
            file: JobFile::Found(file),
            package: None,
            config,
            outside_policy: false,
            inode: None,
            census: None,
        }
    }
}

/// Where to look: the root files live under, and the vdb's EROOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub root: PathBuf,
    pub eroot: PathBuf,
    pub eprefix: PathBuf,
}

impl Location {
    /// `--root DIR` (with EPREFIX from the environment), else ROOT/EROOT from
    /// the environment, else `/`.
    pub fn resolve(root_flag: Option<&Path>, var: impl Fn(&str) -> Option<String>) -> Location {
        let nonempty = |name: &str| var(name).filter(|v| !v.is_empty());
        let eprefix = PathBuf::from(nonempty("EPREFIX").unwrap_or_default());
        let join = |root: &Path| -> PathBuf {
            let mut eroot = root.to_path_buf();
            eroot.push(eprefix.strip_prefix("/").unwrap_or(&eprefix));
            eroot
        };
        match root_flag {
            Some(root) => Location {
                root: root.to_path_buf(),
                eroot: join(root),
                eprefix: eprefix.clone(),
            },
            None => {
                let root = PathBuf::from(nonempty("ROOT").unwrap_or_else(|| "/".into()));
                let eroot = nonempty("EROOT")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| join(&root));
                Location {
                    root,
                    eroot,
                    eprefix: eprefix.clone(),
                }
            }
        }
    }
}

/// The selected packages, in vdb order, and where their files live.
pub struct Selection {
    pub location: Location,
    pub root: RootDir,
    pub packages: Vec<InstalledPackage>,
}

/// Which installed packages to work on.
#[derive(Clone, Copy, Debug)]
pub enum Which<'a> {
    /// Every installed package (`--all`).
    All,
    /// Those the atoms name (none: an error that says what to give).
    Atoms(&'a [String]),
}

/// The packages `which` names in the vdb of `location`.
pub fn select(which: Which, location: &Location) -> Result<Selection> {
    let location = location.clone();
    let vdb = Vdb::open(&location.eroot)?;
    let installed = vdb
        .packages()
        .with_context(|| format!("cannot list {}", vdb.path().display()))?;
    let packages = match which {
        Which::All => installed,
        Which::Atoms([]) => bail!(
            "name the packages (cat/pkg, =cat/pkg-1.0, pkg), or give --all, or --files PATH..."
        ),
        Which::Atoms(atoms) => {
            let atoms = atoms
                .iter()
                .map(|a| a.parse::<Atom>())
                .collect::<Result<Vec<_>, _>>()?;
            atom::resolve(&atoms, &installed)?
        }
    };
    let root = RootDir::open(&location.root)?;
    Ok(Selection {
        location,
        root,
        packages,
    })
}

/// Appends the jobs of package `index`'s CONTENTS to `jobs`; returns its
/// problems (CONTENTS unreadable, lines skipped) as messages.
pub fn package_jobs(
    sel: &Selection,
    index: usize,
    protection: &Protection,
    jobs: &mut Vec<Job>,
) -> Vec<String> {
    let pkg = &sel.packages[index];
    let contents = match pkg.contents() {
        Ok(contents) => contents,
        Err(e) => return vec![e.to_string()],
    };
    for (path, md5) in contents.objects() {
        jobs.push(Job::object(&sel.root, path, *md5, Some(index), protection));
    }
    contents.skipped_messages(&pkg.contents_path()).collect()
}

/// With `scope = "policy"`: marks the CONTENTS jobs whose file no appraise
/// rule of the policy covers as skipped.
pub fn limit_to_policy(
    jobs: &mut [Job],
    root: &RootDir,
    coverage: Option<&crate::policy::check::Coverage>,
) {
    let Some(coverage) = coverage else { return };
    for job in jobs.iter_mut() {
        if let JobFile::Object { path, .. } = &job.file {
            if !coverage.covers(root.root(), &root.display_path(path)) {
                job.outside_policy = true;
            }
        }
    }
}

/// CONFIG_PROTECT and CONFIG_PROTECT_MASK, for the `config_files` setting.
#[derive(Debug, Default, Clone)]
pub struct ConfigProtect {
    protect: Vec<PathBuf>,
    mask: Vec<PathBuf>,
}

impl ConfigProtect {
    /// From the environment, else from `portageq envvar` (Portage does not
    /// pass these into the ebuild environment), else `/etc`.
    pub fn discover(eprefix: &Path, vars: &Vars) -> ConfigProtect {
        let (protect, mask) = match (vars.get("CONFIG_PROTECT"), vars.get("CONFIG_PROTECT_MASK")) {
            (Some(p), m) => (p, m.unwrap_or_default()),
            (None, _) => {
                portageq_config_protect(vars).unwrap_or_else(|| ("/etc".into(), String::new()))
            }
        };
        ConfigProtect::new(eprefix, &protect, &mask)
    }

    /// Lists are space-separated paths relative to EPREFIX, as Portage writes them.
    pub fn new(eprefix: &Path, protect: &str, mask: &str) -> ConfigProtect {
        let list = |s: &str| -> Vec<PathBuf> {
            s.split_whitespace()
                .map(|p| {
                    let rel = p.trim_start_matches('/');
                    let mut full = PathBuf::from("/");
                    full.push(eprefix.strip_prefix("/").unwrap_or(eprefix));
                    full.push(rel);
                    full
                })
                .collect()
        };
        ConfigProtect {
            protect: list(protect),
            mask: list(mask),
        }
    }

    /// Portage's rule: protected when the longest matching CONFIG_PROTECT
    /// entry is longer than the longest matching mask entry.
    pub fn is_protected(&self, path: &Path) -> bool {
        let longest = |list: &[PathBuf]| {
            list.iter()
                .filter(|dir| path.starts_with(dir))
                .map(|dir| dir.as_os_str().len())
                .max()
        };
        match (longest(&self.protect), longest(&self.mask)) {
            (Some(p), Some(m)) => p > m,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// `portageq envvar`, never found through `PATH` inside Portage
/// (see [`crate::gentoo::portageq::portageq_command`]).
fn portageq_config_protect(vars: &Vars) -> Option<(String, String)> {
    let out = crate::gentoo::portageq::portageq_command(vars)?
        .args(["envvar", "CONFIG_PROTECT", "CONFIG_PROTECT_MASK"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    Some((
        lines.next()?.to_string(),
        lines.next().unwrap_or("").to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_protect_follows_portage_rule() {
        let cp = ConfigProtect::new(
            Path::new(""),
            "/etc /usr/share/config",
            "/etc/env.d /etc/gconf",
        );
        assert!(cp.is_protected(Path::new("/etc/foo.conf")));
        assert!(!cp.is_protected(Path::new("/etc/env.d/99foo")));
        assert!(cp.is_protected(Path::new("/usr/share/config/x")));
        assert!(!cp.is_protected(Path::new("/usr/bin/foo")));
        assert!(!cp.is_protected(Path::new("/etcetera/x")));
    }

    #[test]
    fn treatment_signs_executables_in_every_mode_but_skip() {
        use ConfigFiles::*;
        let leave = |mode| Treatment::Leave(SkipReason::ConfigProtected(mode));
        for exec in [false, true] {
            assert_eq!(Treatment::of(None, exec), Treatment::Sign);
            assert_eq!(Treatment::of(Some(Sign), exec), Treatment::Sign);
            assert_eq!(Treatment::of(Some(Skip), exec), leave(Skip));
        }
        assert_eq!(Treatment::of(Some(Executable), true), Treatment::Sign);
        assert_eq!(Treatment::of(Some(Executable), false), leave(Executable));
        assert_eq!(Treatment::of(Some(Hash), true), Treatment::Sign);
        assert_eq!(Treatment::of(Some(Hash), false), Treatment::Hash);
    }

    #[test]
    fn config_protect_is_relative_to_eprefix() {
        let cp = ConfigProtect::new(Path::new("/opt/gentoo"), "/etc", "");
        assert!(cp.is_protected(Path::new("/opt/gentoo/etc/foo")));
        assert!(!cp.is_protected(Path::new("/etc/foo")));
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn location_defaults_to_host_root() {
        let l = Location::resolve(None, vars(&[]));
        assert_eq!((l.root, l.eroot), ("/".into(), "/".into()));
    }

    #[test]
    fn location_from_root_flag_adds_eprefix() {
        let l = Location::resolve(
            Some(Path::new("/mnt/gentoo")),
            vars(&[("EPREFIX", "/opt/g")]),
        );
        assert_eq!(l.eroot, Path::new("/mnt/gentoo/opt/g"));
        assert_eq!(l.root, Path::new("/mnt/gentoo"));
    }

    #[test]
    fn location_from_environment() {
        let l = Location::resolve(
            None,
            vars(&[("ROOT", ""), ("EROOT", "/p"), ("EPREFIX", "/p")]),
        );
        assert_eq!((l.root, l.eroot), ("/".into(), "/p".into()));
        let l = Location::resolve(None, vars(&[("ROOT", "/r/")]));
        assert_eq!(l.eroot, Path::new("/r/"));
    }
}
