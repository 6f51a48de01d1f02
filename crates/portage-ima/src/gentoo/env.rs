//! Portage's environment as the ebuild (and so `/etc/portage/bashrc`) sees
//! it, and what it implies for signing: where the vdb entry is, and whether
//! an xattr set in `${D}` before the merge survives it.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ima_core::IMA_XATTR;

use crate::fs::rootfs::RootDir;
use crate::gentoo::cpv::split_pf;
use crate::gentoo::make_conf::{default_xattr_exclude, xattr_exclude_match, Features};
use crate::gentoo::names::Category;
use crate::gentoo::vdb::VDB_PATH;

/// The variables that must be set for [`PortageEnv::from_vars`].
pub const REQUIRED_VARS: &[&str] = &["EBUILD_PHASE", "CATEGORY", "PF", "ROOT"];

/// Every variable [`PortageEnv`] requires to be UTF-8 when set (it also
/// reads `T`, `PORTAGE_BUILDDIR` and `PORTAGE_TMPDIR`, when UTF-8).
pub const ALL_VARS: &[&str] = &[
    "EBUILD_PHASE",
    "CATEGORY",
    "PF",
    "ROOT",
    "EROOT",
    "EPREFIX",
    "D",
    "ED",
    "PORTAGE_CONFIGROOT",
    "FEATURES",
    "PORTAGE_XATTR_EXCLUDE",
    "MERGE_TYPE",
    "REPLACING_VERSIONS",
];

/// Portage's environment during an ebuild phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortageEnv {
    /// `EBUILD_PHASE`: `preinst`, `postinst`, ...
    pub phase: String,
    /// `CATEGORY`: the package's category (`app-misc`).
    pub category: String,
    /// `PF`: name, version and revision (`foo-1.2-r1`), as in the vdb
    /// entry `${CATEGORY}/${PF}`.
    pub pf: String,
    /// `ROOT`; an empty `ROOT` (prefix installs, EAPI 7+) is stored as `/`.
    pub root: PathBuf,
    /// `EROOT`, or `${ROOT%/}${EPREFIX}` when it is not set; `/` if empty.
    pub eroot: PathBuf,
    /// `EPREFIX`, empty when unset.
    pub eprefix: PathBuf,
    /// `D`, the image directory (src_install to preinst).
    pub d: Option<PathBuf>,
    /// `ED` = `${D%/}${EPREFIX}`.
    pub ed: Option<PathBuf>,
    /// `PORTAGE_CONFIGROOT` (ends in `/`), `/` when unset.
    pub config_root: PathBuf,
    /// `FEATURES`, as words in order (see [`PortageEnv::has_feature`]).
    pub features: Vec<String>,
    /// `PORTAGE_XATTR_EXCLUDE` patterns; Portage's default list when the
    /// variable is unset.
    pub xattr_exclude: Vec<String>,
    /// `MERGE_TYPE`: `source`, `binary` or `buildonly`.
    pub merge_type: Option<String>,
    /// `REPLACING_VERSIONS`: the versions this merge replaces.
    pub replacing_versions: Vec<String>,
    /// `T`, the package's temporary directory (in the build directory).
    pub t: Option<PathBuf>,
    /// `PORTAGE_BUILDDIR`, the package's build directory.
    pub builddir: Option<PathBuf>,
    /// `PORTAGE_TMPDIR`, the admin's directory the build directories are under.
    pub portage_tmpdir: Option<PathBuf>,
}

/// Why the environment is not a usable Portage environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvError {
    /// Required variables are unset (or empty).
    Missing(Vec<&'static str>),
    /// A variable is set to something Portage never sets.
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// Its value as set.
        value: String,
        /// What is wrong with it, worded to follow `VAR='value'`.
        reason: String,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Missing(vars) => write!(
                f,
                "{} {} not set: this must run from Portage's bashrc \
                 (/etc/portage/bashrc, during an emerge), which sets them",
                vars.join(", "),
                if vars.len() == 1 { "is" } else { "are" },
            ),
            EnvError::Invalid { var, value, reason } => {
                write!(f, "{var}='{value}' {reason}")
            }
        }
    }
}

impl std::error::Error for EnvError {}

/// Whether `security.ima` set on files in `${D}` survives the merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PremergeXattr {
    /// It survives; the reason says why, for a verbose log.
    Kept {
        /// One line: which setting or mount makes it survive.
        reason: String,
    },
    /// It is lost: `reason` is one line, `hint` the setting that would keep it.
    Lost {
        /// One line: why the merge drops it.
        reason: String,
        /// The setting that would keep it.
        hint: String,
    },
}

