//! `[keylime]`: is the runtime policy as current as the vdb, and does the
//! verifier hold it? (See [`crate::keylime`].)

use std::path::Path;

use super::{CheckId, Report};
use crate::gentoo::vdb::Vdb;
use crate::keylime::live::PolicyFiles;
use crate::keylime::push::Verifier;
use crate::settings::Settings;

pub(super) fn check_keylime(r: &mut Report, settings: Option<&Settings>, root: &Path) {
    let Some(keylime) = settings.and_then(|s| s.keylime.as_ref()) else {
        r.skip(CheckId::KeylimePolicy, "no [keylime] in ima.toml");
        r.skip(CheckId::KeylimeVerifier, "no [keylime] in ima.toml");
        return;
    };
    let files = PolicyFiles::new(keylime.policy_path(root));
    let policy_ok = check_policy(r, &files, root);
    check_verifier(r, keylime, &files, policy_ok);
}

fn check_policy(r: &mut Report, files: &PolicyFiles, root: &Path) -> bool {
    let vdb = match Vdb::open(root) {
        Ok(v) => v,
        Err(e) => {
            r.skip(CheckId::KeylimePolicy, format!("no vdb: {e}"));
            return false;
        }
    };
    match files.staleness(&vdb) {
        Err(e) => {
            r.fail(
                CheckId::KeylimePolicy,
                format!("{e:#}"),
                format!(
                    "run `{}` to build it from the vdb",
                    r.command("keylime sync")
                ),
            );
            false
        }
        Ok(s) if s.missing.is_empty() && s.gone.is_empty() => {
            r.ok(
                CheckId::KeylimePolicy,
                format!(
                    "{} covers the {} installed packages",
                    files.policy.display(),
                    s.packages
                ),
            );
            true
        }
        Ok(s) => {
            let list = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            r.fail(
                CheckId::KeylimePolicy,
                format!(
                    "{} is behind the vdb: {} installed packages not in it ({}), {} in it no longer installed ({})",
                    files.policy.display(),
                    s.missing.len(),
                    list(&s.missing),
                    s.gone.len(),
                    list(&s.gone)
                ),
                format!(
                    "run `{}` (the hook catches up at the next merge too)",
                    r.command("keylime sync")
                ),
            );
            false
        }
    }
}

fn check_verifier(
    r: &mut Report,
    keylime: &crate::settings::KeylimeConfig,
    files: &PolicyFiles,
    policy_ok: bool,
) {
    let verifier = match Verifier::from_config(keylime) {
        Ok(Some(v)) => v,
        Ok(None) => {
            r.skip(
                CheckId::KeylimeVerifier,
                "no verifier in [keylime]: the policy is not pushed",
            );
            return;
        }
        Err(e) => {
            r.fail(
                CheckId::KeylimeVerifier,
                format!("{e:#}"),
                "fix [keylime] in ima.toml",
            );
            return;
        }
    };
    let at = format!("{}:{}", verifier.host, verifier.port);
    let held = match verifier.fetch() {
        Ok(h) => h,
        Err(e) => {
            r.warn(
                CheckId::KeylimeVerifier,
                format!("{e:#}"),
                format!(
                    "merges go on; once the verifier at {at} answers, `{}` (or the next \
                     emerge) sends the policy",
                    r.command("keylime push")
                ),
            );
            return;
        }
    };
    let local = std::fs::read(&files.policy)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let held = held.and_then(|h| serde_json::from_str::<serde_json::Value>(&h).ok());
    match (held, local) {
        (None, _) => r.fail(
            CheckId::KeylimeVerifier,
            format!(
                "the verifier at {at} has no runtime policy named {:?}",
                verifier.name
            ),
            format!("run `{}`", r.command("keylime push")),
        ),
        (Some(h), Some(l)) if h == l && policy_ok => r.ok(
            CheckId::KeylimeVerifier,
            format!(
                "the verifier at {at} holds the current policy as {:?}",
                verifier.name
            ),
        ),
        (Some(_), _) => r.fail(
            CheckId::KeylimeVerifier,
            format!(
                "the verifier at {at} holds an older policy as {:?}{}",
                verifier.name,
                last_push_line(files)
            ),
            format!(
                "run `{}` (after `keylime sync` if the policy is behind)",
                r.command("keylime push")
            ),
        ),
    }
}

/// The last line the detached pusher wrote, if any.
fn last_push_line(files: &PolicyFiles) -> String {
    std::fs::read_to_string(files.push_log())
        .ok()
        .and_then(|t| {
            t.lines()
                .last()
                .map(|l| format!(" (last push: {})", l.trim()))
        })
        .unwrap_or_default()
}
