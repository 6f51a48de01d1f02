//! Reading the [`Setup`] a policy is derived from on this machine:
//! FEATURES and PORTAGE_TMPDIR as Portage itself sees them (portageq, else
//! make.conf, the way doctor reads them), and the filesystems under the
//! build directory and the system.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::generate::{BuildFs, OtherTmpfs, Setup, TMPFS_MAGIC};
use crate::gentoo::env::XattrCopy;
use crate::gentoo::portage_vars::{portage_vars, PortageVars};
use crate::kernel::mountinfo;

/// The directories whose programs a policy protects: a build directory on
/// one of their filesystems cannot be exempted.
const SYSTEM_DIRS: &[&str] = &[
    "",
    "usr",
    "bin",
    "sbin",
    "lib",
    "lib64",
    "usr/lib",
    "usr/lib64",
    "usr/local",
    "opt",
];

/// One filesystem, as the kernel tells them apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FsInfo {
    /// st_dev: the superblock.
    pub dev: u64,
    /// statfs f_type.
    pub magic: u64,
    /// The superblock's uuid, what `fsuuid=` matches.
    pub uuid: Option<[u8; 16]>,
}

impl FsInfo {
    /// What a policy's conditions can match of it.
    pub(crate) fn file_system(&self) -> super::eval::FileSystem {
        super::eval::FileSystem {
            magic: self.magic,
            uuid: self.uuid,
            // fsname= compares the kernel's type name, which one f_type
            // does not always give (ext2/3/4): left unknown.
            name: None,
        }
    }

    pub(crate) fn of(path: &Path) -> io::Result<FsInfo> {
        let dir = fs::File::open(path)?;
        let dev = dir.metadata()?.dev();
        let magic = rustix::fs::fstatfs(&dir)?.f_type as u64;
        let uuid = superblock_uuid(&dir).or_else(|| uuid_by_device(dev));
        Ok(FsInfo { dev, magic, uuid })
    }
}

/// The superblock's s_uuid, which is exactly what IMA's `fsuuid=` compares,
/// from the kernel (6.8 and later; None before, or when the filesystem has none).
fn superblock_uuid(file: &fs::File) -> Option<[u8; 16]> {
    let (len, uuid) = crate::sys::fs_uuid(file)?;
    (len == 16 && uuid != [0; 16]).then_some(uuid)
}

/// The uuid udev names the block device `dev` by (/dev/disk/by-uuid): for
/// ext4 and xfs the superblock's uuid, on kernels without FS_IOC_GETFSUUID.
fn uuid_by_device(dev: u64) -> Option<[u8; 16]> {
    fs::read_dir("/dev/disk/by-uuid")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let meta = fs::metadata(entry.path()).ok()?;
            if !meta.file_type().is_block_device() || meta.rdev() != dev {
                return None;
            }
            super::rule::parse_uuid(&entry.file_name().to_string_lossy())
        })
}

/// A readable name for a statfs f_type.
pub(crate) fn fs_name(magic: u64) -> String {
    let known: &[(u64, &str)] = &[
        (0xef53, "ext4"),
        (0x5846_5342, "xfs"),
        (0x9123_683e, "btrfs"),
        (TMPFS_MAGIC, "tmpfs"),
        (0x858458f6, "ramfs"),
        (0x794c_7630, "overlayfs"),
        (0x2fc1_2fc1, "zfs"),
        (0xf2f5_2010, "f2fs"),
        (0xca45_1a4e, "bcachefs"),
        (0x6969, "nfs"),
        (0x6573_5546, "fuse"),
    ];
    known
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or_else(|| format!("fsmagic {magic:#x}"), |(_, n)| n.to_string())
}

/// Where builds happen relative to the system under `root`.
pub(crate) fn build_fs(build_dir: &Path, root: &Path) -> Result<BuildFs> {
    let build = FsInfo::of(build_dir)
        .with_context(|| format!("cannot read the filesystem of {}", build_dir.display()))?;
    let fstype = fs_name(build.magic);
    for dir in SYSTEM_DIRS {
        let path = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(dir)
        };
        let Ok(system) = FsInfo::of(&path) else {
            continue;
        };
        let same_uuid = build.uuid.is_some() && build.uuid == system.uuid;
        let both_tmpfs = build.magic == TMPFS_MAGIC && system.magic == TMPFS_MAGIC;
        if build.dev == system.dev || same_uuid || both_tmpfs {
            return Ok(BuildFs::Shared { with: path, fstype });
        }
    }
    Ok(match (build.magic, build.uuid) {
        (TMPFS_MAGIC, _) => BuildFs::Tmpfs,
        (_, Some(uuid)) => BuildFs::Own { fstype, uuid },
        (_, None) => BuildFs::OwnWithoutUuid { fstype },
    })
}

/// Reads the setup of the system under `root` (its etc/portage, its
/// filesystems); `vars`: the environment portageq is found by.
pub(crate) fn discover(root: &Path, vars: &crate::gentoo::vars::Vars) -> Result<Setup> {
    from_vars(portage_vars(root, vars), root)
}

/// The setup from Portage's variables as already read, and the filesystems.
pub(crate) fn from_vars(vars: PortageVars, root: &Path) -> Result<Setup> {
    let xattr = XattrCopy::of(&vars.features, &vars.xattr_exclude_patterns()).keeps_ima();
    let build_dir = vars.build_dir();
    if !build_dir.is_dir() {
        bail!(
            "PORTAGE_TMPDIR={} does not exist ({}): create it (and mount what builds should \
             use on it) before deriving a policy from it",
            vars.tmpdir,
            vars.source
        );
    }
    let build_fs = build_fs(&build_dir, root)?;
    let other_tmpfs = if build_fs == BuildFs::Tmpfs {
        other_tmpfs(&build_dir)?
    } else {
        Vec::new()
    };
    Ok(Setup {
        build_fs,
        tmpdir: vars.tmpdir,
        build_dir,
        userpriv: vars.features.contains("userpriv"),
        xattr,
        source: vars.source,
        other_tmpfs,
        selinux_portage: crate::kernel::selinux::portage_policy_loaded(),
    })
}

/// The running machine's visible tmpfs and devtmpfs mounts (both have
/// tmpfs's magic) other than those of `build_dir`'s filesystem.
fn other_tmpfs(build_dir: &Path) -> Result<Vec<OtherTmpfs>> {
    let dev = fs::metadata(build_dir)
        .with_context(|| format!("cannot read {}", build_dir.display()))?
        .dev();
    let build_dev = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let mounts = mountinfo::read()?;
    Ok(mountinfo::visible(&mounts)
        .into_iter()
        .filter(|m| matches!(m.fstype.as_str(), "tmpfs" | "devtmpfs") && m.dev != build_dev)
        .map(|m| OtherTmpfs {
            mount_point: m.mount_point.clone(),
            noexec: m.noexec(),
        })
        .collect())
}

/// The `portage` user's uid and gid from ROOT's /etc/passwd, else Gentoo's
/// fixed ones (acct-user/portage: 250).
pub(crate) fn portage_ids(root: &Path) -> (u32, u32) {
    const GENTOO_PORTAGE_ID: u32 = 250;
    fs::read_to_string(root.join("etc/passwd"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() > 3 && f[0] == "portage")
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
            })
        })
        .unwrap_or((GENTOO_PORTAGE_ID, GENTOO_PORTAGE_ID))
}
