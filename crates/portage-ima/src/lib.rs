//! portage-ima as a library: Portage's side of the job (environment, CONTENTS,
//! the installed-package database, atoms, paths inside ROOT) and the commands
//! the binary runs. The signing itself lives in `ima-core`.

pub mod cli;
pub mod commands;
pub mod engine;
pub mod escape;
pub mod fs;
pub mod gentoo;
pub mod objects;
pub mod progress;
pub mod settings;
pub mod status;
pub mod verify;
