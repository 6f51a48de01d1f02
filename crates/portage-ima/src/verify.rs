//! Verification results: one status per file, as text or JSON.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use ima_core::VerifyReport;
use serde::Serialize;

/// Statuses that only package verification gives (the file against CONTENTS).
pub const MODIFIED: &str = "modified";
pub const MISSING: &str = "missing";

/// One file's verification result, as printed and as JSON.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FileStatus {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    pub status: &'static str,
    pub algo: Option<String>,
    pub keyid: Option<String>,
    /// The file's digest in the value's algorithm (what the kernel measures).
    pub digest: Option<String>,
    pub signature: Option<String>,
    pub detail: Option<String>,
}

impl FileStatus {
    pub fn from_report(path: &Path, report: &VerifyReport) -> FileStatus {
        FileStatus {
            path: path.to_string_lossy().into_owned(),
            package: None,
            status: report.status.as_str(),
            algo: report.algo.map(|a| a.name().to_string()),
            keyid: report.keyid.map(|k| k.to_string()),
            digest: report.digest.as_deref().map(hex::encode),
            signature: report.signature.as_deref().map(hex::encode),
            detail: report.detail.clone(),
        }
    }

    pub fn with_status(path: &Path, status: &'static str, detail: String) -> FileStatus {
        FileStatus {
            path: path.to_string_lossy().into_owned(),
            package: None,
            status,
            algo: None,
            keyid: None,
            digest: None,
            signature: None,
            detail: Some(detail),
        }
    }

    pub fn error(path: &Path, detail: String) -> FileStatus {
        FileStatus::with_status(path, "error", detail)
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Counts per status, in a stable order.
pub fn summary(files: &[FileStatus]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for f in files {
        *counts.entry(f.status).or_insert(0) += 1;
    }
    counts
}

/// "12 ok, 1 unsigned".
pub fn summary_line(counts: &BTreeMap<&'static str, usize>) -> String {
    if counts.is_empty() {
        return "no files".into();
    }
    counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the results: JSON, or `STATUS PATH (detail)` lines (every file, or
/// only those not ok) followed by a summary.
pub fn print(files: &[FileStatus], json: bool, all: bool, extra: Option<serde_json::Value>) {
    let counts = summary(files);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if json {
        let mut doc = serde_json::json!({ "files": files, "summary": counts });
        if let (Some(serde_json::Value::Object(fields)), Some(map)) = (extra, doc.as_object_mut()) {
            map.extend(fields);
        }
        let _ = writeln!(out, "{doc}");
        return;
    }
    for f in files.iter().filter(|f| all || !f.is_ok()) {
        let _ = match &f.detail {
            Some(detail) if !f.is_ok() => writeln!(out, "{} {} ({detail})", f.status, f.path),
            _ => writeln!(out, "{} {}", f.status, f.path),
        };
    }
    let _ = writeln!(out, "portage-ima: verified: {}", summary_line(&counts));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_statuses() {
        let files = vec![
            FileStatus::with_status(Path::new("/a"), "ok", String::new()),
            FileStatus::with_status(Path::new("/b"), "ok", String::new()),
            FileStatus::with_status(Path::new("/c"), MISSING, String::new()),
        ];
        assert_eq!(summary_line(&summary(&files)), "1 missing, 2 ok");
        assert_eq!(summary_line(&BTreeMap::new()), "no files");
    }
}
