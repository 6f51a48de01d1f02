//! The mounts the running kernel has, from `/proc/self/mountinfo`
//! (Documentation/filesystems/proc.rst, "3.5 /proc/<pid>/mountinfo"):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//! ```
//!
//! mount id, parent id, the superblock's `major:minor` (what `st_dev`
//! says), the root of the mount within its filesystem, the mount point, the
//! per-mount options (`noexec` lives here: it is a property of the mount,
//! not of the filesystem), optional tagged fields ended by a lone `-`, the
//! filesystem type, its source and the superblock's options. The kernel
//! escapes a space, tab, newline and backslash in paths as `\040`, `\011`,
//! `\012`, `\134` (`seq_path`'s `mangle`).
//!
//! A mount mounted over another at the same point hides it: the hidden one
//! stays listed, with the upper one's parent id naming it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::{numbered_lines, BadLine};

/// Where the running kernel lists the mounts of this process's namespace.
pub(crate) const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    pub id: u32,
    pub parent: u32,
    /// The superblock's device (`major`, `minor`), as in `st_dev`.
    pub dev: (u32, u32),
    pub mount_point: PathBuf,
    /// The per-mount options (`rw`, `noexec`, `nosuid`, ...).
    pub options: Vec<String>,
    /// `tmpfs`, `ext4`, `devtmpfs`, ...
    pub fstype: String,
}

impl Mount {
    /// Nothing on this mount can be executed or mapped executable.
    pub(crate) fn noexec(&self) -> bool {
        self.options.iter().any(|o| o == "noexec")
    }
}

/// Reads every line of mountinfo `data`; a line that cannot be read is an error.
pub(crate) fn parse(data: &[u8]) -> Result<Vec<Mount>, BadLine> {
    numbered_lines(data)
        .map(|(line, text)| parse_line(text).map_err(|reason| BadLine { line, reason }))
        .collect()
}

/// The mounts of this process's namespace.
pub(crate) fn read() -> anyhow::Result<Vec<Mount>> {
    use anyhow::Context;
    let data = std::fs::read(MOUNTINFO).with_context(|| format!("cannot read {MOUNTINFO}"))?;
    parse(&data).map_err(|bad| anyhow::anyhow!("{MOUNTINFO}: {bad}"))
}

/// The mounts no other mount hides (the ones paths reach).
pub(crate) fn visible(mounts: &[Mount]) -> Vec<&Mount> {
    mounts
        .iter()
        .filter(|m| {
            !mounts
                .iter()
                .any(|upper| upper.parent == m.id && upper.mount_point == m.mount_point)
        })
        .collect()
}

fn parse_line(line: &[u8]) -> Result<Mount, String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let separator = fields
        .iter()
        .skip(6)
        .position(|f| *f == b"-")
        .map(|at| at + 6)
        .ok_or("no `-` separator after the optional fields")?;
    if fields.len() < separator + 3 || separator < 6 {
        return Err("fewer fields than mountinfo has".into());
    }
    let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
    let number = |name: &str, f: &[u8]| {
        text(f)
            .parse::<u32>()
            .map_err(|_| format!("{name} `{}` is not a number", text(f)))
    };
    let (major, minor) = std::str::from_utf8(fields[2])
        .ok()
        .and_then(|d| d.split_once(':'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("`{}` is not major:minor", text(fields[2])))?;
    Ok(Mount {
        id: number("mount id", fields[0])?,
        parent: number("parent id", fields[1])?,
        dev: (major, minor),
        mount_point: PathBuf::from(OsString::from_vec(unescape(fields[4])?)),
        options: text(fields[5]).split(',').map(str::to_string).collect(),
        fstype: text(fields[separator + 1]),
    })
}

/// Undoes the kernel's `\ooo` octal escapes.
fn unescape(field: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            let digits = field
                .get(i + 1..i + 4)
                .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
                .ok_or_else(|| {
                    format!(
                        "`{}`: a backslash not followed by three octal digits",
                        String::from_utf8_lossy(field)
                    )
                })?;
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).map_err(|_| "an octal escape above \\377".to_string())?);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gentoo/OpenRC machine's mounts, and a systemd one's /run/user.
    const MOUNTINFO_TEXT: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
25 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=10240k,nr_inodes=4096,mode=755
27 25 0:24 / /dev/shm rw,nosuid,nodev,noexec shared:4 - tmpfs shm rw
28 22 0:25 / /run rw,nosuid,nodev,noexec shared:6 - tmpfs tmpfs rw,mode=755
40 28 0:40 / /run/user/1000 rw,nosuid,nodev,relatime shared:20 - tmpfs tmpfs rw,size=1600k,mode=700,uid=1000,gid=1000
41 22 0:41 / /var/tmp/portage rw,relatime shared:21 - tmpfs tmpfs rw,size=8g
42 22 0:42 / /mnt/with\\040space\\134x rw,noexec - tmpfs none rw
43 42 0:43 / /mnt/with\\040space\\134x rw - tmpfs none rw
";

    #[test]
    fn reads_the_fields_the_kernel_writes() {
        let mounts = parse(MOUNTINFO_TEXT.as_bytes()).unwrap();
        assert_eq!(mounts.len(), 9);
        let shm = &mounts[3];
        assert_eq!(shm.mount_point, PathBuf::from("/dev/shm"));
        assert_eq!(shm.fstype, "tmpfs");
        assert_eq!(shm.dev, (0, 24));
        assert!(shm.noexec());
        let user = &mounts[5];
        assert_eq!(user.mount_point, PathBuf::from("/run/user/1000"));
        assert!(!user.noexec());
        assert_eq!(mounts[2].fstype, "devtmpfs");
        assert_eq!(mounts[7].mount_point, PathBuf::from("/mnt/with space\\x"));
        // The super options' `noexec`-looking words are not the mount's.
        assert!(!mounts[6].noexec());
    }

    #[test]
    fn an_upper_mount_hides_the_one_below() {
        let mounts = parse(MOUNTINFO_TEXT.as_bytes()).unwrap();
        let visible: Vec<u32> = visible(&mounts).iter().map(|m| m.id).collect();
        assert!(!visible.contains(&42), "{visible:?}");
        assert!(visible.contains(&43) && visible.contains(&28) && visible.contains(&40));
    }

    #[test]
    fn unreadable_lines_are_named() {
        let bad = parse(b"22 1 259:2 / / rw shared:1 - ext4 /dev/x rw\n23 22 0:21 / /proc rw\n")
            .unwrap_err();
        assert_eq!(bad.line, 2);
        let bad = parse(b"22 1 x / / rw - ext4 /dev/x rw\n").unwrap_err();
        assert!(bad.reason.contains("major:minor"), "{bad}");
        let bad = parse(b"22 1 0:1 / /a\\04 rw - ext4 /dev/x rw\n").unwrap_err();
        assert!(bad.reason.contains("octal"), "{bad}");
    }

    #[test]
    fn this_machines_mountinfo_reads() {
        let mounts = read().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.mount_point == std::path::Path::new("/")));
    }
}