impl PortageEnv {
    /// Reads the hook's environment. A variable that is set but not
    /// UTF-8 is reported as such rather than as missing.
    pub fn from_environment(vars: &crate::gentoo::vars::Vars) -> Result<Self, EnvError> {
        for &var in ALL_VARS {
            if let Some(v) = vars.get_os(var) {
                if v.to_str().is_none() {
                    return Err(EnvError::Invalid {
                        var,
                        value: v.to_string_lossy().into_owned(),
                        reason: "is not valid UTF-8".into(),
                    });
                }
            }
        }
        PortageEnv::from_vars(vars.lookup())
    }

    /// Builds the environment from a lookup function (tests, or a saved
    /// `environment` file). Every missing required variable is reported at
    /// once; `CATEGORY` and `PF` must be valid PMS names, as they become
    /// path components of the vdb entry.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let mut missing = Vec::new();
        for &var in REQUIRED_VARS {
            let present = if var == "ROOT" {
                // Empty is a valid ROOT (EAPI 7+ for "/"); EROOT can stand in.
                get("ROOT").is_some() || nonempty("EROOT").is_some()
            } else {
                nonempty(var).is_some()
            };
            if !present {
                missing.push(var);
            }
        }
        if !missing.is_empty() {
            return Err(EnvError::Missing(missing));
        }
        let phase = nonempty("EBUILD_PHASE").unwrap_or_default();
        let category = nonempty("CATEGORY").unwrap_or_default();
        let pf = nonempty("PF").unwrap_or_default();
        if let Err(e) = Category::parse(&category) {
            return Err(EnvError::Invalid {
                var: "CATEGORY",
                value: category,
                reason: format!("is not a valid category name: {}", e.reason),
            });
        }
        if let Err(e) = split_pf(&pf) {
            return Err(EnvError::Invalid {
                var: "PF",
                value: pf,
                reason: format!("is not a valid NAME-VERSION: {}", e.reason),
            });
        }

        let eprefix = get("EPREFIX").unwrap_or_default();
        let root_raw = get("ROOT").unwrap_or_default();
        let eroot = match nonempty("EROOT") {
            Some(e) => e,
            None => format!("{}{}", root_raw.trim_end_matches('/'), eprefix),
        };
        let or_slash = |s: String| PathBuf::from(if s.is_empty() { "/".into() } else { s });
        let words = |k: &str| -> Vec<String> {
            get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        Ok(PortageEnv {
            phase,
            category,
            pf,
            root: or_slash(root_raw),
            eroot: or_slash(eroot),
            eprefix: PathBuf::from(eprefix),
            d: nonempty("D").map(PathBuf::from),
            ed: nonempty("ED").map(PathBuf::from),
            config_root: or_slash(get("PORTAGE_CONFIGROOT").unwrap_or_default()),
            features: words("FEATURES"),
            xattr_exclude: match get("PORTAGE_XATTR_EXCLUDE") {
                Some(v) => v.split_whitespace().map(str::to_string).collect(),
                None => default_xattr_exclude(),
            },
            merge_type: nonempty("MERGE_TYPE"),
            replacing_versions: words("REPLACING_VERSIONS"),
            t: nonempty("T").map(PathBuf::from),
            builddir: nonempty("PORTAGE_BUILDDIR").map(PathBuf::from),
            portage_tmpdir: nonempty("PORTAGE_TMPDIR").map(PathBuf::from),
        })
    }

    /// `${EROOT}/var/db/pkg/${CATEGORY}/${PF}`
    pub fn vdb_entry(&self) -> PathBuf {
        self.eroot
            .join(VDB_PATH)
            .join(&self.category)
            .join(&self.pf)
    }

    /// `category/pf`
    pub fn cpv(&self) -> String {
        format!("{}/{}", self.category, self.pf)
    }

    /// `FEATURES` after Portage's incremental stacking of its words.
    pub fn features(&self) -> Features {
        Features::from_words(self.features.iter().map(String::as_str))
    }

    /// Is `f` in `FEATURES`? Words apply in order: `-f` cancels an earlier
    /// `f`, `-*` cancels everything before it.
    pub fn has_feature(&self, f: &str) -> bool {
        self.features().contains(f)
    }

