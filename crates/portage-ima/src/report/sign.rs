//! What signing did to each file, and how it is told.
//!
//! Text (what the hook's `einfo`/`ewarn` and the Python tests have always
//! read): one stderr line per failed file, `portage-ima: PATH: reason`
//! (escaped); with `--dry-run` or `-v` one stdout line per other file,
//! `portage-ima: PATH: OUTCOME` (`would-sign`, `already-valid`, ...); then
//! tallies on stdout, `signed N, M already valid, K failed
//! (of T files)`.
//!
//! JSON (`sign --json`), one document on stdout, files streamed as they are
//! reported: `{"version": 1, "files": [{"path", "package"?, "outcome",
//! "detail"?}], "summary": TALLY, "packages": {CPV: TALLY}?}`, a TALLY
//! counting each outcome under its name (`signed`, `already-valid`, ...,
//! and `not-started`); `packages` only when packages were signed
//! (docs/json.md).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufWriter, Stdout, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::escape::{escape_path, escape_text};
use crate::fs::walk::{Problem, Unwalkable};
use crate::plan::SkipReason;

use super::json::JsonStream;

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new signature was written.
    Signed,
    /// `sign --rotate`: a new signature was written over one by another key.
    Rotated {
        /// The key id of the signature written over.
        previous: ima_core::KeyId,
    },
    /// Signed in preinst, before the merge (found valid in postinst).
    SignedBeforeMerge,
    /// It already carried a valid signature by our key; nothing written.
    AlreadyValid,
    /// `--dry-run`: it would have been signed.
    WouldSign,
    /// A digest-only `security.ima` was written (`config_files = "hash"`,
    /// `--digest-only`).
    Hashed,
    /// `--dry-run`: it would have been hashed.
    WouldHash,
    /// Deliberately left alone, with the reason.
    Skipped(SkipReason),
    /// Could not be signed, with the reason.
    Failed(Failure),
}

/// Why a file could not be signed; its text is what the admin reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// CONTENTS lists a file, a symlink is there now (ELOOP): not followed.
    NowSymlink,
    /// Listed in CONTENTS, not on disk.
    NotOnDisk,
    /// The path leads out of ROOT through a symlink (EXDEV).
    EscapesRoot,
    /// Some other error opening a CONTENTS path.
    CannotOpen(String),
    /// Something else than the regular file Portage merged is there now.
    NowNotRegular {
        /// What is there (`directory`, `fifo`, ...).
        kind: &'static str,
    },
    /// The content is not what CONTENTS records (and no `._cfg` update is).
    ContentDiffers {
        /// The MD5 CONTENTS records.
        expected_md5: [u8; 16],
        /// The file's MD5 now, in hex (or why it could not be read).
        actual_md5: String,
    },
    /// A path of `--files` (or met in their walk) that gives no file.
    Unwalkable(Unwalkable),
    /// A hard link to it lies outside the tree being signed
    /// ([`crate::fs::links`]); never retried.
    LinkedOutside {
        /// Its link count (`st_nlink`).
        links: u64,
        /// How many of those links the walk met.
        seen: u64,
    },
    /// Reading, signing or writing failed, or a package's CONTENTS did
    /// not give its files: the error's own words.
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NowSymlink => f.write_str(
                "is a symbolic link now, not the file Portage merged; not followed, not signed",
            ),
            Failure::NotOnDisk => f.write_str("listed in CONTENTS but not on disk; not signed"),
            Failure::EscapesRoot => {
                f.write_str("path escapes the root through a symlink; not signed")
            }
            Failure::CannotOpen(e) => write!(f, "cannot open: {e}"),
            Failure::NowNotRegular { kind } => {
                write!(
                    f,
                    "is a {kind} now, not the regular file Portage merged; not signed"
                )
            }
            Failure::ContentDiffers {
                expected_md5,
                actual_md5,
            } => write!(
                f,
                "content differs from what Portage merged (CONTENTS MD5 {}, file MD5 \
                 {actual_md5}); not signed: reinstall the package if this change is not yours",
                hex::encode(expected_md5)
            ),
            Failure::Unwalkable(reason) => reason.fmt(f),
            Failure::LinkedOutside { links, seen } => {
                let e = ima_core::Error::LinkedOutside {
                    links: *links,
                    seen: *seen,
                };
                e.fmt(f)
            }
            Failure::Other(text) => f.write_str(text),
        }
    }
}

