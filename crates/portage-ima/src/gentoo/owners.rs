//! Which installed package owns a file: an index built once from every
//! CONTENTS of the vdb (what `qfile` and `equery belongs` look up by
//! reading every CONTENTS again for each question).
//!
//! Only `obj` entries are indexed, with the MD5 Portage recorded: they are
//! the files the kernel appraises. Two packages may list the same file
//! (a merge with `FEATURES=-collision-protect` overwrote it); the entry with
//! the newer recorded mtime wins, since its merge wrote the file last.
//!
//! The kernel names a file by its path after symlinks (`d_path`): on a
//! merged-/usr system CONTENTS says `/bin/bash` where the kernel says
//! `/usr/bin/bash`. [`OwnerIndex::owner_of`] therefore also looks a path up
//! through the real (symlink-resolved) form of every directory CONTENTS
//! names; that map is built on the first miss only.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::gentoo::vdb::InstalledPackage;

/// A file some package installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned {
    /// Index into [`OwnerIndex::packages`].
    pub package: usize,
    /// The MD5 of the content Portage merged.
    pub md5: [u8; 16],
    /// The mtime CONTENTS recorded.
    pub mtime: i64,
}

/// The owners of every `obj` of the vdb.
pub struct OwnerIndex {
    packages: Vec<InstalledPackage>,
    objects: HashMap<PathBuf, Owned>,
    /// Problems met while reading (CONTENTS unreadable, lines skipped).
    problems: Vec<String>,
    /// Files listed by more than one package.
    collisions: usize,
    /// The real form of each CONTENTS directory under `root`, and the
    /// directories as CONTENTS spells them (built on the first miss).
    real_dirs: OnceLock<HashMap<PathBuf, Vec<PathBuf>>>,
    root: PathBuf,
}

impl OwnerIndex {
    /// Reads every package's CONTENTS (in parallel) and indexes its files.
    /// `root` is where the files are (ROOT), for the symlink-resolved lookup.
    pub fn build(packages: Vec<InstalledPackage>, root: &Path) -> OwnerIndex {
        let parsed: Vec<_> = packages.par_iter().map(|p| p.contents()).collect();
        let total = parsed
            .iter()
            .map(|c| c.as_ref().map_or(0, |c| c.entries.len()))
            .sum();
        let mut objects: HashMap<PathBuf, Owned> = HashMap::with_capacity(total);
        let mut problems = Vec::new();
        let mut collisions = 0;
        for (package, result) in parsed.into_iter().enumerate() {
            let contents = match result {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            problems.extend(contents.skipped_messages(&packages[package].contents_path()));
            for entry in contents.entries {
                let crate::gentoo::contents::ContentsEntry::Obj { path, md5, mtime } = entry else {
                    continue;
                };
                let owned = Owned {
                    package,
                    md5,
                    mtime,
                };
                match objects.entry(path) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(owned);
                    }
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        collisions += 1;
                        if mtime >= o.get().mtime {
                            o.insert(owned);
                        }
                    }
                }
            }
        }
        OwnerIndex {
            packages,
            objects,
            problems,
            collisions,
            real_dirs: OnceLock::new(),
            // Canonical, so that resolved directories can be taken back inside it.
            root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    /// The packages, in vdb order.
    pub fn packages(&self) -> &[InstalledPackage] {
        &self.packages
    }

    /// How many files are indexed.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// No file is indexed.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// CONTENTS files that could not be read, lines skipped.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Files listed by more than one package.
    pub fn collisions(&self) -> usize {
        self.collisions
    }

    /// Every indexed file, in no particular order.
    pub fn objects(&self) -> impl Iterator<Item = (&Path, &Owned)> {
        self.objects.iter().map(|(p, o)| (p.as_path(), o))
    }

    /// The owner of `path` as CONTENTS spells it.
    pub fn get(&self, path: &Path) -> Option<&Owned> {
        self.objects.get(path)
    }

    /// The owner of `path` as the kernel names it: the CONTENTS path it is
    /// listed under (which differs when a directory on the way is a
    /// symlink), and the owner.
    pub fn owner_of(&self, path: &Path) -> Option<(PathBuf, &Owned)> {
        if let Some(owned) = self.objects.get(path) {
            return Some((path.to_path_buf(), owned));
        }
        if !path.is_absolute() {
            return None;
        }
        let (dir, name) = (path.parent()?, path.file_name()?);
        let real = self.real_dir(dir);
        self.real_dirs()
            .get(&real)?
            .iter()
            .map(|listed| listed.join(name))
            .find_map(|listed| self.objects.get(&listed).map(|o| (listed, o)))
    }

    /// Where `path` really is (directories resolved), as seen from inside
    /// ROOT; `None` when it is where CONTENTS says. For a Keylime policy,
    /// which matches the paths the kernel measures.
    pub fn real_path(&self, path: &Path) -> Option<PathBuf> {
        real_path(&self.root, path)
    }

    fn real_dir(&self, dir: &Path) -> PathBuf {
        real_dir(&self.root, dir)
    }

    fn real_dirs(&self) -> &HashMap<PathBuf, Vec<PathBuf>> {
        self.real_dirs.get_or_init(|| {
            let mut dirs: Vec<&Path> = self.objects.keys().filter_map(|p| p.parent()).collect();
            dirs.sort_unstable();
            dirs.dedup();
            let resolved: Vec<(PathBuf, PathBuf)> = dirs
                .par_iter()
                .map(|d| (self.real_dir(d), d.to_path_buf()))
                .filter(|(real, listed)| real != listed)
                .collect();
            let mut map: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
            for (real, listed) in resolved {
                map.entry(real).or_default().push(listed);
            }
            map
        })
    }
}

