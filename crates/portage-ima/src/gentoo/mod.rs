//! Portage's side, as plain types: versions, atoms, CONTENTS, the vdb and
//! the ebuild environment. Nothing here prints.

pub mod atom;
pub mod contents;
pub mod env;
pub mod vdb;
pub mod version;
