//! Whether Portage itself vouched for the package being merged: what
//! `mode = "sign-missing"` needs before it signs, with the client's own key,
//! a file the binary host's `IMA_SIGNATURES` does not cover.
//!
//! What Portage (3.0.x) does, from its source:
//! - `EMERGE_FROM` is `ebuild` for a build from source here and `binary` for
//!   a binary package. It is one of Portage's read-only variables, filtered
//!   out of a binary package's saved environment before that is restored.
//! - With `FEATURES=binpkg-request-signature`, `gpkg.py` requires and
//!   verifies the GPG signature of the package's Manifest and of every file
//!   it lists (metadata and image) before unpacking; a missing or bad one
//!   fails the merge. It overrides `binpkg-ignore-signature` and
//!   binrepos.conf's `verify-signature`. `bintree.py` then ignores xpak
//!   packages entirely (they cannot be signed). `FEATURES` is filtered out
//!   of the saved environment too: it is the client's.
//! - `PORTAGE_BINPKG_FILE` is the package file being merged (read-only,
//!   set by `Binpkg.py` for the whole install): a gpkg ends in `.gpkg.tar`.
//!
//! A signature verified only because binrepos.conf says `verify-signature
//! = true` cannot be told from here, so it does not count: set the feature.

use std::fmt;

use crate::gentoo::make_conf::Features;

/// The feature that makes Portage verify every gpkg's GPG signature.
pub(crate) const REQUEST_SIGNATURE: &str = "binpkg-request-signature";

/// Where the package being merged comes from, as far as trust goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Built from source on this machine (`EMERGE_FROM=ebuild`).
    LocalBuild,
    /// A gpkg whose GPG signature Portage verified before unpacking it.
    SignedGpkg,
    /// Nothing vouches for it; the reason says what is missing.
    Unverified(String),
}

impl Provenance {
    /// From Portage's variables, looked up with `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Provenance {
        match get("EMERGE_FROM").as_deref() {
            Some("ebuild") => Provenance::LocalBuild,
            Some("binary") => {
                let features = get("FEATURES").unwrap_or_default();
                let features = Features::from_words(features.split_whitespace());
                let file = get("PORTAGE_BINPKG_FILE").unwrap_or_default();
                if !features.contains(REQUEST_SIGNATURE) {
                    Provenance::Unverified(format!(
                        "FEATURES has no {REQUEST_SIGNATURE}, so Portage did not verify \
                         the binary package's GPG signature"
                    ))
                } else if !file.ends_with(".gpkg.tar") {
                    Provenance::Unverified(format!(
                        "the binary package is not a gpkg ({}): only a gpkg carries a \
                         signature Portage verifies",
                        if file.is_empty() {
                            "PORTAGE_BINPKG_FILE unset"
                        } else {
                            &file
                        }
                    ))
                } else {
                    Provenance::SignedGpkg
                }
            }
            other => Provenance::Unverified(format!(
                "EMERGE_FROM is {}, neither ebuild nor binary",
                other.map_or_else(|| "unset".to_string(), |v| format!("'{v}'"))
            )),
        }
    }

    /// From the hook's environment.
    pub fn from_environment(vars: &crate::gentoo::vars::Vars) -> Provenance {
        Provenance::from_vars(vars.lookup())
    }

    /// May files nothing else vouches for be signed with our own key?
    pub fn vouched(&self) -> bool {
        !matches!(self, Provenance::Unverified(_))
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::LocalBuild => f.write_str("built from source here"),
            Provenance::SignedGpkg => {
                write!(
                    f,
                    "a gpkg whose GPG signature Portage verified ({REQUEST_SIGNATURE})"
                )
            }
            Provenance::Unverified(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(vars: &[(&str, &str)]) -> Provenance {
        Provenance::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn only_a_local_build_or_a_verified_gpkg_is_vouched_for() {
        assert_eq!(of(&[("EMERGE_FROM", "ebuild")]), Provenance::LocalBuild);
        let gpkg = "/var/cache/binpkgs/app-misc/foo/foo-1-1.gpkg.tar";
        let signed = [
            ("EMERGE_FROM", "binary"),
            ("FEATURES", "sandbox binpkg-request-signature"),
            ("PORTAGE_BINPKG_FILE", gpkg),
        ];
        assert_eq!(of(&signed), Provenance::SignedGpkg);
        let unsigned = [("EMERGE_FROM", "binary"), ("PORTAGE_BINPKG_FILE", gpkg)];
        assert!(of(&unsigned)
            .to_string()
            .contains("no binpkg-request-signature"));
        let cancelled = [
            ("EMERGE_FROM", "binary"),
            (
                "FEATURES",
                "binpkg-request-signature -binpkg-request-signature",
            ),
            ("PORTAGE_BINPKG_FILE", gpkg),
        ];
        assert!(!of(&cancelled).vouched());
        let xpak = [
            ("EMERGE_FROM", "binary"),
            ("FEATURES", "binpkg-request-signature"),
            ("PORTAGE_BINPKG_FILE", "/p/foo-1.tbz2"),
        ];
        assert!(of(&xpak).to_string().contains("not a gpkg"));
        assert!(!of(&[]).vouched());
    }
}
