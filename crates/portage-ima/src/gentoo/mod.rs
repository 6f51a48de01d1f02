//! Portage's side, as plain types shaped like pkgcraft's. Nothing here
//! prints. Each layer uses the ones above it and re-checks none of their
//! rules:
//!
//! - [`version`]: PMS versions and their order (checked against Portage's
//!   `vercmp`)
//! - [`names`]: category, package, slot and repository names (PMS 3.1)
//! - [`cpv`]: `CATEGORY/PN-PVR` and the split of `PF`
//! - [`atom`]: atoms typed on the command line, resolved against the vdb
//! - [`contents`]: the `CONTENTS` format
//! - [`vdb`]: the installed-package database, on top of all of these
//! - [`owners`]: which package owns a file, from every CONTENTS at once
//! - [`env`](mod@env): the ebuild environment the hook runs in
//! - [`provenance`]: whether Portage vouched for the package being merged
//! - [`saved_env`]: the environment Portage saved for an installed package
//! - [`config_protect`]: CONFIG_PROTECT and its mask, by Portage's rule
//! - [`vars`]: the process environment, taken once by `main`
//! - [`portage_vars`]: FEATURES, PORTAGE_XATTR_EXCLUDE and PORTAGE_TMPDIR as
//!   Portage resolves them

/// `PartialOrd`, `PartialEq` and `Eq` from a type's `Ord`, for the types
/// whose equality is PMS equality (`1.0 == 1.00`, `1 == 1-r0`) rather than
/// equal fields.
macro_rules! eq_from_ord {
    ($($t:ty),*) => {$(
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other).is_eq()
            }
        }
        impl Eq for $t {}
    )*};
}

pub mod atom;
pub mod config_protect;
pub mod contents;
pub mod cpv;
pub(crate) mod emerge_process;
pub mod env;
pub mod fnmatch;
pub(crate) mod make_conf;
pub(crate) mod names;
pub mod owners;
pub(crate) mod portage_vars;
pub(crate) mod portageq;
pub(crate) mod provenance;
pub(crate) mod saved_env;
pub(crate) mod system;
pub mod vars;
pub mod vdb;
pub mod version;
