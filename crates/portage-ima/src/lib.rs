//! portage-ima as a library: Portage's side of the job (environment, CONTENTS,
//! the installed-package database, atoms, paths inside ROOT) and the commands
//! the binary runs. The signing itself lives in `ima-core`.

pub mod atom;
pub mod cli;
pub mod commands;
pub mod config;
pub mod contents;
pub mod doctor;
pub mod engine;
pub mod escape;
pub mod files;
pub mod hook;
pub mod objects;
pub mod packages;
pub mod portage_env;
pub mod progress;
pub mod rootfs;
pub mod status;
pub mod vdb;
pub mod verify;
