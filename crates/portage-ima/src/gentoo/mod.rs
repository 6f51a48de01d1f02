//! Portage's side, as plain types: versions, atoms, CONTENTS, the vdb and
//! the ebuild environment. Nothing here prints.

pub mod atom;
pub mod contents;
pub mod cpv;
pub mod env;
pub mod names;
pub mod vdb;
pub mod version;
