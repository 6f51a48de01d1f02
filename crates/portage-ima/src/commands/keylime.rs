//! `portage-ima keylime sync|check|push`: the runtime policy the hook keeps
//! (see [`crate::keylime::live`]), judged ([`crate::keylime::check`]) and
//! sent ([`crate::keylime::queue`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::cli::{KeyArgs, KeylimeCommand};
use crate::context::Context;
use crate::escape::escape_text;
use crate::gentoo::owners::OwnerIndex;
use crate::gentoo::vdb::Vdb;
use crate::keylime::check::Rules;
use crate::keylime::live::{Change, Keeper, PolicyFiles, Updated};
use crate::keylime::push::Verifier;
use crate::keylime::queue::{self, Pushed};
use crate::plan::Location;
use crate::report::{self, Status};
use crate::settings::{KeylimeConfig, Settings};

/// The kernel's measurement list.
const MEASUREMENTS: &str = "/sys/kernel/security/ima/ascii_runtime_measurements";

pub(crate) fn run(ctx: &Context, what: &KeylimeCommand) -> Result<Status> {
    let settings = Settings::load(ctx.config(), &KeyArgs::default(), None)?;
    match what {
        KeylimeCommand::Sync { push, .. } => {
            let (keylime, location) = configured(ctx, &settings)?;
            let keeper = Keeper::open(&settings, &keylime, &location)?;
            let updated = keeper.update(&Change {
                rebuild: true,
                ..Change::default()
            })?;
            print_updated(&keeper.files, &updated);
            if *push {
                push_configured(&keylime, &keeper.files, false)?;
            }
            Ok(Status::Success)
        }
        KeylimeCommand::Update {
            refresh, remove, ..
        } => {
            let (keylime, location) = configured(ctx, &settings)?;
            let keeper = Keeper::open(&settings, &keylime, &location)?;
            let updated = keeper.update(&Change {
                refresh: refresh.clone(),
                remove: remove.clone(),
                rebuild: false,
            })?;
            print_updated(&keeper.files, &updated);
            Ok(Status::Success)
        }
        KeylimeCommand::Push {
            force, after_pid, ..
        } => {
            let (keylime, location) = configured(ctx, &settings)?;
            let files = PolicyFiles::new(keylime.policy_path(&location.eroot));
            let verifier = verifier(&keylime)?;
            let pushed = match after_pid {
                Some(pid) => queue::wait_and_push(&files, &verifier, *pid)?,
                None => Some(queue::push_now(&files, &verifier, *force)?),
            };
            print_pushed(&verifier, pushed.as_ref());
            Ok(Status::Success)
        }
        KeylimeCommand::Check {
            measurements,
            policy,
            ..
        } => check(
            &settings,
            measurements.as_deref(),
            policy.as_deref(),
            &ctx.location(),
        ),
    }
}

/// `[keylime]` and where the system is; an error without `[keylime]`.
fn configured(ctx: &Context, settings: &Settings) -> Result<(KeylimeConfig, Location)> {
    let Some(keylime) = settings.keylime.clone() else {
        bail!(
            "no [keylime] table in {}: add one (see docs/keylime.md), e.g.\n  [keylime]\n  \
             mode = \"digests\"",
            settings
                .source
                .as_deref()
                .unwrap_or(ctx.config().path())
                .display()
        );
    };
    Ok((keylime, ctx.location()))
}

fn verifier(keylime: &KeylimeConfig) -> Result<Verifier> {
    Verifier::from_config(keylime)?.context(
        "no verifier: set [keylime] verifier = \"https://HOST:8881\" (with ca, client_cert, client_key)",
    )
}

fn push_configured(keylime: &KeylimeConfig, files: &PolicyFiles, force: bool) -> Result<()> {
    let verifier = verifier(keylime)?;
    let pushed = queue::push_now(files, &verifier, force)?;
    print_pushed(&verifier, Some(&pushed));
    Ok(())
}

fn print_updated(files: &PolicyFiles, updated: &Updated) {
    for line in updated.left_out_lines() {
        report::print_problem(&line);
    }
    report::print_summary(&updated.summary(files));
}

fn print_pushed(verifier: &Verifier, pushed: Option<&Pushed>) {
    let line = match pushed {
        None => "another push is already waiting for an emerge".to_string(),
        Some(Pushed::UpToDate) => format!(
            "the verifier {}:{} already holds this policy as {:?}",
            verifier.host, verifier.port, verifier.name
        ),
        Some(Pushed::Sent { bytes }) => format!(
            "policy sent to the verifier {}:{} as {:?} ({bytes} bytes)",
            verifier.host, verifier.port, verifier.name
        ),
    };
    report::print_summary(&line);
}

fn check(
    settings: &Settings,
    measurements: Option<&Path>,
    policy: Option<&Path>,
    location: &Location,
) -> Result<Status> {
    let policy: PathBuf = match (policy, &settings.keylime) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(k)) => k.policy_path(&location.eroot),
        (None, None) => bail!("give --policy FILE, or set [keylime] in ima.toml"),
    };
    let json =
        std::fs::read(&policy).with_context(|| format!("cannot read {}", policy.display()))?;
    let rules = Rules::new(&json, settings.backend)
        .with_context(|| format!("policy {}", policy.display()))?;
    let list_path = measurements.unwrap_or(Path::new(MEASUREMENTS));
    let list = std::fs::read_to_string(list_path)
        .with_context(|| format!("cannot read the measurement list {}", list_path.display()))?;
    let verdict = rules.judge(&list);
    if !verdict.failures.is_empty() {
        let index = Vdb::open(&location.eroot)
            .and_then(|v| v.packages())
            .map(|p| OwnerIndex::build(p, &location.root))
            .ok();
        for (path, failure) in &verdict.failures {
            let owner = index
                .as_ref()
                .and_then(|i| {
                    i.owner_of(Path::new(path))
                        .map(|(_, o)| i.packages()[o.package].cpv().to_string())
                })
                .unwrap_or_else(|| "no package".into());
            report::print_failure(
                Path::new(path),
                &format!("({owner}) {}", escape_text(&failure.to_string())),
            );
        }
    }
    report::print_summary(&format!(
        "keylime check: {} files measured, {} fail, {} excluded, {} by signature, {} not judged (boot_aggregate, ima-buf)",
        verdict.checked,
        verdict.failures.len(),
        verdict.excluded,
        verdict.by_signature,
        verdict.skipped
    ));
    Ok(if verdict.failures.is_empty() {
        Status::Success
    } else {
        Status::SomeFailed
    })
}