    /// Will an xattr set on files under `${D}` survive the merge to `ROOT`?
    ///
    /// Portage moves each file with `rename()` when it is on the same
    /// mount as its destination directory (see [`MountId`]: the same
    /// `st_dev` is not enough), which keeps every xattr; otherwise it copies, and copies xattrs only with
    /// `FEATURES=xattr`, minus those matching `PORTAGE_XATTR_EXCLUDE`.
    ///
    /// This checks every regular file under `${D}` against the nearest
    /// existing ancestor of its destination directory under `ROOT` (looked
    /// up inside `ROOT`, following symlinks such as `/lib -> usr/lib` as
    /// Portage merges through them). That is stricter than comparing the
    /// top-level directories only: a separate `/usr/local` or `/var` mount
    /// is noticed too.
    pub fn premerge_xattr(&self) -> PremergeXattr {
        let Some(d) = &self.d else {
            return PremergeXattr::Lost {
                reason: "D is not set: there is no image to sign before the merge \
                         (only src_install to preinst have one)"
                    .into(),
                hint: "sign in postinst instead".into(),
            };
        };
        let copies = match first_cross_device(d, &self.root) {
            Ok(None) => {
                return PremergeXattr::Kept {
                    reason: format!(
                        "{} and its destination in {} are on the same mount: \
                         Portage renames files, keeping their xattrs",
                        d.display(),
                        self.root.display()
                    ),
                }
            }
            Ok(Some(cross)) => cross,
            Err(e) => {
                return PremergeXattr::Lost {
                    reason: format!(
                        "cannot tell whether {} and {} share a filesystem: {e}",
                        d.display(),
                        self.root.display()
                    ),
                    hint: "sign in postinst instead".into(),
                }
            }
        };
        XattrCopy::of(&self.features(), &self.xattr_exclude).verdict(&copies)
    }
}

/// What a *copying* merge (Portage cannot `rename()`) does with
/// `security.ima`: it copies xattrs only with `FEATURES=xattr`, and then
/// not those matching a `PORTAGE_XATTR_EXCLUDE` pattern. The hook and
/// `doctor` both decide with this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XattrCopy<'a> {
    /// `FEATURES` has `xattr`.
    pub feature: bool,
    /// The `PORTAGE_XATTR_EXCLUDE` pattern that matches `security.ima`.
    pub excluded_by: Option<&'a str>,
}

impl<'a> XattrCopy<'a> {
    /// What a copy does, from `FEATURES` and the `PORTAGE_XATTR_EXCLUDE`
    /// patterns.
    pub fn of(features: &Features, exclude: &'a [String]) -> XattrCopy<'a> {
        XattrCopy {
            feature: features.contains("xattr"),
            excluded_by: xattr_exclude_match(exclude, IMA_XATTR),
        }
    }

    /// Does a copy keep `security.ima`?
    pub fn keeps_ima(&self) -> bool {
        self.feature && self.excluded_by.is_none()
    }

    /// The verdict for a merge that copies; `copies` says why it copies.
    pub fn verdict(&self, copies: &str) -> PremergeXattr {
        if self.keeps_ima() {
            return PremergeXattr::Kept {
                reason: format!(
                    "{copies}: Portage copies, and FEATURES=xattr copies {IMA_XATTR} \
                     (not in PORTAGE_XATTR_EXCLUDE)"
                ),
            };
        }
        let tmpdir = "or put PORTAGE_TMPDIR on the filesystem of ROOT";
        let (why, hint) = match (self.feature, self.excluded_by) {
            (false, Some(p)) => (
                format!("FEATURES lacks xattr and PORTAGE_XATTR_EXCLUDE has '{p}'"),
                format!(
                    "In make.conf, add xattr to FEATURES and remove '{p}' from \
                     PORTAGE_XATTR_EXCLUDE (keep the rest of the list), {tmpdir}"
                ),
            ),
            (false, None) => (
                "FEATURES lacks xattr".to_string(),
                format!("In make.conf, add xattr to FEATURES, {tmpdir}"),
            ),
            (true, Some(p)) => (
                format!("PORTAGE_XATTR_EXCLUDE has '{p}', which matches {IMA_XATTR}"),
                format!(
                    "In make.conf, remove '{p}' from PORTAGE_XATTR_EXCLUDE \
                     (keep the rest of the list), {tmpdir}"
                ),
            ),
            (true, None) => unreachable!("keeps_ima"),
        };
        PremergeXattr::Lost {
            reason: format!("{copies}: Portage copies and drops {IMA_XATTR} ({why})"),
            hint,
        }
    }
}

/// Where a file is, for `rename()`: its filesystem (`st_dev`) and its mount
/// (`statx`'s `STATX_MNT_ID`, Linux 5.8).
///
/// `rename()` works only within one mount: two bind mounts of the same
/// filesystem share `st_dev`, yet a rename between them fails with `EXDEV`
/// and Portage falls back to copying (dropping `security.ima` unless
/// FEATURES=xattr keeps it). So the device alone cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountId {
    /// `st_dev`: the filesystem.
    pub dev: u64,
    /// `stx_mnt_id`: the mount.
    pub mnt_id: u64,
}

