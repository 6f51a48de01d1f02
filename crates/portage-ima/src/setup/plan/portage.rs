//! Portage's side of setup: ima.toml names the key and certificate, the
//! bashrc line runs the hook in every merge, and, when the merge copies
//! (PORTAGE_TMPDIR on another filesystem), make.conf keeps `security.ima`
//! through it (FEATURES=xattr, PORTAGE_XATTR_EXCLUDE without it).

use std::path::Path;

use crate::setup::Machine;

use super::{current, write, Action, Step, StepKind};

/// Where the bashrc line points (the ebuild installs it).
pub const SNIPPET: &str = "/usr/share/portage-ima/portage-ima.bashrc";
/// The bashrc line: guarded, so that Portage stays quiet should the
/// package be removed.
pub const BASHRC_LINE: &str = "[[ -r /usr/share/portage-ima/portage-ima.bashrc ]] && source /usr/share/portage-ima/portage-ima.bashrc";
/// The make.conf block's first and last lines.
pub const BLOCK_BEGIN: &str = "# BEGIN portage-ima setup";
/// See [`BLOCK_BEGIN`].
pub const BLOCK_END: &str = "# END portage-ima setup";
/// The file of its own when make.conf is a directory (read last: Portage
/// reads the directory's files in name order).
pub const MAKE_CONF_FILE: &str = "/etc/portage/make.conf/zz-portage-ima.conf";

/// The ima.toml step: the key and certificate it does not name yet, on top.
pub(super) fn settings_step(machine: &Machine, key: &str, cert: &Path) -> Step {
    let file = crate::settings::CONFIG_FILE;
    let mut step = Step::new(
        StepKind::Settings,
        format!("Name the key and certificate in /{file}"),
        "the hook and every command read them from there",
    );
    let c = &machine.configured;
    let mut lines = String::new();
    if c.key.is_none() {
        lines += &format!("key = {}\n", toml::Value::String(key.to_string()));
    }
    if c.cert.is_none() {
        lines += &format!(
            "cert = {}\n",
            toml::Value::String(cert.display().to_string())
        );
    }
    if lines.is_empty() {
        step.reason = "it already names both".into();
        return step;
    }
    let header =
        "# portage-ima setup: the signing key and its certificate (every setting: ima.toml(5))\n";
    let old = current(machine, &format!("/{file}")).unwrap_or_default();
    // Top-level keys go before any [table].
    let content = if old.is_empty() {
        format!("{header}{lines}")
    } else {
        format!("{header}{lines}\n{old}")
    };
    step.actions.push(Action::Write {
        path: format!("/{file}").into(),
        content,
        shown: lines,
        mode: 0o644,
    });
    step
}

/// The bashrc step: the guarded line that sources the snippet.
pub(super) fn hook_step(machine: &Machine) -> Step {
    let mut step = Step::new(
        StepKind::Hook,
        "Run the hook from /etc/portage/bashrc",
        "Portage sources it in every phase; the snippet runs `portage-ima hook` in preinst and \
         postinst (guarded: Portage stays quiet should the package be removed)",
    );
    let old = current(machine, "/etc/portage/bashrc").unwrap_or_default();
    if old.contains("portage-ima.bashrc") {
        step.reason = "it already sources portage-ima.bashrc".into();
        return step;
    }
    let mut content = old.clone();
    if !content.is_empty() && !content.ends_with('\n') {
        content.push('\n');
    }
    content += BASHRC_LINE;
    content.push('\n');
    step.actions.push(Action::Write {
        path: "/etc/portage/bashrc".into(),
        content,
        shown: format!("{BASHRC_LINE}\n"),
        mode: 0o644,
    });
    step
}

/// The make.conf step, only when the merge copies and drops `security.ima`.
pub(super) fn make_conf_step(machine: &Machine) -> Option<Step> {
    let p = &machine.portage;
    if !p.merge_copies || p.xattr_kept {
        return None;
    }
    let block = format!(
        "{BLOCK_BEGIN}\n\
         # PORTAGE_TMPDIR ({}) is on another filesystem, so the merge copies: keep\n\
         # security.ima (Portage's exclude list in effect, without it)\n\
         {}\n{}\n{BLOCK_END}\n",
        p.tmpdir,
        crate::failsafe::FEATURES_LINE,
        crate::failsafe::xattr_exclude_line(&p.xattr_exclude)
    );
    let mut step = Step::new(
        StepKind::MakeConf,
        "Keep signatures through the merge: FEATURES=xattr and PORTAGE_XATTR_EXCLUDE",
        format!(
            "the build directory is {}; Portage then copies security.ima only with \
             FEATURES=xattr and security.ima out of PORTAGE_XATTR_EXCLUDE (in its default list)",
            p.build_fs
        ),
    );
    if p.make_conf_is_dir {
        step.actions.push(write(MAKE_CONF_FILE, block, 0o644));
        step.reason += "; make.conf is a directory: a file of its own, named to be read last";
        return Some(step);
    }
    let old = current(machine, "/etc/portage/make.conf").unwrap_or_default();
    let content = match (old.find(BLOCK_BEGIN), old.find(BLOCK_END)) {
        (Some(begin), Some(end)) if end > begin => {
            let after = old[end..].find('\n').map_or(old.len(), |n| end + n + 1);
            format!("{}{block}{}", &old[..begin], &old[after..])
        }
        _ => {
            let mut c = old.clone();
            if !c.is_empty() && !c.ends_with('\n') {
                c.push('\n');
            }
            c + &block
        }
    };
    step.actions.push(Action::Write {
        path: "/etc/portage/make.conf".into(),
        content,
        shown: block,
        mode: 0o644,
    });
    Some(step)
}
