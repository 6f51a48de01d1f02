//! The installed-package database, `${EROOT}/var/db/pkg`, and the PMS names
//! and versions that index it.
//!
//! Each installed package is a directory `CATEGORY/PF` (`PF` = `PN-PVR`,
//! e.g. `app-misc/foo-1.2_rc3-r1`) holding, among others, `CONTENTS`,
//! `SLOT` and `repository`. Splitting `PF` into the name and the version
//! needs the version syntax of PMS section 3.2, so this module also has a
//! small [`Version`] type with the PMS 3.3 ordering.

use std::cmp::Ordering;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::gentoo::contents::{Contents, ContentsError};
use crate::gentoo::version::Version;

/// Where the vdb lives under `EROOT`.
pub const VDB_PATH: &str = "var/db/pkg";

/// A valid category name (PMS 3.1.1): `[A-Za-z0-9+_.-]`, not starting
/// with `-`, `.` or `+`.
pub fn is_valid_category(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['-', '.', '+'])
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+_.-".contains(&c))
}

/// A valid package name (PMS 3.1.2): `[A-Za-z0-9+_-]`, not starting with
/// `-` or `+`, and not ending in `-` followed by something that is a valid
/// version (`foo-1` and `foo-1a-r2` are not names).
pub fn is_valid_pn(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['-', '+'])
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+_-".contains(&c))
        && !s
            .match_indices('-')
            .any(|(i, _)| Version::parse(&s[i + 1..]).is_ok())
}

/// Splits `PF` into `(PN, PVR)` at the first `-` that starts a valid
/// version, as Portage's `pkgsplit` does; `None` when there is no such
/// split or the name left over is not valid (`foo-1a-2`: the name `foo-1a`
/// ends in a version).
///
/// ```
/// use portage_ima::gentoo::vdb::split_pf;
/// assert_eq!(split_pf("foo-bar-1.0"), Some(("foo-bar", "1.0")));
/// assert_eq!(split_pf("gtk+-3.24.38-r1"), Some(("gtk+", "3.24.38-r1")));
/// assert_eq!(split_pf("foo-1a-2"), None);
/// ```
pub fn split_pf(pf: &str) -> Option<(&str, &str)> {
    let (i, _) = pf
        .match_indices('-')
        .find(|(i, _)| Version::parse(&pf[i + 1..]).is_ok())?;
    let (pn, pvr) = (&pf[..i], &pf[i + 1..]);
    is_valid_pn(pn).then_some((pn, pvr))
}

/// One installed package: the vdb directory `CATEGORY/PF`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPackage {
    pub category: String,
    pub pf: String,
    pub pn: String,
    pub pvr: String,
    /// `${EROOT}/var/db/pkg/CATEGORY/PF`
    pub dir: PathBuf,
}

impl InstalledPackage {
    /// Builds the entry for `category/pf` in `dir`, checking both names;
    /// `None` if they are not valid PMS names.
    pub fn new(category: &str, pf: &str, dir: PathBuf) -> Option<InstalledPackage> {
        if !is_valid_category(category) {
            return None;
        }
        let (pn, pvr) = split_pf(pf)?;
        Some(InstalledPackage {
            category: category.to_string(),
            pf: pf.to_string(),
            pn: pn.to_string(),
            pvr: pvr.to_string(),
            dir,
        })
    }

    /// `category/pf`, e.g. `app-misc/foo-1.2-r1`.
    pub fn cpv(&self) -> String {
        format!("{}/{}", self.category, self.pf)
    }

    /// `category/pn`, e.g. `app-misc/foo`.
    pub fn cp(&self) -> String {
        format!("{}/{}", self.category, self.pn)
    }

    /// The parsed version (`PVR`).
    pub fn version(&self) -> Version {
        // `pvr` came from split_pf in `new`; a hand-built struct with a bad
        // one gets the lowest version instead of a panic.
        Version::parse(&self.pvr).unwrap_or_else(|_| Version::parse("0").expect("valid"))
    }

    /// The `CONTENTS` file of this package.
    pub fn contents_path(&self) -> PathBuf {
        self.dir.join("CONTENTS")
    }

    /// Reads and parses `CONTENTS`.
    pub fn contents(&self) -> Result<Contents, ContentsError> {
        Contents::read(&self.contents_path())
    }

