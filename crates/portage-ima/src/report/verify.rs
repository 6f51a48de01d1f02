//! Verification results (the verdicts of `verify`): one status per file,
//! as text or JSON, printed as they come (a run over a million files holds
//! one batch of results, not all of them).
//!
//! Text: `STATUS PATH (detail)` lines (every file with `-v`, else those not
//! ok), per package a `ok  |FAIL CATEGORY/PF: counts` line once the package
//! is done, and a final `portage-ima: verified: counts` line. Paths and
//! details are escaped ([`crate::escape`]).
//!
//! JSON, one document, streamed: `{"files": [FILE...], "packages": {CPV:
//! {STATUS: N}}, "summary": {STATUS: N}}`; `packages` only when packages
//! were verified. A FILE is `{path, package?, status, algo, keyid, digest,
//! signature, detail}`.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Stdout, Write};
use std::path::{Path, PathBuf};

use ima_core::{VerifyReport, VerifyStatus};
use serde::Serialize;

use crate::escape::{escape_path, escape_text};

use super::colour::{self, Tone};
use super::json::JsonStream;

/// What verification found for one file. The names (serde, [`Verdict::as_str`])
/// are the stable strings of the text and JSON output; the variants are in
/// the alphabetical order of those names, which orders the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A digest-only `security.ima` that does not match the content: the
    /// kernel refuses the file wherever a rule appraises it.
    BadHash,
    /// A signature that does not verify with the key its keyid names.
    BadSignature,
    /// A config-protected file the admin changed since the merge, which IMA
    /// appraisal would not refuse (not executable, or validly signed):
    /// reported, not a failure (editing /etc is what admins do).
    ConfigChanged,
    /// A config-protected file the `config_files` setting leaves without
    /// `security.ima` (`skip`, or `executable` and it is not executable),
    /// and has none: as meant, not a failure.
    ConfigUnsigned,
    /// `security.ima` holds a digest where a signature is needed (a file
    /// that is not a config file the `config_files` setting hashes).
    DigestOnly,
    /// The file could not be checked (or its xattr is malformed).
    Error,
    /// A config-protected, non-executable file whose digest-only
    /// `security.ima` matches its content (`config_files = "hash"`).
    Hashed,
    /// Listed in CONTENTS, not on disk (package verification only).
    Missing,
    /// Content differs from CONTENTS (package verification only).
    Modified,
    /// Signed, and the signature verifies.
    Ok,
    /// A valid signature by a key given with `--cert` that is not the
    /// configured one (e.g. the previous key during a rotation): reported,
    /// not a failure, since the kernel accepts it while that key's
    /// certificate is on its keyring.
    OtherKey,
    /// Signed by a key none of the certificates hold.
    UnknownKey,
    /// No `security.ima`.
    Unsigned,
}

impl Verdict {
    /// The stable name: "ok", "unsigned", "bad-signature", ...
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::BadHash => "bad-hash",
            Verdict::BadSignature => "bad-signature",
            Verdict::ConfigChanged => "config-changed",
            Verdict::ConfigUnsigned => "config-unsigned",
            Verdict::DigestOnly => "digest-only",
            Verdict::Error => "error",
            Verdict::Hashed => "hashed",
            Verdict::Missing => "missing",
            Verdict::Modified => "modified",
            Verdict::Ok => "ok",
            Verdict::OtherKey => "other-key",
            Verdict::UnknownKey => "unknown-key",
            Verdict::Unsigned => "unsigned",
        }
    }

    /// Whether it fails the run: everything but `ok`, `other-key`,
    /// `config-changed`, `config-unsigned` and `hashed`.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Verdict::Ok
                | Verdict::OtherKey
                | Verdict::ConfigChanged
                | Verdict::ConfigUnsigned
                | Verdict::Hashed
        )
    }

    /// The state a file is meant to be in (`ok`, `hashed`,
    /// `config-unsigned`): the text output lists it only with `-v`.
    pub fn is_as_meant(self) -> bool {
        matches!(
            self,
            Verdict::Ok | Verdict::Hashed | Verdict::ConfigUnsigned
        )
    }
}

