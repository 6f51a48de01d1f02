//! The walk `policy --check` makes: every regular file under a root,
//! without following symlinks, with its filesystem; `/proc`, `/sys` and
//! pseudo filesystems are skipped, except the mounts below `/proc` and
//! `/sys` that hold files (a tmpfs on /sys/fs/cgroup), walked as well;
//! mounts hidden under another mount at the same place, and whatever could
//! not be read, are named as not walked.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::eval::FileSystem;
use super::setup::FsInfo;
use crate::kernel::mountinfo::{self, Mount};

/// Filesystems that hold no files to appraise (statfs magic).
const PSEUDO_FS: &[u64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x1cd1,      // devpts
    0x7363_6673, // securityfs
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x2768_3e20, // cgroup
    0x6367_7270, // cgroup2
    0xcafe_4a11, // bpf
    0x6165_676c, // pstore
    0xde5e_81e4, // efivarfs
    0x1980_0202, // mqueue
    0x9584_58f6, // hugetlbfs
    0x6265_6570, // configfs
    0x4249_4e4d, // binfmt_misc
    0x0187,      // autofs
];

/// Filesystem types that hold no files to appraise, by mountinfo's name.
const PSEUDO_FS_NAMES: &[&str] = &[
    "proc",
    "sysfs",
    "devpts",
    "securityfs",
    "debugfs",
    "tracefs",
    "cgroup",
    "cgroup2",
    "bpf",
    "pstore",
    "efivarfs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "binfmt_misc",
    "autofs",
    "fusectl",
    "selinuxfs",
    "nsfs",
];

/// What the walk from `root` does not reach: the mounts below `/proc` and
/// `/sys` that hold files (a tmpfs on /sys/fs/cgroup), to walk as well
/// (outermost ones only), and mounts hidden under another mount at the
/// same place, which no path reaches, to name as not walked.
pub(crate) fn beyond_the_walk(root: &Path, mounts: &[Mount]) -> (Vec<PathBuf>, Vec<String>) {
    let visible = mountinfo::visible(mounts);
    let holds_files = |m: &Mount| {
        m.mount_point.starts_with(root) && !PSEUDO_FS_NAMES.contains(&m.fstype.as_str())
    };
    let mut more: Vec<PathBuf> = visible
        .iter()
        .filter(|m| holds_files(m))
        .map(|m| m.mount_point.clone())
        .filter(|p| {
            let inside = inside_root(root, p);
            inside.starts_with("/proc") || inside.starts_with("/sys")
        })
        .collect();
    more.sort();
    more.dedup();
    let outermost: Vec<PathBuf> = more
        .iter()
        .filter(|p| !more.iter().any(|q| q != *p && p.starts_with(q)))
        .cloned()
        .collect();
    let hidden = mounts
        .iter()
        .filter(|m| holds_files(m) && !visible.iter().any(|v| v.id == m.id))
        .map(|m| {
            format!(
                "{} ({}): hidden under another mount at the same place, not walked",
                m.mount_point.display(),
                m.fstype
            )
        })
        .collect();
    (outermost, hidden)
}

/// A regular file found by the walk.
pub(crate) struct Found {
    pub path: PathBuf,
    pub meta: fs::Metadata,
    pub fs: FileSystem,
}

pub(crate) fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<Found>,
    filesystems: &mut HashMap<u64, Option<FileSystem>>,
    unreadable: &mut Vec<String>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            unreadable.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let inside = inside_root(root, &path);
            if ["/proc", "/sys"].iter().any(|p| inside == Path::new(p)) {
                continue;
            }
            let fs = filesystems
                .entry(meta.dev())
                .or_insert_with(|| FsInfo::of(&path).ok().map(|f| f.file_system()));
            match fs {
                None => {
                    unreadable.push(format!(
                        "{}: its filesystem could not be read",
                        path.display()
                    ));
                    continue;
                }
                Some(f) if PSEUDO_FS.contains(&f.magic) => continue,
                Some(_) => {}
            }
            walk(root, &path, out, filesystems, unreadable);
        } else if meta.is_file() {
            // A file bind-mounted over another is on a filesystem of its own.
            let fs = filesystems
                .entry(meta.dev())
                .or_insert_with(|| FsInfo::of(&path).ok().map(|f| f.file_system()));
            let Some(fs) = fs.clone() else {
                unreadable.push(format!(
                    "{}: its filesystem could not be read",
                    path.display()
                ));
                continue;
            };
            out.push(Found { path, meta, fs });
        }
    }
}

/// `path` as seen from inside `root`.
pub(crate) fn inside_root(root: &Path, path: &Path) -> PathBuf {
    Path::new("/").join(path.strip_prefix(root).unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_the_walk_does_not_reach() {
        let text = "\
22 1 259:2 / / rw - ext4 /dev/root rw
23 22 0:21 / /proc rw,noexec - proc proc rw
24 22 0:22 / /sys rw,noexec - sysfs sysfs rw
30 24 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:32 / /sys/fs/cgroup/x rw - tmpfs tmpfs rw
25 22 0:5 / /dev rw - devtmpfs udev rw
27 25 0:24 / /dev/shm rw - tmpfs shm rw
28 27 0:25 / /dev/shm rw,noexec - tmpfs shm rw
40 22 0:40 / /srv/other rw - tmpfs tmpfs rw
";
        let mounts = mountinfo::parse(text.as_bytes()).unwrap();
        let (more, hidden) = beyond_the_walk(Path::new("/"), &mounts);
        assert_eq!(more, [PathBuf::from("/sys/fs/cgroup")]);
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        assert!(
            hidden[0].starts_with("/dev/shm (tmpfs): hidden"),
            "{hidden:?}"
        );
        // Another root: only what is below it.
        let (more, hidden) = beyond_the_walk(Path::new("/srv"), &mounts);
        assert!(more.is_empty() && hidden.is_empty());
    }
}