impl Outcome {
    /// The stable name, as in JSON: "signed", "already-valid", ...
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Signed => "signed",
            Outcome::Rotated { .. } => "rotated",
            Outcome::SignedBeforeMerge => "signed-before-merge",
            Outcome::AlreadyValid => "already-valid",
            Outcome::WouldSign => "would-sign",
            Outcome::Hashed => "hashed",
            Outcome::WouldHash => "would-hash",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The reason of a skip or a failure.
    pub fn detail(&self) -> Option<String> {
        match self {
            Outcome::Skipped(reason) => Some(reason.to_string()),
            Outcome::Failed(reason) => Some(reason.to_string()),
            Outcome::Rotated { previous } => Some(format!("was signed by key id {previous}")),
            _ => None,
        }
    }
}

/// One file's path (as the user knows it) and its outcome.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The path as shown (see [`crate::fs::RootDir`] for packages' files).
    pub path: PathBuf,
    /// What happened to it.
    pub outcome: Outcome,
}

impl FileReport {
    /// `path` with its `outcome`.
    pub fn new(path: impl Into<PathBuf>, outcome: Outcome) -> Self {
        FileReport {
            path: path.into(),
            outcome,
        }
    }
}

impl From<Problem> for FileReport {
    fn from(problem: Problem) -> FileReport {
        let failure = Failure::Unwalkable(problem.reason);
        FileReport::new(problem.path, Outcome::Failed(failure))
    }
}

/// Counts of outcomes, for summary lines and the JSON summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Tally {
    /// New signatures written.
    pub signed: usize,
    /// `sign --rotate`: signed over a signature by another key.
    pub rotated: usize,
    /// Signed in preinst, found valid in postinst.
    pub signed_before_merge: usize,
    /// Valid signatures by our key, left alone.
    pub already_valid: usize,
    /// `--dry-run`: would be signed.
    pub would_sign: usize,
    /// Digest-only values written (config files under `config_files = "hash"`).
    pub hashed: usize,
    /// `--dry-run`: would be hashed.
    pub would_hash: usize,
    /// Deliberately left alone.
    pub skipped: usize,
    /// Could not be signed.
    pub failed: usize,
    /// Files a cancelled run never started (not part of [`Tally::total`]).
    pub not_started: usize,
}

impl Tally {
    /// The counts of `reports`' outcomes.
    pub fn of(reports: &[FileReport]) -> Tally {
        let mut t = Tally::default();
        for r in reports {
            t.add(&r.outcome);
        }
        t
    }

