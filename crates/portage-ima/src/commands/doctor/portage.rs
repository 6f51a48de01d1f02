//! Portage's side: the bashrc hook, and whether `security.ima` set before
//! the merge survives it (FEATURES, PORTAGE_XATTR_EXCLUDE, PORTAGE_TMPDIR),
//! decided with the hook's own rules (gentoo::env, gentoo::make_conf).

use std::fs;
use std::path::Path;

use ima_core::IMA_XATTR;

use super::{CheckId, Report};
use crate::failsafe::Drop;
use crate::gentoo::env::{renames_between, MountId, XattrCopy};
use crate::gentoo::fnmatch::fnmatch;
use crate::gentoo::portage_vars::{portage_vars, PortageVars};
use crate::settings::{Premerge, Settings};

/// Where the ebuild installs the bashrc snippet (under EPREFIX).
const SNIPPET: &str = "/usr/share/portage-ima/portage-ima.bashrc";
/// The snippet's file name, which a bashrc line must source.
const SNIPPET_NAME: &str = "portage-ima.bashrc";

/// Portage's side: the bashrc hook, the xattr settings, PORTAGE_TMPDIR.
/// Returns Portage's variables for the checks that follow.
pub(super) fn check_portage(
    r: &mut Report,
    s: Option<&Settings>,
    root: &Path,
    env_vars: &crate::gentoo::vars::Vars,
) -> PortageVars {
    let bashrc = root.join("etc/portage/bashrc");
    match fs::read_to_string(&bashrc) {
        Ok(text) => match sourced_snippet(&text) {
            Some(path) if path.contains('$') || Path::new(&path).is_file() => r.ok(
                CheckId::Bashrc,
                format!("{} sources {path}", bashrc.display()),
            ),
            Some(path) => r.fail(
                CheckId::Bashrc,
                format!("{} sources {path}, which does not exist", bashrc.display()),
                format!("install portage-ima (it puts the snippet at {SNIPPET}) or fix the path"),
            ),
            None => r.fail(
                CheckId::Bashrc,
                format!(
                    "{} does not source {SNIPPET_NAME}: Portage never runs the hook",
                    bashrc.display()
                ),
                source_line_fix(&bashrc),
            ),
        },
        Err(e) => r.fail(
            CheckId::Bashrc,
            format!("{}: {e}: Portage never runs the hook", bashrc.display()),
            source_line_fix(&bashrc),
        ),
    }

    let vars = portage_vars(root, env_vars);
    let patterns = vars.xattr_exclude_patterns();
    // The hook's rule for a copying merge.
    let copy = XattrCopy::of(&vars.features, &patterns);
    let xattr_kept = copy.keeps_ima();

    let tmpdir = vars.build_dir();
    let shown = format!("{} (PORTAGE_TMPDIR={})", tmpdir.display(), vars.tmpdir);
    // The hook's own rule (by mount, not by device: a bind mount of ROOT's
    // filesystem has its st_dev, yet rename() across it fails with EXDEV).
    let renames = match (MountId::of_path(&tmpdir), MountId::of_path(root)) {
        (Ok(t), Ok(r)) => Some(renames_between(t, r)),
        _ => None,
    };
    let same_fs = renames.map(|r| r.is_ok());
    match renames {
        Some(Ok(())) => r.ok(
            CheckId::Tmpdir,
            format!(
                "{shown} is on the same mount as {}: the merge renames files and they \
                 keep security.ima",
                root.display()
            ),
        ),
        Some(Err(why)) => r.warn(
            CheckId::Tmpdir,
            format!(
                "{shown} {why} {}: the merge copies files, and only \
                 FEATURES=xattr keeps security.ima",
                root.display()
            ),
            format!(
                "build on the mount of {} (PORTAGE_TMPDIR, and no separate or bind mount \
                 on its portage/ directory), or keep the xattr (see the xattr check)",
                root.display()
            ),
        ),
        None => r.warn(
            CheckId::Tmpdir,
            format!(
                "{shown} does not exist here (or {} cannot be read): cannot tell whether the \
                 merge keeps security.ima",
                root.display()
            ),
            "create PORTAGE_TMPDIR, or run doctor where Portage runs",
        ),
    }

    let mut finding = match (copy.feature, copy.excluded_by) {
        (true, None) => "FEATURES has xattr and PORTAGE_XATTR_EXCLUDE keeps security.ima".into(),
        (false, _) => "FEATURES lacks xattr: a copying merge drops every xattr".to_string(),
        (true, Some(pattern)) => format!(
            "FEATURES has xattr but PORTAGE_XATTR_EXCLUDE drops security.ima (pattern {pattern})"
        ),
    };
    finding.push_str(&format!(" ({})", vars.source));
    let xattr_fix = format!(
        "add to make.conf: FEATURES=\"${{FEATURES}} xattr\" and {}",
        xattr_exclude_line(&vars.xattr_exclude)
    );
    if xattr_kept || same_fs == Some(true) {
        if !xattr_kept {
            finding.push_str("; not needed while PORTAGE_TMPDIR is on the same mount");
        }
        r.ok(CheckId::Xattr, finding);
    } else {
        r.warn(CheckId::Xattr, finding, &xattr_fix);
    }

    let premerge = s.map(|s| s.premerge).unwrap_or_default();
    let can = xattr_kept || same_fs == Some(true);
    let why = if same_fs == Some(true) {
        "the merge renames files within one mount"
    } else if xattr_kept {
        "FEATURES=xattr keeps security.ima across filesystems"
    } else {
        "the merge copies files and drops security.ima"
    };
    match (premerge, can) {
        (Premerge::Never, _) => r.ok(
            CheckId::Premerge,
            format!(
                "premerge = never: files are signed in postinst only, and are live unsigned \
                 until then ({why})"
            ),
        ),
        (_, true) => r.ok(
            CheckId::Premerge,
            format!("signing before the merge works: {why}"),
        ),
        (Premerge::Always, false) => r.warn(
            CheckId::Premerge,
            format!(
                "premerge = always, but {why}: signatures made in preinst are lost and \
                 postinst signs everything again"
            ),
            format!("{xattr_fix}; or set premerge = \"auto\""),
        ),
        (Premerge::Auto, false) => r.warn(
            CheckId::Premerge,
            format!(
                "signing before the merge cannot work ({why}): new files are live and \
                 unsigned until postinst, and under enforce an old version's pkg_postrm \
                 that runs them is denied; an upgrade of portage-ima itself leaves its new \
                 binary unsigned until postinst (the hook then runs a signed copy kept in the build directory)"
            ),
            format!(
                "{xattr_fix}; or put PORTAGE_TMPDIR on the filesystem of {}",
                root.display()
            ),
        ),
    }
    let drop = match (premerge, can) {
        (Premerge::Never, _) => Some(Drop::never()),
        (_, true) => None,
        (_, false) => Some(Drop::copy(why, &patterns)),
    };
    super::failsafe::check_failsafe(r, s, root, drop.as_ref());
    super::binpkg::check_binpkg(r, s, &vars.features, &copy);
    vars
}

