//! What `audit` found, and how it is printed: [`Finding`]s of a [`Class`]
//! each (classified by `crate::audit`), as text grouped by package with a
//! summary line, or as one JSON document (docs/json.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::escape::{escape_path, escape_text};

/// What a file the kernel saw is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Class {
    UnsignedPristine,
    Modified,
    ForeignKey,
    NotOwned,
    Gone,
    Valid,
    Error,
}

impl Class {
    pub(crate) const ALL: [Class; 7] = [
        Class::UnsignedPristine,
        Class::Modified,
        Class::ForeignKey,
        Class::NotOwned,
        Class::Gone,
        Class::Valid,
        Class::Error,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Class::UnsignedPristine => "unsigned-pristine",
            Class::Modified => "modified",
            Class::ForeignKey => "foreign-key",
            Class::NotOwned => "not-owned",
            Class::Gone => "gone",
            Class::Valid => "valid",
            Class::Error => "error",
        }
    }
}

/// One file's verdict.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Finding {
    /// The path as the kernel named it.
    #[serde(serialize_with = "path_as_text")]
    pub path: PathBuf,
    /// `cat/pkg-version` of its owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The path CONTENTS lists it under, when it differs (a symlinked directory).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_path_as_text"
    )]
    pub contents_path: Option<PathBuf>,
    pub class: Class,
    pub detail: String,
    /// The key id of its signature, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    pub denials: usize,
    pub measured: usize,
    /// Records of an `audit` rule (type 1805).
    pub audited: usize,
    /// Observed by a first boot (see the module docs), on disk, and without
    /// a signature the kernel would accept (or it could not be checked):
    /// enforcing would refuse it.
    pub enforce_refuses: bool,
    pub causes: Vec<String>,
    pub comms: Vec<String>,
    /// After `--fix`: what signing did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// The MD5 CONTENTS records, for `--fix`.
    #[serde(skip)]
    pub md5: Option<[u8; 16]>,
}

/// How many findings of each class.
pub(crate) fn counts(findings: &[Finding]) -> BTreeMap<Class, usize> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.class).or_insert(0) += 1;
    }
    counts
}

/// Paths in JSON as text (bytes that are not UTF-8 become U+FFFD), as
/// `verify --json` writes them; the text output escapes them instead.
fn path_as_text<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn opt_path_as_text<S: serde::Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => path_as_text(p, s),
        None => s.serialize_none(),
    }
}

/// What one run of `audit` found, to be printed.
pub(crate) struct Audited<'a, P: Serialize> {
    /// The findings, sorted as they are to be listed.
    pub findings: &'a [Finding],
    /// The lines of the inputs that could not be read (JSON only; the
    /// logger warns about them).
    pub unreadable: &'a [P],
    /// The IMA keyring's name, when it was read.
    pub keyring: Option<&'a str>,
    /// After an observe boot: how many files its audit rules and `ima-sig`
    /// measurements recorded.
    pub observed: Option<usize>,
    /// `--fix` ran.
    pub fixed: bool,
    /// The root the paths are inside.
    pub root: &'a Path,
}

/// `audit --json`'s document (docs/json.md).
#[derive(Serialize)]
struct JsonReport<'a, P: Serialize> {
    version: u32,
    files: &'a [Finding],
    summary: BTreeMap<&'static str, usize>,
    unreadable_lines: &'a [P],
    #[serde(skip_serializing_if = "Option::is_none")]
    keyring: Option<&'a str>,
    /// After an observe boot: the files enforcing would refuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    enforce_would_refuse: Option<Vec<String>>,
}

