//! Whether this process may write `security.*` extended attributes: the
//! kernel asks for CAP_SYS_ADMIN in the caller's effective set for any
//! `security.` name but `security.capability` (`cap_inode_setxattr`,
//! security/commoncap.c). Read from `/proc/self/status` (`CapEff:`,
//! the effective set in hex), so that `sign` as an ordinary user says so
//! once, up front, instead of failing on every file.

/// The capability number of CAP_SYS_ADMIN (include/uapi/linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;

/// `Some(false)` when the effective set lacks CAP_SYS_ADMIN, `None` when
/// it cannot be read (then the writes themselves will say).
pub(crate) fn may_write_security_xattrs() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    effective_has(&status, CAP_SYS_ADMIN)
}

fn effective_has(status: &str, cap: u32) -> Option<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let set = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(set & (1 << cap) != 0)
}

/// The error `sign` gives without the capability.
pub(crate) fn not_permitted_message() -> String {
    "writing security.ima needs CAP_SYS_ADMIN, which this process does not have: \
     run as root (e.g. `sudo portage-ima ...`); nothing was signed"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_set() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_has(root, CAP_SYS_ADMIN), Some(true));
        let user = "CapEff:\t0000000000000000\n";
        assert_eq!(effective_has(user, CAP_SYS_ADMIN), Some(false));
        assert_eq!(effective_has("Name:\tx\n", CAP_SYS_ADMIN), None);
    }
}
