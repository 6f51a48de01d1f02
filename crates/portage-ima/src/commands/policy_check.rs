//! `portage-ima policy --check [POLICY]`: what the kernel would refuse
//! after the next boot with `ima_appraise=enforce` (see
//! [`crate::policy::check`]).

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::cli::PolicyArgs;
use crate::context::Context;
use crate::escape::{escape_path, escape_text};
use crate::gentoo::owners::OwnerIndex;
use crate::gentoo::vdb::Vdb;
use crate::policy::{check, parse_policy};
use crate::report::Status;
use crate::settings::{Settings, SigningScope};

pub(crate) fn run(ctx: &Context, args: &PolicyArgs) -> Result<Status> {
    let settings = Settings::load(ctx.config(), &args.key, None)?;
    let keys = crate::trust::key_set(&settings, &[])?;
    let location = ctx.location();
    let (source, text) = check::read_policy(args.policy_file.as_deref(), &location.root)
        .context("give the policy file: portage-ima policy --check FILE")?;
    let policy =
        parse_policy(&text).with_context(|| format!("{source}: the kernel would refuse it"))?;
    let started = std::time::Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.jobs.max(1))
        .build()
        .context("cannot start the worker threads")?;
    let mut report = pool.install(|| check::check(&policy, &location.root, &keys));
    let owners = Vdb::open(&location.eroot)
        .and_then(|vdb| vdb.packages())
        .map(|packages| OwnerIndex::build(packages, &location.root))
        .ok();
    let owner = |path: &Path| {
        let index = owners.as_ref()?;
        let (_, owned) = index.owner_of(path)?;
        Some(index.packages()[owned.package].cpv().to_string())
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
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
            verdict: check::Verdict,
            denied: &'a [check::Denied],
            unreadable: &'a [String],
            unmodelled: &'a [check::Unmodelled],
            summary: Summary,
        }
        for denied in &mut report.denied {
            denied.package = owner(&denied.path);
        }
        serde_json::to_writer(
            &mut out,
            &Json {
                version: crate::report::JSON_VERSION,
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
                owner(&d.path)
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
        if let Some(line) = scope_note(&settings, &report) {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "portage-ima: {source}: {}, {} covered by appraise rules, {} would be refused \
             ({:.1} s): {}",
            crate::report::count(report.files, "file"),
            report.covered,
            report.denied.len(),
            started.elapsed().as_secs_f64(),
            match report.verdict() {
                check::Verdict::Safe => "safe to boot with ima_appraise=enforce".to_string(),
                check::Verdict::NotSafe =>
                    "NOT safe to boot with ima_appraise=enforce: sign them (portage-ima sign), \
                     or exempt them in the policy"
                        .to_string(),
                check::Verdict::CannotTell => cannot_tell(&report),
            }
        )?;
    }
    out.flush()?;
    Ok(if report.safe() {
        Status::Success
    } else {
        Status::SomeFailed
    })
}

/// Why the check cannot call the policy safe, though it found nothing refused.
fn cannot_tell(report: &check::CheckReport) -> String {
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
fn scope_note(settings: &Settings, report: &check::CheckReport) -> Option<String> {
    if settings.scope != SigningScope::Policy {
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
             with portage-ima sign --all once this policy is loaded, or set scope = \"all\"",
            crate::report::count(skipped, "file")
        )
    })
}
