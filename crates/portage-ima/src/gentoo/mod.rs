//! Portage's side, as plain types: versions, atoms, CONTENTS, the vdb and
//! the ebuild environment. Nothing here prints.

pub mod atom;
pub mod contents;
pub mod env;
pub mod fnmatch;
pub mod make_conf;
pub mod portageq;
pub mod vdb;
