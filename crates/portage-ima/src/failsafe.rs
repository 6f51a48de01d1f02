//! Fail-safe merges: on a machine whose kernel refuses unsigned programs
//! root runs ([`crate::policy::enforcement`]), a merge that drops the
//! signatures made before it would leave every new program live and
//! unsigned until postinst. Portage runs its phases with bash and Python:
//! a new bash merged that way is refused before the postinst that would
//! sign it, and so is root's login shell. So the hook stops such a merge in
//! preinst, before any file goes live, in strict and non-strict mode alike;
//! `allow_unsigned_window = true` turns the stop into a warning. The hook,
//! `doctor` and `policy` decide with [`judge`].
//!
//! A merge drops the signatures when Portage copies files across
//! filesystems without `FEATURES=xattr` (or with `security.ima` in
//! `PORTAGE_XATTR_EXCLUDE`), or when `premerge = "never"` signs nothing
//! before it.

use ima_core::IMA_XATTR;

use crate::gentoo::fnmatch::fnmatch;
use crate::policy::enforcement::Enforcement;

/// Why a merge leaves its files unsigned while they are live, and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Drop {
    pub reason: String,
    pub fix: String,
}

/// What the hook does about a merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to stop: the signatures survive, or the kernel does not enforce.
    Go(String),
    /// Stop the merge in preinst; the message says why and the fix.
    Stop(String),
    /// Merge with a window of unsigned live files (allow_unsigned_window).
    Window(String),
}

impl Drop {
    /// A copying merge that drops `security.ima` (`why`): the fix is the
    /// two make.conf lines, from the `PORTAGE_XATTR_EXCLUDE` in effect.
    pub(crate) fn copy(why: &str, xattr_exclude: &[String]) -> Drop {
        Drop {
            reason: why.to_string(),
            fix: format!(
                "add these two lines to /etc/portage/make.conf:\n    {}\n    {}\n\
                 (or put PORTAGE_TMPDIR on the filesystem of ROOT)",
                FEATURES_LINE,
                xattr_exclude_line(xattr_exclude)
            ),
        }
    }

    /// `premerge = "never"`: nothing is signed before the merge.
    pub(crate) fn never() -> Drop {
        Drop {
            reason: "premerge = \"never\": nothing is signed before the merge".into(),
            fix: "set premerge = \"auto\" in ima.toml".into(),
        }
    }
}

/// The make.conf line that turns on copying xattrs.
pub(crate) const FEATURES_LINE: &str = "FEATURES=\"${FEATURES} xattr\"";

/// The `PORTAGE_XATTR_EXCLUDE` line to paste into make.conf: the list in
/// effect without the patterns that match `security.ima`, so nothing else
/// Portage excludes is lost.
pub(crate) fn xattr_exclude_line(current: &[String]) -> String {
    let kept: Vec<&str> = current
        .iter()
        .map(String::as_str)
        .filter(|p| !fnmatch(p, IMA_XATTR))
        .collect();
    format!("PORTAGE_XATTR_EXCLUDE=\"{}\"", kept.join(" "))
}

/// The decision (see the module docs); `what` names the merge (`CAT/PF`,
/// or "merges" for doctor).
pub(crate) fn judge(
    what: &str,
    enforcement: &Enforcement,
    drop: Option<&Drop>,
    allow_unsigned_window: bool,
) -> Verdict {
    let Some(drop) = drop else {
        return Verdict::Go("the merge keeps the signatures made before it".into());
    };
    if !enforcement.enforced() {
        return Verdict::Go(format!(
            "{}, but the kernel does not refuse unsigned programs: {}",
            drop.reason,
            enforcement.reason()
        ));
    }
    let danger = format!(
        "{}, and the kernel refuses unsigned programs ({}): the new files would be live \
         and unsigned until postinst, and a new program run before then (bash, python, \
         portage-ima itself) would be refused",
        drop.reason,
        enforcement.reason()
    );
    if allow_unsigned_window {
        Verdict::Window(format!(
            "merging {what} anyway (allow_unsigned_window = true): {danger}"
        ))
    } else {
        Verdict::Stop(format!(
            "stopping the merge of {what} before any file goes live: {danger}. To fix it, {}; \
             or set allow_unsigned_window = true in ima.toml to accept the window",
            drop.fix
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Enforcement {
        Enforcement::Enforced("enforce = true in ima.toml".into())
    }

    #[test]
    fn stops_only_an_enforced_merge_that_drops_signatures() {
        let exclude: Vec<String> = ["btrfs.*", "security.evm", "security.ima", "user.xdg.*"]
            .map(String::from)
            .to_vec();
        let drop = Drop::copy("FEATURES lacks xattr", &exclude);
        let Verdict::Stop(msg) = judge("cat/p-1", &on(), Some(&drop), false) else {
            panic!()
        };
        assert!(msg.contains("FEATURES=\"${FEATURES} xattr\""), "{msg}");
        assert!(
            msg.contains("PORTAGE_XATTR_EXCLUDE=\"btrfs.* security.evm user.xdg.*\""),
            "{msg}"
        );
        assert!(matches!(
            judge("cat/p-1", &on(), Some(&drop), true),
            Verdict::Window(_)
        ));
        assert!(matches!(
            judge("cat/p-1", &on(), None, false),
            Verdict::Go(_)
        ));
        let off = Enforcement::NotEnforced("ima_appraise=log".into());
        assert!(matches!(
            judge("cat/p-1", &off, Some(&drop), false),
            Verdict::Go(_)
        ));
        let Verdict::Stop(msg) = judge("cat/p-1", &on(), Some(&Drop::never()), false) else {
            panic!()
        };
        assert!(msg.contains("set premerge = \"auto\""), "{msg}");
    }

    #[test]
    fn exclude_line_keeps_other_patterns() {
        let list = ["security.*", "user.a"].map(String::from);
        assert_eq!(
            xattr_exclude_line(&list),
            "PORTAGE_XATTR_EXCLUDE=\"user.a\""
        );
    }
}