impl MountId {
    /// Of `path`, following symlinks (where Portage would end up).
    pub fn of_path(path: &Path) -> io::Result<MountId> {
        MountId::statx(rustix::fs::CWD, path, rustix::fs::AtFlags::empty())
    }

    /// Of an open file or directory.
    pub fn of_fd(fd: impl std::os::fd::AsFd) -> io::Result<MountId> {
        MountId::statx(fd, "", rustix::fs::AtFlags::EMPTY_PATH)
    }

    fn statx(
        dirfd: impl std::os::fd::AsFd,
        path: impl rustix::path::Arg,
        flags: rustix::fs::AtFlags,
    ) -> io::Result<MountId> {
        use rustix::fs::StatxFlags;
        let st = rustix::fs::statx(dirfd, path, flags, StatxFlags::MNT_ID)?;
        if !StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::MNT_ID) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel does not tell mount ids (statx STATX_MNT_ID needs Linux 5.8)",
            ));
        }
        Ok(MountId {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            mnt_id: st.stx_mnt_id,
        })
    }
}

/// Whether Portage can `rename()` a file at `from` into a directory at `to`
/// (and so keeps its xattrs); otherwise why not, in words. The hook and
/// `doctor` both decide with this.
pub fn renames_between(from: MountId, to: MountId) -> Result<(), &'static str> {
    if from.dev != to.dev {
        Err("is on another filesystem than")
    } else if from.mnt_id != to.mnt_id {
        Err("is on another mount of the same filesystem (a bind mount: rename() fails with EXDEV) than")
    } else {
        Ok(())
    }
}

