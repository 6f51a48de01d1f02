//! `portage-ima policy`: an IMA policy fitted to this machine's Portage
//! setup (see [`crate::policy::generate`] for what it decides and why),
//! printed or written atomically to a file, optionally signed.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use ima_core::SignOptions;

use crate::cli::{AppraiseScope, PolicyArgs};
use crate::context::Context;
use crate::fs::atomic::Durability;
use crate::policy::{self, Request, Scope};
use crate::report::Status;
use crate::settings::Settings;

/// `policy` (writing one); `policy --check` is [`super::policy_check`],
/// chosen in `commands/mod.rs`.
pub(crate) fn run(ctx: &Context, args: &PolicyArgs) -> Result<Status> {
    let root = ctx.location().root;
    if !root.is_dir() {
        bail!(
            "{}: not a directory; give the root of the system the policy is for with --root",
            root.display()
        );
    }
    let setup = policy::setup::discover(&root, ctx.vars())?;
    let request = Request {
        scope: match args.appraise {
            AppraiseScope::RootExec => Scope::RootExec,
            AppraiseScope::Exec => Scope::Exec,
            AppraiseScope::ExecMmap => Scope::ExecMmap,
        },
        measure: args.measure,
        require_signed_policy: args.require_signed_policy,
        observe: args.observe,
    };
    let generated = policy::generate(&setup, &request)?;
    for warning in &generated.warnings {
        log::warn!("{warning}");
    }
    for wider in &generated.wider {
        log::warn!("exemption wider than the build directory: {wider}");
    }
    report_failsafe(ctx, &setup, &root);
    let text = generated.policy.to_string();
    match &args.output {
        None => crate::report::print_document(text.as_bytes())?,
        Some(path) => {
            // Load the signer first: a key problem leaves the old file alone.
            let signer = if args.sign {
                Some(Settings::load(ctx.config(), &args.key, None)?.signer()?)
            } else {
                None
            };
            write_policy(path, text.as_bytes(), signer.as_ref())?;
            log::info!(
                "wrote {}{}",
                path.display(),
                if args.sign { ", signed" } else { "" }
            );
        }
    }
    Ok(Status::Success)
}

/// What the hook will do with merges in this setup (fail-safe merges,
/// [`crate::failsafe`]), as `doctor` says it: a copying merge without
/// FEATURES=xattr under an enforcing kernel is stopped.
fn report_failsafe(ctx: &Context, setup: &policy::Setup, root: &Path) {
    use crate::failsafe::{judge, Drop, Verdict};
    use crate::policy::generate::BuildFs;
    let copies = !matches!(setup.build_fs, BuildFs::Shared { .. });
    if !copies || setup.xattr {
        return;
    }
    let patterns =
        crate::gentoo::portage_vars::portage_vars(root, ctx.vars()).xattr_exclude_patterns();
    let drop = Drop::copy("the merge copies files and drops security.ima", &patterns);
    let (enforce, allow) = Settings::load(ctx.config(), &Default::default(), None)
        .map(|s| (s.enforce, s.allow_unsigned_window))
        .unwrap_or_default();
    let enforcement = crate::policy::enforcement::decide(enforce, root, root);
    match judge("every package", &enforcement, Some(&drop), allow) {
        Verdict::Stop(message) => log::warn!("the hook will stop merges: {message}"),
        Verdict::Window(message) => log::warn!("{message}"),
        Verdict::Go(reason) => log::info!("merges go on: {reason}"),
    }
}

/// Replaces `path` with `content`, signed through the new file's own
/// descriptor when asked, before the rename: a reader (the boot) sees the
/// old file or the new one, signature included, never a part.
fn write_policy(path: &Path, content: &[u8], signer: Option<&ima_core::ImaSigner>) -> Result<()> {
    crate::fs::atomic::replace(path, &[content], Durability::Full, |file, tmp| {
        let Some(signer) = signer else {
            return Ok(());
        };
        let opts = SignOptions {
            expect_md5: None,
            keep_valid: false,
            dry_run: false,
        };
        signer.sign_file(file, &opts).with_context(|| {
            format!(
                "cannot sign {} (security.ima needs root and a filesystem with xattrs); \
                 {} was left as it was",
                tmp.display(),
                path.display()
            )
        })?;
        Ok(())
    })
}
