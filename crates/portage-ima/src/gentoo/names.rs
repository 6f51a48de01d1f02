//! The names PMS section 3.1 restricts: category, package, slot and
//! repository names. Each is a type that can only hold a valid name, and
//! its `parse` says why it refuses one ([`NameError`]).
//!
//! | name       | characters        | may not start with | also                         |
//! |------------|-------------------|--------------------|------------------------------|
//! | category   | `A-Za-z0-9+_.-`   | `-` `.` `+`        |                              |
//! | package    | `A-Za-z0-9+_-`    | `-` `+`            | may not end in `-VERSION`    |
//! | slot       | `A-Za-z0-9+_.-`   | `-` `.` `+`        | `SLOT/SUBSLOT`, both so      |
//! | repository | `A-Za-z0-9_-`     | `-`                |                              |
//!
//! The vdb, `CATEGORY`/`PF` from the ebuild environment and the atoms typed
//! on the command line all go through these types, so the rules live here
//! only.

use std::fmt;

use crate::gentoo::version::Version;

/// Why a text is not a valid name of some kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {kind}: {reason}")]
pub struct NameError {
    /// What it should have been: `category`, `package name`, ...
    pub kind: &'static str,
    /// The text as given.
    pub value: String,
    /// What is wrong with it, in words.
    pub reason: String,
}

/// The character rule all four names share: not empty, only ASCII
/// alphanumerics plus `extra`, not starting with one of `bad_first`.
/// `subject` names the checked part in the reason (`it`, `the sub-slot`).
fn check_chars(
    kind: &'static str,
    subject: &str,
    value: &str,
    extra: &str,
    bad_first: &[char],
) -> Result<(), NameError> {
    let fail = |reason: String| NameError {
        kind,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(fail(format!("{subject} is empty")));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        let allowed: Vec<String> = extra.chars().map(String::from).collect();
        return Err(fail(format!(
            "{c:?} is not allowed (only letters, digits and {})",
            allowed.join(" ")
        )));
    }
    if let Some(c) = value.chars().next().filter(|c| bad_first.contains(c)) {
        return Err(fail(format!("{subject} may not start with '{c}'")));
    }
    Ok(())
}

/// A category name (PMS 3.1.1), e.g. `app-misc`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Category(String);