    /// Counts one more `outcome`.
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Signed => self.signed += 1,
            Outcome::Rotated { .. } => self.rotated += 1,
            Outcome::SignedBeforeMerge => self.signed_before_merge += 1,
            Outcome::AlreadyValid => self.already_valid += 1,
            Outcome::WouldSign => self.would_sign += 1,
            Outcome::Hashed => self.hashed += 1,
            Outcome::WouldHash => self.would_hash += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Tally) {
        self.signed_before_merge += other.signed_before_merge;
        self.signed += other.signed;
        self.rotated += other.rotated;
        self.already_valid += other.already_valid;
        self.would_sign += other.would_sign;
        self.hashed += other.hashed;
        self.would_hash += other.would_hash;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.not_started += other.not_started;
    }

    /// The files that were done (whatever their outcome).
    pub fn total(&self) -> usize {
        self.signed_before_merge
            + self.signed
            + self.rotated
            + self.already_valid
            + self.would_sign
            + self.hashed
            + self.would_hash
            + self.skipped
            + self.failed
    }

    /// "signed 12, 3 already valid, 1 failed (of 16 files)".
    pub fn line(&self, dry_run: bool) -> String {
        let mut parts = Vec::new();
        if dry_run {
            parts.push(format!("would sign {}", self.would_sign));
        } else {
            parts.push(format!("signed {}", self.signed));
        }
        if self.rotated > 0 {
            parts.push(format!("{} rotated from another key", self.rotated));
        }
        if self.hashed > 0 || self.would_hash > 0 {
            let verb = if dry_run { "would hash" } else { "hashed" };
            parts.push(format!("{verb} {}", self.hashed + self.would_hash));
        }
        parts.push(format!("{} already valid", self.already_valid));
        if self.skipped > 0 {
            parts.push(format!("{} skipped", self.skipped));
        }
        parts.push(format!("{} failed", self.failed));
        format!(
            "{} (of {})",
            parts.join(", "),
            super::count(self.total(), "file")
        )
    }

    /// The hook's postinst line: "signed 3 before the merge, 2 now, ...";
    /// hashed config files are counted only when there are some.
    pub fn hook_line(&self) -> String {
        let hashed = match self.hashed {
            0 => String::new(),
            n => format!(", {n} hashed"),
        };
        format!(
            "signed {} before the merge, {} now{hashed}, {} already valid, {} skipped, {} failed",
            self.signed_before_merge, self.signed, self.already_valid, self.skipped, self.failed
        )
    }

    /// The exit status of a signing run: the one tally -> status mapping
    /// (`sign`, the hook's postinst and a binary-package client's phases).
    /// Files not started mean an interrupted run; the hook, which is never
    /// cancelled, counts none.
    pub fn status(&self) -> super::Status {
        super::Status::of_files(self.failed, self.not_started)
    }
}

/// `portage-ima: PATH: reason`, the path and the reason escaped.
pub(crate) fn failure_line(path: &Path, reason: &str) -> String {
    format!(
        "portage-ima: {}: {}",
        escape_path(path),
        escape_text(reason)
    )
}

/// `portage-ima: PATH: OUTCOME[: detail]`, what `--dry-run` (and `-v`)
/// print for each file: the outcome's JSON name, so that a dry run and the
/// real one use the same words.
pub(crate) fn outcome_line(path: &Path, outcome: &Outcome) -> String {
    let mut line = format!("portage-ima: {}: {}", escape_path(path), outcome.name());
    if let Some(detail) = outcome.detail() {
        line.push_str(": ");
        line.push_str(&escape_text(&detail));
    }
    line
}

/// One file in `sign --json`.
#[derive(Serialize)]
struct FileJson<'a> {
    #[serde(serialize_with = "super::path_as_text")]
    path: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<&'a str>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// What `sign --json` writes after `files`.
#[derive(Serialize)]
struct JsonTail<'a> {
    summary: &'a Tally,
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<&'a BTreeMap<String, Tally>>,
}

/// Prints a signing run as it goes: failures (text) or file objects (JSON),
/// package tallies, and the totals in [`SignPrinter::finish`].
pub struct SignPrinter<W: Write = BufWriter<Stdout>> {
    out: W,
    /// `--json`: the document being written.
    json: Option<JsonStream>,
    dry_run: bool,
    total: Tally,
    /// Package tallies for JSON (one entry per package: small).
    packages: Option<BTreeMap<String, Tally>>,
    /// The root whose files these are: text shows paths inside it.
    root: PathBuf,
}

impl SignPrinter {
    /// To stdout (failure lines to stderr).
    pub fn stdout(json: bool, dry_run: bool) -> SignPrinter {
        SignPrinter::new(BufWriter::new(io::stdout()), json, dry_run)
    }
}

impl<W: Write> SignPrinter<W> {
    /// To `out` (failure lines to stderr), as JSON when `json`; `dry_run`
    /// words the summary as what would be done.
    pub fn new(mut out: W, json: bool, dry_run: bool) -> SignPrinter<W> {
        SignPrinter {
            json: json.then(|| JsonStream::open(&mut out)),
            out,
            dry_run,
            total: Tally::default(),
            packages: None,
            root: PathBuf::from("/"),
        }
    }

