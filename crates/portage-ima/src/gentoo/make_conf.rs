//! Portage's configuration files as Portage reads them: make.globals, then
//! `make.conf` (a file, or a directory of files read in name order), and the
//! two rules every reader of them needs here.
//!
//! - FEATURES is *incremental*: each file's (or the environment's) words
//!   apply on top of what came before, `-flag` removes one flag and `-*`
//!   removes all of them, so `FEATURES="-* xattr"` leaves only `xattr`.
//!   [`Features`] is that rule; the hook (the ebuild's `FEATURES` words) and
//!   `doctor` (make.conf files) both stack through it.
//! - `PORTAGE_XATTR_EXCLUDE` is a list of `fnmatch` patterns; an xattr
//!   matching one is not copied by a copying merge even with
//!   `FEATURES=xattr`. Portage's default list holds `security.ima`.
//!
//! The make.conf reader is rough (bash syntax is not parsed), which is why
//! `doctor` asks `portageq` first and uses it only without one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::gentoo::fnmatch::fnmatch;

/// Portage's default `PORTAGE_XATTR_EXCLUDE` (`make.globals`, Portage
/// 3.0.x), used when the variable is not set at all. It holds `security.ima`.
pub(crate) const DEFAULT_XATTR_EXCLUDE: &[&str] = &[
    "bcachefs.*",
    "bcachefs_effective.*",
    "btrfs.*",
    "security.evm",
    "security.ima",
    "security.selinux",
    "system.nfs4_acl",
    "user.apache_handler",
    "user.Beagle.*",
    "user.dublincore.*",
    "user.mime_encoding",
    "user.xdg.*",
];

/// FEATURES after Portage's incremental stacking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features(BTreeSet<String>);

impl Features {
    /// The flags left by `words` applied in order on an empty set.
    pub fn from_words<'a>(words: impl IntoIterator<Item = &'a str>) -> Features {
        let mut features = Features::default();
        for word in words {
            features.apply(word);
        }
        features
    }

    /// Applies one more assignment's words on top: `-*` clears, `-flag`
    /// removes, `flag` adds.
    pub fn stack(&mut self, words: &str) {
        for word in words.split_whitespace() {
            self.apply(word);
        }
    }

    fn apply(&mut self, word: &str) {
        if word == "-*" {
            self.0.clear();
        } else if let Some(gone) = word.strip_prefix('-') {
            self.0.remove(gone);
        } else {
            self.0.insert(word.to_string());
        }
    }

    pub fn contains(&self, flag: &str) -> bool {
        self.0.contains(flag)
    }

    /// The flags, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// The first `PORTAGE_XATTR_EXCLUDE` pattern that matches the xattr `name`.
pub(crate) fn xattr_exclude_match<'a>(patterns: &'a [String], name: &str) -> Option<&'a str> {
    patterns
        .iter()
        .find(|p| fnmatch(p, name))
        .map(String::as_str)
}

/// The default exclude list as owned patterns.
pub(crate) fn default_xattr_exclude() -> Vec<String> {
    DEFAULT_XATTR_EXCLUDE
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// make.globals and make.conf of a root, read as Portage would (roughly).
#[derive(Debug)]
pub(crate) struct RootConf {
    pub conf: MakeConf,
    /// `etc/portage/make.conf` under the root (file or directory).
    pub make_conf: PathBuf,
    /// Whether `usr/share/portage/config/make.globals` was there.
    pub had_globals: bool,
}

impl RootConf {
    /// Reads `root`'s make.globals, then its make.conf files; missing or
    /// unreadable files count as empty.
    pub(crate) fn read(root: &Path) -> RootConf {
        let mut conf = MakeConf::default();
        let globals = root.join("usr/share/portage/config/make.globals");
        let had_globals = match fs::read_to_string(&globals) {
            Ok(text) => {
                conf.apply(&text);
                true
            }
            Err(_) => false,
        };
        let make_conf = root.join("etc/portage/make.conf");
        for file in conf_files(&make_conf) {
            if let Ok(text) = fs::read_to_string(&file) {
                conf.apply(&text);
            }
        }
        RootConf {
            conf,
            make_conf,
            had_globals,
        }
    }
}

/// make.conf is a file or a directory of files read in name order.
fn conf_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    }
}

/// A rough reader of make.conf-style assignments: `NAME="value"`,
/// `NAME='value'`, `NAME=value`, with `${NAME}`/`$NAME` expanded and FEATURES
/// incremental (`-name` removes, `-*` clears) across files, as Portage does.
#[derive(Debug, Default)]
pub(crate) struct MakeConf {
    vars: Vec<(String, String)>,
    features: Features,
}