impl Category {
    /// Checks and wraps a category name.
    pub fn parse(s: &str) -> Result<Category, NameError> {
        check_chars("category", "it", s, "+_.-", &['-', '.', '+'])?;
        Ok(Category(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A package name (PMS 3.1.2), e.g. `gtk+`: never `NAME-VERSION`, so
/// `foo-1.2` is not a package name (it is `foo` at version 1.2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName(String);

impl PackageName {
    /// Checks and wraps a package name.
    pub fn parse(s: &str) -> Result<PackageName, NameError> {
        // The version rule first: `foo-1.2` is better told it ends in a
        // version than that `.` is not allowed.
        if let Some((i, _)) = s
            .match_indices('-')
            .find(|(i, _)| Version::parse(&s[i + 1..]).is_ok())
        {
            return Err(NameError {
                kind: "package name",
                value: s.to_string(),
                reason: format!("it ends in '{}', which is a version", &s[i..]),
            });
        }
        check_chars("package name", "it", s, "+_-", &['-', '+'])?;
        Ok(PackageName(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A slot (PMS 3.1.3, 7.2): `SLOT` or `SLOT/SUBSLOT`, as in the vdb's
/// `SLOT` file and in `:SLOT` of an atom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    raw: String,
    /// Where the `/` is, when there is a sub-slot.
    slash: Option<usize>,
}

impl Slot {
    /// Checks and wraps `SLOT` or `SLOT/SUBSLOT`.
    pub fn parse(s: &str) -> Result<Slot, NameError> {
        let slash = s.find('/');
        let parts = match slash {
            Some(i) => vec![("the slot", &s[..i]), ("the sub-slot", &s[i + 1..])],
            None => vec![("it", s)],
        };
        for (subject, part) in parts {
            check_chars("slot", subject, part, "+_.-", &['-', '.', '+']).map_err(|e| {
                NameError {
                    value: s.to_string(),
                    ..e
                }
            })?;
        }
        Ok(Slot {
            raw: s.to_string(),
            slash,
        })
    }

    /// The slot without the sub-slot.
    pub fn name(&self) -> &str {
        self.slash.map_or(&self.raw, |i| &self.raw[..i])
    }

    /// The sub-slot, when written.
    pub fn subslot(&self) -> Option<&str> {
        self.slash.map(|i| &self.raw[i + 1..])
    }

    /// `SLOT` or `SLOT/SUBSLOT` as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Does an installed package's slot satisfy this one (an atom's)? The
    /// slot names must be equal, and the sub-slots too when this one has
    /// one.
    pub fn matches(&self, installed: &Slot) -> bool {
        self.name() == installed.name()
            && self
                .subslot()
                .is_none_or(|sub| installed.subslot() == Some(sub))
    }
}

/// A repository name (PMS 3.1.5), e.g. `gentoo`, as in the vdb's
/// `repository` file and `::REPO` of an atom.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName(String);

impl RepoName {
    /// Checks and wraps a repository name.
    pub fn parse(s: &str) -> Result<RepoName, NameError> {
        check_chars("repository name", "it", s, "_-", &['-'])?;
        Ok(RepoName(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($name:ty),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(Category, PackageName, Slot, RepoName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        for ok in ["app-misc", "dev-perl", "virtual", "x11-libs.old", "a+b_c"] {
            assert_eq!(Category::parse(ok).unwrap().as_str(), ok);
        }
        for (bad, why) in [
            (".hidden", "may not start with '.'"),
            ("-MERGING-", "may not start with '-'"),
            ("+x", "may not start with '+'"),
            (
                "a/b",
                "'/' is not allowed (only letters, digits and + _ . -)",
            ),
            ("..", "may not start with '.'"),
            ("", "it is empty"),
            ("é", "'é' is not allowed"),
        ] {
            let msg = Category::parse(bad).unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("'{bad}' is not a valid category: ")) && msg.contains(why),
                "{bad:?}: {msg}"
            );
        }
    }

    #[test]
    fn package_names() {
        for ok in ["foo-bar", "gtk+", "foo-1x2", "foo_bar", "x264", "libsigc++"] {
            assert_eq!(PackageName::parse(ok).unwrap().as_str(), ok);
        }
        for (bad, why) in [
            ("foo-1", "ends in '-1', which is a version"),
            ("foo-1.2_rc1-r1", "ends in '-1.2_rc1-r1'"),
            (
                "foo.bar",
                "'.' is not allowed (only letters, digits and + _ -)",
            ),
            ("+foo", "may not start with '+'"),
            ("-foo", "may not start with '-'"),
        ] {
            let msg = PackageName::parse(bad).unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("'{bad}' is not a valid package name: "))
                    && msg.contains(why),
                "{bad:?}: {msg}"
            );
        }
    }

    #[test]
    fn slots() {
        let s = Slot::parse("3/3.24").unwrap();
        assert_eq!(
            (s.name(), s.subslot(), s.as_str()),
            ("3", Some("3.24"), "3/3.24")
        );
        let s = Slot::parse("0").unwrap();
        assert_eq!((s.name(), s.subslot()), ("0", None));
        for (bad, why) in [
            ("", "it is empty"),
            ("/x", "the slot is empty"),
            ("3/", "the sub-slot is empty"),
            ("3/4/5", "'/' is not allowed"),
            ("-1", "it may not start with '-'"),
            ("3/.1", "the sub-slot may not start with '.'"),
            ("a b", "' ' is not allowed"),
        ] {
            let e = Slot::parse(bad).unwrap_err();
            assert_eq!((e.kind, e.value.as_str()), ("slot", bad), "{e}");
            assert!(e.reason.contains(why), "{bad:?}: {e}");
        }
        let want = |s: &str| Slot::parse(s).unwrap();
        assert!(want("3").matches(&want("3/3.24")));
        assert!(want("3/3.24").matches(&want("3/3.24")));
        assert!(!want("3/3.24").matches(&want("3/3.22")));
        assert!(!want("3/3").matches(&want("3")));
        assert!(!want("2").matches(&want("3")));
    }

    #[test]
    fn repo_names() {
        for ok in ["gentoo", "my-overlay", "ima_test", "x"] {
            assert_eq!(RepoName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-x", "a:b", "a.b", "a+b"] {
            assert_eq!(RepoName::parse(bad).unwrap_err().kind, "repository name");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn any_text_never_panics(s in "\\PC{0,24}", t in "[0-9a-z._+/-]{0,16}") {
            for x in [&s, &t] {
                let _ = Category::parse(x);
                let _ = PackageName::parse(x);
                let _ = RepoName::parse(x);
                if let Ok(slot) = Slot::parse(x) {
                    proptest::prop_assert_eq!(slot.as_str(), x.as_str());
                    proptest::prop_assert!(slot.matches(&slot));
                }
            }
        }
    }
}