impl From<&VerifyStatus> for Verdict {
    fn from(status: &VerifyStatus) -> Verdict {
        match status {
            VerifyStatus::Ok => Verdict::Ok,
            VerifyStatus::OtherKey => Verdict::OtherKey,
            VerifyStatus::Unsigned => Verdict::Unsigned,
            // A digest is fine only on a config file the settings hash,
            // which the caller knows (`engine::verify_object`).
            VerifyStatus::Hashed => Verdict::DigestOnly,
            VerifyStatus::BadHash => Verdict::BadHash,
            VerifyStatus::BadSignature => Verdict::BadSignature,
            VerifyStatus::UnknownKey => Verdict::UnknownKey,
            VerifyStatus::Malformed => Verdict::Error,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts per verdict, in a stable order.
pub type Counts = BTreeMap<Verdict, usize>;

/// One file's verification result, as printed and as JSON.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FileStatus {
    /// The path as it is on disk; JSON shows it as text (bytes that are not
    /// UTF-8 become U+FFFD), the text output escapes it.
    #[serde(serialize_with = "super::path_as_text")]
    pub path: PathBuf,
    /// `cat/pkg-version` of its package, when packages were verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The verdict.
    pub status: Verdict,
    /// The hash algorithm of its `security.ima` value (`sha256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algo: Option<String>,
    /// The signing key's id (hex), for a signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// The file's digest in the value's algorithm (what the kernel measures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The signature bytes, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why, in words, when the verdict needs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl FileStatus {
    /// The status of `path` from what ima-core found.
    pub fn from_report(path: &Path, report: &VerifyReport) -> FileStatus {
        FileStatus {
            path: path.to_path_buf(),
            package: None,
            status: (&report.status).into(),
            algo: report.algo.map(|a| a.name().to_string()),
            keyid: report.keyid.map(|k| k.to_string()),
            digest: report.digest.as_deref().map(hex::encode),
            signature: report.signature.as_deref().map(hex::encode),
            detail: report.detail.clone(),
        }
    }

    /// `path` with `status`, explained by `detail`.
    pub fn with_status(path: &Path, status: Verdict, detail: String) -> FileStatus {
        FileStatus {
            path: path.to_path_buf(),
            package: None,
            status,
            algo: None,
            keyid: None,
            digest: None,
            signature: None,
            detail: Some(detail),
        }
    }

    /// `path` could not be checked, because of `detail`.
    pub fn error(path: &Path, detail: String) -> FileStatus {
        FileStatus::with_status(path, Verdict::Error, detail)
    }

    /// Whether the verdict is `ok`.
    pub fn is_ok(&self) -> bool {
        self.status == Verdict::Ok
    }

    /// Whether this status fails the run (see [`Verdict::is_failure`]).
    pub fn is_failure(&self) -> bool {
        self.status.is_failure()
    }

    /// [`FileStatus::text_line`], its status coloured on a terminal.
    pub fn coloured_line(&self) -> String {
        let tone = if self.is_failure() {
            Tone::Bad
        } else if self.status == Verdict::Ok {
            Tone::Good
        } else {
            Tone::Plain
        };
        let line = self.text_line();
        let status = self.status.to_string();
        match line.strip_prefix(status.as_str()) {
            Some(rest) => format!("{}{rest}", colour::out(tone, &status)),
            None => line,
        }
    }

    /// The text line: `STATUS PATH (detail)`, escaped.
    pub fn text_line(&self) -> String {
        let path = escape_path(&self.path);
        match &self.detail {
            Some(detail) if !self.is_ok() => {
                format!("{} {path} ({})", self.status, escape_text(detail))
            }
            _ => format!("{} {path}", self.status),
        }
    }
}

/// Counts per status, in a stable order.
pub fn summary(files: &[FileStatus]) -> Counts {
    let mut counts = Counts::new();
    for f in files {
        *counts.entry(f.status).or_insert(0) += 1;
    }
    counts
}

/// "12 ok, 1 unsigned".
pub fn summary_line(counts: &Counts) -> String {
    if counts.is_empty() {
        return "no files".into();
    }
    counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether counts hold a status that fails the run.
fn counts_fail(counts: &Counts) -> bool {
    counts.keys().any(|s| s.is_failure())
}

/// What `verify --json` writes after `files`.
#[derive(Serialize)]
struct JsonTail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<&'a BTreeMap<String, Counts>>,
    summary: &'a Counts,
}

/// Prints results as they come: file lines (or JSON objects), package
/// summaries, then the totals in [`VerifyPrinter::finish`].
pub struct VerifyPrinter<W: Write = BufWriter<Stdout>> {
    out: W,
    /// `--json`: the document being written.
    json: Option<JsonStream>,
    all: bool,
    /// Files reported, printed or not.
    files: usize,
    total: Counts,
    failed: bool,
    /// Package summaries, kept for the JSON `packages` map (small: one
    /// entry per package).
    packages: Option<BTreeMap<String, Counts>>,
    /// The root whose files these are: text shows paths inside it.
    root: PathBuf,
}

impl VerifyPrinter {
    /// To stdout; `all`: a text line for every file, not only those not ok.
    pub fn stdout(json: bool, all: bool) -> VerifyPrinter {
        VerifyPrinter::new(BufWriter::new(io::stdout()), json, all)
    }
}

impl<W: Write> VerifyPrinter<W> {
    /// To `out`, as JSON when `json`; `all` prints every file, not only
    /// the ones that need a look.
    pub fn new(mut out: W, json: bool, all: bool) -> VerifyPrinter<W> {
        VerifyPrinter {
            json: json.then(|| JsonStream::open(&mut out)),
            out,
            all,
            files: 0,
            total: Counts::new(),
            failed: false,
            packages: None,
            root: PathBuf::from("/"),
        }
    }

    /// Results of packages: JSON gets a `packages` map even when no
    /// package was selected.
    pub fn with_packages(mut self) -> Self {
        self.packages.get_or_insert_with(BTreeMap::new);
        self
    }

    /// The files are in `root` (their statuses hold host paths): text
    /// shows them inside it, as CONTENTS has them, and the summary names
    /// it once when it is not `/`; JSON keeps the host path.
    pub fn in_root(mut self, root: &Path) -> Self {
        self.root = root.to_path_buf();
        self
    }

    /// One file's result.
    pub fn file(&mut self, f: &FileStatus) {
        *self.total.entry(f.status).or_insert(0) += 1;
        self.failed |= f.is_failure();
        if let Some(json) = &mut self.json {
            json.file(&mut self.out, f);
        } else if self.all || !f.status.is_as_meant() {
            let line = match super::inside_root(&self.root, &f.path) {
                std::borrow::Cow::Borrowed(_) => f.coloured_line(),
                std::borrow::Cow::Owned(path) => FileStatus { path, ..f.clone() }.coloured_line(),
            };
            let _ = writeln!(self.out, "{line}");
        }
        self.files += 1;
    }

    /// A package is done: its summary line (text), its entry in `packages` (JSON).
    pub fn package(&mut self, cpv: &str, counts: Counts) {
        if self.json.is_none() {
            let mark = if counts_fail(&counts) {
                colour::out(Tone::Bad, "FAIL")
            } else {
                colour::out(Tone::Good, "ok  ")
            };
            let _ = writeln!(self.out, "{mark} {cpv}: {}", summary_line(&counts));
            let _ = self.out.flush();
        }
        self.packages
            .get_or_insert_with(BTreeMap::new)
            .insert(cpv.to_string(), counts);
    }

    /// Whether a file so far fails the run.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// How many files were reported.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The totals (text) or the end of the document (JSON); returns the writer.
    pub fn finish(mut self) -> W {
        if let Some(json) = self.json.take() {
            let tail = JsonTail {
                packages: self.packages.as_ref(),
                summary: &self.total,
            };
            json.close(&mut self.out, &tail);
        } else {
            let _ = writeln!(
                self.out,
                "portage-ima: verified{}: {}",
                super::root_named(&self.root),
                summary_line(&self.total)
            );
        }
        let _ = self.out.flush();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_are_the_stable_strings_in_order() {
        let all = [
            Verdict::BadHash,
            Verdict::BadSignature,
            Verdict::ConfigChanged,
            Verdict::ConfigUnsigned,
            Verdict::DigestOnly,
            Verdict::Error,
            Verdict::Hashed,
            Verdict::Missing,
            Verdict::Modified,
            Verdict::Ok,
            Verdict::OtherKey,
            Verdict::UnknownKey,
            Verdict::Unsigned,
        ];
        let names: Vec<&str> = all.iter().map(|v| v.as_str()).collect();
        assert_eq!(
            names,
            [
                "bad-hash",
                "bad-signature",
                "config-changed",
                "config-unsigned",
                "digest-only",
                "error",
                "hashed",
                "missing",
                "modified",
                "ok",
                "other-key",
                "unknown-key",
                "unsigned"
            ]
        );
        for v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        // Counts order as the names do (the text summary's order).
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(Verdict::from(&VerifyStatus::Malformed), Verdict::Error);
        // A valid signature by another given key does not fail the run.
        assert!(!Verdict::OtherKey.is_failure() && Verdict::UnknownKey.is_failure());
    }

    #[test]
    fn summary_counts_statuses() {
        let files = vec![
            FileStatus::with_status(Path::new("/a"), Verdict::Ok, String::new()),
            FileStatus::with_status(Path::new("/b"), Verdict::Ok, String::new()),
            FileStatus::with_status(Path::new("/c"), Verdict::Missing, String::new()),
        ];
        assert_eq!(summary_line(&summary(&files)), "1 missing, 2 ok");
        assert_eq!(summary_line(&BTreeMap::new()), "no files");
    }

    fn statuses() -> Vec<FileStatus> {
        let mut a = FileStatus::with_status(Path::new("/a"), Verdict::Ok, String::new());
        a.package = Some("cat/a-1".into());
        a.signature = Some("00ff".into());
        let mut b = FileStatus::with_status(
            Path::new(std::ffi::OsStr::from_bytes(
                b"/x\x1b[2K\rok   fake\nline\t\xff",
            )),
            Verdict::Unsigned,
            "no security.ima".into(),
        );
        b.package = Some("cat/a-1".into());
        let c = FileStatus::with_status(
            Path::new("/etc/c.conf"),
            Verdict::ConfigChanged,
            "edited".into(),
        );
        vec![a, b, c]
    }

    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn streamed_json_is_one_valid_document() {
        let mut p = VerifyPrinter::new(Vec::new(), true, false);
        for f in statuses() {
            p.file(&f);
        }
        p.package("cat/a-1", summary(&statuses()));
        assert!(p.failed());
        let out = p.finish();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["files"].as_array().unwrap().len(), 3);
        assert_eq!(doc["files"][0]["path"], "/a");
        assert_eq!(doc["files"][0]["signature"], "00ff");
        assert_eq!(
            doc["files"][1]["path"],
            "/x\u{1b}[2K\rok   fake\nline\t\u{fffd}"
        );
        assert_eq!(doc["files"][2].get("package"), None);
        assert_eq!(doc["summary"]["ok"], 1);
        assert_eq!(doc["packages"]["cat/a-1"]["unsigned"], 1);
        // The raw control bytes never reach the output.
        assert!(!out.contains(&0x1b) && !out.contains(&b'\r'));
        // Files mode: no `packages` key, an empty list is fine.
        let out = VerifyPrinter::new(Vec::new(), true, false).finish();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"version": 1, "files": [], "summary": {}})
        );
        let out = VerifyPrinter::new(Vec::new(), true, false)
            .with_packages()
            .finish();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"version": 1, "files": [], "packages": {}, "summary": {}})
        );
    }

    #[test]
    fn text_escapes_paths_and_marks_packages() {
        let mut p = VerifyPrinter::new(Vec::new(), false, false);
        for f in statuses() {
            p.file(&f);
        }
        p.package("cat/a-1", summary(&statuses()[..1]));
        p.package("cat/c-1", summary(&statuses()[2..]));
        let out = String::from_utf8(p.finish()).unwrap();
        assert_eq!(
            out,
            "unsigned /x\\x1b[2K\\rok   fake\\nline\\t\\xff (no security.ima)\n\
             config-changed /etc/c.conf (edited)\n\
             ok   cat/a-1: 1 ok\n\
             ok   cat/c-1: 1 config-changed\n\
             portage-ima: verified: 1 config-changed, 1 ok, 1 unsigned\n"
        );
        assert!(!out.bytes().any(|b| b == 0x1b || b == b'\r' || b == b'\t'));
    }
}