    /// The files are in `root` (their reports hold host paths): text shows
    /// them inside it, as CONTENTS has them (JSON keeps the host path).
    pub fn in_root(mut self, root: &Path) -> Self {
        self.root = root.to_path_buf();
        self
    }

    /// One file's outcome; `package` is its CPV when packages are signed.
    pub fn file(&mut self, report: &FileReport, package: Option<&str>) {
        self.total.add(&report.outcome);
        if self.json.is_some() {
            self.json_file(&report.path, package, &report.outcome);
        } else if let Outcome::Failed(reason) = &report.outcome {
            let path = super::inside_root(&self.root, &report.path);
            let line = failure_line(&path, &reason.to_string());
            eprintln!("{}", super::colour::err(super::colour::Tone::Bad, &line));
        } else if self.dry_run || log::log_enabled!(log::Level::Debug) {
            let path = super::inside_root(&self.root, &report.path);
            let _ = writeln!(self.out, "{}", outcome_line(&path, &report.outcome));
        }
    }

    /// A problem of a package as a whole (its CONTENTS unreadable, lines
    /// of it skipped): a failure, named by `contents` in JSON.
    pub fn package_problem(&mut self, cpv: &str, contents: &Path, message: &str) {
        let outcome = Outcome::Failed(Failure::Other(message.to_string()));
        self.total.add(&outcome);
        if self.json.is_some() {
            self.json_file(contents, Some(cpv), &outcome);
        } else {
            super::print_problem(&format!("{cpv}: {}", escape_text(message)));
        }
    }

    fn json_file(&mut self, path: &Path, package: Option<&str>, outcome: &Outcome) {
        if let Some(json) = &mut self.json {
            let file = FileJson {
                path,
                package,
                outcome: outcome.name(),
                detail: outcome.detail(),
            };
            json.file(&mut self.out, &file);
        }
    }

    /// Files a cancelled run never started.
    pub fn not_started(&mut self, n: usize) {
        self.total.not_started += n;
    }

    /// A package is done: its tally line (text, when `show`), its entry in
    /// `packages` (JSON).
    pub fn package(&mut self, cpv: &str, tally: &Tally, show: bool) {
        if self.json.is_some() {
            self.packages
                .get_or_insert_with(BTreeMap::new)
                .insert(cpv.to_string(), *tally);
        } else if show {
            let _ = writeln!(self.out, "portage-ima: {cpv}: {}", tally.line(self.dry_run));
        }
    }

    /// The totals so far.
    pub fn total(&self) -> &Tally {
        &self.total
    }

