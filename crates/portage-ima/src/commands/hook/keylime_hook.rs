//! The hook's part in keeping the Keylime runtime policy (`[keylime]` in
//! ima.toml; see [`crate::keylime::live`] and [`crate::keylime::queue`]):
//! postinst puts the merged package's digests in, postrm takes the
//! removed (or replaced) version's out, and the policy is pushed once the
//! emerge ends. Nothing here can fail a merge: problems are warnings, and
//! the next update or push catches up.

use anyhow::Result;

use crate::cli::KeyArgs;
use crate::context::Context;
use crate::keylime::live::{Change, Keeper};
use crate::keylime::push::Verifier;
use crate::keylime::queue::{self, Pushed};
use crate::report;
use crate::settings::Settings;

/// Updates the policy for `phase` (postinst or postrm) of CATEGORY/PF.
pub(super) fn update(ctx: &Context, phase: &str) {
    let outcome = std::panic::catch_unwind(|| run(ctx, phase));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => report::print_problem(&format!(
            "keylime: the runtime policy was not updated: {} (the next merge, or \
             `portage-ima keylime sync{}`, catches up)",
            report::error_line(&err),
            ctx.root_option()
        )),
        Err(_) => {
            report::print_problem("keylime: the policy update crashed (a bug: please report it)")
        }
    }
}

fn run(ctx: &Context, phase: &str) -> Result<()> {
    let settings = Settings::load(ctx.config(), &KeyArgs::default(), None)?;
    let Some(keylime) = settings.keylime.clone() else {
        return Ok(());
    };
    let var = ctx.lookup();
    let cpv = match (var("CATEGORY"), var("PF")) {
        (Some(c), Some(pf)) if !c.is_empty() && !pf.is_empty() => format!("{c}/{pf}"),
        _ => anyhow::bail!("CATEGORY and PF are not set: not run by Portage?"),
    };
    let location = ctx.location();
    let keeper = Keeper::open(&settings, &keylime, &location)?;
    let change = match phase {
        "postrm" => Change {
            remove: Some(cpv),
            ..Change::default()
        },
        _ => Change {
            refresh: Some(cpv),
            ..Change::default()
        },
    };
    let updated = keeper.update(&change)?;
    for line in updated.left_out_lines() {
        report::print_problem(&line);
    }
    report::print_summary(&updated.summary(&keeper.files));
    let Some(verifier) = Verifier::from_config(&keylime)? else {
        return Ok(());
    };
    let exe = std::env::current_exe()?;
    match queue::schedule(&keeper.files, &verifier, &exe, ctx.config().explicit()) {
        Ok(Some(Pushed::Sent { .. })) => {
            report::print_summary(&format!(
                "keylime: policy sent to {}:{}",
                verifier.host, verifier.port
            ));
        }
        Ok(_) => {}
        Err(err) => report::print_problem(&format!(
            "keylime: the policy was not sent to the verifier: {} (the next push catches up)",
            report::error_line(&err)
        )),
    }
    Ok(())
}
