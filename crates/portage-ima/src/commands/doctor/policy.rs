//! The IMA policy against Portage: whether a rule of the policy doctor read
//! (the kernel check) blocks builds, merges or config files here, by
//! [`crate::policy::review`], with the generator's reading of this setup.

use std::path::Path;

use super::kernel::Kernel;
use super::{CheckId, Report};
use crate::gentoo::portage_vars::PortageVars;
use crate::plan::ConfigFiles;
use crate::policy::review::{review, Machine, Verdict};
use crate::policy::setup::{from_vars, portage_ids, FsInfo};
use crate::settings::Settings;

/// The checks, in report order.
pub(super) const CHECKS: &[CheckId] = &[
    CheckId::PolicyBuilds,
    CheckId::PolicyMerges,
    CheckId::PolicyConfig,
];

pub(super) fn check_policy(
    r: &mut Report,
    s: Option<&Settings>,
    root: &Path,
    kernel: &Kernel,
    vars: PortageVars,
) {
    let Some(loaded) = &kernel.policy else {
        for &c in CHECKS {
            r.skip(c, "no policy to review (see the policy check)");
        }
        return;
    };
    // Portage's variables as the portage checks read them (one portageq run).
    let setup = match from_vars(vars, root) {
        Ok(setup) => setup,
        Err(e) => {
            for &c in CHECKS {
                r.skip(
                    c,
                    format!(
                        "cannot read the Portage setup: {}",
                        crate::report::status::error_line(&e)
                    ),
                );
            }
            return;
        }
    };
    let fs_of = |path: &Path| {
        FsInfo::of(path)
            .map(|f| f.file_system())
            .unwrap_or_default()
    };
    let (portage_uid, portage_gid) = portage_ids(root);
    let machine = Machine {
        build_fs: fs_of(&setup.build_dir),
        system_fs: fs_of(root),
        setup,
        portage_uid,
        portage_gid,
        signs_config_files: s.is_some_and(|s| s.config_files == ConfigFiles::Sign),
    };
    let found = review(&loaded.policy, &machine);
    // The policy check said which file was read and why; its path is enough here.
    let source = loaded.path.display();
    for (check, verdict) in [
        (CheckId::PolicyBuilds, found.builds),
        (CheckId::PolicyMerges, found.merges),
        (CheckId::PolicyConfig, found.config_files),
    ] {
        match verdict {
            Verdict::Ok(finding) => r.ok(check, finding),
            Verdict::Warn { finding, fix } => r.warn(check, format!("{source}: {finding}"), fix),
            Verdict::Fail { finding, fix } => r.fail(check, format!("{source}: {finding}"), fix),
        }
    }
}