/// Prints `audited` on stdout, as text or (`json`) one JSON document.
pub(crate) fn print<P: Serialize>(audited: &Audited<'_, P>, json: bool) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let findings = audited.findings;
    let counts = counts(findings);
    if json {
        let report = JsonReport {
            version: super::JSON_VERSION,
            files: findings,
            summary: counts.iter().map(|(c, n)| (c.as_str(), *n)).collect(),
            unreadable_lines: audited.unreadable,
            keyring: audited.keyring,
            enforce_would_refuse: audited.observed.map(|_| {
                findings
                    .iter()
                    .filter(|f| f.enforce_refuses)
                    .map(|f| f.path.to_string_lossy().into_owned())
                    .collect()
            }),
        };
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, findings, &counts, audited.fixed, audited.root)?;
        if let Some(observed) = audited.observed {
            write_observed(&mut out, observed, findings)?;
        }
    }
    out.flush()
}

/// The text report: the files grouped by package, then a summary line.
fn write_text(
    out: &mut impl Write,
    findings: &[Finding],
    counts: &BTreeMap<Class, usize>,
    fixed: bool,
    root: &Path,
) -> std::io::Result<()> {
    let mut current: Option<Option<&str>> = None;
    for f in findings {
        if current != Some(f.package.as_deref()) {
            current = Some(f.package.as_deref());
            match &f.package {
                Some(p) => writeln!(out, "{p}:")?,
                None => writeln!(out, "not owned by any package:")?,
            }
        }
        let seen = [
            ("denied", f.denials),
            ("measured", f.measured),
            ("audited", f.audited),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}x"))
        .collect::<Vec<_>>()
        .join(", ");
        let why = if f.causes.is_empty() {
            String::new()
        } else {
            format!(
                " ({}{})",
                f.causes.join(", "),
                if f.comms.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", f.comms.join(", "))
                }
            )
        };
        writeln!(
            out,
            "  {:<17} {}: {seen}{why}: {}",
            f.class.as_str(),
            escape_path(&f.path),
            escape_text(&f.detail)
        )?;
        if let Some(fixed) = &f.fixed {
            writeln!(out, "    --fix: {}", escape_text(fixed))?;
        }
    }
    let pristine: Vec<&str> = {
        let mut p: Vec<&str> = findings
            .iter()
            .filter(|f| f.class == Class::UnsignedPristine)
            .filter_map(|f| f.package.as_deref())
            .collect();
        p.dedup();
        p
    };
    if !pristine.is_empty() && !fixed {
        writeln!(
            out,
            "to sign the unsigned-pristine files: portage-ima audit --fix (with the same \
             options), or portage-ima sign {}{}",
            pristine
                .iter()
                .map(|p| format!("={p}"))
                .collect::<Vec<_>>()
                .join(" "),
            super::root_option(root)
        )?;
    }
    let total: usize = counts.values().sum();
    let parts: Vec<String> = Class::ALL
        .iter()
        .filter_map(|c| counts.get(c).map(|n| format!("{n} {}", c.as_str())))
        .collect();
    if total == 0 {
        writeln!(
            out,
            "portage-ima: no file denied, measured or audited in the log"
        )
    } else {
        writeln!(
            out,
            "portage-ima: {}{}: {}",
            super::count(total, "file"),
            super::root_named(root),
            parts.join(", ")
        )
    }
}

/// After an observe boot (`policy --observe`): what enforcing would refuse
/// of the `observed` files.
fn write_observed(
    out: &mut impl Write,
    observed: usize,
    findings: &[Finding],
) -> std::io::Result<()> {
    let refused: Vec<&Finding> = findings.iter().filter(|f| f.enforce_refuses).collect();
    if refused.is_empty() {
        return writeln!(
            out,
            "portage-ima: enforcing would refuse none of the {observed} files the audit rules \
             and ima-sig measurements recorded: the policy without --observe can be installed"
        );
    }
    writeln!(
        out,
        "portage-ima: enforcing would refuse {} of the {observed} files the audit rules and \
         ima-sig measurements recorded; sign them (audit --fix for unsigned-pristine ones, \
         `portage-ima sign --files` for others you trust) before installing the policy \
         without --observe:",
        refused.len()
    )?;
    for f in refused {
        writeln!(
            out,
            "  would refuse {}: {}",
            escape_path(&f.path),
            escape_text(&f.detail)
        )?;
    }
    Ok(())
}
