//! The boots still to do after the steps: log mode then enforce mode on
//! the kernel command line (each with where the line goes), or under
//! Secure Boot the observe policy then the enforcing one.

use crate::gentoo::system::Initramfs;
use crate::kernel::secure_boot::SecureBoot;
use crate::setup::keyring::{Choice, KeyringPath};
use crate::setup::Machine;

use super::{policy_path, Boot, CmdlinePlace, CA_CERT_DER, ENFORCE_SUFFIX};

/// Where a command-line parameter goes, for each boot loader file found.
fn places(machine: &Machine, parameter: &str) -> Vec<CmdlinePlace> {
    let with = |current: &str| {
        let mut words: Vec<&str> = current
            .split_whitespace()
            .filter(|w| !w.starts_with("ima_appraise="))
            .collect();
        words.push(parameter);
        words.join(" ")
    };
    if machine.cmdline_files.is_empty() {
        return vec![CmdlinePlace {
            file: "your boot loader's kernel command line".into(),
            line: parameter.to_string(),
            then: None,
        }];
    }
    machine
        .cmdline_files
        .iter()
        .map(|f| CmdlinePlace {
            file: f.path.display().to_string(),
            line: match &f.variable {
                Some(v) => format!("{v}=\"{}\"", with(&f.current)),
                None => with(&f.current),
            },
            then: Some(f.then.clone()),
        })
        .collect()
}

/// The boots still to do, with what goes before and after each.
pub(super) fn boots(machine: &Machine, choice: &Choice, rebuild: Option<String>) -> Vec<Boot> {
    let policy = policy_path(machine);
    let mut before = Vec::new();
    if let Some(r) = rebuild {
        before.push(r);
    }
    if choice.path == KeyringPath::MachineKeyring {
        before.push(format!(
            "mokutil --import {CA_CERT_DER}, then enroll it in MokManager at this boot"
        ));
    }
    if machine.initramfs == Initramfs::Dracut {
        before.push("dracut --force --kver \"$(uname -r)\"".into());
    }
    before.push("portage-ima verify --all   (everything installed verifies)".into());
    if machine.secure_boot == SecureBoot::Enabled {
        vec![
            Boot {
                title: "Observe: the observe policy, nothing refused (Secure Boot ignores \
                        ima_appraise=, so no command-line change)"
                    .into(),
                before,
                parameter: None,
                places: Vec::new(),
                after: vec![
                    "use the machine a while, then: portage-ima audit --measurements".into(),
                    "sign what it lists (portage-ima audit --fix), until it lists nothing".into(),
                    format!("cp {policy}{ENFORCE_SUFFIX} {policy}"),
                ],
            },
            Boot {
                title: "Enforce: the enforcing policy (Secure Boot: always enforce mode)".into(),
                before: Vec::new(),
                parameter: None,
                places: Vec::new(),
                after: vec!["portage-ima doctor".into()],
            },
        ]
    } else {
        vec![
            Boot {
                title: "Log mode: the policy is loaded, refusals are only logged".into(),
                before,
                parameter: Some("ima_appraise=log".into()),
                places: places(machine, "ima_appraise=log"),
                after: vec![
                    "use the machine a while, then: portage-ima audit".into(),
                    "sign what it lists (portage-ima audit --fix), until it lists nothing".into(),
                ],
            },
            Boot {
                title: "Enforce mode".into(),
                before: Vec::new(),
                parameter: Some("ima_appraise=enforce".into()),
                places: places(machine, "ima_appraise=enforce"),
                after: vec!["portage-ima doctor".into()],
            },
        ]
    }
}
