//! Whether the running kernel's loaded SELinux policy defines a type, asked
//! of the kernel itself through selinuxfs: a security context written to
//! `/sys/fs/selinux/context` is accepted only when it is valid under the
//! loaded policy (what libselinux's `security_check_context` does). The
//! role `object_r` may take any type, so `system_u:object_r:TYPE` (with
//! `:s0` when the policy is MLS or MCS) is valid exactly when `TYPE` exists
//! (and `system_u` does, as in the reference policy Gentoo ships). Before
//! a policy is loaded the kernel accepts any context, so a type no policy
//! has must be refused first.
//!
//! Gentoo's SELinux policy (sec-policy/selinux-portage, the reference
//! policy's portage module) runs ebuild phases in the `portage_sandbox_t`
//! domain and labels Portage's build directory `portage_tmp_t`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Where selinuxfs is mounted.
pub(crate) const SELINUXFS: &str = "/sys/fs/selinux";

/// The types Gentoo's policy gives Portage's build files and build processes.
pub(crate) const PORTAGE_TYPES: [&str; 2] = ["portage_tmp_t", "portage_sandbox_t"];

/// A type no policy defines: the kernel must refuse it, else it is not
/// checking contexts (before a policy is loaded it accepts any).
const NO_SUCH_TYPE: &str = "portage_ima_no_such_type_t";

/// Whether SELinux runs with a loaded policy that defines every type of
/// `types`; false when SELinux is off or no policy is loaded.
pub(crate) fn defines_types(selinuxfs: &Path, types: &[&str]) -> bool {
    let Ok(mls) = std::fs::read_to_string(selinuxfs.join("mls")) else {
        return false;
    };
    let level = if mls.trim() == "1" { ":s0" } else { "" };
    let valid = |t: &str| {
        let context = format!("system_u:object_r:{t}{level}\0");
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(selinuxfs.join("context"))
            .and_then(|mut f| f.write(context.as_bytes()))
            .is_ok_and(|n| n == context.len())
    };
    !valid(NO_SUCH_TYPE) && types.iter().all(|t| valid(t))
}

/// Whether the running machine has Gentoo's Portage SELinux types loaded.
pub(crate) fn portage_policy_loaded() -> bool {
    defines_types(Path::new(SELINUXFS), &PORTAGE_TYPES)
}
