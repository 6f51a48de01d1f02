//! What `policy --check` found ([`CheckReport`], made by
//! `crate::policy::check`) and how it is printed: a line per file that
//! would be refused and a verdict, or one JSON document (docs/json.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::path_as_text;
use crate::escape::{escape_path, escape_text};

/// A covered file that would be refused.
#[derive(Clone, Debug, Serialize)]
pub struct Denied {
    /// Inside the root (`/usr/bin/foo`).
    #[serde(serialize_with = "path_as_text")]
    pub path: PathBuf,
    /// `cat/pkg-version` of its owner, when the caller looked it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The access and who makes it: `BPRM_CHECK by uid 0`.
    pub access: String,
    /// The 1-based line of the appraise rule, and the rule.
    pub line: usize,
    pub rule: String,
    /// False when the rule only possibly matches (an LSM condition).
    pub certain: bool,
    /// `unsigned`, `bad-signature`, `unknown-key`, ...
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An option of an appraise rule the check does not model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unmodelled {
    /// The 1-based line of the rule, and the rule.
    pub line: usize,
    pub rule: String,
    /// The option, as written (`appraise_flag=check_blacklist`).
    pub option: String,
}

/// What the check found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Regular files looked at.
    pub files: usize,
    /// Files an appraise rule covers (certainly or possibly).
    pub covered: usize,
    pub denied: Vec<Denied>,
    /// Directories (and files) that could not be read or placed on a
    /// filesystem, with the reason: not checked.
    pub unreadable: Vec<String>,
    /// Options of appraise rules the check does not model.
    pub unmodelled: Vec<Unmodelled>,
}

/// What the check can say about booting with `ima_appraise=enforce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Safe,
    /// Some file would be refused.
    NotSafe,
    /// Nothing found would be refused, but the check did not see or model everything.
    CannotTell,
}

impl CheckReport {
    /// Whether booting with `ima_appraise=enforce` refuses nothing, as far as
    /// the check can tell.
    pub fn safe(&self) -> bool {
        self.verdict() == Verdict::Safe
    }

    pub fn verdict(&self) -> Verdict {
        if !self.denied.is_empty() {
            Verdict::NotSafe
        } else if !self.unreadable.is_empty() || !self.unmodelled.is_empty() {
            Verdict::CannotTell
        } else {
            Verdict::Safe
        }
    }
}

/// One run of the check, to be printed.
pub(crate) struct Checked<'a> {
    /// What the check found (owners looked up).
    pub report: &'a CheckReport,
    /// Where the policy came from.
    pub source: &'a str,
    /// `scope = "policy"` is set.
    pub scope_policy: bool,
    /// How long the walk took.
    pub elapsed: Duration,
    /// The root the paths are inside.
    pub root: &'a Path,
}

/// Prints `checked` on stdout, as text or (`json`) one JSON document.
pub(crate) fn print(checked: &Checked<'_>, json: bool) -> std::io::Result<()> {
    let (report, source, root) = (checked.report, checked.source, checked.root);
    let args_json = json;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args_json {
        #[derive(serde::Serialize)]
        struct Summary {
            files: usize,
            covered: usize,
            denied: usize,
        }
        #[derive(serde::Serialize)]
        struct Json<'a> {
            version: u32,
            policy: &'a str,
            safe: bool,
            verdict: Verdict,
            denied: &'a [Denied],
            unreadable: &'a [String],
            unmodelled: &'a [Unmodelled],
            summary: Summary,
        }
        serde_json::to_writer(
            &mut out,
            &Json {
                version: super::JSON_VERSION,
                policy: &source,
                safe: report.safe(),
                verdict: report.verdict(),
                denied: &report.denied,
                unreadable: &report.unreadable,
                unmodelled: &report.unmodelled,
                summary: Summary {
                    files: report.files,
                    covered: report.covered,
                    denied: report.denied.len(),
                },
            },
        )?;
        writeln!(out)?;
    } else {
        for d in &report.denied {
            writeln!(
                out,
                "{} {}: {}{} (line {}: {}){}{}",
                if d.certain {
                    "denied"
                } else {
                    "possibly-denied"
                },
                escape_path(&d.path),
                d.status,
                d.detail
                    .as_deref()
                    .map(|t| format!(": {}", escape_text(t)))
                    .unwrap_or_default(),
                d.line,
                d.rule,
                format_args!(", {}", d.access),
                d.package
                    .as_ref()
                    .map(|p| format!(", from {p}"))
                    .unwrap_or_default(),
            )?;
        }
        for u in &report.unreadable {
            log::warn!("not checked: {}", escape_text(u));
        }
        for u in &report.unmodelled {
            log::warn!(
                "cannot tell what the kernel does with `{}` (line {}: {}): the check does not \
                 model it",
                u.option,
                u.line,
                u.rule
            );
        }
        if let Some(line) = scope_note(checked.scope_policy, report, root) {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "portage-ima: {source}: {}{}, {} covered by appraise rules, {} would be refused \
             ({:.1} s): {}",
            super::count(report.files, "file"),
            super::root_named(root),
            report.covered,
            report.denied.len(),
            checked.elapsed.as_secs_f64(),
            match report.verdict() {
                Verdict::Safe => "safe to boot with ima_appraise=enforce".to_string(),
                Verdict::NotSafe => format!(
                    "NOT safe to boot with ima_appraise=enforce: sign them (portage-ima sign{}), \
                     or exempt them in the policy",
                    super::root_option(root)
                ),
                Verdict::CannotTell => cannot_tell(report),
            }
        )?;
    }
    out.flush()
}

/// Why the check cannot call the policy safe, though it found nothing refused.
fn cannot_tell(report: &CheckReport) -> String {
    let mut why = Vec::new();
    if !report.unmodelled.is_empty() {
        let options: Vec<String> = report
            .unmodelled
            .iter()
            .map(|u| format!("{} (line {})", u.option, u.line))
            .collect();
        why.push(format!(
            "the check does not model {}; test this policy with ima_appraise=log first",
            options.join(", ")
        ));
    }
    if !report.unreadable.is_empty() {
        why.push(format!(
            "{} places were not checked (listed above)",
            report.unreadable.len()
        ));
    }
    format!(
        "CANNOT TELL whether it is safe to boot with ima_appraise=enforce: {}",
        why.join("; ")
    )
}

/// With `scope = "policy"`, the covered files that carry no signature at
/// all are the ones the scope skipped (signed under a narrower policy) or
/// that predate the hook: said explicitly, since `sign` would skip them
/// again unless it sees this policy.
fn scope_note(scope_policy: bool, report: &CheckReport, root: &Path) -> Option<String> {
    if !scope_policy {
        return None;
    }
    let skipped = report
        .denied
        .iter()
        .filter(|d| matches!(d.status, "unsigned" | "hashed"))
        .count();
    (skipped > 0).then(|| {
        format!(
            "portage-ima: scope = \"policy\" is set and this policy covers {} \
             without a signature (the scope skipped them, or they predate the hook): sign them \
             with portage-ima sign --all{} once this policy is loaded, or set scope = \"all\"",
            super::count(skipped, "file"),
            super::root_option(root)
        )
    })
}