/// The `PORTAGE_XATTR_EXCLUDE` line to paste into make.conf: the list the
/// running Portage uses (its make.globals default unless make.conf changed
/// it) without the patterns that match security.ima, so that nothing else
/// Portage excludes (a list that grows between releases) is lost.
fn xattr_exclude_line(current: &str) -> String {
    let kept: Vec<&str> = current
        .split_whitespace()
        .filter(|p| !fnmatch(p, IMA_XATTR))
        .collect();
    format!("PORTAGE_XATTR_EXCLUDE=\"{}\"", kept.join(" "))
}

/// The command that appends the README's bashrc line: guarded, so that
/// Portage's bashrc does not fail once portage-ima is uninstalled.
fn source_line_fix(bashrc: &Path) -> String {
    format!(
        "echo '[[ -r {SNIPPET} ]] && source {SNIPPET}' >> {}",
        bashrc.display()
    )
}

/// The path a bashrc line sources our snippet from, if one does.
fn sourced_snippet(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|'))
            .filter(|w| !w.is_empty())
            .collect();
        let at = words.iter().position(|w| *w == "source" || *w == ".")?;
        let path = words.get(at + 1)?.trim_matches(|c| c == '"' || c == '\'');
        path.ends_with(SNIPPET_NAME).then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_exclude_line_drops_only_what_matches_security_ima() {
        assert_eq!(
            xattr_exclude_line("bcachefs.* btrfs.* security.evm security.ima  user.xdg.*"),
            "PORTAGE_XATTR_EXCLUDE=\"bcachefs.* btrfs.* security.evm user.xdg.*\""
        );
        assert_eq!(
            xattr_exclude_line("security.i* system.nfs4_acl"),
            "PORTAGE_XATTR_EXCLUDE=\"system.nfs4_acl\""
        );
    }

    #[test]
    fn bashrc_source_lines() {
        assert_eq!(
            sourced_snippet("source /usr/share/portage-ima/portage-ima.bashrc\n").as_deref(),
            Some("/usr/share/portage-ima/portage-ima.bashrc")
        );
        assert_eq!(
            sourced_snippet("[[ -f /x/portage-ima.bashrc ]] && . \"/x/portage-ima.bashrc\"\n")
                .as_deref(),
            Some("/x/portage-ima.bashrc")
        );
        assert_eq!(
            sourced_snippet("# source /usr/share/portage-ima/portage-ima.bashrc\n"),
            None
        );
        assert_eq!(sourced_snippet("source /etc/portage/other.bashrc\n"), None);
    }
}
