//! One function per subcommand: settings in, a report out, an exit status back.

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use ima_core::KeySet;
use std::path::Path;

use crate::cli::{Cli, DoctorArgs, GenerateWhat, HookArgs, SignArgs, VerifyArgs};
use crate::engine::{FileReport, Outcome, Runner, Tally};
use crate::escape::{escape_path, escape_text};
use crate::fs::walk as files;
use crate::progress::Progress;
use crate::settings::Settings;
pub use crate::status::Status;
use crate::verify;

pub mod doctor;
pub mod hook;
pub mod packages;

pub fn sign(config: Option<&Path>, args: &SignArgs) -> Result<Status> {
    let settings = Settings::load(config, &args.key, args.jobs)?;
    if args.files.is_empty() {
        return packages::sign(&settings, args);
    }
    let signer = settings.signer()?;
    let (found, mut reports) = files::collect(&args.files);
    let runner = Runner::new(settings.jobs)?;
    runner.cancel_on_signals()?;
    let total_bytes = found.iter().map(|f| f.size).sum();
    let progress = Progress::new(args.progress, found.len() as u64, total_bytes);
    let done = files::sign(&signer, &found, &runner, &progress, args.dry_run);
    progress.finish();
    let not_started = done.iter().filter(|r| r.is_none()).count();
    reports.extend(done.into_iter().flatten());
    print_failures(&reports);
    let tally = Tally::of(&reports);
    println!("portage-ima: {}", tally_line(&tally, args.dry_run));
    Ok(finish_status(&tally, not_started))
}

pub fn verify(config: Option<&Path>, args: &VerifyArgs) -> Result<Status> {
    let key_args = crate::cli::KeyArgs {
        backend: args.backend.clone(),
        ..Default::default()
    };
    let settings = Settings::load(config, &key_args, args.jobs)?;
    let keys = key_set(&settings, &args.cert)?;
    if args.files.is_empty() {
        return packages::verify(&settings, &keys, args);
    }
    let (found, problems) = files::collect(&args.files);
    let runner = Runner::new(settings.jobs)?;
    let mut printer = verify::Printer::stdout(args.json, true);
    for status in files::verify(&keys, &found, &runner) {
        printer.file(&status);
    }
    for p in problems {
        let reason = match p.outcome {
            Outcome::Failed(r) => r,
            other => format!("{other:?}"),
        };
        printer.file(&verify::FileStatus::error(&p.path, reason));
    }
    let failed = printer.failed() || printer.files() == 0;
    printer.finish();
    Ok(if failed {
        Status::SomeFailed
    } else {
        Status::Success
    })
}

pub fn hook(config: Option<&Path>, args: &HookArgs) -> Result<Status> {
    crate::commands::hook::run(config, args)
}

pub fn doctor(config: Option<&Path>, args: &DoctorArgs) -> Result<Status> {
    crate::commands::doctor::run(config, args)
}

pub fn generate(what: &GenerateWhat) -> Result<Status> {
    let cmd = Cli::command();
    match what {
        GenerateWhat::Man { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
        }
        GenerateWhat::Completions { shell } => {
            let mut cmd = cmd;
            clap_complete::generate(*shell, &mut cmd, "portage-ima", &mut std::io::stdout());
        }
    }
    Ok(Status::Success)
}

/// The keys `verify` checks against: the certificates given, else the
/// configured certificate, else the public half of the configured key.
pub fn key_set(settings: &Settings, certs: &[std::path::PathBuf]) -> Result<KeySet> {
    let mut keys = KeySet::new(settings.backend);
    let certs: Vec<_> = if certs.is_empty() {
        settings.cert().into_iter().collect()
    } else {
        certs.to_vec()
    };
    for path in &certs {
        let cert = ima_core::Certificate::load(path)?;
        keys.add_certificate(&cert)?;
    }
    if keys.is_empty() {
        match ima_core::KeyMaterial::load(&settings.key, None) {
            Ok(key) => {
                keys.add_key(&key)?;
            }
            Err(e) => bail!(
                "no certificate to verify with: give --cert FILE, set `cert` in ima.toml, \
                 or install {} (the key {} did not load either: {e})",
                crate::settings::DEFAULT_CERT,
                settings.key.display()
            ),
        }
    }
    Ok(keys)
}

/// One stderr line per file that failed: `portage-ima: PATH: reason`, the
/// path and the reason escaped (the hook's lines go on to `ewarn`).
pub fn print_failures(reports: &[FileReport]) {
    for r in reports {
        if let Outcome::Failed(reason) = &r.outcome {
            eprintln!("{}", failure_line(r, reason));
        }
    }
}

fn failure_line(report: &FileReport, reason: &str) -> String {
    format!(
        "portage-ima: {}: {}",
        escape_path(&report.path),
        escape_text(reason)
    )
}

/// "signed 12 files, 3 already valid, 1 failed".
pub fn tally_line(t: &Tally, dry_run: bool) -> String {
    let mut parts = Vec::new();
    if dry_run {
        parts.push(format!("would sign {}", t.would_sign));
    } else {
        parts.push(format!("signed {}", t.signed));
    }
    parts.push(format!("{} already valid", t.already_valid));
    if t.skipped > 0 {
        parts.push(format!("{} skipped", t.skipped));
    }
    parts.push(format!("{} failed", t.failed));
    format!("{} (of {} files)", parts.join(", "), t.total())
}

/// The exit status for a signing run.
pub fn finish_status(t: &Tally, not_started: usize) -> Status {
    if not_started > 0 {
        eprintln!(
            "portage-ima: interrupted: {not_started} files not processed; every file is either \
             signed or untouched, run the same command again to finish"
        );
        Status::Interrupted
    } else if t.failed > 0 {
        Status::SomeFailed
    } else {
        Status::Success
    }
}
