//! The second stage: what to do with each file, as a list of [`Job`]s.
//!
//! Every entry point builds its jobs here: the hook from `${D}` (preinst)
//! or the package's CONTENTS (postinst), `sign`/`verify` from the CONTENTS
//! of installed packages ([`select`], [`package_jobs`]) or from paths given
//! with `--files` ([`Job::found`]). What happens to each file is decided
//! here, once, when its job is built ([`treatment`]): config protection
//! and `scope = "policy"` give each job a [`Decision`], which the engine
//! turns into what is written once it has the file open and knows whether
//! it is executable ([`Decision::on`]); verify judges a config file by it
//! and reports an edited one as `config-changed`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::fs::links::LinkCensus;
use crate::fs::rootfs::RootDir;
use crate::fs::walk::FoundFile;
use crate::gentoo::atom::{self, Atom};
use crate::gentoo::config_protect::ConfigProtect;
use crate::gentoo::vars::Vars;
use crate::gentoo::vdb::{InstalledPackage, Vdb};

pub mod treatment;

pub use treatment::{ConfigFiles, Decision, SkipReason, Treatment};

/// One file to sign or verify.
#[derive(Debug)]
pub struct Job {
    /// Where the file is, and what it must contain.
    pub file: JobFile,
    /// Bytes, to start large files first and for the progress display.
    pub size: u64,
    /// Its package, an index into [`Selection::packages`].
    pub package: Option<usize>,
    /// What happens to it: config protection (only known for CONTENTS
    /// objects and the hook's `${D}`) and `scope = "policy"` applied.
    pub decision: Decision,
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
        /// The root the path is inside, opened once for every job.
        root: Arc<RootDir>,
        /// The path as CONTENTS has it.
        path: PathBuf,
        /// The MD5 CONTENTS records for it.
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

impl Job {
    /// A job for an `obj` of CONTENTS inside `root`.
    pub fn object(
        root: &Arc<RootDir>,
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
                root: Arc::clone(root),
                path: path.to_path_buf(),
                expected_md5,
            },
            size: meta.as_ref().map_or(0, |m| m.len()),
            package,
            decision: Decision::new(protection.config_of(path)),
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
            decision: Decision::new(config),
            inode: None,
            census: None,
        }
    }
}

/// Jobs for the files found in the image `${D}`, which holds the paths as
/// they will be merged (EPREFIX included): each one is config-protected as
/// the path it is merged to.
pub fn image_jobs(found: Vec<FoundFile>, d: &Path, protection: &Protection) -> Vec<Job> {
    found
        .into_iter()
        .map(|file| {
            let merged = file
                .path
                .strip_prefix(d)
                .map(|rel| Path::new("/").join(rel));
            let config = merged.ok().and_then(|p| protection.config_of(&p));
            Job::found(file, config)
        })
        .collect()
}

/// Where to look: the root files live under, and the vdb's EROOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// ROOT, where the installed files are (`--root`, else `$ROOT`, else `/`).
    pub root: PathBuf,
    /// EROOT, ROOT with EPREFIX under it: where the vdb (`var/db/pkg`) is.
    pub eroot: PathBuf,
    /// EPREFIX from the environment: a Prefix install's offset, empty otherwise.
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
    /// Where the packages were read.
    pub location: Location,
    /// ROOT, opened once and shared by every job of the selection.
    pub root: Arc<RootDir>,
    /// The selected packages, in vdb order (the jobs' `package` indexes).
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
    let root = Arc::new(RootDir::open(&location.root)?);
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
/// rule of the policy covers as left alone ([`Decision::outside_policy`]).
/// `covers` is asked with the root and the file's path on the host (the
/// policy's `Coverage::covers`).
pub fn limit_to_policy(jobs: &mut [Job], covers: impl Fn(&Path, &Path) -> bool) {
    for job in jobs.iter_mut() {
        if let JobFile::Object { root, path, .. } = &job.file {
            if !covers(root.root(), &root.display_path(path)) {
                job.decision = job.decision.outside_policy();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
