//! portage-ima as a library. The signing itself lives in `ima-core`; this
//! crate is Portage's side and the commands. A run flows through four rooms:
//!
//! 1. [`gentoo`] and [`fs`]: Portage's side as plain types (the ebuild
//!    environment, CONTENTS, the vdb, atoms) and files reached without
//!    following symlinks (inside ROOT, walks of `${D}` and `--files`).
//! 2. [`plan`]: what to do with each file, a list of [`plan::Job`]s, each
//!    with its [`plan::Decision`] (config protection and `scope` applied,
//!    decided here once; [`plan::treatment`]).
//! 3. [`engine`]: the jobs run in parallel by the per-file rules (MD5 of
//!    CONTENTS, `._cfg` siblings, valid signatures kept).
//! 4. [`report`]: outcomes and verdicts as text or JSON, the exit status,
//!    and the one logger.
//!
//! [`commands`] are the entry points (`sign`, `verify`, `hook`, `doctor`):
//! each builds a plan, runs the engine and hands the results to the
//! report. [`cli`] and [`settings`] turn the command line and ima.toml
//! into settings; [`context`] is the environment and `--root`, read once
//! by `main` and passed to every command (what ROOT means).
//!
//! Beside the flow, rooms the commands share (none imports [`commands`]):
//! [`kernel`] reads the running kernel (audit records, measurements,
//! keyrings and which certificates its IMA keyring takes, Secure Boot,
//! mounts), [`policy`] models IMA policies (and decides from the kernel's
//! readings whether it enforces), [`trust`] the keys a verification trusts, [`failsafe`]
//! whether a merge must stop, [`binpkg`] the signatures binary packages carry,
//! [`keylime`] the runtime policy the hook keeps, [`audit`] what a log of
//! denials means, [`setup`] the plan from an unsigned machine to enforce
//! mode (its facts read by [`gentoo`] and [`kernel`]) and carrying it out,
//! [`manual`] the settings table and man pages.
//!
//! Imports run one way, down a fixed order of these rooms that
//! `tests/import_rules.rs` holds (docs/design.md, "Layout").
//!
//! The crate denies `unsafe_code`: the few libc calls `rustix` does not
//! wrap (SIGPIPE, signal handlers, keyctl, an ioctl, a child's setsid) are
//! safe functions in [`sys`], the one module allowed `unsafe`.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

pub(crate) mod audit;
pub mod binpkg;
pub mod cli;
pub mod commands;
pub mod context;
pub mod engine;
pub(crate) mod escape;
pub(crate) mod failsafe;
pub mod fs;
pub mod gentoo;
pub(crate) mod kernel;
pub mod keylime;
pub mod manual;
pub mod plan;
pub mod policy;
pub(crate) mod progress;
pub mod report;
pub mod settings;
pub mod setup;
#[allow(unsafe_code)]
pub mod sys;
pub(crate) mod trust;
