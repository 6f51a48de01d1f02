//! The last stage: what each file came to, printed as text or JSON, and the
//! exit status. Only this module and the logger ([`log`]) write to the
//! terminal, besides the progress bar ([`crate::progress`], drawn by
//! indicatif on stderr).
//!
//! - [`sign`]: outcomes of signing ([`Outcome`], [`Tally`]); failures go to
//!   stderr as `portage-ima: PATH: reason` (the hook's stderr becomes
//!   `ewarn`), tallies to stdout (`einfo`); `sign --json` prints one
//!   document instead.
//! - [`verify`]: verdicts of verification ([`verify::Verdict`]), streamed.
//! - [`audit`]: what `audit` found ([`audit::Finding`]) as text or JSON.
//! - [`policy_check`]: what `policy --check` found, as text or JSON.
//! - [`doctor`]: doctor's checks ([`doctor::Report`]) as text or JSON.
//! - [`print_document`]: a generated policy, `export keylime`'s JSON,
//!   `generate`'s completions and settings table.
//! - `json`: the streamed JSON document both share (`{"files": [...], ...}`).
//! - [`status`]: exit statuses (one mapping from a tally,
//!   [`Status::of_files`]) and the one-line form of an error.
//! - [`colour`]: colour for statuses on a terminal (`--color`, `NO_COLOR`).

pub(crate) mod audit;
pub mod colour;
pub(crate) mod date;
pub(crate) mod doctor;
mod json;
pub mod log;
pub(crate) mod policy_check;
pub(crate) mod setup;
pub(crate) mod sign;
pub mod status;
pub mod verify;

pub use sign::{Failure, FileReport, Outcome, SignPrinter, Tally};
pub use status::{error_line, Status};
pub use verify::{Counts, FileStatus, Verdict, VerifyPrinter};

use serde::Serializer;
use std::path::Path;

/// A path in JSON: as text (bytes that are not UTF-8 become U+FFFD); the
/// text output escapes it instead ([`crate::escape`]).
fn path_as_text<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// The `"version"` every JSON document starts with (docs/json.md): raised
/// when a field changes meaning or goes away, not when one is added.
pub const JSON_VERSION: u32 = 1;

/// `1 file`, `2 files`: a count and its noun, singular or plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// ` in ROOT` for a summary line when `root` is not `/` (the files are then
/// shown inside it, as CONTENTS has them); empty for `/`.
pub fn root_named(root: &Path) -> String {
    if is_host_root(root) {
        String::new()
    } else {
        format!(" in {}", crate::escape::escape_path(root))
    }
}

/// ` --root DIR` for a command suggested to a user acting on `root`, so
/// that it acts on the same system; empty for `/`.
pub fn root_option(root: &Path) -> String {
    if is_host_root(root) {
        return String::new();
    }
    let text = root.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c);
    if text.chars().all(plain) {
        format!(" --root {text}")
    } else {
        format!(" --root '{}'", text.replace('\'', r"'\''"))
    }
}

/// `path`, a file's host path in `root` (`${ROOT%/}${path}`), as text
/// shows it: inside the root, as CONTENTS has it (`/usr/bin/foo`), with the
/// root named once in the summary ([`root_named`]). JSON keeps the host
/// path (docs/json.md). A path outside `root` is shown as it is.
pub(crate) fn inside_root<'a>(root: &Path, path: &'a Path) -> std::borrow::Cow<'a, Path> {
    if is_host_root(root) {
        return path.into();
    }
    match path.strip_prefix(root) {
        Ok(rest) => Path::new("/").join(rest).into(),
        Err(_) => path.into(),
    }
}

fn is_host_root(root: &Path) -> bool {
    root.as_os_str().is_empty() || root.components().eq(Path::new("/").components())
}

/// A document a command writes to stdout as it is (a generated policy,
/// `export keylime`'s JSON, `generate`'s completions and settings table).
pub fn print_document(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// A summary line on stdout, `portage-ima: LINE` (the hook's go to `einfo`).
pub fn print_summary(line: &str) {
    println!("portage-ima: {line}");
}

/// For a key held by hardware: how many signatures the device made and at
/// what rate (it signs one request at a time, so it bounds the run's speed).
pub fn device_rate_line(signer: &ima_core::ImaSigner) -> Option<String> {
    let stats = signer.device_stats()?;
    Some(format!(
        "signing device: {} signatures in {:.2} s of device time, {:.1} files/s",
        stats.signatures,
        stats.busy.as_secs_f64(),
        stats.rate()
    ))
}

/// The signing rate of a key held by hardware, on stderr (stdout may be
/// JSON), after `sign`.
pub fn print_device_rate(signer: &ima_core::ImaSigner) {
    if let Some(line) = device_rate_line(signer) {
        eprintln!("portage-ima: {line}");
    }
}

/// A problem on stderr, `portage-ima: LINE` (the hook's go to `ewarn`);
/// the caller has escaped what `line` holds of paths.
pub fn print_problem(line: &str) {
    eprintln!("portage-ima: {line}");
}

/// One file that failed, on stderr: `portage-ima: PATH: reason`.
pub fn print_failure(path: &Path, reason: &str) {
    eprintln!("{}", sign::failure_line(path, reason));
}

/// One stderr line per file that failed: `portage-ima: PATH: reason`,
/// PATH inside `root` ([`inside_root`]; `/` for paths shown as they are).
pub fn print_failures(root: &Path, reports: &[FileReport]) {
    for r in reports {
        if let Outcome::Failed(reason) = &r.outcome {
            let path = inside_root(root, &r.path);
            eprintln!("{}", sign::failure_line(&path, &reason.to_string()));
        }
    }
}