    /// The `SLOT` (without the sub-slot), if the vdb has one.
    pub fn slot(&self) -> Option<String> {
        let s = fs::read_to_string(self.dir.join("SLOT")).ok()?;
        let s = s.trim();
        let slot = s.split('/').next().unwrap_or(s);
        (!slot.is_empty()).then(|| slot.to_string())
    }

    /// The `SLOT` file content, `slot/subslot` (as written), if any.
    pub fn full_slot(&self) -> Option<String> {
        let s = fs::read_to_string(self.dir.join("SLOT")).ok()?;
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    }

    /// The repository the package was installed from (`repository` file).
    pub fn repository(&self) -> Option<String> {
        let s = fs::read_to_string(self.dir.join("repository")).ok()?;
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    }
}

impl PartialOrd for InstalledPackage {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Category, name, version, then the literal `PF` to break PMS ties
/// (`1.0` vs `1.00`).
impl Ord for InstalledPackage {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.category, &self.pn)
            .cmp(&(&other.category, &other.pn))
            .then_with(|| self.version().cmp(&other.version()))
            .then_with(|| self.pf.cmp(&other.pf))
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
            if !is_valid_category(cat_name) {
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
                    Some(p) => scan.packages.push(p),
                    None => scan.invalid.push(dir),
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
        let p = InstalledPackage::new(category, pf, self.path.join(category).join(pf))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pf_splitting() {
        for (pf, pn, pvr) in [
            ("foo-1.0", "foo", "1.0"),
            ("foo-bar-1.0", "foo-bar", "1.0"),
            ("gtk+-3.24.38-r1", "gtk+", "3.24.38-r1"),
            ("perl-5.38.2-r3", "perl", "5.38.2-r3"),
            ("vim-9999", "vim", "9999"),
            ("foo-1.2_rc3_p4-r1", "foo", "1.2_rc3_p4-r1"),
            ("python-3.12.1_p1", "python", "3.12.1_p1"),
            ("font-bh-ttf-1.0.4", "font-bh-ttf", "1.0.4"),
            ("x264-0.0.20231214", "x264", "0.0.20231214"),
            ("foo-2ch-1", "foo-2ch", "1"),
            ("libsigc++-2.12.1", "libsigc++", "2.12.1"),
            ("foo_bar-1", "foo_bar", "1"),
            ("a-1-r1", "a", "1-r1"),
        ] {
            assert_eq!(split_pf(pf), Some((pn, pvr)), "{pf}");
        }
        for bad in [
            "foo",
            "foo-",
            "-1",
            "foo-1a-2",
            "foo-1-2",
            "foo-1-r1-2",
            "foo-bar",
            "+foo-1",
            "foo.bar-1",
            "foo/bar-1",
            "foo-1.0-r1-r2",
            "",
        ] {
            assert_eq!(split_pf(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn any_text_never_panics(s in "\\PC{0,24}", t in "[0-9a-z._+-]{0,16}") {
            for x in [&s, &t] {
                let _ = split_pf(x);
                let _ = is_valid_pn(x);
                let _ = is_valid_category(x);
            }
        }

        #[test]
        fn split_pf_reassembles(pn in "[a-z][a-z0-9+_]{0,6}(-[a-z][a-z0-9+_]{0,4}){0,2}",
                                v in "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}[a-z]?(_(alpha|beta|pre|rc|p)[0-9]{0,2}){0,2}(-r[0-9]{1,2})?") {
            let pf = format!("{pn}-{v}");
            proptest::prop_assert_eq!(split_pf(&pf), Some((pn.as_str(), v.as_str())));
        }
    }

    #[test]
    fn names() {
        assert!(is_valid_category("app-misc"));
        assert!(is_valid_category("dev-perl"));
        assert!(is_valid_category("virtual"));
        assert!(is_valid_category("x11-libs.old"));
        assert!(!is_valid_category(".hidden"));
        assert!(!is_valid_category("-MERGING-"));
        assert!(!is_valid_category("a/b"));
        assert!(!is_valid_category(".."));
        assert!(is_valid_pn("foo-bar"));
        assert!(is_valid_pn("gtk+"));
        assert!(!is_valid_pn("foo-1"));
        assert!(!is_valid_pn("foo-1.2_rc1-r1"));
        assert!(is_valid_pn("foo-1x2"));
    }
}
