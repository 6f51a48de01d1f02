//! The installed-package database, `${EROOT}/var/db/pkg`.
//!
//! Each installed package is a directory `CATEGORY/PF` (`PF` = `PN-PVR`,
//! e.g. `app-misc/foo-1.2_rc3-r1`) holding, among others, `CONTENTS`,
//! `SLOT` and `repository`. The names are checked with the PMS rules of
//! [`crate::gentoo::names`] and [`crate::gentoo::cpv`], as Portage's
//! vardbapi does: a directory whose name is not a valid `CATEGORY/PF` is
//! not a package.

use std::cmp::Ordering;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::gentoo::contents::{Contents, ContentsError};
use crate::gentoo::cpv::Cpv;
use crate::gentoo::names::{Category, NameError, RepoName, Slot};

/// Where the vdb lives under `EROOT`.
pub const VDB_PATH: &str = "var/db/pkg";

/// One installed package: the vdb directory `CATEGORY/PF`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPackage {
    cpv: Cpv,
    /// `${EROOT}/var/db/pkg/CATEGORY/PF`
    dir: PathBuf,
}

impl InstalledPackage {
    /// Builds the entry for `category/pf` in `dir`, checking both names.
    pub fn new(category: &str, pf: &str, dir: PathBuf) -> Result<InstalledPackage, NameError> {
        Ok(InstalledPackage {
            cpv: Cpv::new(category, pf)?,
            dir,
        })
    }

    /// Category, name and version; its `Display` is `app-misc/foo-1.2-r1`.
    pub fn cpv(&self) -> &Cpv {
        &self.cpv
    }

    /// `${EROOT}/var/db/pkg/CATEGORY/PF`
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `CONTENTS` file of this package.
    pub fn contents_path(&self) -> PathBuf {
        self.dir.join("CONTENTS")
    }

    /// Reads and parses `CONTENTS`.
    pub fn contents(&self) -> Result<Contents, ContentsError> {
        Contents::read(&self.contents_path())
    }

    /// The `SLOT` (with its sub-slot, if any), when the vdb has a valid one.
    pub fn slot(&self) -> Option<Slot> {
        Slot::parse(self.read_line("SLOT")?.as_str()).ok()
    }

    /// The repository the package was installed from (`repository` file),
    /// when the vdb has a valid one.
    pub fn repository(&self) -> Option<RepoName> {
        RepoName::parse(self.read_line("repository")?.as_str()).ok()
    }

    /// A one-line vdb file, trimmed; `None` when missing or empty.
    fn read_line(&self, name: &str) -> Option<String> {
        let s = fs::read_to_string(self.dir.join(name)).ok()?;
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    }
}

impl PartialOrd for InstalledPackage {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Category, name, version (then the version's text, `1.0` vs `1.00`),
/// then the directory.
impl Ord for InstalledPackage {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cpv
            .cmp(&other.cpv)
            .then_with(|| self.dir.cmp(&other.dir))
    }
}

/// The result of a full vdb scan.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// The installed packages, sorted.
    pub packages: Vec<InstalledPackage>,
    /// Directories that look like packages but whose names are not valid
    /// `CATEGORY/PF` (Portage ignores them too), for a warning.
    pub invalid: Vec<PathBuf>,
}

/// The installed-package database of one `EROOT`.
#[derive(Clone, Debug)]
pub struct Vdb {
    path: PathBuf,
}

impl Vdb {
    /// Opens `${eroot}/var/db/pkg`; an empty `eroot` is `/`. Fails (naming
    /// the path) when it is not a directory.
    pub fn open(eroot: &Path) -> io::Result<Vdb> {
        let eroot = if eroot.as_os_str().is_empty() {
            Path::new("/")
        } else {
            eroot
        };
        let path = eroot.join(VDB_PATH);
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(Vdb { path }),
            Ok(_) => Err(io::Error::other(format!(
                "no package database at {}: not a directory; is --root right?",
                path.display()
            ))),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "no package database at {}: {e}; is --root right?",
                    path.display()
                ),
            )),
        }
    }

    /// `${EROOT}/var/db/pkg`
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every installed package, sorted by category, name and version.
    ///
    /// Skips what is not a package, as Portage does: plain files (`.keep*`),
    /// symlinks, hidden entries (lock files), Portage's in-progress
    /// `-MERGING-PF` directories, `CVS` and `lost+found`; and directories
    /// whose names are not a valid `CATEGORY/PF` (see [`Vdb::scan`] to list
    /// those).
    pub fn packages(&self) -> io::Result<Vec<InstalledPackage>> {
        Ok(self.scan()?.packages)
    }

    /// Like [`Vdb::packages`], also returning the directories skipped as
    /// invalid names.
    pub fn scan(&self) -> io::Result<Scan> {
        let mut scan = Scan::default();
        for cat in read_dirs(&self.path)? {
            if portage_excluded(&cat) {
                continue;
            }
            let Some(cat_name) = cat.file_name().and_then(|n| n.to_str()) else {
                scan.invalid.push(cat);
                continue;
            };
            if Category::parse(cat_name).is_err() {
                scan.invalid.push(cat);
                continue;
            }
            let cat_name = cat_name.to_string();
            for dir in read_dirs(&cat)? {
                let Some(pf) = dir.file_name().and_then(|n| n.to_str()) else {
                    scan.invalid.push(dir);
                    continue;
                };
                if portage_excluded(&dir) {
                    continue;
                }
                match InstalledPackage::new(&cat_name, pf, dir.clone()) {
                    Ok(p) => scan.packages.push(p),
                    Err(_) => scan.invalid.push(dir),
                }
            }
        }
        scan.packages.sort();
        scan.invalid.sort();
        Ok(scan)
    }

    /// The package `category/pf`, if it is installed.
    pub fn package(&self, category: &str, pf: &str) -> Option<InstalledPackage> {
        // The names are validated first, so `..` or `/` cannot leave the vdb.
        let p = InstalledPackage::new(category, pf, self.path.join(category).join(pf)).ok()?;
        p.dir.is_dir().then_some(p)
    }
}

/// Names Portage's vardbapi skips at both levels of the vdb: its own
/// in-progress `-MERGING-*` directories, `CVS` and `lost+found` (hidden
/// names are already left out by [`read_dirs`]).
fn portage_excluded(dir: &Path) -> bool {
    let name = dir
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    name.starts_with(b"-MERGING-") || name == b"CVS" || name == b"lost+found"
}

/// The non-hidden subdirectories of `dir` (symlinks not followed), with the
/// path in any error.
fn read_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(with_path)? {
        let entry = entry.map_err(with_path)?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        if entry.file_type().map_err(with_path)?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}