impl MakeConf {
    /// The last value assigned to `name` (FEATURES: see [`MakeConf::features`]).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// FEATURES stacked over every file applied so far.
    pub(crate) fn features(&self) -> &Features {
        &self.features
    }

    /// Applies one file's assignments.
    pub(crate) fn apply(&mut self, text: &str) {
        let mut features = None;
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            // Skip blanks and comments.
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            if chars[i] == '#' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let mut name: String = chars[start..i].iter().collect();
            if name == "export" && i < chars.len() && chars[i] == ' ' {
                i += 1;
                continue;
            }
            if name.is_empty() || i >= chars.len() || chars[i] != '=' {
                // Not an assignment: skip the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            i += 1;
            let mut value = String::new();
            match chars.get(i) {
                Some('"') => {
                    i += 1;
                    let mut raw = String::new();
                    while i < chars.len() && chars[i] != '"' {
                        if chars[i] == '\\' && i + 1 < chars.len() {
                            i += 1;
                            if chars[i] != '\n' {
                                raw.push(chars[i]);
                            }
                        } else {
                            raw.push(chars[i]);
                        }
                        i += 1;
                    }
                    i += 1;
                    value.push_str(&self.expand(&raw, features.as_deref()));
                }
                Some('\'') => {
                    i += 1;
                    while i < chars.len() && chars[i] != '\'' {
                        value.push(chars[i]);
                        i += 1;
                    }
                    i += 1;
                }
                _ => {
                    let mut raw = String::new();
                    while i < chars.len() && !chars[i].is_whitespace() {
                        raw.push(chars[i]);
                        i += 1;
                    }
                    value.push_str(&self.expand(&raw, features.as_deref()));
                }
            }
            if name == "FEATURES" {
                features = Some(value);
            } else {
                self.vars.push((std::mem::take(&mut name), value));
            }
        }
        if let Some(words) = features {
            self.features.stack(&words);
        }
    }

    /// Expands `${NAME}` and `$NAME`; FEATURES expands to this file's value
    /// so far (the incremental stacking is done afterwards).
    fn expand(&self, raw: &str, features: Option<&str>) -> String {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, len) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            if name.is_empty() {
                out.push('$');
                rest = after;
                continue;
            }
            let value = if name == "FEATURES" {
                features.unwrap_or("")
            } else {
                self.get(name).unwrap_or("")
            };
            out.push_str(value);
            rest = &after[len..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_stack_in_order() {
        let has = |words: &str| Features::from_words(words.split_whitespace()).contains("xattr");
        assert!(has("xattr"));
        assert!(!has("xattr -xattr"));
        assert!(has("-xattr xattr"));
        assert!(!has("xattr -*"));
        assert!(has("-* xattr"));
        assert!(!has(""));
    }

    #[test]
    fn default_list_drops_security_ima() {
        let pats = default_xattr_exclude();
        assert_eq!(
            xattr_exclude_match(&pats, "security.ima"),
            Some("security.ima")
        );
        assert!(xattr_exclude_match(&pats, "security.capability").is_none());
        assert!(xattr_exclude_match(&pats, "user.xdg.origin.url").is_some());
        assert!(xattr_exclude_match(&[], "security.ima").is_none());
    }

    #[test]
    fn make_conf_features_are_incremental() {
        let mut c = MakeConf::default();
        c.apply("FEATURES=\"sandbox strict\nuserpriv\"\nPORTAGE_XATTR_EXCLUDE=\"btrfs.* security.ima\"\n");
        c.apply(
            "# comment\nexport PORTAGE_TMPDIR=/tmp\nFEATURES=\"${FEATURES} xattr -sandbox\"\n\
             PORTAGE_XATTR_EXCLUDE='btrfs.*'\nCFLAGS=\"-O2 \\\n -pipe\"\nX=\"$CFLAGS\"\n",
        );
        let f: Vec<_> = c.features().iter().collect();
        assert_eq!(f, ["strict", "userpriv", "xattr"]);
        assert_eq!(c.get("PORTAGE_XATTR_EXCLUDE"), Some("btrfs.*"));
        assert_eq!(c.get("PORTAGE_TMPDIR"), Some("/tmp"));
        assert_eq!(c.get("X"), Some("-O2  -pipe"));
        c.apply("FEATURES=\"-*\"\n");
        assert_eq!(c.features().iter().count(), 0);
    }
}