/// Where `path` (absolute, inside ROOT) really is, directories resolved;
/// `None` when it is where CONTENTS says. `root` must be canonical
/// ([`std::fs::canonicalize`]).
pub fn real_path(root: &Path, path: &Path) -> Option<PathBuf> {
    let (dir, name) = (path.parent()?, path.file_name()?);
    let real = real_dir(root, dir);
    (real != dir).then(|| real.join(name))
}

/// `dir` (absolute, inside ROOT) with its symlinks resolved; itself when
/// it cannot be resolved. Symlinks are followed by the host's rules, so
/// under a ROOT other than `/` an absolute link target (`/usr/lib`)
/// would point out of it: only results inside ROOT are taken.
fn real_dir(root: &Path, dir: &Path) -> PathBuf {
    let on_host = join_root(root, dir);
    match std::fs::canonicalize(&on_host) {
        Ok(real) => match real.strip_prefix(root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => dir.to_path_buf(),
        },
        Err(_) => dir.to_path_buf(),
    }
}

/// `${root}${path}` for an absolute `path` inside ROOT.
fn join_root(root: &Path, path: &Path) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        return root.to_path_buf();
    }
    let mut joined = OsString::from(root.as_os_str());
    if !root.as_os_str().as_bytes().ends_with(b"/") {
        joined.push("/");
    }
    joined.push(rel.as_os_str());
    PathBuf::from(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gentoo::vdb::Vdb;

    fn package(root: &Path, cpv: &str, contents: &str) {
        let dir = root.join("var/db/pkg").join(cpv);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("CONTENTS"), contents).unwrap();
    }

    #[test]
    fn owners_collisions_and_merged_usr() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        package(
            root,
            "app-shells/bash-5.2",
            &format!("dir /bin\nobj /bin/bash {md5} 10\nobj /etc/shared {md5} 10\n"),
        );
        package(
            root,
            "app-misc/other-1",
            &format!("obj /etc/shared {md5} 20\nbroken line\n"),
        );
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        let vdb = Vdb::open(root).unwrap();
        let index = OwnerIndex::build(vdb.packages().unwrap(), root);
        assert_eq!(index.len(), 2);
        assert_eq!(index.collisions(), 1);
        assert_eq!(index.problems().len(), 1, "{:?}", index.problems());
        let pkg = |o: &Owned| index.packages()[o.package].cpv().to_string();
        assert_eq!(
            pkg(index.get(Path::new("/etc/shared")).unwrap()),
            "app-misc/other-1"
        );
        let (listed, owner) = index.owner_of(Path::new("/usr/bin/bash")).unwrap();
        assert_eq!(listed, Path::new("/bin/bash"));
        assert_eq!(pkg(owner), "app-shells/bash-5.2");
        assert_eq!(
            index.real_path(Path::new("/bin/bash")),
            Some(PathBuf::from("/usr/bin/bash"))
        );
        assert!(index.owner_of(Path::new("/usr/bin/zsh")).is_none());
        assert!(index.owner_of(Path::new("relative")).is_none());
    }

    #[test]
    fn join_root_keeps_bytes() {
        assert_eq!(join_root(Path::new("/"), Path::new("/a")), Path::new("/a"));
        assert_eq!(
            join_root(Path::new("/r"), Path::new("/a")),
            Path::new("/r/a")
        );
        assert_eq!(
            join_root(Path::new("/r/"), Path::new("/")),
            Path::new("/r/")
        );
    }
}
