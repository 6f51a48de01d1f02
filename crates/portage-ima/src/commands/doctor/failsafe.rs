//! Fail-safe merges ([`crate::failsafe`]): whether the hook will stop
//! merges on this machine, decided as the hook decides it in preinst: the
//! kernel's enforcement (`enforce`, [`crate::policy::enforcement`]) and
//! whether the merge drops the signatures made before it (`portage.rs`).

use std::path::Path;

use super::{CheckId, Report};
use crate::failsafe::{judge, Drop, Verdict};
use crate::policy::enforcement;
use crate::settings::Settings;

/// `drop`: why merges here leave new files unsigned while live, if they do.
pub(super) fn check_failsafe(
    r: &mut Report,
    s: Option<&Settings>,
    root: &Path,
    drop: Option<&Drop>,
) {
    let Some(s) = s else {
        r.skip(CheckId::Failsafe, "settings did not load");
        return;
    };
    let enforcement = enforcement::decide(s.enforce, root, root);
    match judge("every package", &enforcement, drop, s.allow_unsigned_window) {
        Verdict::Go(reason) => r.ok(CheckId::Failsafe, format!("merges go on: {reason}")),
        Verdict::Window(message) => r.warn(
            CheckId::Failsafe,
            message,
            match drop {
                Some(d) => d.fix.clone(),
                None => String::new(),
            },
        ),
        Verdict::Stop(message) => r.fail(
            CheckId::Failsafe,
            format!("the hook will stop merges: {message}"),
            match drop {
                Some(d) => d.fix.clone(),
                None => String::new(),
            },
        ),
    }
}
