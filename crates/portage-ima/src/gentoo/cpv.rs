//! `CATEGORY/PN-PVR`: one version of one package, as the vdb names its
//! directories (`app-misc/foo-1.2_rc3-r1`) and the ebuild environment
//! gives it (`CATEGORY`, `PF`).
//!
//! `PF` (`PN-PVR`) has no separator of its own: it is split at the first
//! `-` that starts a valid version, as Portage's `pkgsplit` does
//! ([`split_pf`]); `tests/gentoo_versions.rs` checks the split against
//! Portage's on thousands of names.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::gentoo::names::{Category, NameError, PackageName};
use crate::gentoo::version::Version;

/// Splits `PF` into the package name and its version at the first `-`
/// that starts a valid version, as Portage's `pkgsplit` does. Fails when
/// there is no such `-`, or when the name left over is not valid
/// (`foo-1a-2`: the name `foo-1a` ends in a version).
///
/// ```
/// use portage_ima::gentoo::cpv::split_pf;
/// let (pn, version) = split_pf("gtk+-3.24.38-r1").unwrap();
/// assert_eq!((pn.as_str(), version.as_str()), ("gtk+", "3.24.38-r1"));
/// assert!(split_pf("foo-1a-2").is_err());
/// ```
pub fn split_pf(pf: &str) -> Result<(PackageName, Version), NameError> {
    let fail = |reason: String| NameError {
        kind: "NAME-VERSION",
        value: pf.to_string(),
        reason,
    };
    let (pn, version) = pf
        .match_indices('-')
        .find_map(|(i, _)| Some((&pf[..i], Version::parse(&pf[i + 1..]).ok()?)))
        .ok_or_else(|| fail(no_version_reason(pf)))?;
    let pn = PackageName::parse(pn).map_err(|e| fail(e.to_string()))?;
    Ok((pn, version))
}

/// The text after the first `-DIGIT` of `pf`: the version most likely
/// meant, valid or not (`1.2B` of `foo-1.2B`).
pub fn version_meant(pf: &str) -> Option<&str> {
    pf.match_indices('-')
        .map(|(i, _)| &pf[i + 1..])
        .find(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Why no `-` of `pf` starts a version: the error of the version meant,
/// else that there is none.
fn no_version_reason(pf: &str) -> String {
    match version_meant(pf).map(|v| (v, Version::parse(v))) {
        Some((v, Err(e))) => format!("'{v}' is not a version: {}", e.reason),
        _ => "no '-' is followed by a version (as in foo-1.2-r1)".into(),
    }
}

/// A category, package name and version: `app-misc/foo-1.2-r1`.
///
/// Ordered by category, name and version; versions PMS calls equal but
/// that are written differently (`1.0`, `1.00`) are then ordered by their
/// text, so two vdb entries never compare equal.
#[derive(Clone, Debug)]
pub struct Cpv {
    category: Category,
    package: PackageName,
    version: Version,
}

impl Cpv {
    /// Builds a CPV from `CATEGORY` and `PF`, checking both.
    pub fn new(category: &str, pf: &str) -> Result<Cpv, NameError> {
        let category = Category::parse(category)?;
        let (package, version) = split_pf(pf)?;
        Ok(Cpv {
            category,
            package,
            version,
        })
    }

    /// The category.
    pub fn category(&self) -> &Category {
        &self.category
    }

    /// The package name (`PN`).
    pub fn package(&self) -> &PackageName {
        &self.package
    }

    /// The version with its revision (`PVR`).
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// `PN-PVR`, e.g. `foo-1.2-r1`.
    pub fn pf(&self) -> String {
        format!("{}-{}", self.package, self.version)
    }

    /// `CATEGORY/PN`, e.g. `app-misc/foo`.
    pub fn cpn(&self) -> String {
        format!("{}/{}", self.category, self.package)
    }
}

impl FromStr for Cpv {
    type Err = NameError;

    /// Parses `CATEGORY/PF`.
    fn from_str(s: &str) -> Result<Cpv, NameError> {
        let (category, pf) = s.split_once('/').ok_or_else(|| NameError {
            kind: "CATEGORY/NAME-VERSION",
            value: s.to_string(),
            reason: "there is no '/'".into(),
        })?;
        Cpv::new(category, pf)
    }
}

impl fmt::Display for Cpv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}-{}", self.category, self.package, self.version)
    }
}

impl Ord for Cpv {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.category, &self.package)
            .cmp(&(&other.category, &other.package))
            .then_with(|| self.version.cmp(&other.version))
            .then_with(|| self.version.as_str().cmp(other.version.as_str()))
    }
}