/// Finds a regular file under `d` that Portage cannot rename into its
/// destination directory under `root` (another filesystem or another
/// mount); `Ok(None)` when there is none. The `Ok(Some(..))` text names the
/// file and the destination.
fn first_cross_device(d: &Path, root: &Path) -> io::Result<Option<String>> {
    let with_path =
        |p: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    let rootdir = RootDir::open(root)?;
    let mut dest_mount: HashMap<PathBuf, MountId> = HashMap::new();
    // Directories still to look at, relative to `d` ("" is `d` itself).
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = d.join(&rel);
        let mut mount_of_dest = None;
        for entry in fs::read_dir(&dir).map_err(|e| with_path(&dir, e))? {
            let entry = entry.map_err(|e| with_path(&dir, e))?;
            let kind = entry.file_type().map_err(|e| with_path(&entry.path(), e))?;
            if kind.is_dir() {
                todo.push(rel.join(entry.file_name()));
            } else if kind.is_file() {
                let want = match mount_of_dest {
                    Some(m) => m,
                    None => {
                        let m = nearest_existing_mount(&rootdir, &rel, &mut dest_mount)?;
                        mount_of_dest = Some(m);
                        m
                    }
                };
                let here =
                    MountId::of_path(&entry.path()).map_err(|e| with_path(&entry.path(), e))?;
                if let Err(why) = renames_between(here, want) {
                    return Ok(Some(format!(
                        "{} {why} {}",
                        entry.path().display(),
                        rootdir.display_path(&Path::new("/").join(&rel)).display()
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// The mount of the nearest existing ancestor of `/rel` inside the root.
fn nearest_existing_mount(
    root: &RootDir,
    rel: &Path,
    cache: &mut HashMap<PathBuf, MountId>,
) -> io::Result<MountId> {
    let mut cur = rel.to_path_buf();
    loop {
        if let Some(m) = cache.get(&cur) {
            return Ok(*m);
        }
        // A trailing "/." follows a final symlink (`lib -> usr/lib`): Portage
        // merges into the directory it points to.
        let lookup = Path::new("/").join(&cur).join(".");
        match root.open_dir(&lookup) {
            Ok(f) => {
                let m = MountId::of_fd(&f)?;
                cache.insert(rel.to_path_buf(), m);
                return Ok(m);
            }
            Err(e) if cur.as_os_str().is_empty() => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot open ROOT {}: {e}", root.root().display()),
                ))
            }
            Err(_) => {
                cur = cur.parent().map(Path::to_path_buf).unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("EBUILD_PHASE", "postinst"),
        ("CATEGORY", "app-misc"),
        ("PF", "foo-1.0-r1"),
        ("ROOT", "/"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = BASE.to_vec();
        for (k, val) in extra {
            v.retain(|(kk, _)| kk != k);
            v.push((k, val));
        }
        v
    }

    #[test]
    fn plain_root_install() {
        let env = PortageEnv::from_vars(vars(&with(&[
            ("EROOT", "/"),
            ("EPREFIX", ""),
            ("PORTAGE_CONFIGROOT", "/"),
            ("FEATURES", "sandbox xattr -xattr userpriv"),
            ("REPLACING_VERSIONS", "0.9 0.8"),
            ("MERGE_TYPE", "source"),
            ("D", "/var/tmp/portage/app-misc/foo-1.0-r1/image"),
            ("ED", "/var/tmp/portage/app-misc/foo-1.0-r1/image/"),
        ])))
        .unwrap();
        assert_eq!(env.phase, "postinst");
        assert_eq!(env.cpv(), "app-misc/foo-1.0-r1");
        assert_eq!(
            env.vdb_entry(),
            Path::new("/var/db/pkg/app-misc/foo-1.0-r1")
        );
        assert_eq!(env.replacing_versions, ["0.9", "0.8"]);
        assert_eq!(env.merge_type.as_deref(), Some("source"));
        assert!(env.has_feature("sandbox"));
        assert!(!env.has_feature("xattr"));
        assert!(!env.has_feature("sand"));
        // Unset PORTAGE_XATTR_EXCLUDE means Portage's default, which has security.ima.
        assert!(xattr_exclude_match(&env.xattr_exclude, "security.ima").is_some());
    }

    #[test]
    fn prefix_and_cross_root() {
        // Prefix: ROOT empty, EROOT = EPREFIX.
        let env = PortageEnv::from_vars(vars(&with(&[
            ("ROOT", ""),
            ("EPREFIX", "/home/u/gentoo"),
            ("EROOT", "/home/u/gentoo"),
        ])))
        .unwrap();
        assert_eq!(env.root, Path::new("/"));
        assert_eq!(
            env.vdb_entry(),
            Path::new("/home/u/gentoo/var/db/pkg/app-misc/foo-1.0-r1")
        );
        // EROOT missing: ${ROOT%/}${EPREFIX}.
        let env = PortageEnv::from_vars(vars(&with(&[
            ("ROOT", "/mnt/gentoo/"),
            ("EPREFIX", "/prefix"),
        ])))
        .unwrap();
        assert_eq!(env.eroot, Path::new("/mnt/gentoo/prefix"));
        assert_eq!(env.root, Path::new("/mnt/gentoo/"));
        let env = PortageEnv::from_vars(vars(&with(&[("ROOT", "")]))).unwrap();
        assert_eq!(env.eroot, Path::new("/"));
        assert_eq!(env.config_root, Path::new("/"));
        assert_eq!(env.eprefix, Path::new(""));
        assert_eq!(env.d, None);
    }

    #[test]
    fn missing_variables_are_all_named() {
        let e = PortageEnv::from_vars(vars(&[("CATEGORY", "app-misc")])).unwrap_err();
        assert_eq!(e, EnvError::Missing(vec!["EBUILD_PHASE", "PF", "ROOT"]));
        assert_eq!(
            e.to_string(),
            "EBUILD_PHASE, PF, ROOT are not set: this must run from Portage's bashrc \
             (/etc/portage/bashrc, during an emerge), which sets them"
        );
        let e = PortageEnv::from_vars(vars(&with(&[("EBUILD_PHASE", "")]))).unwrap_err();
        assert_eq!(e, EnvError::Missing(vec!["EBUILD_PHASE"]));
        assert!(e.to_string().starts_with("EBUILD_PHASE is not set"));
        // EROOT stands in for ROOT.
        let mut v = with(&[("EROOT", "/x")]);
        v.retain(|(k, _)| *k != "ROOT");
        assert_eq!(
            PortageEnv::from_vars(vars(&v)).unwrap().eroot,
            Path::new("/x")
        );
    }

    #[test]
    fn names_are_validated() {
        for (var, val) in [
            ("CATEGORY", "../../etc"),
            ("CATEGORY", "a/b"),
            ("PF", "../foo-1"),
            ("PF", "foo"),
            ("PF", "foo-1/x"),
        ] {
            let e = PortageEnv::from_vars(vars(&with(&[(var, val)]))).unwrap_err();
            assert!(
                matches!(&e, EnvError::Invalid { var: v, .. } if *v == var),
                "{var}={val}: {e}"
            );
            assert!(e.to_string().starts_with(&format!("{var}='{val}' is not")));
        }
    }

    #[test]
    fn premerge_without_d() {
        let env = PortageEnv::from_vars(vars(BASE)).unwrap();
        assert!(matches!(env.premerge_xattr(), PremergeXattr::Lost { .. }));
    }
}
