//! Reaching files without following symlinks: paths from CONTENTS inside
//! ROOT, and walks of `${D}` and `--files` trees by directory descriptor.

pub mod links;
pub mod rootfs;
pub mod walk;
