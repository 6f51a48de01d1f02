//! `portage-ima audit`: the files the kernel refused (or measured), each
//! with its owning package and what it is now (see [`crate::audit`]).
//!
//! Where the records come from: `--log FILE` (any number; `-` is stdin),
//! else the running kernel's log, `/dev/kmsg`, and `/var/log/audit/audit.log`
//! when it exists (with auditd running, the kernel hands its audit records
//! to auditd and no longer prints them). The IMA keyring is read only when
//! the running system's own log is audited (no `--log`, the root `/`):
//! a log from another machine is judged by the certificates alone.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::audit::{self, Class, Finding, KernelKeys, Sightings};
use crate::cli::AuditArgs;
use crate::context::Context;
use crate::escape::escape_text;
use crate::fs::rootfs::RootDir;
use crate::gentoo::owners::OwnerIndex;
use crate::gentoo::vdb::Vdb;
use crate::kernel::kmsg::{self, KMSG};
use crate::kernel::{audit_record, audit_rule, measurements, BadLine};
use crate::report::{self, Status};
use crate::settings::Settings;

/// How many unreadable lines are shown as warnings.
const SHOWN_PROBLEMS: usize = 10;
const AUDIT_LOG: &str = "/var/log/audit/audit.log";

/// A line of an input that could not be read, with the input's name.
#[derive(Debug, Serialize)]
struct InputProblem {
    source: String,
    #[serde(flatten)]
    bad: BadLine,
}

pub(crate) fn run(ctx: &Context, args: &AuditArgs) -> Result<Status> {
    let settings = Settings::load(ctx.config(), &args.key, None)?;
    let certs = crate::trust::key_set(&settings, &[])?;
    let mut sightings = Sightings::default();
    let mut problems = Vec::new();
    for (source, data) in read_logs(&args.log)? {
        let log = audit_record::parse(&data);
        problems.extend(log.bad.iter().map(|bad| InputProblem {
            source: source.clone(),
            bad: bad.clone(),
        }));
        sightings.add_log(&log);
        let rules = audit_rule::parse(&data);
        problems.extend(rules.bad.iter().map(|bad| InputProblem {
            source: source.clone(),
            bad: bad.clone(),
        }));
        sightings.add_rule_log(&rules);
    }
    if let Some(file) = &args.measurements {
        let data = read_input(file)?;
        let list = measurements::parse(&data);
        problems.extend(list.bad.iter().map(|bad| InputProblem {
            source: file.display().to_string(),
            bad: bad.clone(),
        }));
        sightings.add_measurements(&list);
    }
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        log::warn!(
            "{} line {}: {}; line passed over",
            escape_text(&p.source),
            p.bad.line,
            escape_text(&p.bad.reason)
        );
    }
    if problems.len() > SHOWN_PROBLEMS {
        log::warn!(
            "{} more lines passed over (--json lists them all)",
            problems.len() - SHOWN_PROBLEMS
        );
    }

    let location = ctx.location();
    let vdb = Vdb::open(&location.eroot)?;
    let packages = vdb
        .packages()
        .with_context(|| format!("cannot list {}", vdb.path().display()))?;
    let index = OwnerIndex::build(packages, &location.root);
    for problem in index.problems() {
        log::warn!("{}", escape_text(problem));
    }
    let root = RootDir::open(&location.root)?;
    let keyring = (args.log.is_empty() && location.root == Path::new("/"))
        .then(crate::kernel::keyring::ima_keyring_key_ids)
        .flatten();
    let keys = KernelKeys {
        certs: &certs,
        keyring: keyring.as_ref().map(|(name, ids)| (*name, ids.as_slice())),
    };
    let mut findings = audit::classify(&sightings, &index, &root, &keys);
    if args.fix {
        let signer = settings.signer()?;
        audit::fix(&mut findings, &signer, &root);
    }
    // By package, the files no package owns last; within one, by class.
    findings.sort_by(|a, b| {
        let key = |f: &Finding| {
            (
                f.package.is_none(),
                f.package.clone(),
                f.class,
                f.path.clone(),
            )
        };
        key(a).cmp(&key(b))
    });

    let observed = sightings.observed().then(|| {
        let files = sightings.files.values();
        files.filter(|s| s.observed()).count()
    });
    report::audit::print(
        &report::audit::Audited {
            findings: &findings,
            unreadable: &problems,
            keyring: keyring.as_ref().map(|(name, _)| *name),
            observed,
            fixed: args.fix,
            root: &location.root,
        },
        args.json,
    )?;
    let attention = findings.iter().any(|f| f.class != Class::Valid);
    Ok(if attention {
        Status::SomeFailed
    } else {
        Status::Success
    })
}

/// The logs to read, each with the name it is reported under.
fn read_logs(logs: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    if !logs.is_empty() {
        return logs
            .iter()
            .map(|p| Ok((p.display().to_string(), read_input(p)?)))
            .collect();
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    match kmsg::read() {
        Ok(data) => found.push((KMSG.to_string(), data)),
        Err(e) => errors.push(format!("{KMSG}: {e}")),
    }
    match std::fs::read(AUDIT_LOG) {
        Ok(data) => found.push((AUDIT_LOG.to_string(), data)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("{AUDIT_LOG}: {e}")),
    }
    if found.is_empty() {
        bail!(
            "cannot read the kernel's log ({}): run as root, or give --log FILE \
             (dmesg output, /var/log/audit/audit.log, or - for stdin)",
            errors.join("; ")
        );
    }
    Ok(found)
}

/// A file given on the command line, `-` being stdin.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("cannot read stdin")?;
    } else {
        data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(data)
}
