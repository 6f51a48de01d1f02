//! Reaching files without following symlinks: paths from CONTENTS inside
//! ROOT, walks of `${D}` and `--files` trees by directory descriptor, and
//! replacing a file whole (`atomic`).

pub(crate) mod atomic;
pub(crate) mod links;
pub mod rootfs;
pub(crate) mod walk;
