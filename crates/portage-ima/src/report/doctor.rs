//! doctor's report and how it is printed: every check listed once
//! ([`CheckId`]), each one's [`Check`] line with its [`Level`], as text
//! (`ok|warn|FAIL|skip  <check>: <finding>`, the fix indented below) or as
//! one JSON document (docs/json.md). The checks themselves are in
//! `crate::commands::doctor`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::colour::{self, Tone};
use super::status::Status;

/// Declares [`CheckId`] and [`CheckId::ALL`] from one list, so that the
/// report's order and the names cannot drift apart.
macro_rules! check_ids {
    ($($(#[$meta:meta])* $id:ident,)*) => {
        /// A check's stable name, as printed in the text report and in
        /// `--json`'s "check" fields (serde's kebab-case of the variant).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum CheckId {
            $($(#[$meta])* $id,)*
        }

        impl CheckId {
            /// Every check, in the order a report lists them.
            pub const ALL: &'static [CheckId] = &[$(CheckId::$id,)*];
        }
    };
}

check_ids! {
    /// The settings file loads.
    Config,
    /// The private key.
    Key,
    /// Who can read the private key.
    KeyAccess,
    /// The hardware token's PIN file is a private, plain file.
    PinFile,
    /// The certificate parses.
    Cert,
    /// The certificate belongs to the key.
    CertKey,
    /// The certificate has a subject key identifier (the kernel's key id).
    CertSkid,
    /// The certificate's key usage suits the IMA keyring.
    CertUsage,
    /// The certificate's validity.
    CertExpiry,
    /// The key id signatures carry.
    #[serde(rename = "keyid")]
    KeyId,
    /// The binary host's certificates a client trusts.
    TrustedCerts,
    /// securityfs is mounted.
    Securityfs,
    /// The kernel has IMA.
    Ima,
    /// The appraise mode.
    Appraise,
    /// UEFI Secure Boot: whether ima_appraise= is honoured.
    SecureBoot,
    /// Whether init=/bin/sh can be given at boot to recover.
    Recovery,
    /// The kernel computes the configured hash.
    Hash,
    /// The certificate is on the IMA keyring.
    Keyring,
    /// The kernel accepts each configured certificate on its IMA keyring.
    KeyringTrust,
    /// The IMA policy appraises signatures.
    Policy,
    /// /etc/portage/bashrc runs the hook.
    Bashrc,
    /// PORTAGE_TMPDIR and ROOT: renamed or copied?
    Tmpdir,
    /// FEATURES=xattr and PORTAGE_XATTR_EXCLUDE keep security.ima.
    Xattr,
    /// Signing before the merge works.
    Premerge,
    /// Fail-safe merges: the hook stops merges that would leave programs
    /// live and unsigned on an enforcing kernel.
    Failsafe,
    /// What binary packages carry of the signatures.
    Binpkg,
    /// No package's saved environment holds the token PIN.
    PinSaved,
    /// No rule of the IMA policy blocks source builds.
    PolicyBuilds,
    /// Merged programs are signed before a rule appraises them.
    PolicyMerges,
    /// Signed config files stay writable under the policy.
    PolicyConfig,
    /// Installed files are signed by keys on the IMA keyring.
    SignatureKeys,
    /// Installed files the policy covers carry a signature (`scope`).
    PolicyCoverage,
    /// The signer's own binary and libraries verify.
    #[serde(rename = "self")]
    Signer,
    /// The Keylime runtime policy covers what the vdb holds.
    KeylimePolicy,
    /// The Keylime verifier answers and holds the current policy.
    KeylimeVerifier,
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde name: listed once, in the enum.
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => write!(f, "{self:?}"),
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something is worth knowing or fixing.
    Warn,
    /// Signing, or appraisal of what is signed, will not work.
    Fail,
    /// Could not be checked here; the finding says why.
    Skip,
}

impl Level {
    /// The label printed at the start of the line.
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Which check.
    pub check: CheckId,
    /// How it ended.
    pub status: Level,
    /// What was found.
    pub finding: String,
    /// What to do about it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, in the order they ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The checks' lines, in the order they ran.
    pub checks: Vec<Check>,
    /// No check failed (warnings allowed).
    pub ok: bool,
    /// ` --root DIR` for the commands the fixes suggest (empty for `/`).
    #[serde(skip)]
    root_option: String,
}

/// `doctor --json` (docs/json.md).
#[derive(Serialize)]
pub struct ReportJson<'a> {
    version: u32,
    ok: bool,
    checks: &'a [Check],
    /// How many checks ended with each status.
    summary: BTreeMap<Level, usize>,
}

impl Report {
    /// An empty report on the system at `root` (its fixes carry `--root`
    /// when it is not `/`).
    pub(crate) fn new(root: &Path) -> Report {
        Report {
            ok: true,
            root_option: super::root_option(root),
            ..Report::default()
        }
    }

    /// Prints the report on stdout (text, or JSON with `json`): success
    /// when no check failed; warnings do not count.
    pub(crate) fn print(&self, json: bool) -> anyhow::Result<Status> {
        if json {
            println!("{}", serde_json::to_string_pretty(&self.to_json())?);
        } else {
            print!("{}", self.to_text());
        }
        Ok(if self.ok {
            Status::Success
        } else {
            Status::SomeFailed
        })
    }

    /// `portage-ima COMMAND`, with `--root` when the installed system
    /// checked is not `/`: a fix acts on the system doctor looked at.
    pub(crate) fn command(&self, command: &str) -> String {
        format!("portage-ima {command}{}", self.root_option)
    }

    /// The JSON document: the checks, and how many have each status.
    pub fn to_json(&self) -> ReportJson<'_> {
        let mut summary: BTreeMap<Level, usize> =
            [Level::Ok, Level::Warn, Level::Fail, Level::Skip]
                .into_iter()
                .map(|l| (l, 0))
                .collect();
        for c in &self.checks {
            *summary.entry(c.status).or_default() += 1;
        }
        ReportJson {
            version: crate::report::JSON_VERSION,
            ok: self.ok,
            checks: &self.checks,
            summary,
        }
    }

    /// Adds a check's line (multi-line texts folded into one).
    pub(crate) fn push(
        &mut self,
        check: CheckId,
        status: Level,
        finding: String,
        fix: Option<String>,
    ) {
        self.checks.push(Check {
            check,
            status,
            finding: one_line(&finding),
            fix: fix.as_deref().map(one_line),
        });
        self.ok = self.checks.iter().all(|c| c.status != Level::Fail);
    }

    /// The check found nothing wrong.
    pub(crate) fn ok(&mut self, check: CheckId, finding: impl Into<String>) {
        self.push(check, Level::Ok, finding.into(), None);
    }

    /// It works, but `fix` is worth doing.
    pub(crate) fn warn(
        &mut self,
        check: CheckId,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(check, Level::Warn, finding.into(), Some(fix.into()));
    }

    /// It will not work until `fix` is done.
    pub(crate) fn fail(
        &mut self,
        check: CheckId,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(check, Level::Fail, finding.into(), Some(fix.into()));
    }

    /// It could not be checked here; `finding` says why.
    pub(crate) fn skip(&mut self, check: CheckId, finding: impl Into<String>) {
        self.push(check, Level::Skip, finding.into(), None);
    }

    /// The text report: one line per check, the fix indented below it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tone = match c.status {
                Level::Ok => Tone::Good,
                Level::Warn => Tone::Warn,
                Level::Fail => Tone::Bad,
                Level::Skip => Tone::Plain,
            };
            out.push_str(&format!(
                "{}  {}: {}\n",
                colour::out(tone, &format!("{:<4}", c.status.label())),
                c.check,
                c.finding
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("      -> {fix}\n"));
            }
        }
        let count = |l| self.checks.iter().filter(|c| c.status == l).count();
        out.push_str(&format!(
            "portage-ima doctor: {} ok, {} warnings, {} failed, {} skipped\n",
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail),
            count(Level::Skip)
        ));
        out
    }
}

/// Folds a multi-line message (a TOML error with its source excerpt) into
/// one line, dropping the excerpt's `N | text` and `  | ^^^` gutter lines.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            let gutter = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}