    /// The totals (text: `portage-ima: {what}TALLY`, e.g. `what` = "3
    /// packages: ") or the end of the JSON document; then the exit status
    /// (an interrupted run says so on stderr).
    pub fn finish(mut self, what: &str) -> super::Status {
        if let Some(json) = self.json.take() {
            let tail = JsonTail {
                summary: &self.total,
                packages: self.packages.as_ref(),
            };
            json.close(&mut self.out, &tail);
        } else {
            let _ = writeln!(
                self.out,
                "portage-ima: {what}{}",
                self.total.line(self.dry_run)
            );
        }
        let _ = self.out.flush();
        if self.total.not_started > 0 {
            log::error!(
                "interrupted: {} not processed; every file is either signed or \
                 untouched, run the same command again to finish",
                super::count(self.total.not_started, "file")
            );
        }
        self.total.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ConfigFiles;

    #[test]
    fn tally_counts_each_outcome() {
        let reports = vec![
            FileReport::new("/a", Outcome::Signed),
            FileReport::new("/b", Outcome::Signed),
            FileReport::new("/c", Outcome::AlreadyValid),
            FileReport::new("/d", Outcome::Failed(Failure::NotOnDisk)),
            FileReport::new(
                "/e",
                Outcome::Skipped(SkipReason::ConfigProtected(ConfigFiles::Skip)),
            ),
            FileReport::new("/f", Outcome::SignedBeforeMerge),
        ];
        let t = Tally::of(&reports);
        assert_eq!(
            (
                t.signed,
                t.already_valid,
                t.failed,
                t.skipped,
                t.signed_before_merge
            ),
            (2, 1, 1, 1, 1)
        );
        assert_eq!(t.total(), 6);
        assert_eq!(
            t.line(false),
            "signed 2, 1 already valid, 1 skipped, 1 failed (of 6 files)"
        );
    }

    #[test]
    fn json_is_one_document_with_the_documented_schema() {
        let mut out = Vec::new();
        let mut p = SignPrinter::new(&mut out, true, false);
        p.file(&FileReport::new("/a", Outcome::Signed), Some("cat/a-1"));
        let previous = ima_core::KeyId([0x12, 0x34, 0xab, 0xcd]);
        p.file(
            &FileReport::new("/r", Outcome::Rotated { previous }),
            Some("cat/a-1"),
        );
        let weird =
            Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/x\n\xff"));
        p.file(
            &FileReport::new(weird, Outcome::Failed(Failure::Other("gone".into()))),
            None,
        );
        let contents = Path::new("/var/db/pkg/cat/a-1/CONTENTS");
        p.package_problem("cat/a-1", contents, "bad line");
        let tally = Tally {
            signed: 1,
            rotated: 1,
            failed: 1,
            ..Tally::default()
        };
        p.package("cat/a-1", &tally, true);
        p.not_started(2);
        assert_eq!(p.finish(""), crate::report::Status::Interrupted);
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "version": 1,
                "files": [
                    {"path": "/a", "package": "cat/a-1", "outcome": "signed"},
                    {"path": "/r", "package": "cat/a-1", "outcome": "rotated",
                     "detail": "was signed by key id 1234abcd"},
                    {"path": "/x\n\u{fffd}", "outcome": "failed", "detail": "gone"},
                    {"path": "/var/db/pkg/cat/a-1/CONTENTS", "package": "cat/a-1",
                     "outcome": "failed", "detail": "bad line"},
                ],
                "summary": {"signed": 1, "rotated": 1, "signed-before-merge": 0,
                            "already-valid": 0, "would-sign": 0, "hashed": 0, "would-hash": 0,
                            "skipped": 0, "failed": 2,
                            "not-started": 2},
                "packages": {"cat/a-1": {"signed": 1, "rotated": 1, "signed-before-merge": 0,
                            "already-valid": 0, "would-sign": 0, "hashed": 0,
                            "would-hash": 0, "skipped": 0,
                            "failed": 1, "not-started": 0}},
            })
        );
        // Files mode, nothing found: still one document, no `packages`.
        let mut out = Vec::new();
        assert_eq!(
            SignPrinter::new(&mut out, true, true).finish(""),
            crate::report::Status::Success
        );
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["files"], serde_json::json!([]));
        assert_eq!(doc.get("packages"), None);
    }

    #[test]
    fn outcome_names_are_the_documented_ones() {
        let names: Vec<_> = [
            Outcome::Signed,
            Outcome::Rotated {
                previous: ima_core::KeyId([0; 4]),
            },
            Outcome::SignedBeforeMerge,
            Outcome::AlreadyValid,
            Outcome::WouldSign,
            Outcome::Hashed,
            Outcome::WouldHash,
            Outcome::Skipped(SkipReason::ConfigProtected(ConfigFiles::Skip)),
            Outcome::Failed(Failure::Unwalkable(Unwalkable::DirectoryLoop)),
        ]
        .iter()
        .map(Outcome::name)
        .collect();
        assert_eq!(
            names,
            [
                "signed",
                "rotated",
                "signed-before-merge",
                "already-valid",
                "would-sign",
                "hashed",
                "would-hash",
                "skipped",
                "failed"
            ]
        );
    }
}