eq_from_ord!(Cpv);

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pf: &str) -> Option<(String, String)> {
        let (pn, v) = split_pf(pf).ok()?;
        Some((pn.to_string(), v.to_string()))
    }

    #[test]
    fn pf_splitting() {
        for (pf, pn, pvr) in [
            ("foo-1.0", "foo", "1.0"),
            ("foo-bar-1.0", "foo-bar", "1.0"),
            ("gtk+-3.24.38-r1", "gtk+", "3.24.38-r1"),
            ("perl-5.38.2-r3", "perl", "5.38.2-r3"),
            ("vim-9999", "vim", "9999"),
            ("foo-1.2_rc3_p4-r1", "foo", "1.2_rc3_p4-r1"),
            ("python-3.12.1_p1", "python", "3.12.1_p1"),
            ("font-bh-ttf-1.0.4", "font-bh-ttf", "1.0.4"),
            ("x264-0.0.20231214", "x264", "0.0.20231214"),
            ("foo-2ch-1", "foo-2ch", "1"),
            ("libsigc++-2.12.1", "libsigc++", "2.12.1"),
            ("foo_bar-1", "foo_bar", "1"),
            ("a-1-r1", "a", "1-r1"),
        ] {
            assert_eq!(split(pf), Some((pn.into(), pvr.into())), "{pf}");
        }
        for bad in [
            "foo",
            "foo-",
            "-1",
            "foo-1a-2",
            "foo-1-2",
            "foo-1-r1-2",
            "foo-bar",
            "+foo-1",
            "foo.bar-1",
            "foo/bar-1",
            "foo-1.0-r1-r2",
            "",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn split_errors_say_why() {
        for (pf, why) in [
            ("foo", "no '-' is followed by a version"),
            ("foo-bar", "no '-' is followed by a version"),
            (
                "foo-1.2B",
                "'1.2B' is not a version: unexpected 'B' after '1.2'",
            ),
            (
                "foo-1a-2",
                "'foo-1a' is not a valid package name: it ends in '-1a'",
            ),
            ("foo.bar-1", "'.' is not allowed"),
            ("-1", "'' is not a valid package name: it is empty"),
        ] {
            let msg = split_pf(pf).unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("'{pf}' is not a valid NAME-VERSION: "))
                    && msg.contains(why),
                "{pf:?}: {msg}"
            );
        }
    }

    #[test]
    fn cpv_parts_and_order() {
        let cpv: Cpv = "app-misc/foo-bar-1.2-r1".parse().unwrap();
        assert_eq!(cpv.category().as_str(), "app-misc");
        assert_eq!(cpv.package().as_str(), "foo-bar");
        assert_eq!(cpv.version().as_str(), "1.2-r1");
        assert_eq!(cpv.pf(), "foo-bar-1.2-r1");
        assert_eq!(cpv.cpn(), "app-misc/foo-bar");
        assert_eq!(cpv.to_string(), "app-misc/foo-bar-1.2-r1");
        let c = |s: &str| s.parse::<Cpv>().unwrap();
        assert!(
            c("a/foo-1.0") < c("a/foo-1.00"),
            "same version, text breaks the tie"
        );
        assert!(c("a/foo-1.10") > c("a/foo-1.9"));
        assert!(c("a/zz-1") < c("b/aa-1"));
        for (bad, why) in [
            ("foo-1", "there is no '/'"),
            ("-x/foo-1", "not a valid category"),
            ("a/foo", "not a valid NAME-VERSION"),
        ] {
            let msg = bad.parse::<Cpv>().unwrap_err().to_string();
            assert!(msg.contains(why), "{bad:?}: {msg}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn any_text_never_panics(s in "\\PC{0,24}", t in "[0-9a-z._+/-]{0,16}") {
            for x in [&s, &t] {
                let _ = split_pf(x);
                if let Ok(cpv) = x.parse::<Cpv>() {
                    proptest::prop_assert_eq!(cpv.to_string(), x.as_str());
                }
            }
        }

        #[test]
        fn split_pf_reassembles(pn in "[a-z][a-z0-9+_]{0,6}(-[a-z][a-z0-9+_]{0,4}){0,2}",
                                v in "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}[a-z]?(_(alpha|beta|pre|rc|p)[0-9]{0,2}){0,2}(-r[0-9]{1,2})?") {
            let pf = format!("{pn}-{v}");
            proptest::prop_assert_eq!(split(&pf), Some((pn, v)));
        }
    }
}
